"""
Tests for L{txtcp.handles}: pyuv's TCP handle over the core, on real
loopback sockets.  Every test builds its handles and runs its own
C{Loop.run()}, guarded by a timeout that stops the loop.
"""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _helpers import fds_back_to, open_fds, reactor, wait_for

from txtcp.core import TcpConnection, TcpServer
from txtcp.handles import (
    TCP,
    UV_RUN_NOWAIT,
    UV_RUN_ONCE,
    UV_TCP_IPV6ONLY,
    Loop,
    errno,
    error,
)
from txtcp.handles.error import HandleClosedError, TCPError

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0


def run(loop: Loop, timeout: float = TIMEOUT) -> None:
    """
    Run C{loop} until it is idle; fail if it is still busy after C{timeout},
    or re-raise the first exception a callback raised (unless the test set
    its own C{excepthook}).
    """
    raised: list[BaseException] = []
    own_hook = loop.excepthook is None
    if own_hook:

        def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
            raised.append(value)
            loop.stop()

        loop.excepthook = hook
    guard = reactor.callLater(timeout, loop.stop)
    try:
        busy = loop.run()
    finally:
        if guard.active():
            guard.cancel()
        if own_hook:
            loop.excepthook = None
    if raised:
        raise raised[0]
    assert not busy, f"Loop.run() still had active handles after {timeout}s"


def has_ipv6() -> bool:
    """Whether ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")


def serve(loop: Loop, on_connection: Callable[[TCP, int | None], None]) -> TCP:
    """A handle of C{loop} listening on 127.0.0.1 (a free port) with C{on_connection}."""
    server = TCP(loop)
    server.bind(("127.0.0.1", 0))
    server.listen(on_connection)
    return server


def connect_and_run(
    loop: Loop, address: tuple[Any, ...], on_connect: Callable[[TCP, int | None], None]
) -> TCP:
    """A new handle of C{loop} connecting to C{address} with C{on_connect};
    returned once L{run} has run the loop until it is idle."""
    client = TCP(loop)
    client.connect(address, on_connect)
    run(loop)
    return client


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this Python with C{args} in a fresh process; return the finished process."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=30)


class Echo:
    """A listening handle that accepts connections and echoes what it reads."""

    def __init__(self, loop: Loop, host: str = "127.0.0.1", *, close_server: bool = True) -> None:
        self.loop = loop
        self.server = TCP(loop)
        self.server.bind((host, 0))
        self.server.listen(self.on_connection)
        self.address = self.server.getsockname()
        self.conns: list[TCP] = []
        self.received: list[bytes] = []
        self.events: list[Any] = []
        self.close_server = close_server

    def on_connection(self, server: TCP, error: int | None) -> None:
        self.events.append(("connection", error))
        conn = TCP(self.loop)
        server.accept(conn)
        self.conns.append(conn)
        conn.start_read(self.on_read)

    def on_read(self, conn: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            self.events.append(("eof", error))
            conn.close()
            if self.close_server and not self.server.closed:
                self.server.close()
            return
        self.received.append(data)
        conn.write(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.received)


# -- the seed's behaviours, one by one ---------------------------------------


@pytest_twisted.ensureDeferred
async def test_server_and_client_exchange_data() -> None:
    """A server writes PING to each connection; the client reads it and closes; all close."""
    loop = Loop.default_loop()
    events: list[Any] = []

    def on_connection(server: TCP, error: int | None) -> None:
        events.append(("connection", error))
        conn = TCP(Loop.default_loop())
        server.accept(conn)
        conn.start_read(on_server_read)
        conn.write(b"PING\n")

    def on_server_read(conn: TCP, data: bytes | None, error: int | None) -> None:
        events.append(("server read", data, error))
        if data is None:
            conn.close()
            server.close(lambda h: events.append("server closed"))

    def on_client_connection(client: TCP, error: int | None) -> None:
        events.append(("connected", error))
        client.start_read(on_client_read)

    def on_client_read(client: TCP, data: bytes | None, error: int | None) -> None:
        events.append(("client read", data, error))
        client.close(lambda h: events.append("client closed"))

    server = serve(loop, on_connection)
    connect_and_run(loop, server.getsockname(), on_client_connection)
    assert events[0] in (("connection", None), ("connected", None))
    assert set(events[:2]) == {("connection", None), ("connected", None)}
    assert events[2:] == [
        ("client read", b"PING\n", None),
        "client closed",
        ("server read", None, errno.UV_EOF),
        "server closed",
    ]
    assert not loop.handles


@pytest_twisted.ensureDeferred
async def test_connect_to_closed_port_gives_error() -> None:
    """Connecting where nothing listens calls back with UV_ECONNREFUSED."""
    loop = Loop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got: list[Any] = []

    def on_connect(client: TCP, error: int | None) -> None:
        got.append(error)
        client.close(lambda h: got.append("closed"))

    client = TCP(loop)
    client.connect(("127.0.0.1", port), on_connect)
    assert client.active
    run(loop)
    assert got == [errno.UV_ECONNREFUSED, "closed"]
    assert got[0] is not None


@pytest_twisted.ensureDeferred
async def test_write_before_connect_raises() -> None:
    """Writing on a handle that is not connected raises TCPError (EBADF, or EPIPE when bound)."""
    loop = Loop()
    fresh = TCP(loop)
    with pytest.raises(TCPError) as info:
        fresh.write(b"PING")
    assert info.value.args[0] == errno.UV_EBADF
    assert info.value.args == (errno.UV_EBADF, info.value.args[1])
    bound = TCP(loop)
    bound.bind(("127.0.0.1", 0))
    with pytest.raises(TCPError) as info:
        bound.write(b"PING", lambda h, e: None)
    assert info.value.args[0] == errno.UV_EPIPE
    assert isinstance(info.value, error.StreamError)
    fresh.close()
    bound.close()
    run(loop)


@pytest_twisted.ensureDeferred
async def test_writes_while_connecting_are_sent_after_connect() -> None:
    """Writes made while connecting are queued, sent once connected, and called back in order."""
    loop = Loop()
    echo = Echo(loop)
    order: list[Any] = []
    client = TCP(loop)
    client.connect(echo.address, lambda h, e: order.append(("connect", e)))
    assert client.writable
    client.write(b"one ", lambda h, e: order.append(("w1", e)))
    client.write([b"two ", b"three"], lambda h, e: order.append(("w2", e)))
    assert client.write_queue_size == len(b"one two three")
    client.shutdown(lambda h, e: order.append(("shutdown", e)))
    assert not client.writable
    run(loop)
    assert order == [("connect", None), ("w1", None), ("w2", None), ("shutdown", None)]
    assert echo.data == b"one two three"
    client.close()
    run(loop)


@pytest_twisted.ensureDeferred
async def test_1024_writes_then_close_fire_every_callback_in_order() -> None:
    """1024 writes with callbacks, then close at once: all 1024 run, in order, before close's."""
    loop = Loop()
    echo = Echo(loop)
    order: list[Any] = []
    payload = [os.urandom(97) for _ in range(1024)]

    def written(index: int) -> Callable[[TCP, int | None], None]:
        return lambda h, e: order.append((index, e))

    def on_connect(client: TCP, error: int | None) -> None:
        assert error is None
        for index, chunk in enumerate(payload):
            client.write(chunk, written(index))
        client.close(lambda h: order.append("closed"))

    connect_and_run(loop, echo.address, on_connect)
    assert order == [(i, None) for i in range(1024)] + ["closed"]
    assert hashlib.sha256(echo.data).hexdigest() == hashlib.sha256(b"".join(payload)).hexdigest()


