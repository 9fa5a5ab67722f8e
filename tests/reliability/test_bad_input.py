"""
Bad input, table-driven, at every API layer (core, streams, handles,
tcpsocket, components, services): wrong types, out-of-range values, and
calls in the wrong state (closed connection, stopped server, not yet
connected).  Each raises the documented exception at the call (or reports
the documented event), and leaves the object usable or cleanly closed;
nothing leaks a descriptor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, fds_back_to, listening, open_fds, pair, sleep, wait_event, wait_for
from _layers import serve_echo_once
from _twistd import run_twistd

import txtcp
from txtcp import components, handles, streams, tcpsocket
from txtcp.core import ConnectionClosedError, TxtcpError, UnsupportedOperationError
from txtcp.handles.error import HandleClosedError, TCPError
from txtcp.services import echo, proxy

ROOT = Path(__file__).resolve().parent.parent.parent
README = str(ROOT / "README.md")
Row = tuple[str, Callable[[], Any], type[BaseException]]


async def call(fn: Callable[[], Any]) -> Any:
    """Call C{fn}; await what it returns if it is a coroutine."""
    result = fn()
    if inspect.iscoroutine(result):
        return await result
    return result


async def check_rows(rows: list[Row]) -> None:
    """Every row's call raises its exception type, with a message."""
    for name, fn, expected in rows:
        with pytest.raises(expected) as info:
            await call(fn)
        assert str(info.value), name


# -- constructors and calls with wrong arguments -------------------------------------

