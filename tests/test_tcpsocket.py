"""
Tests for L{txtcp.tcpsocket}: Qt's state and handler orders, on real sockets
on 127.0.0.1 and ::1.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, listening, sha256, sleep, wait_for
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IResolutionReceiver
from twisted.internet.threads import deferToThread
from zope.interface.verify import verifyObject

import txtcp
from txtcp.tcpsocket import _TRANSITIONS, SocketError, SocketState, TcpSocket, _Resolution

S = SocketState
E = SocketError
reactor: Any = _reactor
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


class Recorder:
    """Records every handler call of a L{TcpSocket} as (handler, state[, detail])."""

    def __init__(self, sock: TcpSocket, *, read_in_ready_read: bool = False) -> None:
        self.sock = sock
        self.events: list[tuple[Any, ...]] = []
        self.written = 0
        self.read_data = b""
        self.read_in_ready_read = read_in_ready_read
        self.disconnected_read: bytes | None = None
        sock.connected_handler = lambda s: self.events.append(("connected", s.state))
        sock.disconnected_handler = self._disconnected
        sock.error_handler = lambda s, e: self.events.append(("error", s.state, e))
        sock.state_changed_handler = self._state_changed
        sock.host_found_handler = lambda s: self.events.append(("host_found", s.state))
        sock.ready_read_handler = self._ready_read
        sock.bytes_written_handler = self._bytes_written

    def _state_changed(self, s: TcpSocket, state: SocketState) -> None:
        assert s.state is state
        self.events.append(("state_changed", state))

    def _ready_read(self, s: TcpSocket) -> None:
        self.events.append(("ready_read", s.state))
        if self.read_in_ready_read:
            self.read_data += s.read_all()

    def _bytes_written(self, s: TcpSocket, count: int) -> None:
        self.written += count
        self.events.append(("bytes_written", s.state))

    def _disconnected(self, s: TcpSocket) -> None:
        self.disconnected_read = s.read_all()
        self.events.append(("disconnected", s.state))

    def mark(self, label: str = "returned") -> None:
        """Note that a call returned, with the state then."""
        self.events.append((label, self.sock.state))

    def names(self) -> list[str]:
        """The handler names recorded so far."""
        return [e[0] for e in self.events]

    def collapsed(self) -> list[tuple[Any, ...]]:
        """The events with runs of ready_read and bytes_written folded into one."""
        out: list[tuple[Any, ...]] = []
        for event in self.events:
            if out and event[0] in ("ready_read", "bytes_written") and out[-1] == event:
                continue
            out.append(event)
        return out

    async def until(self, name: str, timeout: float = 10.0) -> None:
        """Wait until the handler C{name} has been called."""
        await wait_for(lambda: name in self.names(), timeout)


async def server(host: str = "127.0.0.1", **kw: Any) -> tuple[txtcp.TcpServer, list[Any]]:
    """A listening core server and the list its accepted connections go to."""
    srv = await listening(txtcp.TcpServer(host, 0, **kw))
    accepted: list[Any] = []
    srv.on("connect", accepted.append)
    return srv, accepted


def open_sockets() -> int:
    """The number of this process's open socket descriptors."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


CONNECTED_FROM_LITERAL = [
    ("state_changed", S.HOST_LOOKUP),
    ("state_changed", S.CONNECTING),
    ("host_found", S.CONNECTING),
    ("returned", S.CONNECTING),
    ("state_changed", S.CONNECTED),
    ("connected", S.CONNECTED),
]

CONNECTED_FROM_NAME = [
    ("state_changed", S.HOST_LOOKUP),
    ("returned", S.HOST_LOOKUP),
    ("state_changed", S.CONNECTING),
    ("host_found", S.CONNECTING),
    ("state_changed", S.CONNECTED),
    ("connected", S.CONNECTED),
]


def failed_connecting(error: SocketError) -> list[tuple[Any, ...]]:
    """The events of a connect to an address literal that fails with C{error}."""
    return [
        ("state_changed", S.HOST_LOOKUP),
        ("state_changed", S.CONNECTING),
        ("host_found", S.CONNECTING),
        ("returned", S.CONNECTING),
        ("state_changed", S.UNCONNECTED),
        ("error", S.UNCONNECTED, error),
    ]