@pytest_twisted.ensureDeferred
async def test_write_saturation_then_close_with_callback() -> None:
    """Write until write_queue_size > 0, then close with a callback: every callback runs."""
    loop = Loop()
    echo = Echo(loop)
    results: list[Any] = []
    sent = bytearray()

    def on_connect(client: TCP, error: int | None) -> None:
        client.send_buffer_size = 4096
        chunk = b"x" * 65536
        while client.write_queue_size == 0:
            client.write(chunk, lambda h, e: results.append(e))
            sent.extend(chunk)
        assert client.write_queue_size > 0
        client.close(lambda h: results.append("closed"))

    connect_and_run(loop, echo.address, on_connect)
    assert results[-1] == "closed"
    assert results[:-1] == [None] * (len(results) - 1)
    assert len(results) - 1 == len(sent) // 65536
    assert len(echo.data) == len(sent)


@pytest_twisted.ensureDeferred
async def test_write_callbacks_without_close_sent_and_buffered() -> None:
    """Callbacks of sent and of buffered writes run later, in order, without a close to flush."""
    loop = Loop()
    echo = Echo(loop)
    order: list[Any] = []
    chunk = os.urandom(65536)
    sent = bytearray()

    def pump(client: TCP, error: int | None = None) -> None:
        # The libuv way: keep writing while little is queued, else wait.
        order.append(("pump", error))
        while len(sent) < (8 << 20):
            sent.extend(chunk)
            if client.write_queue_size >= 65536:
                client.write(chunk, pump)
                return
            client.write(chunk)
        client.write(b"!", lambda h, e: order.append(("last", e)))
        sent.extend(b"!")
        client.shutdown(lambda h, e: order.append(("shutdown", e)))

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            client.close(lambda h: order.append("closed"))

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_read)
        client.write(b"a", lambda h, e: order.append(("a", e)))
        order.append("a written")
        client.write([b"b", b"c"])
        client.write(b"d", lambda h, e: order.append(("d", e)))
        sent.extend(b"abcd")
        client.send_buffer_size = 4096
        pump(client)

    connect_and_run(loop, echo.address, on_connect)
    assert order[:4] == ["a written", ("pump", None), ("a", None), ("d", None)]
    assert order[-3:] == [("last", None), ("shutdown", None), "closed"]
    assert all(item == ("pump", None) for item in order[4:-3])
    assert len(order) > 8
    assert hashlib.sha256(echo.data).hexdigest() == hashlib.sha256(bytes(sent)).hexdigest()


@pytest_twisted.ensureDeferred
async def test_memoryview_nul_and_lists_are_written() -> None:
    """memoryview, bytearray, embedded NUL, a list and a tuple of buffers all arrive intact."""
    loop = Loop()
    echo = Echo(loop)
    writes: list[Any] = [
        memoryview(b"PING"),
        bytearray(b"-PIN\x00G\n"),
        [b"PING1", memoryview(b"PING2"), bytearray(b"PING\x00\xff3")],
        (b"a", b"b"),
        b"",
    ]
    done: list[Any] = []

    def on_connect(client: TCP, error: int | None) -> None:
        for item in writes:
            client.write(item, lambda h, e: done.append(e))
        client.shutdown()
        client.start_read(lambda h, data, e: h.close() if data is None else None)

    connect_and_run(loop, echo.address, on_connect)
    assert echo.data == b"PING-PIN\x00G\nPING1PING2PING\x00\xff3ab"
    assert done == [None] * 5


