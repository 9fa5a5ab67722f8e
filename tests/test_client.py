"""TcpClient: connects, connect_error codes, names, IPv6, endpoints, bad input."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, connect, listening, logged, reactor, sleep, wait_event, wait_for
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError as TwistedRefused
from twisted.internet.error import DNSLookupError

import txtcp


def free_closed_port(host: str = "127.0.0.1") -> int:
    """A port on which nothing listens (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int]]:
    """A listening socket whose backlog is full, so that a connect hangs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    addr = srv.getsockname()
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(addr)
        fillers.append(c)
    yield addr
    for c in fillers:
        c.close()
    srv.close()


async def connect_error(client: txtcp.TcpClient, *args: Any, **kw: Any) -> tuple[Any, ...]:
    d = wait_event(client, "connect_error", timeout=20)
    client.connect(*args, **kw)
    result: tuple[Any, ...] = await d
    return result


@pytest_twisted.ensureDeferred
async def test_refused() -> None:
    """A refused connect emits connect_error(socket.error, ECONNREFUSED)."""
    client = txtcp.TcpClient()
    errtype, code = await connect_error(client, "127.0.0.1", free_closed_port())
    assert errtype is socket.error
    assert code == errno.ECONNREFUSED


@pytest_twisted.ensureDeferred
async def test_timeout(silent_listener: tuple[str, int]) -> None:
    """A connect that gets no answer within timeout emits (socket.error, ETIMEDOUT)."""
    client = txtcp.TcpClient()
    failures: list[Any] = []
    client.on("connect_failure", failures.append)
    start = reactor.seconds()
    errtype, code = await connect_error(client, *silent_listener, timeout=0.5)
    assert errtype is socket.error
    assert code == errno.ETIMEDOUT
    assert 0.4 < reactor.seconds() - start < 5
    await wait_for(lambda: failures)
    assert [str(info.exception) for info in failures] == [
        "User timeout caused connection failure: no connection within 0.5 seconds."
    ]


@pytest_twisted.ensureDeferred
async def test_name_not_found() -> None:
    """An unresolvable name emits connect_error(socket.gaierror, EAI_NONAME)."""
    client = txtcp.TcpClient()
    errtype, code = await connect_error(client, "no-such-host.invalid", 80)
    assert errtype is socket.gaierror
    assert code == socket.EAI_NONAME


@pytest_twisted.ensureDeferred
async def test_failed_connect_logs_nothing_unhandled() -> None:
    """A failed connect that nobody listens to logs no unhandled error."""
    with logged() as seen:
        client = txtcp.TcpClient()
        client.connect("127.0.0.1", free_closed_port())
        client.connect("no-such-host.invalid", 1)
        probe = txtcp.TcpClient()
        await connect_error(probe, "no-such-host.invalid", 1)
        await connect_error(probe, "127.0.0.1", free_closed_port())
        import gc

        gc.collect()
    ours = (ConnectionRefusedError, DNSLookupError, TwistedRefused)
    assert [e for e in seen if isinstance(getattr(e.get("log_failure"), "value", None), ours)] == []
    assert not [e for e in seen if "Unhandled" in str(e.get("log_format", ""))]


@pytest_twisted.ensureDeferred
async def test_connect_by_name_bytes_and_string_port() -> None:
    """Host may be bytes and port a string of digits; names resolve."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    client = txtcp.TcpClient()
    d = wait_event(client, "connect")
    client.connect(b"localhost", str(server.port))
    (conn,) = await d
    assert conn.remote_address[1] == server.port
    conn.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_ipv6() -> None:
    """Server and client work over ::1, and the addresses are IPv6."""
    server = await listening(txtcp.TcpServer("::1", 0))
    assert server.address == ("::1", server.port)
    accepted = wait_event(server, "connect")
    conn = await connect("::1", server.port or 0)
    (peer,) = await accepted
    got = Collector(peer)
    conn.write(b"six")
    await wait_for(lambda: got.data == b"six")
    assert conn.remote_address == ("::1", server.port)
    assert peer.local_address == ("::1", server.port)
    conn.close()
    await got.wait_closed()
    server.close()