CONSTRUCTION: list[Row] = [
    # core
    ("TcpClient.connect host int", lambda: txtcp.TcpClient().connect(123, 80), TypeError),  # type: ignore[arg-type]
    ("TcpClient.connect port -1", lambda: txtcp.TcpClient().connect("h", -1), ValueError),
    ("TcpClient.connect port 70000", lambda: txtcp.TcpClient().connect("h", 70000), ValueError),
    ("TcpClient.connect port 'abc'", lambda: txtcp.TcpClient().connect("h", "abc"), TypeError),
    ("TcpClient.connect port 1.5", lambda: txtcp.TcpClient().connect("h", 1.5), TypeError),  # type: ignore[arg-type]
    ("TcpClient.connect NUL host", lambda: txtcp.TcpClient().connect("a\x00b", 1), ValueError),
    ("TcpClient.connect timeout -1", lambda: txtcp.TcpClient().connect("h", 1, -1), ValueError),
    (
        "TcpClient.connect timeout nan",
        lambda: txtcp.TcpClient().connect("h", 1, float("nan")),
        ValueError,
    ),
    ("TcpClient.connect timeout str", lambda: txtcp.TcpClient().connect("h", 1, "1"), TypeError),  # type: ignore[arg-type]
    (
        "TcpClient.connect bind_address",
        lambda: txtcp.TcpClient().connect("h", 1, bind_address="x"),  # type: ignore[arg-type]
        TypeError,
    ),
    ("TcpClient.connect_endpoint 42", lambda: txtcp.TcpClient().connect_endpoint(42), TypeError),
    (
        "TcpClient.connect_endpoint junk",
        lambda: txtcp.TcpClient().connect_endpoint("nonsense:x"),
        ValueError,
    ),
    (
        "TcpClient.connect_endpoint tcp no port",
        lambda: txtcp.TcpClient().connect_endpoint("tcp:host=h"),
        ValueError,
    ),
    ("TlsClient trust_root 42", lambda: txtcp.TlsClient(trust_root=42), TypeError),  # type: ignore[arg-type]
    ("TlsClient trust_root no PEM", lambda: txtcp.TlsClient(trust_root=README), ValueError),
    (
        "TlsClient trust_root missing",
        lambda: txtcp.TlsClient(trust_root="/nonexistent.pem"),
        OSError,
    ),
    ("TcpServer host None", lambda: txtcp.TcpServer(None, 0), TypeError),  # type: ignore[arg-type]
    ("TcpServer port 65536", lambda: txtcp.TcpServer("127.0.0.1", 65536), ValueError),
    ("TcpServer backlog 0", lambda: txtcp.TcpServer("127.0.0.1", 0, backlog=0), ValueError),
    ("TcpServer.from_endpoint 3", lambda: txtcp.TcpServer.from_endpoint(3), TypeError),
    (
        "TcpServer.from_endpoint tcp:99999",
        lambda: txtcp.TcpServer.from_endpoint("tcp:99999"),
        ValueError,
    ),
    (
        "TcpServer.from_endpoint junk",
        lambda: txtcp.TcpServer.from_endpoint("nonsense:1"),
        ValueError,
    ),
    ("TcpServer.from_socket str", lambda: txtcp.TcpServer.from_socket("s"), TypeError),  # type: ignore[arg-type]
    (
        "TlsServer certificate 42",
        lambda: txtcp.TlsServer("127.0.0.1", 0, certificate=42),  # type: ignore[arg-type]
        TypeError,
    ),
    (
        "TlsServer certificate not PEM",
        lambda: txtcp.TlsServer("127.0.0.1", 0, certificate=README),
        ValueError,
    ),
    ("EventEmitter.on not callable", lambda: txtcp.TcpClient().on("connect", 5), TypeError),  # type: ignore[arg-type]
    ("adopt_connection str", lambda: txtcp.core.adopt_connection("s"), TypeError),  # type: ignore[arg-type]
    # streams
    ("streams.connect 1-tuple", lambda: streams.connect(("h",)), TypeError),  # type: ignore[arg-type]
    ("streams.connect port", lambda: streams.connect(("h", 70000)), ValueError),
    ("streams.connect tls str", lambda: streams.connect(("h", 1), tls="yes"), TypeError),  # type: ignore[arg-type]
    (
        "streams.connect hostname no tls",
        lambda: streams.connect(("h", 1), hostname="h"),
        ValueError,
    ),
    ("streams.connect timeout", lambda: streams.connect(("h", 1), timeout=-2), ValueError),
    ("streams.listen callback", lambda: streams.listen(5, ("127.0.0.1", 0)), TypeError),  # type: ignore[arg-type]
    (
        "streams.listen bind_connections",
        lambda: streams.listen(print, ("127.0.0.1", 0), bind_connections=1),  # type: ignore[arg-type]
        TypeError,
    ),
    (
        "streams.listen key no cert",
        lambda: streams.listen(print, ("127.0.0.1", 0), private_key="k"),
        ValueError,
    ),
    # handles
    ("handles.TCP loop", lambda: handles.TCP("loop"), TypeError),  # type: ignore[arg-type]
    ("handles.TCP family", lambda: handles.TCP(handles.Loop(), 99), TCPError),
    (
        "handles.connect port",
        lambda: handles.TCP(handles.Loop()).connect(("127.0.0.1", 70000), print),
        OverflowError,
    ),
    (
        "handles.connect name",
        lambda: handles.TCP(handles.Loop()).connect(("localhost", 80), print),
        ValueError,
    ),
    (
        "handles.connect callback",
        lambda: handles.TCP(handles.Loop()).connect(("127.0.0.1", 1), 5),  # type: ignore[arg-type]
        TypeError,
    ),
    ("handles.write str", lambda: handles.TCP(handles.Loop()).write("str"), TypeError),
    ("handles.write []", lambda: handles.TCP(handles.Loop()).write([]), ValueError),
    ("handles.write unconnected", lambda: handles.TCP(handles.Loop()).write(b"x"), TCPError),
    (
        "handles.start_read unconnected",
        lambda: handles.TCP(handles.Loop()).start_read(print),
        TCPError,
    ),
    ("handles.shutdown unconnected", lambda: handles.TCP(handles.Loop()).shutdown(), TCPError),
    ("handles.Loop.run mode", lambda: handles.Loop().run(7), ValueError),
    # tcpsocket
    ("TcpSocket.connect host int", lambda: tcpsocket.TcpSocket().connect(5, 80), TypeError),  # type: ignore[arg-type]
    ("TcpSocket.connect empty host", lambda: tcpsocket.TcpSocket().connect("", 80), ValueError),
    ("TcpSocket.connect port", lambda: tcpsocket.TcpSocket().connect("h", 70000), ValueError),
    ("TcpSocket.connect openmode", lambda: tcpsocket.TcpSocket().connect("h", 1, "r"), ValueError),
    (
        "TcpSocket.connect tls str",
        lambda: tcpsocket.TcpSocket().connect("h", 1, tls="y"),  # type: ignore[arg-type]
        TypeError,
    ),
    (
        "TcpSocket.connect root no tls",
        lambda: tcpsocket.TcpSocket().connect("h", 1, trust_root=README),
        ValueError,
    ),
    ("TcpSocket.write str", lambda: tcpsocket.TcpSocket().write("s"), TypeError),  # type: ignore[arg-type]
    ("TcpSocket.read -1", lambda: tcpsocket.TcpSocket().read(-1), ValueError),
    ("TcpSocket.read str", lambda: tcpsocket.TcpSocket().read("x"), TypeError),  # type: ignore[arg-type]
    ("TcpSocket.bind port", lambda: tcpsocket.TcpSocket().bind(70000), ValueError),
    # components
    ("TCPClient host int", lambda: components.TCPClient(5, 80), TypeError),  # type: ignore[arg-type]
    ("TCPClient port", lambda: components.TCPClient("h", 70000), ValueError),
    ("TCPClient delay", lambda: components.TCPClient("h", 1, delay=-1), ValueError),
    (
        "TCPClient trust_root no PEM",
        lambda: components.TCPClient("h", 1, trust_root=README),
        ValueError,
    ),
    ("TCPServer port", lambda: components.TCPServer(-5), ValueError),
    ("ConnectedSocketAdapter str", lambda: components.ConnectedSocketAdapter("c"), TypeError),  # type: ignore[arg-type]
    ("Component.send no outbox", lambda: components.Component().send(b"x", "nowhere"), ValueError),
    ("Component.recv no inbox", lambda: components.Component().recv("nowhere"), ValueError),
    (
        "Component.set_inbox_size 0",
        lambda: components.Component().set_inbox_size("inbox", 0),
        ValueError,
    ),
    # services
    ("echo_service str", lambda: echo.echo_service("tcp:0"), TypeError),
    ("echo_service []", lambda: echo.echo_service([]), ValueError),
    ("echo_service tcp:99999", lambda: echo.echo_service(["tcp:99999"]), ValueError),
    ("proxy_service connect 5", lambda: proxy.proxy_service(["tcp:0"], 5), TypeError),
    (
        "proxy_service idle 0",
        lambda: proxy.proxy_service(["tcp:0"], "tcp:host=h:port=1", idle_timeout=0),
        ValueError,
    ),
    (
        "proxy_service max 0",
        lambda: proxy.proxy_service(["tcp:0"], "tcp:host=h:port=1", max_connections=0),
        ValueError,
    ),
]