@pytest_twisted.ensureDeferred
async def test_invalid_write_arguments() -> None:
    """write() rejects ints, str, objects, lists of those (TypeError) and [] (ValueError)."""
    loop = Loop()
    echo = Echo(loop)
    checked: list[str] = []

    def on_connect(client: TCP, error: int | None) -> None:
        for bad in (1234, "PING", object(), [1, 2], [b"ok", "str"], None):
            with pytest.raises(TypeError):
                client.write(bad)
        with pytest.raises(ValueError):
            client.write([])
        with pytest.raises(TypeError):
            client.write(b"ok", callback=42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.try_write([b"a"])
        assert client.write_queue_size == 0
        checked.append("done")
        client.close()
        echo.server.close()

    connect_and_run(loop, echo.address, on_connect)
    assert checked == ["done"]
    assert echo.received == []


@pytest_twisted.ensureDeferred
async def test_shutdown_then_close() -> None:
    """As pyuv's TCPShutdownTest: one shutdown and three close callbacks, EOF at the server."""
    loop = Loop()
    counts = {"shutdown": 0, "close": 0}
    states: list[Any] = []

    def on_close(handle: TCP) -> None:
        counts["close"] += 1

    def on_connection(server: TCP, error: int | None) -> None:
        conn = TCP(loop)
        server.accept(conn)
        conn.start_read(on_server_read)
        conn.write(b"PING\n")

    def on_server_read(conn: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            states.append(("server eof", error, conn.readable, conn.writable))
            conn.close(on_close)
            server.close(on_close)

    def on_client_connection(client: TCP, error: int | None) -> None:
        client.start_read(on_client_read)

    def on_client_shutdown(client: TCP, error: int | None) -> None:
        counts["shutdown"] += 1
        states.append(("shutdown", error))
        client.close(on_close)

    def on_client_read(client: TCP, data: bytes | None, error: int | None) -> None:
        assert data == b"PING\n"
        client.shutdown(on_client_shutdown)
        states.append(("after shutdown", client.writable, client.readable))
        with pytest.raises(TCPError) as info:
            client.write(b"late")
        states.append(("late write", info.value.args[0]))
        with pytest.raises(TCPError) as info:
            client.shutdown()
        states.append(("second shutdown", info.value.args[0]))

    server = serve(loop, on_connection)
    connect_and_run(loop, server.getsockname(), on_client_connection)
    assert counts == {"shutdown": 1, "close": 3}
    assert states[:3] == [
        ("after shutdown", False, True),
        ("late write", errno.UV_EPIPE),
        ("second shutdown", errno.UV_ENOTCONN),
    ]
    assert sorted(states[3:], key=str) == sorted(
        [("shutdown", None), ("server eof", errno.UV_EOF, False, True)], key=str
    )


@pytest_twisted.ensureDeferred
async def test_flags_on_unbound_handle() -> None:
    """nodelay, keepalive and simultaneous_accepts work on an unbound handle, and apply later."""
    loop = Loop()
    tcp = TCP(loop)
    tcp.nodelay(True)
    tcp.keepalive(True, 60)
    tcp.simultaneous_accepts(True)
    with pytest.raises(TypeError):
        tcp.keepalive(True, "60")  # type: ignore[arg-type]
    with pytest.raises(TCPError):
        tcp.keepalive(True, 0)
    tcp.close()
    run(loop)

    echo = Echo(loop)
    seen: list[Any] = []

    def on_connect(client: TCP, error: int | None) -> None:
        s = socket.socket(fileno=os.dup(client.fileno()))
        with s:
            seen.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            seen.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
            seen.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
        client.close()
        echo.server.close()

    client = TCP(loop)
    client.nodelay(True)
    client.keepalive(True, 42)
    client.connect(echo.address, on_connect)
    run(loop)
    assert seen[0] != 0 and seen[1] != 0 and seen[2] == 42


@pytest_twisted.ensureDeferred
async def test_try_write() -> None:
    """try_write sends at once and returns the count; EAGAIN with writes queued or buffers full."""
    loop = Loop()
    echo = Echo(loop)
    got: list[Any] = []
    bulk = os.urandom(4 << 20)

    ended: list[str] = []

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            ended.append("eof")
            if len(ended) == 2:
                client.close()

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_read)
        got.append(client.try_write(b"PING"))
        got.append(client.try_write(memoryview(b"PONG")))
        client.write(b"+sent")
        # As in libuv: a write the kernel took whole leaves nothing queued.
        assert client.write_queue_size == 0
        got.append(client.try_write(b"+now"))
        client.send_buffer_size = 4096
        client.write(bulk)
        assert client.write_queue_size > 0
        with pytest.raises(TCPError) as info:
            client.try_write(b"nope")
        got.append(info.value.args[0])
        client.shutdown(on_shutdown)

    def on_shutdown(client: TCP, error: int | None) -> None:
        with pytest.raises(TCPError) as info:
            client.try_write(b"after shutdown")
        got.append(info.value.args[0])
        ended.append("shutdown")
        if len(ended) == 2:
            client.close()

    connect_and_run(loop, echo.address, on_connect)
    assert got == [4, 4, 4, errno.UV_EAGAIN, errno.UV_EPIPE]
    expected = hashlib.sha256(b"PINGPONG+sent+now" + bulk).hexdigest()
    assert hashlib.sha256(echo.data).hexdigest() == expected

    # Fill the kernel's buffers until try_write says EAGAIN.
    server = TcpServer("127.0.0.1", 0)
    await wait_for(lambda: server.port is not None)
    peers: list[TcpConnection] = []
    server.on("connect", peers.append)
    results: list[Any] = []

    def on_connect2(client: TCP, error: int | None) -> None:
        client.send_buffer_size = 4096
        total = 0
        for _ in range(10000):
            try:
                total += client.try_write(b"z" * 65536)
            except TCPError as exc:
                results.append(exc.args[0])
                break
        results.append(total > 0)
        client.close()

    connect_and_run(loop, ("127.0.0.1", server.port or 0), on_connect2)
    assert results == [errno.UV_EAGAIN, True]
    for peer in peers:
        peer.abort()
    server.close()


@pytest_twisted.ensureDeferred
async def test_fileno_and_getsockname_match_the_socket() -> None:
    """fileno() is the socket's; getsockname/getpeername match socket.fromfd(fileno())."""
    loop = Loop()
    echo = Echo(loop)
    seen: list[Any] = []

    def check(handle: TCP) -> None:
        fd = handle.fileno()
        assert isinstance(fd, int) and fd >= 0
        with socket.fromfd(fd, handle.family, socket.SOCK_STREAM) as s:
            assert handle.getsockname() == s.getsockname()
            try:
                peer = s.getpeername()
            except OSError:
                with pytest.raises(TCPError):
                    handle.getpeername()
            else:
                assert handle.getpeername() == peer
                seen.append("peer")
        seen.append(len(handle.getsockname()))

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_echo)
        client.write(b"x")

    def on_echo(client: TCP, data: bytes | None, error: int | None) -> None:
        # Both ends are established once the echo is back.
        check(client)
        check(echo.server)
        check(echo.conns[0])
        assert client.getpeername() == echo.address
        assert echo.conns[0].getpeername() == client.getsockname()
        client.close()
        echo.server.close()

    connect_and_run(loop, echo.address, on_connect)
    assert seen == ["peer", 2, 2, "peer", 2]