CLOSING_AFTER_WRITE = [
    ("state_changed", S.CLOSING),
    ("returned", S.CLOSING),
    ("bytes_written", S.CLOSING),
    ("state_changed", S.UNCONNECTED),
    ("disconnected", S.UNCONNECTED),
]


async def connect_and_wait(
    host: str,
    port: int,
    until: str,
    *,
    read_in_ready_read: bool = False,
    **connect_kw: Any,
) -> tuple[TcpSocket, Recorder]:
    """
    A new TcpSocket and its recorder, after C{connect(host, port,
    **connect_kw)} (its return marked "returned") and then the handler
    C{until}.
    """
    sock = TcpSocket()
    rec = Recorder(sock, read_in_ready_read=read_in_ready_read)
    sock.connect(host, port, **connect_kw)
    rec.mark()
    await rec.until(until)
    return sock, rec


async def connected(
    host: str = "127.0.0.1", *, read_in_ready_read: bool = False
) -> tuple[Any, TcpSocket, Recorder, Any]:
    """A server, a connected TcpSocket, its recorder and the accepted connection."""
    srv, accepted = await server(host)
    sock, rec = await connect_and_wait(
        host, srv.port or 0, "connected", read_in_ready_read=read_in_ready_read
    )
    await wait_for(lambda: bool(accepted))
    return srv, sock, rec, accepted[0]


async def connected_and_written(data: bytes) -> tuple[Any, TcpSocket, Recorder, Collector]:
    """
    As L{connected}, with a L{Collector} on the peer and the recorder
    cleared; then C{sock.write(data)}, which must accept every byte.
    """
    srv, sock, rec, peer = await connected()
    got = Collector(peer)
    del rec.events[:]
    assert sock.write(data) == len(data)
    return srv, sock, rec, got


async def tls_server(certs: Any) -> txtcp.TlsServer:
    """A listening TLS server on 127.0.0.1 with the test server certificate."""
    return await listening(txtcp.TlsServer("127.0.0.1", 0, certificate=certs.server_path))


# -- constants and the state machine --------------------------------------------


def test_constants() -> None:
    """The state and error constants have the seed's (Qt's) values."""
    assert [
        TcpSocket.UNCONNECTED_STATE,
        TcpSocket.HOST_LOOKUP_STATE,
        TcpSocket.CONNECTING_STATE,
        TcpSocket.CONNECTED_STATE,
        TcpSocket.BOUND_STATE,
        TcpSocket.CLOSING_STATE,
    ] == [0, 1, 2, 3, 4, 6]
    expected = {
        "CONNECTION_REFUSED_ERROR": 0,
        "REMOTE_HOST_CLOSED_ERROR": 1,
        "HOST_NOT_FOUND_ERROR": 2,
        "SOCKET_ACCESS_ERROR": 3,
        "SOCKET_RESOURCE_ERROR": 4,
        "SOCKET_TIMEOUT_ERROR": 5,
        "DATAGRAM_TOO_LARGE_ERROR": 6,
        "NETWORK_ERROR": 7,
        "ADDRESS_IN_USE_ERROR": 8,
        "SOCKET_ADDRESS_NOT_AVAILABLE_ERROR": 9,
        "UNSUPPORTED_SOCKET_OPERATION_ERROR": 10,
        "UNFINISHED_SOCKET_OPERATION_ERROR": 11,
        "SSL_HANDSHAKE_FAILED_ERROR": 13,
        "OPERATION_ERROR": 19,
        "SSL_INTERNAL_ERROR": 20,
        "SSL_INVALID_USER_DATA_ERROR": 21,
        "TEMPORARY_ERROR": 22,
        "UNKNOWN_SOCKET_ERROR": -1,
    }
    assert {name: getattr(TcpSocket, name) for name in expected} == expected
    assert len(SocketError) == len(expected)


def test_new_and_initial_state() -> None:
    """C{TcpSocket.new()} gives an unconnected socket with empty addresses."""
    sock = TcpSocket.new()
    assert isinstance(sock, TcpSocket)
    assert sock.state is S.UNCONNECTED
    assert sock.error is E.UNKNOWN_SOCKET
    assert sock.error_string == "Unknown error"
    assert not sock.valid
    assert (sock.local_address, sock.local_port) == ("", 0)
    assert (sock.remote_address, sock.remote_port) == ("", 0)
    assert sock.bytes_available == 0
    assert sock.read_all() == b"" and sock.read_line() == b"" and sock.read(3) == b""


