"""TcpServer: events and their order, close, errors, endpoints, bad input."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest
import pytest_twisted
from _helpers import (
    Collector,
    accept_queue_room,
    connect,
    listening,
    queued_connects,
    sleep,
    wait_event,
    wait_for,
)

import txtcp
from txtcp import ErrorKind, error_info


@pytest_twisted.ensureDeferred
async def test_event_order() -> None:
    """start, then connect per client, then stop after close; port 0 is resolved."""
    server = txtcp.TcpServer("127.0.0.1", 0)
    events: list[str] = []
    server.on("start", lambda: events.append("start"))
    server.on("connect", lambda c: events.append("connect"))
    server.on("stop", lambda: events.append("stop"))
    await wait_for(lambda: events == ["start"])
    assert isinstance(server.port, int) and server.port > 0
    assert server.address == ("127.0.0.1", server.port)
    assert server.listening
    conn = await connect("127.0.0.1", server.port)
    await wait_for(lambda: events == ["start", "connect"])
    server.close()
    server.close()
    await wait_for(lambda: events == ["start", "connect", "stop"])
    assert not server.listening
    conn.close()


@pytest_twisted.ensureDeferred
async def test_close_keeps_connections_open() -> None:
    """After close(), accepted connections still carry data; new connects are refused."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    port = server.port or 0
    accepted = wait_event(server, "connect")
    c = await connect("127.0.0.1", port)
    (s,) = await accepted
    stopped = wait_event(server, "stop")
    server.close()
    await stopped
    got = Collector(s)
    c.write(b"after close")
    await wait_for(lambda: got.data == b"after close")
    client = txtcp.TcpClient()
    err = wait_event(client, "connect_error")
    client.connect("127.0.0.1", port)
    assert (await err)[1] == 111
    c.close()
    await got.wait_closed()


@pytest_twisted.ensureDeferred
async def test_address_in_use() -> None:
    """Listening on a busy port emits error (ADDRESS_IN_USE) and no start."""
    first = await listening(txtcp.TcpServer("127.0.0.1", 0))
    second = txtcp.TcpServer("127.0.0.1", first.port or 0)
    events: list[Any] = []
    second.on("start", lambda: events.append("start"))
    second.on("error", lambda exc: events.append(exc))
    assert second.listen_error is not None  # known before the error event
    assert first.listen_error is None
    await wait_for(lambda: events)
    await sleep(0.05)
    assert len(events) == 1
    assert events[0] is second.listen_error
    assert error_info(events[0]).kind is ErrorKind.ADDRESS_IN_USE
    first.close()


@pytest_twisted.ensureDeferred
async def test_listen_by_name() -> None:
    """A server on 'localhost' listens on an address the name resolves to."""
    server = await listening(txtcp.TcpServer("localhost", 0))
    assert server.address is not None and server.address[0] in ("127.0.0.1", "::1")
    conn = await connect(server.address[0], server.port or 0)
    conn.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_listen_unknown_name() -> None:
    """A name that does not resolve gives an error event of kind HOST_NOT_FOUND."""
    server = txtcp.TcpServer("no-such-host.invalid", 0)
    assert server.listen_error is None  # the name is still being resolved
    (exc,) = await wait_event(server, "error")
    assert error_info(exc).kind is ErrorKind.HOST_NOT_FOUND
    assert server.listen_error is exc


@pytest_twisted.ensureDeferred
async def test_close_before_start() -> None:
    """close() right after construction gives stop and never start."""
    server = txtcp.TcpServer("127.0.0.1", 0)
    events: list[str] = []
    server.on("start", lambda: events.append("start"))
    server.on("stop", lambda: events.append("stop"))
    server.close()
    await wait_for(lambda: events)
    await sleep(0.05)
    assert events == ["stop"]


@pytest_twisted.ensureDeferred
async def test_from_endpoint_strings() -> None:
    """from_endpoint takes tcp:, tcp6: and unix: strings."""
    for description, host in [
        ("tcp:0:interface=127.0.0.1", "127.0.0.1"),
        ("tcp6:0:interface=\\:\\:1", "::1"),
    ]:
        server = await listening(txtcp.TcpServer.from_endpoint(description))
        assert server.address == (host, server.port)
        conn = await connect(host, server.port or 0)
        conn.close()
        server.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's backlog accounting")
@pytest.mark.parametrize(
    ("description", "backlog"),
    [
        ("tcp:0:interface=127.0.0.1", 511),
        ("tcp:0:interface=127.0.0.1:backlog=20", 20),
    ],
)
@pytest_twisted.ensureDeferred
async def test_from_endpoint_backlog(description: str, backlog: int) -> None:
    """A string without backlog= listens with 511, as TcpServer() does, not
    Twisted's 50; one with backlog= keeps it."""
    server = await listening(txtcp.TcpServer.from_endpoint(description))
    assert queued_connects(server.port or 0, 100) == min(100, accept_queue_room(backlog))
    server.close()
    await wait_event(server, "stop")


@pytest_twisted.ensureDeferred
async def test_unix_endpoint(tmp_path: Any) -> None:
    """A server and a client over a UNIX socket through endpoint strings."""
    path = str(tmp_path / "s.sock")
    server = await listening(txtcp.TcpServer.from_endpoint(f"unix:{path}"))
    assert server.address == (path, 0)
    accepted = wait_event(server, "connect")
    client = txtcp.TcpClient()
    connected = wait_event(client, "connect")
    client.connect_endpoint(f"unix:path={path}")
    (c,) = await connected
    (s,) = await accepted
    got = Collector(s)
    c.write(b"over unix")
    c.shutdown()
    await got.wait_closed()
    assert got.data == b"over unix"
    with pytest.raises(txtcp.UnsupportedOperationError):
        c.nodelay = True
    server.close()


@pytest_twisted.ensureDeferred
async def test_from_socket() -> None:
    """A server adopts a bound, listening socket."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = await listening(txtcp.TcpServer.from_socket(sock))
    sock.close()
    assert server.address is not None
    conn = await connect("127.0.0.1", server.port or 0)
    conn.close()
    server.close()


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        (("127.0.0.1", 65536), {}, ValueError),
        (("127.0.0.1", "x"), {}, TypeError),
        ((1234, 0), {}, TypeError),
        (("127.0.0.1", 0), {"backlog": 0}, ValueError),
    ],
)
def test_bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], exc: type) -> None:
    """Bad arguments raise at construction."""
    with pytest.raises(exc):
        txtcp.TcpServer(*args, **kwargs)


def test_bad_endpoints() -> None:
    """Unparsable endpoint strings raise ValueError, non-endpoints TypeError."""
    with pytest.raises(ValueError, match="cannot parse"):
        txtcp.TcpServer.from_endpoint("tcp:notaport")
    with pytest.raises(TypeError):
        txtcp.TcpServer.from_endpoint(8080)
    with pytest.raises(TypeError):
        txtcp.TcpServer.from_socket(3)  # type: ignore[arg-type]