@needs_ipv6
@pytest_twisted.ensureDeferred
async def test_ipv6_addresses_are_four_tuples() -> None:
    """On ::1 getsockname/getpeername give (ip, port, flowinfo, scope_id), matching the socket."""
    loop = Loop()
    echo = Echo(loop, "::1")
    seen: list[Any] = []

    def on_connect(client: TCP, error: int | None) -> None:
        assert error is None
        for handle in (client, echo.server):
            with socket.fromfd(handle.fileno(), socket.AF_INET6, socket.SOCK_STREAM) as s:
                seen.append(handle.getsockname() == s.getsockname())
        seen.append(client.getpeername())
        seen.append(client.family)
        client.close()
        echo.server.close()

    assert len(echo.address) == 4
    connect_and_run(loop, echo.address, on_connect)
    assert seen[:2] == [True, True]
    assert seen[2] == ("::1", echo.address[1], 0, 0)
    assert seen[3] == socket.AF_INET6


@pytest_twisted.ensureDeferred
async def test_families_bound_early_and_mismatches() -> None:
    """A family given at construction makes the socket at once; binding the other family raises."""
    loop = Loop()
    unspec = TCP(loop)
    with pytest.raises(TCPError) as info:
        unspec.family  # noqa: B018
    assert info.value.args[0] == errno.UV_EBADF
    with pytest.raises(TCPError):
        unspec.getsockname()
    with pytest.raises(TCPError):
        unspec.fileno()
    unspec.bind(("127.0.0.1", 0))
    assert unspec.family == socket.AF_INET

    v4 = TCP(loop, socket.AF_INET)
    assert v4.family == socket.AF_INET
    assert v4.fileno() >= 0
    with pytest.raises(TCPError) as info:
        v4.bind(("::1", 0))
    assert info.value.args[0] == errno.UV_EINVAL
    with pytest.raises(TCPError):
        v4.connect(("::1", 1), lambda h, e: None)

    v6 = TCP(loop, socket.AF_INET6)
    assert v6.family == socket.AF_INET6
    with pytest.raises(TCPError) as info:
        v6.bind(("127.0.0.1", 0))
    assert info.value.args[0] == errno.UV_EINVAL

    with pytest.raises(TCPError):
        TCP(loop, socket.AF_UNIX)
    with pytest.raises(TypeError):
        TCP(object())  # type: ignore[arg-type]
    for handle in (unspec, v4, v6):
        handle.close()
    run(loop)


@pytest_twisted.ensureDeferred
async def test_address_arguments_are_checked_as_pyuv_does() -> None:
    """Bad addresses raise TypeError, OverflowError or ValueError; '' means 0.0.0.0."""
    loop = Loop()
    tcp = TCP(loop)
    with pytest.raises(TypeError):
        tcp.bind(["127.0.0.1", 0])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tcp.bind(("127.0.0.1", "80"))
    with pytest.raises(OverflowError):
        tcp.bind(("127.0.0.1", 65536))
    with pytest.raises(ValueError):
        tcp.bind(("localhost", 0))
    with pytest.raises(TypeError):
        tcp.connect(("127.0.0.1", 1), "not callable")  # type: ignore[arg-type]
    tcp.bind(("", 0))
    assert tcp.getsockname()[0] == "0.0.0.0"
    with pytest.raises(TCPError) as info:
        tcp.bind(("127.0.0.1", 0))
    assert info.value.args[0] == errno.UV_EINVAL
    tcp.close()
    run(loop)