@pytest_twisted.ensureDeferred
async def test_wrong_arguments_raise_at_the_call() -> None:
    """Every constructor and call with a wrong type or value raises the documented exception."""
    baseline = open_fds()
    await check_rows(CONSTRUCTION)
    await sleep(0.1)
    assert await fds_back_to(baseline) <= baseline


# -- wrong arguments and wrong states on live objects -----------------------------------------


@pytest_twisted.ensureDeferred
async def test_core_connection_rejects_bad_calls_and_stays_usable() -> None:
    """Bad calls on an open connection raise and change nothing; it still echoes after."""
    server, client, accepted = await pair()
    accepted.on("data", accepted.write)
    accepted.pause(False)
    rows: list[Row] = [
        ("write str", lambda: client.write("text"), TypeError),  # type: ignore[arg-type]
        ("write int", lambda: client.write(5), TypeError),  # type: ignore[arg-type]
        ("write list", lambda: client.write([b"a"]), TypeError),  # type: ignore[arg-type]
        ("try_write str", lambda: client.try_write("t"), TypeError),  # type: ignore[arg-type]
        ("pause str", lambda: client.pause("yes"), TypeError),  # type: ignore[arg-type]
        ("keepalive delay 0", lambda: client.keepalive(True, 0), ValueError),
        ("keepalive enable str", lambda: client.keepalive("x"), TypeError),  # type: ignore[arg-type]
        ("send_buffer_size -1", lambda: setattr(client, "send_buffer_size", -1), ValueError),
        ("receive_buffer_size str", lambda: setattr(client, "receive_buffer_size", "1"), TypeError),
        ("nodelay str", lambda: setattr(client, "nodelay", "x"), TypeError),
        ("start_tls hostname int", lambda: client.start_tls(hostname=5), TypeError),  # type: ignore[arg-type]
        ("start_tls server no cert", lambda: client.start_tls(server=True), ValueError),
        ("start_tls trust_root int", lambda: client.start_tls(trust_root=5), TypeError),  # type: ignore[arg-type]
    ]
    await check_rows(rows)
    got = Collector(client)
    client.write(b"still works")
    await wait_for(lambda: got.data == b"still works")
    client.shutdown()
    client.shutdown()  # twice is fine
    await check_rows(
        [
            ("write after shutdown", lambda: client.write(b"x"), ConnectionClosedError),
            ("try_write after shutdown", lambda: client.try_write(b"x"), ConnectionClosedError),
        ]
    )
    await got.wait_closed()
    assert got.events == ["data", "end", "close"]
    await check_rows(
        [
            ("write closed", lambda: client.write(b"x"), ConnectionClosedError),
            ("shutdown closed", lambda: client.shutdown(), ConnectionClosedError),
            ("start_tls closed", lambda: client.start_tls(), ConnectionClosedError),
            ("nodelay closed", lambda: client.nodelay, ConnectionClosedError),
            ("send_buffer_size closed", lambda: client.send_buffer_size, ConnectionClosedError),
        ]
    )
    client.close()
    client.abort()
    client.pause(False)
    assert client.fileno() == -1
    assert client.write_queue_size == 0
    assert client.remote_address[0] == "127.0.0.1"
    server.close()
    await wait_event(server, "stop")
    server.close()  # a stopped server: nothing happens
    assert not server.listening