@pytest_twisted.ensureDeferred
async def test_bracketed_ipv6_literal() -> None:
    """A bracketed IPv6 literal is accepted as host."""
    server = await listening(txtcp.TcpServer("[::1]", 0))
    conn = await connect("[::1]", server.port or 0)
    assert conn.remote_address[0] == "::1"
    conn.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_connect_endpoint_string() -> None:
    """connect_endpoint takes a tcp: description (HostnameEndpoint, IPv6 escaped)."""
    server = await listening(txtcp.TcpServer("::1", 0))
    client = txtcp.TcpClient()
    d = wait_event(client, "connect")
    client.connect_endpoint(f"tcp:host=\\:\\:1:port={server.port}")
    (conn,) = await d
    assert conn.remote_address == ("::1", server.port)
    conn.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_bind_address() -> None:
    """bind_address chooses the local address of the connection."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    port = free_closed_port()
    client = txtcp.TcpClient()
    d = wait_event(client, "connect")
    client.connect("127.0.0.1", server.port or 0, bind_address=("127.0.0.1", port))
    (conn,) = await d
    assert conn.local_address == ("127.0.0.1", port)
    conn.close()
    server.close()


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        (("127.0.0.1", 70000), {}, ValueError),
        (("127.0.0.1", -1), {}, ValueError),
        (("127.0.0.1", "http"), {}, TypeError),
        (("127.0.0.1", 1.5), {}, TypeError),
        (("127.0.0.1", True), {}, TypeError),
        ((None, 80), {}, TypeError),
        ((b"\xff", 80), {}, ValueError),
        (("127.0.0.1", 80), {"timeout": -1}, ValueError),
        (("127.0.0.1", 80), {"timeout": "soon"}, TypeError),
        (("127.0.0.1", 80), {"bind_address": "127.0.0.1"}, TypeError),
    ],
)
def test_bad_connect_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], exc: type) -> None:
    """Bad arguments to connect raise at the call, and no event follows."""
    client = txtcp.TcpClient()
    events: list[Any] = []
    client.on("connect", events.append)
    client.on("connect_error", lambda *a: events.append(a))
    with pytest.raises(exc):
        client.connect(*args, **kwargs)
    assert events == []


def test_bad_endpoint() -> None:
    """An unparsable endpoint string raises ValueError; a non-endpoint TypeError."""
    client = txtcp.TcpClient()
    with pytest.raises(ValueError, match="cannot parse"):
        client.connect_endpoint("tcp:host=x")
    with pytest.raises(ValueError, match="cannot parse"):
        client.connect_endpoint("nosuchscheme:foo")
    with pytest.raises(TypeError):
        client.connect_endpoint(42)


@pytest_twisted.ensureDeferred
async def test_timeout_cancel_no_late_event() -> None:
    """A successful connect with a timeout emits connect only, never a late connect_error."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    client = txtcp.TcpClient()
    events: list[str] = []
    client.on("connect", lambda c: events.append("connect"))
    client.on("connect_error", lambda *a: events.append("connect_error"))
    client.connect("127.0.0.1", server.port or 0, timeout=0.2)
    await wait_for(lambda: events)
    d: Deferred[None] = Deferred()
    reactor.callLater(0.4, d.callback, None)
    await d
    assert events == ["connect"]
    server.close()


def test_error_info_of_gaierror() -> None:
    """A socket.gaierror maps back to HOST_NOT_FOUND with its EAI code."""
    info = txtcp.error_info(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert info.kind is txtcp.ErrorKind.HOST_NOT_FOUND
    assert (info.errtype, info.errno, info.qt_code) == (socket.gaierror, socket.EAI_NONAME, 2)


@pytest_twisted.ensureDeferred
async def test_cancel_attempt(silent_listener: tuple[str, int]) -> None:
    """A cancelled attempt gives no event; cancelling an ended attempt does nothing."""
    client = txtcp.TcpClient()
    events: list[Any] = []
    client.on("connect", events.append)
    client.on("connect_error", lambda *a: events.append(a))
    attempt = client.connect(*silent_listener, timeout=0.3)
    assert not attempt.done
    attempt.cancel()
    assert attempt.done
    named = client.connect("no-such-host.invalid", 80)
    named.cancel()
    await sleep(0.5)
    assert events == []
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    ok = client.connect("127.0.0.1", server.port or 0)
    await wait_for(lambda: events)
    assert ok.done
    ok.cancel()
    assert isinstance(events[0], txtcp.TcpConnection)
    events[0].close()
    server.close()