@pytest_twisted.ensureDeferred
async def test_open_connected_socket() -> None:
    """open(fd) of a connected socket makes a working client handle; the handle owns the fd."""
    loop = Loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    sock = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    listener.close()
    peer.setblocking(False)
    fd = sock.detach()
    handle = TCP(loop)
    handle.open(fd)
    assert handle.readable and handle.writable
    assert handle.getpeername() == peer.getsockname()
    got: list[Any] = []

    def on_read(h: TCP, data: bytes | None, error: int | None) -> None:
        got.append((data, error))
        if data is None:
            h.close()

    handle.start_read(on_read)
    handle.write(b"from handle", lambda h, e: got.append(("written", e)))
    peer.sendall(b"from peer")
    reactor.callLater(0.2, peer.shutdown, socket.SHUT_WR)
    run(loop)
    assert ("written", None) in got
    assert got[-1] == (None, errno.UV_EOF)
    assert b"".join(d for d, _ in got if isinstance(d, bytes)) == b"from peer"
    peer.setblocking(True)
    assert peer.recv(100) == b"from handle"
    peer.close()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest_twisted.ensureDeferred
async def test_open_unconnected_socket_then_listen() -> None:
    """open(fd) of a bound socket keeps it; listen() then accepts on it."""
    loop = Loop()
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    address = raw.getsockname()
    server = TCP(loop)
    server.open(raw.detach())
    assert server.getsockname() == address
    with pytest.raises(TCPError):
        server.open(0)
    accepted: list[Any] = []

    def on_connection(s: TCP, error: int | None) -> None:
        conn = TCP(loop)
        s.accept(conn)
        accepted.append(conn.getpeername())
        conn.close()
        s.close()

    server.listen(on_connection)
    connect_and_run(loop, address, lambda h, e: h.close())
    assert len(accepted) == 1


@pytest_twisted.ensureDeferred
async def test_buffer_sizes() -> None:
    """send/receive_buffer_size read and set SO_SNDBUF/SO_RCVBUF (Linux doubles)."""
    loop = Loop()
    tcp = TCP(loop)
    with pytest.raises(TCPError) as info:
        tcp.send_buffer_size  # noqa: B018
    assert info.value.args[0] == errno.UV_EBADF
    with pytest.raises(TCPError):
        tcp.receive_buffer_size = 65536
    tcp.bind(("127.0.0.1", 0))
    tcp.send_buffer_size = 65536
    tcp.receive_buffer_size = 65536
    expected = 131072 if sys.platform.startswith("linux") else 65536
    assert tcp.send_buffer_size == expected
    assert tcp.receive_buffer_size == expected
    with pytest.raises(TCPError):
        tcp.send_buffer_size = 0
    with pytest.raises(TypeError):
        tcp.send_buffer_size = "big"  # type: ignore[assignment]
    tcp.close()

    echo = Echo(loop)
    sizes: list[int] = []

    def on_connect(client: TCP, error: int | None) -> None:
        client.send_buffer_size = 32768
        sizes.append(client.send_buffer_size)
        with socket.fromfd(client.fileno(), socket.AF_INET, socket.SOCK_STREAM) as s:
            sizes.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
        client.close()
        echo.server.close()

    connect_and_run(loop, echo.address, on_connect)
    assert sizes[0] == sizes[1] == (65536 if sys.platform.startswith("linux") else 32768)


@needs_ipv6
@pytest_twisted.ensureDeferred
async def test_ipv6_only_binding() -> None:
    """UV_TCP_IPV6ONLY sets IPV6_V6ONLY: IPv4 clients are refused, ::1 clients accepted."""
    loop = Loop()
    v4 = TCP(loop)
    with pytest.raises(TCPError) as info:
        v4.bind(("127.0.0.1", 0), UV_TCP_IPV6ONLY)
    assert info.value.args[0] == errno.UV_EINVAL
    v4.close()

    server = TCP(loop)
    server.bind(("::", 0), UV_TCP_IPV6ONLY)
    port = server.getsockname()[1]
    with socket.fromfd(server.fileno(), socket.AF_INET6, socket.SOCK_STREAM) as s:
        assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    results: list[Any] = []

    def on_connection(s: TCP, error: int | None) -> None:
        conn = TCP(loop)
        s.accept(conn)
        conn.close()

    def on_v4(client: TCP, error: int | None) -> None:
        results.append(("v4", error))
        client.close()
        v6client = TCP(loop)
        v6client.connect(("::1", port), on_v6)

    def on_v6(client: TCP, error: int | None) -> None:
        results.append(("v6", error))
        client.close()
        server.close()

    server.listen(on_connection)
    connect_and_run(loop, ("127.0.0.1", port), on_v4)
    assert results == [("v4", errno.UV_ECONNREFUSED), ("v6", None)]