@pytest_twisted.ensureDeferred
async def test_tls_connection_refuses_what_tls_cannot_do(certs: Any) -> None:
    """On TLS, shutdown and try_write are UnsupportedOperationError, start_tls is TxtcpError."""
    server = await listening(txtcp.TlsServer("127.0.0.1", 0, certificate=certs.server_path))
    accepted: list[txtcp.TcpConnection] = []
    server.on("connect", accepted.append)
    client = txtcp.TlsClient(trust_root=certs.ca_path)
    handshakes: list[Any] = []
    client.once("connect", lambda c: handshakes.append((c, wait_event(c, "tls"))))
    client.connect("127.0.0.1", server.port or 0)
    await wait_for(lambda: handshakes and accepted)
    conn, handshake = handshakes[0]
    await handshake
    await check_rows(
        [
            ("shutdown", lambda: conn.shutdown(), UnsupportedOperationError),
            ("try_write", lambda: conn.try_write(b"x"), UnsupportedOperationError),
            ("start_tls again", lambda: conn.start_tls(), TxtcpError),
        ]
    )
    inside = Collector(accepted[0])
    conn.write(b"after")
    await wait_for(lambda: inside.data == b"after")
    conn.close()
    await inside.wait_closed()
    server.close()


@pytest_twisted.ensureDeferred
async def test_streams_connection_bad_calls_and_closed_state() -> None:
    """A streams Connection rejects bad reads and writes, and raises ConnectionError once closed."""
    accepted: list[streams.Connection] = []
    server = await streams.listen(accepted.append, streams.Address("127.0.0.1", 0))
    conn = await streams.connect(server.addresses[0])
    await check_rows(
        [
            ("write str", lambda: conn.write("s"), TypeError),  # type: ignore[arg-type]
            ("readexactly -1", lambda: conn.readexactly(-1), ValueError),
            ("read str", lambda: conn.read("x"), TypeError),  # type: ignore[arg-type]
        ]
    )
    await wait_for(lambda: accepted)
    accepted[0].write(b"ok")
    assert await conn.readexactly(2) == b"ok"
    await conn.async_close()
    await check_rows(
        [
            ("write closed", lambda: conn.write(b"x"), ConnectionError),
            ("read closed", lambda: conn.read(), ConnectionError),
        ]
    )
    await server.async_close()