def test_resolution_receiver_interface() -> None:
    """The name lookup receiver provides IResolutionReceiver."""
    assert verifyObject(IResolutionReceiver, _Resolution(lambda addresses: None))


def test_transition_table() -> None:
    """Every pair of states: a legal transition assigns then calls the handler;
    any other raises and changes nothing."""
    legal = 0
    for old, new in itertools.product(SocketState, repeat=2):
        sock = TcpSocket()
        seen: list[tuple[SocketState, SocketState]] = []
        sock.state_changed_handler = lambda s, st, seen=seen: seen.append((s.state, st))
        sock._state = old
        if (old, new) in _TRANSITIONS:
            legal += 1
            sock._set_state(new)
            assert sock.state is new
            assert seen == [(new, new)]
        else:
            with pytest.raises(RuntimeError, match=f"from {old.name} to {new.name}"):
                sock._set_state(new)
            assert sock.state is old
            assert seen == []
    assert legal == len(_TRANSITIONS) == 11


def test_bad_arguments_raise_before_side_effects() -> None:
    """Bad arguments raise TypeError/ValueError and leave the socket untouched."""
    sock = TcpSocket()
    rec = Recorder(sock)
    with pytest.raises(TypeError, match="hostname"):
        sock.connect(123, 80)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hostname"):
        sock.connect("", 80)
    with pytest.raises(ValueError, match="port"):
        sock.connect("127.0.0.1", 70000)
    with pytest.raises(ValueError, match="openmode"):
        sock.connect("127.0.0.1", 80, "r")
    with pytest.raises(TypeError, match="tls"):
        sock.connect("127.0.0.1", 80, tls=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trust_root"):
        sock.connect("127.0.0.1", 80, trust_root="/x.pem")
    with pytest.raises(ValueError, match="timeout"):
        sock.connect("127.0.0.1", 80, timeout=-1)
    with pytest.raises(TypeError, match="data"):
        sock.write("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maxsize"):
        sock.read(-1)
    with pytest.raises(TypeError, match="port"):
        sock.bind(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callback"):
        sock.disconnect_async(callback=42)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        sock.conected_handler = None  # type: ignore[attr-defined]
    assert sock.state is S.UNCONNECTED and rec.events == []


# -- connecting -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connect_ip_literal() -> None:
    """To an IP literal: HOST_LOOKUP, CONNECTING, host_found inside connect();
    later CONNECTED, connected; addresses are then known."""
    srv, sock, rec, peer = await connected()
    assert rec.events == CONNECTED_FROM_LITERAL
    assert sock.valid
    assert (sock.remote_address, sock.remote_port) == ("127.0.0.1", srv.port)
    assert (sock.local_address, sock.local_port) == peer.remote_address
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_connect_ipv6_literal() -> None:
    """The same order to an IPv6 literal, ::1."""
    srv, sock, rec, peer = await connected("::1")
    assert rec.events == CONNECTED_FROM_LITERAL
    assert (sock.remote_address, sock.remote_port) == ("::1", srv.port)
    assert sock.local_port == peer.remote_address[1]
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_connect_name() -> None:
    """To a name: connect() returns in HOST_LOOKUP; later CONNECTING,
    host_found, CONNECTED, connected."""
    srv, _ = await server()
    sock, rec = await connect_and_wait("localhost", srv.port or 0, "connected")
    assert rec.events == CONNECTED_FROM_NAME
    assert sock.remote_address == "127.0.0.1"
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_connect_refused() -> None:
    """Refused: ... host_found, UNCONNECTED, error(CONNECTION_REFUSED); no disconnected."""
    sock, rec = await connect_and_wait("127.0.0.1", free_port(), "error")
    await sleep(0.05)
    assert rec.events == failed_connecting(E.CONNECTION_REFUSED)
    assert sock.error is E.CONNECTION_REFUSED and sock.error_string
    assert (sock.remote_address, sock.remote_port) == ("", 0)


@pytest_twisted.ensureDeferred
async def test_host_not_found() -> None:
    """Host not found: HOST_LOOKUP, UNCONNECTED, error(HOST_NOT_FOUND)."""
    sock, rec = await connect_and_wait("no-such-host.invalid", 80, "error")
    assert rec.events == [
        ("state_changed", S.HOST_LOOKUP),
        ("returned", S.HOST_LOOKUP),
        ("state_changed", S.UNCONNECTED),
        ("error", S.UNCONNECTED, E.HOST_NOT_FOUND),
    ]
    assert "no-such-host.invalid" in sock.error_string


@pytest_twisted.ensureDeferred
async def test_connect_timeout() -> None:
    """A connect that gets no answer in time: UNCONNECTED, error(SOCKET_TIMEOUT)."""
    # A listener with a full backlog drops further SYNs: connects hang.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(listener.getsockname())
    await sleep(0.05)
    try:
        started = time.monotonic()
        _, rec = await connect_and_wait(
            "127.0.0.1", listener.getsockname()[1], "error", timeout=0.3
        )
        elapsed = time.monotonic() - started
        assert rec.events == failed_connecting(E.SOCKET_TIMEOUT)
        assert 0.25 < elapsed < 5
        await sleep(0.1)
        assert len(rec.events) == 6
    finally:
        filler.close()
        listener.close()


@pytest_twisted.ensureDeferred
async def test_connect_while_connected() -> None:
    """connect() while connected reports OPERATION_ERROR and keeps the state."""
    srv, sock, rec, _ = await connected()
    del rec.events[:]
    sock.connect("127.0.0.1", srv.port or 0)
    assert rec.events == [("error", S.CONNECTED, E.OPERATION)]
    assert sock.state is S.CONNECTED and sock.error is E.OPERATION
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_connect_while_connecting() -> None:
    """connect() during a name lookup also reports OPERATION_ERROR."""
    srv, _ = await server()
    sock = TcpSocket()
    rec = Recorder(sock)
    sock.connect("localhost", srv.port or 0)
    sock.connect("localhost", srv.port or 0)
    assert rec.events == [
        ("state_changed", S.HOST_LOOKUP),
        ("error", S.HOST_LOOKUP, E.OPERATION),
    ]
    await rec.until("connected")
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_abort_while_connecting_then_reconnect() -> None:
    """abort() during a lookup: UNCONNECTED, no disconnected; a late result is
    dropped, and the socket connects again."""
    srv, _ = await server()
    sock = TcpSocket()
    rec = Recorder(sock)
    sock.connect("localhost", srv.port or 0)
    sock.abort()
    assert rec.events == [("state_changed", S.HOST_LOOKUP), ("state_changed", S.UNCONNECTED)]
    await sleep(0.2)
    assert len(rec.events) == 2 and sock.state is S.UNCONNECTED
    sock.connect("127.0.0.1", srv.port or 0)
    await rec.until("connected")
    sock.abort()
    srv.close()


# -- data -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_read_line_read_all_bytes_available() -> None:
    """read_line keeps \\r and returns partial data without a newline;
    read/read_all drain; bytes_available follows."""
    srv, sock, rec, peer = await connected()
    peer.write(b"one\r\ntwo\nthree")
    await wait_for(lambda: sock.bytes_available == 14)
    assert ("ready_read", S.CONNECTED) in rec.events
    assert sock.read_line() == b"one\r\n"
    assert sock.bytes_available == 9
    assert sock.read_line() == b"two\n"
    assert sock.read(0) == b""
    assert sock.read(2) == b"th"
    assert sock.read_line() == b"ree"
    assert sock.read_line() == b""
    assert sock.read_all() == b"" and sock.bytes_available == 0
    peer.write(b"abc\ndef")
    await wait_for(lambda: sock.bytes_available == 7)
    assert sock.read() == b"abc\ndef"
    peer.write(b"xyz")
    await wait_for(lambda: sock.bytes_available == 3)
    assert sock.read_all() == b"xyz"
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_write_and_bytes_written() -> None:
    """write() returns the count; bytes_written counts add up to it, all while
    CONNECTED, and the peer gets every byte."""
    srv, sock, rec, peer = await connected()
    got = Collector(peer)
    data = os.urandom(300_000)
    del rec.events[:]
    assert sock.write(data[:100_000]) == 100_000
    assert sock.write(memoryview(data)[100_000:]) == 200_000
    assert sock.write(b"") == 0
    await wait_for(lambda: rec.written == len(data))
    assert set(rec.events) == {("bytes_written", S.CONNECTED)}
    await wait_for(lambda: got.size == len(data))
    assert sha256(got.data) == sha256(data)
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_write_when_not_connected() -> None:
    """write() when not connected returns -1 and sets no error."""
    sock = TcpSocket()
    rec = Recorder(sock)
    assert sock.write(b"x") == -1
    srv, _ = await server()
    sock.connect("localhost", srv.port or 0)
    assert sock.write(b"x") == -1
    await rec.until("connected")
    sock.disconnect()
    assert sock.write(b"x") == -1
    assert sock.error is E.UNKNOWN_SOCKET
    assert "error" not in rec.names()
    srv.close()


# -- closing --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_remote_close() -> None:
    """Remote close: ready_read, error(REMOTE_HOST_CLOSED) while CONNECTED,
    CLOSING, UNCONNECTED, disconnected; the bytes are readable in it."""
    srv, sock, rec, peer = await connected()
    del rec.events[:]
    peer.write(b"last words\n")
    peer.close()
    await rec.until("disconnected")
    assert rec.collapsed() == [
        ("ready_read", S.CONNECTED),
        ("error", S.CONNECTED, E.REMOTE_HOST_CLOSED),
        ("state_changed", S.CLOSING),
        ("state_changed", S.UNCONNECTED),
        ("disconnected", S.UNCONNECTED),
    ]
    assert rec.disconnected_read == b"last words\n"
    assert sock.error is E.REMOTE_HOST_CLOSED
    assert (sock.remote_address, sock.local_port) == ("", 0)
    srv.close()


@pytest_twisted.ensureDeferred
async def test_reset_by_peer() -> None:
    """A reset: error while CONNECTED, CLOSING, UNCONNECTED, disconnected."""
    srv, sock, rec, peer = await connected()
    del rec.events[:]
    sock.write(b"never read by the peer")
    await wait_for(lambda: rec.written == 22)
    await sleep(0.05)
    peer.abort()  # unread bytes in its kernel buffer: the close is a RST
    await rec.until("disconnected")
    assert rec.events == [
        ("bytes_written", S.CONNECTED),
        ("error", S.CONNECTED, E.REMOTE_HOST_CLOSED),
        ("state_changed", S.CLOSING),
        ("state_changed", S.UNCONNECTED),
        ("disconnected", S.UNCONNECTED),
    ]
    assert "reset" in sock.error_string.lower() or "lost" in sock.error_string.lower()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_disconnect_while_connecting() -> None:
    """disconnect() during a name lookup: UNCONNECTED, no disconnected, and
    no late connection."""
    srv, accepted = await server()
    sock = TcpSocket()
    rec = Recorder(sock)
    sock.connect("localhost", srv.port or 0)
    sock.disconnect()
    await sleep(0.2)
    assert rec.events == [("state_changed", S.HOST_LOOKUP), ("state_changed", S.UNCONNECTED)]
    assert accepted == []
    srv.close()


@pytest_twisted.ensureDeferred
async def test_disconnect_with_pending_data() -> None:
    """disconnect() with 4 MiB pending: CLOSING at once, bytes_written until all
    is sent, then UNCONNECTED, disconnected; the peer gets every byte."""
    data = os.urandom(4 * 1024 * 1024)
    srv, sock, rec, got = await connected_and_written(data)
    sock.disconnect()
    rec.mark()
    await rec.until("disconnected", 30)
    assert rec.collapsed() == CLOSING_AFTER_WRITE
    assert rec.written == len(data)
    await got.wait_closed()
    assert got.size == len(data) and sha256(got.data) == sha256(data)
    srv.close()


@pytest_twisted.ensureDeferred
async def test_disconnect_right_after_a_small_write() -> None:
    """A small write is pending until bytes_written reports it, even if the
    core sent it at once: CLOSING, bytes_written, UNCONNECTED, disconnected."""
    srv, sock, rec, got = await connected_and_written(b"bye")
    sock.disconnect()
    rec.mark()
    await rec.until("disconnected")
    assert rec.events == CLOSING_AFTER_WRITE
    assert rec.written == 3
    await got.wait_closed()
    assert got.data == b"bye"
    srv.close()


@pytest_twisted.ensureDeferred
async def test_disconnect_with_nothing_pending() -> None:
    """disconnect() with nothing pending: CLOSING, UNCONNECTED, disconnected,
    all inside the call; the peer sees the close."""
    srv, sock, rec, peer = await connected()
    got = Collector(peer)
    del rec.events[:]
    sock.disconnect()
    rec.mark()
    assert rec.events == [
        ("state_changed", S.CLOSING),
        ("state_changed", S.UNCONNECTED),
        ("disconnected", S.UNCONNECTED),
        ("returned", S.UNCONNECTED),
    ]
    await got.wait_closed()
    assert got.error is None
    sock.disconnect()
    assert len(rec.events) == 4
    srv.close()


@pytest_twisted.ensureDeferred
async def test_abort_with_pending_data() -> None:
    """abort(): UNCONNECTED and disconnected inside the call, no CLOSING, no
    error; the pending data is dropped."""
    data = os.urandom(4 * 1024 * 1024)
    srv, sock, rec, got = await connected_and_written(data)
    sock.abort()
    rec.mark()
    assert rec.events == [
        ("state_changed", S.UNCONNECTED),
        ("disconnected", S.UNCONNECTED),
        ("returned", S.UNCONNECTED),
    ]
    await got.wait_closed()
    await sleep(0.05)
    assert got.size < len(data)
    assert len(rec.events) == 3 and rec.written == 0
    srv.close()


@pytest_twisted.ensureDeferred
async def test_reconnect_from_disconnected_handler() -> None:
    """A handler may connect again: the new attempt is not disturbed."""
    srv, sock, rec, _ = await connected()
    port = srv.port or 0
    sock.disconnected_handler = lambda s: s.connect("127.0.0.1", port)
    sock.disconnect()
    await wait_for(lambda: rec.names().count("connected") == 2)
    assert sock.state is S.CONNECTED and sock.remote_port == port
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_no_descriptor_leak() -> None:
    """Connections ended by disconnect, abort, refusal and a dropped attempt
    leave no socket behind."""
    sock = TcpSocket()
    # Warm up: the reactor, and the thread pool of the name resolver, keep
    # descriptors of their own.
    sock.connect("localhost", free_port())
    await wait_for(lambda: sock.state is S.UNCONNECTED)
    await sleep(0.3)  # let earlier tests' sockets finish closing
    baseline = open_sockets()
    srv, _ = await server()
    srv.on("connect", lambda conn: conn.pause(False))  # so it sees the close
    port = srv.port or 0
    rec = Recorder(sock)
    for i in range(10):
        sock.connect("127.0.0.1", port)
        await wait_for(lambda: sock.state is S.CONNECTED)
        sock.write(b"x" * 1000)
        if i % 2:
            sock.disconnect()
        else:
            sock.abort()
        await wait_for(lambda: sock.state is S.UNCONNECTED)
    sock.connect("localhost", port)
    sock.abort()
    sock.connect("127.0.0.1", free_port())
    await wait_for(lambda: sock.state is S.UNCONNECTED)
    assert rec.names().count("disconnected") == 10
    srv.close()
    await sleep(0.3)
    await wait_for(lambda: open_sockets() <= baseline, 5)


# -- bind -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_bind_then_connect() -> None:
    """bind(0) enters BOUND with a port; the connection then comes from it."""
    srv, accepted = await server()
    sock = TcpSocket()
    rec = Recorder(sock)
    assert sock.bind(0) is True
    port = sock.local_port
    assert port > 0 and sock.state is S.BOUND
    assert rec.events == [("state_changed", S.BOUND)]
    assert sock.bind(0) is False
    sock.connect("127.0.0.1", srv.port or 0)
    rec.mark()
    await rec.until("connected")
    assert rec.events[1:] == CONNECTED_FROM_LITERAL
    await wait_for(lambda: bool(accepted))
    assert accepted[0].remote_address == ("127.0.0.1", port)
    assert sock.local_port == port
    sock.abort()
    srv.close()


@pytest_twisted.ensureDeferred
async def test_bind_in_use_and_unbind() -> None:
    """bind() on a port in use reports ADDRESS_IN_USE and returns False;
    disconnect() from BOUND goes back to UNCONNECTED."""
    srv, _ = await server()
    sock = TcpSocket()
    rec = Recorder(sock)
    assert sock.bind(srv.port or 0) is False
    assert rec.events == [("error", S.UNCONNECTED, E.ADDRESS_IN_USE)]
    assert sock.state is S.UNCONNECTED
    assert sock.bind(0) is True
    sock.disconnect()
    assert rec.events[1:] == [("state_changed", S.BOUND), ("state_changed", S.UNCONNECTED)]
    assert sock.local_port == 0
    srv.close()


# -- TLS ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tls_connect(certs: Any) -> None:
    """TLS to a verified server: CONNECTED once the handshake is done; data
    flows both ways."""
    tls = await tls_server(certs)
    conns: list[Any] = []
    tls.on("connect", conns.append)
    sock, rec = await connect_and_wait(
        "localhost",
        tls.port or 0,
        "connected",
        read_in_ready_read=True,
        tls=True,
        trust_root=certs.ca_path,
    )
    assert rec.events == CONNECTED_FROM_NAME
    await wait_for(lambda: bool(conns))
    got = Collector(conns[0])
    assert sock.write(b"secret\n") == 7
    await wait_for(lambda: got.data == b"secret\n")
    conns[0].write(b"reply\n")
    await wait_for(lambda: rec.read_data == b"reply\n")
    sock.disconnect()
    await rec.until("disconnected")
    tls.close()


@pytest_twisted.ensureDeferred
async def test_tls_ip_literal(certs: Any) -> None:
    """TLS to 127.0.0.1 verifies the address against the certificate."""
    tls = await tls_server(certs)
    sock, rec = await connect_and_wait(
        "127.0.0.1", tls.port or 0, "connected", tls=True, trust_root=certs.ca_path
    )
    assert rec.events == CONNECTED_FROM_LITERAL
    sock.abort()
    tls.close()


@pytest_twisted.ensureDeferred
async def test_tls_handshake_failure(certs: Any) -> None:
    """An untrusted server: ... host_found, UNCONNECTED, error(SSL_HANDSHAKE_FAILED)."""
    tls = await tls_server(certs)
    sock, rec = await connect_and_wait(
        "localhost", tls.port or 0, "error", tls=True, trust_root=certs.other_ca_path
    )
    await sleep(0.05)
    assert rec.events == [
        ("state_changed", S.HOST_LOOKUP),
        ("returned", S.HOST_LOOKUP),
        ("state_changed", S.CONNECTING),
        ("host_found", S.CONNECTING),
        ("state_changed", S.UNCONNECTED),
        ("error", S.UNCONNECTED, E.SSL_HANDSHAKE_FAILED),
    ]
    assert sock.state is S.UNCONNECTED
    tls.close()


@pytest_twisted.ensureDeferred
async def test_tls_to_plain_server(certs: Any) -> None:
    """A server that drops the connection during the handshake: UNCONNECTED,
    error(REMOTE_HOST_CLOSED), as Qt reports it; no disconnected."""
    srv, _ = await server()
    srv.on("connect", lambda conn: conn.close())
    sock = TcpSocket()
    rec = Recorder(sock)
    sock.connect("127.0.0.1", srv.port or 0, tls=True, trust_root=certs.ca_path)
    await rec.until("error")
    await sleep(0.05)
    assert rec.events == [
        ("state_changed", S.HOST_LOOKUP),
        ("state_changed", S.CONNECTING),
        ("host_found", S.CONNECTING),
        ("state_changed", S.UNCONNECTED),
        ("error", S.UNCONNECTED, E.REMOTE_HOST_CLOSED),
    ]
    srv.close()


# -- handlers -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_handler_exception_is_contained() -> None:
    """A handler that raises is logged; the socket goes on."""
    srv, _ = await server()
    sock = TcpSocket()
    rec = Recorder(sock)
    record = sock.state_changed_handler

    def boom(s: TcpSocket, state: SocketState) -> None:
        assert record is not None
        record(s, state)
        raise ValueError("boom")

    sock.state_changed_handler = boom
    sock.connect("127.0.0.1", srv.port or 0)
    await rec.until("connected")
    assert sock.state is S.CONNECTED
    sock.abort()
    srv.close()


# -- from other threads ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_async_variants_from_a_thread() -> None:
    """The *_async methods, called from another thread, run on the reactor
    thread and report callback(socket, result, error)."""
    srv, _ = await server()
    reactor_thread = threading.get_ident()
    calls: list[tuple[str, Any, Any, bool]] = []
    connected_evt = threading.Event()
    readable = threading.Event()
    done = threading.Event()
    sock = TcpSocket()
    sock.connected_handler = lambda s: connected_evt.set()
    sock.ready_read_handler = lambda s: readable.set()
    failures: list[BaseException] = []

    def callback(name: str, evt: threading.Event | None = None) -> Any:
        def cb(s: TcpSocket, result: Any, error: Any) -> None:
            assert s is sock
            calls.append((name, result, error, threading.get_ident() == reactor_thread))
            if evt is not None:
                evt.set()

        return cb

    def worker() -> None:
        try:
            step = threading.Event()
            sock.bind_async(0, callback("bind", step))
            assert step.wait(10)
            step.clear()
            sock.connect_async("127.0.0.1", srv.port or 0, callback("connect", step))
            assert step.wait(10) and connected_evt.wait(10)
            step.clear()
            sock.write_async(b"ping\n", callback("write", step))
            assert step.wait(10) and readable.wait(10)
            step.clear()
            sock.read_async(None, callback("read", step))
            assert step.wait(10)
            step.clear()
            sock.disconnect_async(callback("disconnect", step))
            assert step.wait(10)
            step.clear()
            sock.write_async(b"late", callback("write", step))
            assert step.wait(10)
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    def echo(conn: Any) -> None:
        conn.on("data", conn.write)
        conn.pause(False)

    srv.on("connect", echo)
    thread = threading.Thread(target=worker)
    thread.start()
    await wait_for(done.is_set, 20)
    thread.join(5)
    assert failures == []
    assert calls == [
        ("bind", True, None, True),
        ("connect", True, None, True),
        ("write", 5, None, True),
        ("read", b"ping\n", None, True),
        ("disconnect", True, None, True),
        ("write", -1, None, True),
    ]
    assert sock.state is S.UNCONNECTED
    srv.close()


@pytest_twisted.ensureDeferred
async def test_async_bad_arguments_raise_in_the_caller() -> None:
    """The *_async methods check their arguments in the calling thread."""
    sock = TcpSocket()
    errors: list[BaseException] = []

    def worker() -> None:
        for call in (
            lambda: sock.connect_async("127.0.0.1", -1),
            lambda: sock.bind_async("x", None),
            lambda: sock.read_async(-2, None),
            lambda: sock.write_async(12, None),  # type: ignore[arg-type]
        ):
            try:
                call()
            except (TypeError, ValueError) as exc:
                errors.append(exc)

    await deferToThread(worker)
    assert len(errors) == 4
    assert sock.state is S.UNCONNECTED


# -- the docs' examples ---------------------------------------------------------


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run docs/examples/NAME with a timeout; return the finished process."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def echo_lines(conn: Any) -> None:
    """Echo a connection's bytes back, upper-cased."""
    conn.on("data", lambda data: conn.write(data.upper()))
    conn.pause(False)


async def example_output(name: str) -> list[str]:
    """
    Run docs/examples/NAME against a local upper-casing echo server; assert
    that it exits 0 and return the lines it printed.
    """
    srv, _ = await server()
    srv.on("connect", echo_lines)
    try:
        proc = await deferToThread(run_example, name, "127.0.0.1", str(srv.port))
    finally:
        srv.close()
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest_twisted.ensureDeferred
async def test_example_client() -> None:
    """docs/examples/tcpsocket_client.py talks to a local server and exits 0."""
    assert await example_output("tcpsocket_client.py") == [
        "state: HOST_LOOKUP",
        "state: CONNECTING",
        "host found",
        "state: CONNECTED",
        "connected to 127.0.0.1",
        "got: HELLO, QT",
        "state: CLOSING",
        "state: UNCONNECTED",
        "disconnected",
    ]


@pytest_twisted.ensureDeferred
async def test_example_threads() -> None:
    """docs/examples/tcpsocket_threads.py drives a socket from a worker thread."""
    assert await example_output("tcpsocket_threads.py") == [
        "connect started: True",
        "wrote 6 bytes",
        "read b'HELLO\\n'",
        "disconnected",
    ]