# -- more of the contract -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_calls_on_a_closed_handle_raise_handle_closed_error() -> None:
    """Every method and option of a closed handle raises HandleClosedError."""
    loop = Loop()
    tcp = TCP(loop)
    closed: list[TCP] = []
    tcp.close(closed.append)
    assert tcp.closed and not tcp.active
    calls = [
        lambda: tcp.bind(("127.0.0.1", 0)),
        lambda: tcp.listen(lambda h, e: None),
        lambda: tcp.accept(TCP(loop)),
        lambda: tcp.connect(("127.0.0.1", 1), lambda h, e: None),
        lambda: tcp.open(0),
        lambda: tcp.getsockname(),
        lambda: tcp.getpeername(),
        lambda: tcp.shutdown(),
        lambda: tcp.write(b"x"),
        lambda: tcp.try_write(b"x"),
        lambda: tcp.start_read(lambda h, d, e: None),
        lambda: tcp.stop_read(),
        lambda: tcp.nodelay(True),
        lambda: tcp.keepalive(True, 1),
        lambda: tcp.simultaneous_accepts(True),
        lambda: tcp.fileno(),
        lambda: tcp.send_buffer_size,
        lambda: tcp.receive_buffer_size,
        lambda: tcp.family,
        lambda: tcp.close(),
    ]
    for call in calls:
        with pytest.raises(HandleClosedError):
            call()
    assert closed == []
    run(loop)
    assert closed == [tcp]
    assert issubclass(HandleClosedError, error.HandleError)
    assert not issubclass(HandleClosedError, TCPError)


@pytest_twisted.ensureDeferred
async def test_errno_and_error_modules() -> None:
    """errno holds libuv's negative codes, errorcode and strerror; error holds pyuv's hierarchy."""
    import importlib

    assert importlib.import_module("txtcp.handles.errno") is errno
    assert importlib.import_module("txtcp.handles.error") is error
    assert errno.UV_ECONNREFUSED == -111 or errno.UV_ECONNREFUSED < 0
    assert errno.UV_EOF == -4095
    assert errno.UV_EAGAIN == -11 or sys.platform != "linux"
    assert errno.UV_EBADF == -9 and errno.UV_EINVAL == -22
    assert errno.UV_EAI_NONAME == -3008
    assert errno.errorcode[errno.UV_EOF] == "UV_EOF"
    assert errno.errorcode[errno.UV_ETIMEDOUT] == "UV_ETIMEDOUT"
    assert errno.UV_EPIPE in errno.errorcode
    assert errno.strerror(errno.UV_ECONNREFUSED) == "connection refused"
    assert errno.strerror(errno.UV_EOF) == "end of file"
    assert errno.strerror(-123456) == "Unknown system error -123456"
    for code, name in errno.errorcode.items():
        assert code < 0 and getattr(errno, name) == code
    assert issubclass(error.TCPError, error.StreamError)
    assert issubclass(error.StreamError, error.HandleError)
    assert issubclass(error.HandleError, error.UVError)
    exc = error.TCPError(errno.UV_EAGAIN, errno.strerror(errno.UV_EAGAIN))
    assert exc.args == (-11, "resource temporarily unavailable") or sys.platform != "linux"
    loop = Loop()
    run(loop)


@pytest_twisted.ensureDeferred
async def test_end_of_stream_makes_handle_unreadable() -> None:
    """After UV_EOF the handle is not readable, still writable (half-open), and not reading."""
    loop = Loop()
    states: list[Any] = []

    def on_connection(server: TCP, error: int | None) -> None:
        conn = TCP(loop)
        server.accept(conn)
        conn.start_read(on_read)

    def on_written(conn: TCP, error: int | None) -> None:
        states.append(("written", error))
        conn.close()

    def on_read(conn: TCP, data: bytes | None, error: int | None) -> None:
        states.append((data, error, conn.readable, conn.writable, conn.active))
        if data is None:
            conn.write(b"reply after EOF", on_written)
            with pytest.raises(TCPError):
                conn.start_read(on_read)
            server.close()

    def on_connect(client: TCP, error: int | None) -> None:
        client.write(b"hi")
        client.shutdown()
        client.start_read(on_client_read)

    def on_client_read(client: TCP, data: bytes | None, error: int | None) -> None:
        states.append(("client", data, error))
        if data is None:
            client.close()

    server = serve(loop, on_connection)
    connect_and_run(loop, server.getsockname(), on_connect)
    assert states[0] == (b"hi", None, True, True, True)
    assert states[1] == (None, errno.UV_EOF, False, True, False)
    assert ("written", None) in states
    assert ("client", b"reply after EOF", None) in states
    assert states[-1] == ("client", None, errno.UV_EOF)


@pytest_twisted.ensureDeferred
async def test_connection_reset_reaches_read_callback() -> None:
    """A peer's reset arrives as (handle, None, UV_ECONNRESET), and reading stops."""
    loop = Loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    got: list[Any] = []

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_read)
        peer, _ = listener.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        got.append((data, error, client.readable, client.writable, client.active))
        client.close()

    connect_and_run(loop, listener.getsockname(), on_connect)
    listener.close()
    assert got == [(None, errno.UV_ECONNRESET, False, False, False)]