@pytest_twisted.ensureDeferred
async def test_handles_closed_handle_raises_handle_closed_error() -> None:
    """Every call on a closed handle raises HandleClosedError; close twice does too."""
    tcp = handles.TCP(handles.Loop())
    closed: list[bool] = []
    tcp.close(lambda h: closed.append(True))
    await wait_for(lambda: closed)
    await check_rows(
        [
            ("write", lambda: tcp.write(b"x"), HandleClosedError),
            ("connect", lambda: tcp.connect(("127.0.0.1", 1), print), HandleClosedError),
            ("start_read", lambda: tcp.start_read(print), HandleClosedError),
            ("nodelay", lambda: tcp.nodelay(True), HandleClosedError),
            ("close", lambda: tcp.close(), HandleClosedError),
        ]
    )


@pytest_twisted.ensureDeferred
async def test_tcpsocket_wrong_state_calls() -> None:
    """Writing unconnected gives -1; connect while connected reports OPERATION, state kept."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    await serve_echo_once(server)
    sock = tcpsocket.TcpSocket()
    assert sock.write(b"x") == -1
    assert sock.read_all() == b""
    errors: list[tcpsocket.SocketError] = []
    sock.error_handler = lambda s, e: errors.append(e)
    sock.connect("127.0.0.1", server.port or 0)
    await wait_for(lambda: sock.state is tcpsocket.SocketState.CONNECTED)
    sock.connect("127.0.0.1", server.port or 0)
    assert errors == [tcpsocket.SocketError.OPERATION]
    assert sock.state is tcpsocket.SocketState.CONNECTED
    assert sock.bind(0) is False
    assert sock.write(b"echo") == 4
    await wait_for(lambda: sock.bytes_available == 4)
    assert sock.read_all() == b"echo"
    sock.abort()
    # mypy keeps the narrowing of the assert above across abort().
    assert sock.state is tcpsocket.SocketState.UNCONNECTED  # type: ignore[comparison-overlap]
    assert sock.write(b"x") == -1
    server.close()


@pytest_twisted.ensureDeferred
async def test_components_reject_str_on_inbox_and_go_on() -> None:
    """A str on a TCPClient's inbox gives errorInformation on signal; bytes after it still go."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    await serve_echo_once(server)
    client = components.TCPClient("127.0.0.1", server.port or 0)
    sink = components.Component()
    client.link((client, "outbox"), (sink, "inbox"))
    client.link((client, "signal"), (sink, "control"))
    client.activate()
    client.inboxes["inbox"].put("text")
    client.inboxes["inbox"].put(b"bytes")
    message = await sink.recv("control")
    assert isinstance(message, components.errorInformation)
    assert isinstance(message.exception, TypeError)
    assert await sink.recv("inbox") == b"bytes"
    client.inboxes["control"].put(components.producerFinished())
    await client.when_finished()
    server.close()


def test_bad_twistd_options_print_usage_without_traceback() -> None:
    """Bad twistd options are usage errors: non-zero exit, no traceback."""
    for args in (
        ["tcp-proxy", "--connect", "tcp:host=h:port=1", "--max-connections", "many"],
        ["tcp-proxy", "--connect", "tcp:host=h:port=1", "--max-connections", "-3"],
        ["tcp-proxy", "--connect", "tcp:host=h:port=1", "--idle-timeout", "nan"],
        ["tcp-proxy", "--connect", "tcp:host=h:port=1", "--connect-timeout", "0"],
        ["tcp-echo", "--listen", "tcp:99999"],
        ["tcp-echo", "--no-such-option"],
    ):
        result = run_twistd("--pidfile=", "-n", *args)
        out = result.stdout + result.stderr
        assert result.returncode != 0, (args, out)
        assert "Usage:" in out or "usage" in out.lower(), (args, out)
        assert "Traceback" not in out, (args, out)