@pytest_twisted.ensureDeferred
async def test_accept_errors() -> None:
    """accept(): nothing pending gives UV_EAGAIN, a busy client UV_EBUSY, no listen UV_EINVAL."""
    loop = Loop()
    codes: list[Any] = []

    def on_connection(server: TCP, error: int | None) -> None:
        busy = TCP(loop, socket.AF_INET)
        with pytest.raises(TCPError) as info:
            server.accept(busy)
        codes.append(info.value.args[0])
        busy.close()
        with pytest.raises(TypeError):
            server.accept("client")  # type: ignore[arg-type]
        conn = TCP(loop)
        server.accept(conn)
        with pytest.raises(TCPError) as info:
            server.accept(TCP(loop))
        codes.append(info.value.args[0])
        with pytest.raises(TCPError) as info:
            conn.accept(TCP(loop))
        codes.append(info.value.args[0])
        conn.close()
        server.close()

    server = serve(loop, on_connection)
    connect_and_run(loop, server.getsockname(), lambda h, e: h.close())
    assert codes == [errno.UV_EBUSY, errno.UV_EAGAIN, errno.UV_EINVAL]


@pytest_twisted.ensureDeferred
async def test_address_in_use_is_reported_by_listen() -> None:
    """Binding an address in use succeeds; listen() then raises TCPError(UV_EADDRINUSE)."""
    loop = Loop()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    tcp = TCP(loop)
    tcp.bind(holder.getsockname())
    with pytest.raises(TCPError) as info:
        tcp.listen(lambda h, e: None)
    assert info.value.args[0] == errno.UV_EADDRINUSE
    tcp.close()
    holder.close()
    run(loop)


@pytest_twisted.ensureDeferred
async def test_close_while_connecting_cancels_the_connect() -> None:
    """Closing a connecting handle calls the connect callback with UV_ECANCELED, then close's."""
    loop = Loop()
    echo = Echo(loop)
    order: list[Any] = []
    client = TCP(loop)
    client.connect(echo.address, lambda h, e: order.append(("connect", e)))
    client.write(b"never sent", lambda h, e: order.append(("write", e)))
    client.close(lambda h: order.append("closed"))
    echo.server.close()
    run(loop)
    assert order == [("connect", errno.UV_ECANCELED), ("write", errno.UV_ECANCELED), "closed"]


@pytest_twisted.ensureDeferred
async def test_stop_read_holds_data_until_start_read() -> None:
    """stop_read() stops the read callbacks; start_read() delivers what arrived meanwhile."""
    loop = Loop()
    echo = Echo(loop)
    got: list[Any] = []

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        got.append(data)
        if data is None:
            client.close()

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_read)
        client.stop_read()
        assert not client.active
        client.write(b"echoed", lambda h, e: reactor.callLater(0.2, resume, h))

    def resume(client: TCP) -> None:
        got.append("resume")
        client.start_read(on_read)
        client.shutdown()

    connect_and_run(loop, echo.address, on_connect)
    assert got[0] == "resume"
    assert b"".join(d for d in got[1:-1] if isinstance(d, bytes)) == b"echoed"
    assert got[-1] is None


@pytest_twisted.ensureDeferred
async def test_close_on_end_of_stream_runs_callbacks_in_order_after_close_returns() -> None:
    """
    A handle closed from its UV_EOF read callback, with a write callback
    pending, runs the write callback and then the close callback, both
    after close() has returned; the read callback gets UV_EOF once.
    """
    loop = Loop()
    order: list[Any] = []

    def on_connection(server: TCP, error: int | None) -> None:
        conn = TCP(loop)
        server.accept(conn)
        conn.start_read(on_read)
        server.close()

    def on_read(conn: TCP, data: bytes | None, error: int | None) -> None:
        order.append(("read", data, error))
        if data is None:
            conn.write(b"bye", lambda h, e: order.append(("written", e)))
            conn.close(lambda h: order.append(("closed", h.closed, h.active)))
            order.append("close() returned")

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(lambda h, data, e: None if data else h.close())
        client.write(b"hi")
        client.shutdown()

    server = serve(loop, on_connection)
    connect_and_run(loop, server.getsockname(), on_connect)
    assert order == [
        ("read", b"hi", None),
        ("read", None, errno.UV_EOF),
        "close() returned",
        ("written", None),
        ("closed", True, False),
    ]
    assert not loop.alive and loop.handles == []


@pytest_twisted.ensureDeferred
async def test_close_of_an_inactive_connected_handle() -> None:
    """
    A connected handle that does not read is inactive: run() returns.  Its
    close() makes it active again until the close completes, on a later
    turn, never inside the call.
    """
    loop = Loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    handles: list[TCP] = []
    connect_and_run(loop, listener.getsockname(), lambda h, e: handles.append(h))
    peer, _ = listener.accept()
    peer.close()
    listener.close()
    (client,) = handles
    assert not client.active and not loop.alive and loop.handles == [client]
    got: list[str] = []
    client.close(lambda h: got.append("closed"))
    assert got == [] and loop.alive and loop.handles == []
    run(loop)
    assert got == ["closed"] and not loop.alive


@pytest_twisted.ensureDeferred
async def test_activity_follows_reading_writing_and_closing() -> None:
    """
    loop.alive and handle.active follow a connected handle through
    stop_read and start_read, a write with a callback, and close; run()
    returns while a connected handle neither reads nor writes.
    """
    loop = Loop()
    echo = Echo(loop, close_server=False)
    seen: list[Any] = []
    handles: list[TCP] = []

    def on_connect(client: TCP, error: int | None) -> None:
        handles.append(client)
        seen.append(("connected", client.active, loop.alive))
        client.start_read(on_read)
        seen.append(("reading", client.active))
        client.stop_read()
        seen.append(("stopped", client.active))
        client.write(b"ping", on_written)
        seen.append(("writing", client.active))

    def on_written(client: TCP, error: int | None) -> None:
        seen.append(("written", error, client.active))
        client.start_read(on_read)

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        seen.append(("read", data))
        client.stop_read()
        echo.server.close()
        echo.conns[0].close()
        seen.append(("closing", loop.alive, echo.server.active))

    connect_and_run(loop, echo.address, on_connect)
    (client,) = handles
    # Nothing keeps the loop now: the client is connected, but idle.
    assert not client.active and loop.handles == [client]
    assert seen == [
        ("connected", False, True),
        ("reading", True),
        ("stopped", False),
        ("writing", True),
        ("written", None, False),
        ("read", b"ping"),
        ("closing", True, False),
    ]
    client.close()
    assert loop.alive
    run(loop)
    assert not loop.alive and loop.handles == []


@pytest_twisted.ensureDeferred
async def test_loop_holds_inactive_handles_weakly() -> None:
    """loop.handles lists a handle that is not active, until nothing else holds it."""
    loop = Loop()
    bare = TCP(loop)
    bound = TCP(loop)
    bound.bind(("127.0.0.1", 0))
    assert set(loop.handles) == {bare, bound} and not loop.alive
    del bare
    gc.collect()
    assert loop.handles == [bound]
    bound.close()
    assert loop.handles == [] and loop.alive
    run(loop)
    assert not loop.alive


@pytest_twisted.ensureDeferred
async def test_callback_exceptions_go_to_excepthook() -> None:
    """An exception raised by a callback goes to loop.excepthook and the loop goes on."""
    loop = Loop()
    echo = Echo(loop)
    hooked: list[Any] = []
    loop.excepthook = lambda t, v, tb: hooked.append((t, str(v)))

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_read)
        client.write(b"boom")

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            client.close()
            return
        client.shutdown()
        raise RuntimeError("from a callback")

    connect_and_run(loop, echo.address, on_connect)
    assert hooked == [(RuntimeError, "from a callback")]
    assert echo.data == b"boom"


# -- the loop -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_loop_run_many_times_and_modes() -> None:
    """run() returns at once when idle, can run again, stop() leaves handles active; modes work."""
    loop = Loop()
    assert loop.run() is False
    assert loop.run(UV_RUN_NOWAIT) is False
    assert loop.run(UV_RUN_ONCE) is False
    with pytest.raises(ValueError):
        loop.run(42)
    from_thread: list[BaseException] = []

    def run_in_thread() -> None:
        try:
            loop.run()
        except BaseException as exc:
            from_thread.append(exc)

    worker = threading.Thread(target=run_in_thread)
    worker.start()
    worker.join(TIMEOUT)
    assert [type(e) for e in from_thread] == [RuntimeError]
    server = serve(loop, lambda h, e: None)
    assert loop.alive and server.active and loop.handles == [server]
    reactor.callLater(0.05, loop.stop)
    assert loop.run() is True
    assert loop.run(UV_RUN_NOWAIT) is True

    def nested(handle: TCP, error: int | None) -> None:
        with pytest.raises(RuntimeError):
            loop.run()
        handle.close()
        server.close()

    connect_and_run(loop, server.getsockname(), nested)
    assert not loop.alive and loop.handles == []
    assert Loop.default_loop() is Loop.default_loop()
    assert loop.now() >= 0
    loop.update_time()


@pytest_twisted.ensureDeferred
async def test_handles_work_without_run_in_a_running_reactor() -> None:
    """Inside a running reactor handles work without Loop.run(); run() afterwards is idle."""
    loop = Loop()
    echo = Echo(loop)
    got: list[Any] = []

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        got.append(data)
        if data is None:
            client.close(lambda h: got.append("closed"))

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_read)
        client.write(b"no run needed")
        client.shutdown()

    client = TCP(loop)
    client.connect(echo.address, on_connect)
    await wait_for(lambda: "closed" in got and echo.server.closed and not loop.alive)
    assert b"".join(d for d in got if isinstance(d, bytes)) == b"no run needed"
    run(loop)


@pytest_twisted.ensureDeferred
async def test_no_file_descriptors_leak() -> None:
    """A server, a client and an accepted handle, all closed, give back every descriptor."""
    baseline = open_fds()
    loop = Loop()

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            client.close()

    def on_connect(client: TCP, error: int | None) -> None:
        client.start_read(on_read)
        client.write(b"x")
        client.shutdown()

    for _ in range(3):
        echo = Echo(loop)
        connect_and_run(loop, echo.address, on_connect)
    assert await fds_back_to(baseline) <= baseline


@pytest_twisted.ensureDeferred
async def test_docs_example_runs_in_a_plain_script() -> None:
    """docs/examples/handles_echo.py runs Loop.run() twice in a fresh process and exits."""
    result = run_python(str(ROOT / "docs" / "examples" / "handles_echo.py"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hello, pyuv", "and again"]


@pytest_twisted.ensureDeferred
async def test_docs_example_in_a_running_reactor() -> None:
    """docs/examples/handles_in_reactor.py works under task.react without Loop.run()."""
    result = run_python(str(ROOT / "docs" / "examples" / "handles_in_reactor.py"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hello from the server"]


@pytest_twisted.ensureDeferred
async def test_importing_handles_installs_no_reactor() -> None:
    """Importing txtcp.handles and its errno/error modules does not import the reactor."""
    code = (
        "import sys, txtcp.handles, txtcp.handles.errno, txtcp.handles.error\n"
        "assert 'twisted.internet.reactor' not in sys.modules\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
