"""TcpConnection over real sockets: events, both pause directions, close,
half-close, abort, bad input, listener exceptions, file descriptors."""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import weakref
from typing import Any

import pytest
import pytest_twisted
from _helpers import (
    Collector,
    connect,
    fds_back_to,
    listening,
    logged,
    open_fds,
    pair,
    sha256,
    sleep,
    wait_event,
    wait_for,
)
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener, IPushProducer
from zope.interface.verify import verifyObject

import txtcp
from txtcp import ConnectionClosedError


@pytest_twisted.ensureDeferred
async def test_interfaces() -> None:
    """The connection is an IPushProducer; its protocol half-closes and hears handshakes."""
    server, c, s = await pair()
    assert verifyObject(IPushProducer, c)
    from txtcp._connection import _TcpProtocol

    proto = _TcpProtocol.__new__(_TcpProtocol)
    assert verifyObject(IHalfCloseableProtocol, proto)
    assert verifyObject(IHandshakeListener, proto)
    c.close()
    s.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_paused_by_default() -> None:
    """No data event comes before pause(False); then the bytes arrive in order."""
    server, c, s = await pair()
    got = Collector(c, unpause=False)
    s.write(b"early ")
    s.write(b"bytes")
    await sleep(0.2)
    assert got.chunks == []
    assert c.paused
    c.pause(False)
    await wait_for(lambda: got.data == b"early bytes")
    c.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_event_order_peer_close() -> None:
    """A peer that sends and closes gives data, end, close (in that order), and no error."""
    server, c, s = await pair()
    got = Collector(c)
    s.write(b"bye")
    s.close()
    await got.wait_closed()
    assert got.events == ["data", "end", "close"]
    assert got.data == b"bye"
    assert c.closed
    server.close()


@pytest_twisted.ensureDeferred
async def test_close_emitted_once_and_idempotent() -> None:
    """close() twice, then abort(), emit one close event and no error."""
    server, c, _s = await pair()
    got = Collector(c)
    c.close()
    c.close()
    c.abort()
    await got.wait_closed()
    await sleep(0.05)
    assert got.events == ["close"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_everything_written_before_close_arrives() -> None:
    """8 MiB written then close() at once: the peer gets every byte, in order."""
    server, c, s = await pair()
    got = Collector(s)
    payload = os.urandom(8 << 20)
    for i in range(0, len(payload), 100_000):
        c.write(payload[i : i + 100_000])
    c.close()
    await got.wait_closed()
    assert hashlib.sha256(got.data).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert got.events == ["data", "end", "close"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_write_after_close_raises() -> None:
    """Writing to a closing or closed connection raises ConnectionClosedError."""
    server, c, _s = await pair()
    got = Collector(c)
    c.close()
    with pytest.raises(ConnectionClosedError, match="closing"):
        c.write(b"x")
    await got.wait_closed()
    with pytest.raises(ConnectionClosedError, match="closed"):
        c.write(b"x")
    with pytest.raises(ConnectionClosedError):
        c.shutdown()
    server.close()


@pytest.mark.parametrize("bad", ["text", 42, None, [b"a"], object()])
@pytest_twisted.ensureDeferred
async def test_write_rejects_non_bytes(bad: Any) -> None:
    """write() of a non-bytes-like object raises TypeError and sends nothing."""
    server, c, s = await pair()
    got = Collector(s)
    with pytest.raises(TypeError, match="bytes"):
        c.write(bad)
    c.write(bytearray(b"ok"))
    c.write(memoryview(b"!!"))
    c.close()
    await got.wait_closed()
    assert got.data == b"ok!!"
    server.close()


@pytest_twisted.ensureDeferred
async def test_bad_option_values() -> None:
    """pause, keepalive and buffer sizes reject bad values with clear exceptions."""
    server, c, s = await pair()
    with pytest.raises(TypeError):
        c.pause("yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.keepalive(True, -5)
    with pytest.raises(ValueError):
        c.send_buffer_size = 0
    with pytest.raises(TypeError):
        c.receive_buffer_size = "big"  # type: ignore[assignment]
    c.close()
    s.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_both_pause_directions_64mib() -> None:
    """64 MiB to a slow reader: the writer sees pause(True/False), the reader's
    pauses hold data back, and the bytes arrive intact (by hash)."""
    server, c, s = await pair()
    total = 64 << 20
    chunk = os.urandom(64 << 10)
    sent = hashlib.sha256()
    received = hashlib.sha256()
    state: dict[str, Any] = {
        "written": 0,
        "got": 0,
        "pauses": [],
        "max_queue": 0,
        "reader_paused": False,
        "data_while_paused": 0,
    }

    def pump() -> None:
        while state["written"] < total and not c.write_paused:
            c.write(chunk)
            sent.update(chunk)
            state["written"] += len(chunk)
            state["max_queue"] = max(state["max_queue"], c.write_queue_size)
        if state["written"] >= total:
            c.close()

    def on_pause(paused: bool) -> None:
        state["pauses"].append(paused)
        if not paused:
            pump()

    c.on("pause", on_pause)
    done = wait_event(s, "close", timeout=60)

    def on_data(data: bytes) -> None:
        if state["reader_paused"]:
            state["data_while_paused"] += 1
        received.update(data)
        before = state["got"]
        state["got"] += len(data)
        if state["got"] // (4 << 20) != before // (4 << 20):
            state["reader_paused"] = True
            s.pause(True)

            def resume() -> None:
                state["reader_paused"] = False
                s.pause(False)

            from _helpers import reactor

            reactor.callLater(0.02, resume)

    s.on("data", on_data)
    pump()
    await sleep(0.2)  # the reader starts paused: the writer must be held back
    assert state["pauses"][:1] == [True]
    assert state["written"] < total
    s.pause(False)
    await done
    assert state["got"] == total
    assert received.hexdigest() == sent.hexdigest()
    assert state["data_while_paused"] == 0
    assert state["pauses"].count(True) >= 2
    assert state["pauses"].count(False) >= 1
    assert state["max_queue"] <= 256 << 10
    server.close()


@pytest_twisted.ensureDeferred
async def test_pause_reasons_are_independent() -> None:
    """A pause under another reason does not undo the user's pause, nor vice versa."""
    server, c, s = await pair()
    got = Collector(c, unpause=False)
    c.pause(True, reason="proxy")
    c.pause(False)
    s.write(b"held")
    await sleep(0.1)
    assert got.chunks == []
    c.pause(False, reason="proxy")
    await wait_for(lambda: got.data == b"held")
    c.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_half_close() -> None:
    """shutdown() sends end of stream; the peer, with allow_half_open, still answers."""
    server, c, s = await pair()
    s.allow_half_open = True
    srv = Collector(s)
    cli = Collector(c)

    def on_end() -> None:
        s.write(b"reply to " + srv.data)
        s.close()

    s.on("end", on_end)
    c.write(b"request")
    c.shutdown()
    c.shutdown()  # twice is fine
    with pytest.raises(ConnectionClosedError, match="shut down"):
        c.write(b"more")
    await cli.wait_closed()
    assert cli.data == b"reply to request"
    assert srv.events == ["data", "end", "close"]
    assert cli.events == ["data", "end", "close"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_half_open_both_shut() -> None:
    """With allow_half_open on both ends, two shutdowns close the connection."""
    server, c, s = await pair()
    c.allow_half_open = s.allow_half_open = True
    cli, srv = Collector(c), Collector(s)
    c.write(b"a")
    c.shutdown()
    await wait_for(lambda: "end" in srv.events)
    s.write(b"b")
    s.shutdown()
    await cli.wait_closed()
    await srv.wait_closed()
    assert (cli.data, srv.data) == (b"b", b"a")
    assert cli.events == ["data", "end", "close"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_default_end_closes() -> None:
    """By default a connection whose peer ends sends what it has and closes."""
    server, c, s = await pair()
    srv = Collector(s)
    s.on("data", lambda d: s.write(d.upper()))
    cli = Collector(c)
    c.write(b"abc")
    await wait_for(lambda: cli.data == b"ABC")
    c.allow_half_open = True
    c.shutdown()
    await srv.wait_closed()
    await cli.wait_closed()
    assert srv.events == ["data", "end", "close"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_abort_drops_pending_and_peer_sees_reset() -> None:
    """abort() drops buffered output; the local side gets close only, the peer error then close."""
    server, c, s = await pair()
    srv = Collector(s)
    cli = Collector(c)
    s.write(b"x")  # so the server has unread data?  no: make the client unread
    await wait_for(lambda: cli.data == b"x")
    c.pause(True)
    s.write(b"unread")
    await sleep(0.05)
    c.write(os.urandom(4 << 20))
    assert c.write_queue_size > 0
    c.abort()
    await cli.wait_closed()
    await srv.wait_closed()
    assert cli.events == ["data", "close"]
    assert srv.events[-2:] == ["error", "close"]
    assert srv.size < 4 << 20
    server.close()


@pytest_twisted.ensureDeferred
async def test_data_listener_exception_aborts() -> None:
    """An exception in a data listener is logged and aborts that connection only."""
    server, c, s = await pair()
    with logged() as seen:

        def bad(data: bytes) -> None:
            raise ValueError("listener bug")

        s.on("data", bad)
        srv = Collector(s)
        cli = Collector(c)
        c.write(b"boom")
        await srv.wait_closed()
        await cli.wait_closed()
    failures = [e["log_failure"] for e in seen if "log_failure" in e]
    assert [type(f.value) for f in failures] == [ValueError]
    for f in failures:
        f.cleanFailure()
    assert srv.events == ["data", "close"]
    # The server goes on serving others.
    c2 = await connect("127.0.0.1", server.port or 0)
    c2.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_other_listener_exception_does_not_abort() -> None:
    """An exception in a non-data listener is logged; the connection goes on."""
    server, c, s = await pair()
    with logged() as seen:
        c.on("pause", lambda p: 1 / 0)
        c.on("end", lambda: 1 / 0)
        cli = Collector(c)
        c.allow_half_open = True
        s.write(b"hi")
        s.shutdown()
        await wait_for(lambda: "end" in cli.events)
        c.write(b"still open")
        c.close()
        await cli.wait_closed()
    failures = [e["log_failure"] for e in seen if "log_failure" in e]
    assert [type(f.value) for f in failures] == [ZeroDivisionError]
    for f in failures:
        f.cleanFailure()
    assert cli.events == ["data", "end", "close"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_socket_options_and_addresses() -> None:
    """nodelay, keepalive, buffer sizes, fileno and addresses reflect the real socket."""
    server, c, s = await pair()
    fd = c.fileno()
    sock = socket.socket(fileno=os.dup(fd))
    try:
        c.nodelay = True
        assert c.nodelay
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        c.nodelay = False
        assert not c.nodelay
        c.keepalive(True, 7)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
        c.send_buffer_size = 65536
        c.receive_buffer_size = 65536
        assert c.send_buffer_size == 131072  # Linux doubles it
        assert c.receive_buffer_size == 131072
        assert c.local_address == sock.getsockname()
        assert c.remote_address == s.local_address
        assert s.remote_address == c.local_address
    finally:
        sock.close()
    got = Collector(c)
    c.close()
    await got.wait_closed()
    assert c.fileno() == -1
    assert c.write_queue_size == 0
    with pytest.raises(ConnectionClosedError):
        c.nodelay = True
    server.close()


@pytest_twisted.ensureDeferred
async def test_try_write() -> None:
    """try_write sends at once what the kernel takes, then raises BlockingIOError when full."""
    server, c, s = await pair()
    assert c.try_write(b"now") == 3
    got = Collector(s)
    await wait_for(lambda: got.data == b"now")
    s.pause(True)
    sent = 0
    with pytest.raises(BlockingIOError):
        for _ in range(10_000):
            sent += c.try_write(b"x" * 65536)
    assert sent > 0
    c.abort()
    s.abort()
    server.close()


@pytest_twisted.ensureDeferred
async def test_no_fd_leak() -> None:
    """After 50 connections open and close, the fd count is back to its baseline."""
    baseline = open_fds()
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    stopped = wait_event(server, "stop")
    conns = []
    for _ in range(50):
        accepted = wait_event(server, "connect")
        conn = await connect("127.0.0.1", server.port or 0)
        (peer,) = await accepted
        conns.append((Collector(conn), Collector(peer)))
    assert open_fds() >= baseline + 90
    for i, (a, b) in enumerate(conns):
        (a.conn.close if i % 2 else b.conn.abort)()
    for a, b in conns:
        await a.wait_closed()
        await b.wait_closed()
    server.close()
    await stopped
    assert await fds_back_to(baseline) <= baseline


@pytest.mark.parametrize("how", ["close", "abort", "peer", "shutdown"])
@pytest_twisted.ensureDeferred
async def test_addresses_known_after_close(how: str) -> None:
    """local_address and remote_address still answer after the connection closed."""
    server, c, s = await pair()
    cli, srv = Collector(c), Collector(s)
    if how == "close":
        c.close()
    elif how == "abort":
        c.abort()
    elif how == "peer":
        s.close()
    else:
        s.allow_half_open = True
        c.shutdown()
        await wait_for(lambda: "end" in srv.events)
        s.close()
    await cli.wait_closed()
    await srv.wait_closed()
    assert c.local_address == s.remote_address
    assert c.remote_address == s.local_address == ("127.0.0.1", server.port)
    server.close()


@pytest_twisted.ensureDeferred
async def test_closed_connections_need_no_garbage_collector() -> None:
    """After close, both ends are freed by reference counting alone: listeners are
    dropped, and the connect attempt leaves no reference cycle behind."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    refs: list[weakref.ref[txtcp.TcpConnection]] = []
    closed: list[str] = []
    seen: list[int] = []

    def accepted(conn: txtcp.TcpConnection) -> None:
        refs.append(weakref.ref(conn))
        conn.on("data", conn.write)  # a cycle: the bound method holds the connection
        conn.on("close", lambda: closed.append("server"))
        conn.pause(False)

    def connected(conn: txtcp.TcpConnection) -> None:
        refs.append(weakref.ref(conn))

        def on_data(data: bytes) -> None:  # a cycle through the closure
            seen.append(len(conn.listeners("data")))
            conn.close()

        conn.on("data", on_data)
        conn.on("close", lambda: closed.append("client"))
        conn.pause(False)
        conn.write(b"ping")

    server.on("connect", accepted)
    client = txtcp.TcpClient()
    client.on("connect", connected)
    gc.collect()
    gc.disable()
    try:
        client.connect("127.0.0.1", server.port or 0)
        await wait_for(lambda: len(closed) == 2)
        await sleep(0.05)
        assert seen == [1]
        assert len(refs) == 2
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()
    server.close()


@pytest_twisted.ensureDeferred
async def test_connect_attempts_need_no_garbage_collector() -> None:
    """A client's transport and connector, and a TcpClient whose once() listener has
    run, are freed by reference counting alone once the connection closes."""
    from twisted.internet import tcp

    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    closed: list[str] = []

    def connected(conn: txtcp.TcpConnection) -> None:
        conn.on("close", lambda: closed.append("client"))
        conn.close()

    def leftovers() -> list[object]:
        kinds = (tcp.Client, tcp.Connector, txtcp.TcpClient)
        return [o for o in gc.get_objects() if isinstance(o, kinds)]

    gc.collect()
    gc.disable()
    try:
        before = leftovers()  # other tests' connections may still be open
        client = txtcp.TcpClient()
        client.once("connect", connected)
        client.connect("127.0.0.1", server.port or 0)
        await wait_for(lambda: closed == ["client"])
        await sleep(0.05)
        del client
        assert [o for o in leftovers() if not any(o is b for b in before)] == []
    finally:
        gc.enable()
    server.close()


@pytest_twisted.ensureDeferred
async def test_listeners_forgotten_after_close() -> None:
    """Once close is emitted the connection holds no listeners (nothing more is emitted)."""
    server, c, s = await pair()
    cli = Collector(c)
    Collector(s)
    assert c.listeners("data") and c.listeners("close")
    c.close()
    await cli.wait_closed()  # resumes inside the close listener
    await sleep(0)
    assert (c.listeners("data"), c.listeners("close"), c.listeners("end")) == ([], [], [])
    server.close()


@pytest_twisted.ensureDeferred
async def test_allow_half_open_attribute() -> None:
    """allow_half_open is False at first and reads back as the bool that was set."""
    server, c, s = await pair()
    assert c.allow_half_open is False and s.allow_half_open is False
    c.allow_half_open = True
    assert c.allow_half_open is True and s.allow_half_open is False
    c.allow_half_open = False
    assert c.allow_half_open is False
    c.close()
    s.close()
    server.close()


@pytest_twisted.ensureDeferred
async def test_end_with_output_buffered_flushes_before_closing() -> None:
    """A peer's end of stream closes the connection only after its buffered output is sent."""
    payload = os.urandom(8 * 1024 * 1024)
    server, c, s = await pair()
    before = open_fds()
    srv = Collector(s, unpause=False)
    c.allow_half_open = True
    cli = Collector(c)
    c.shutdown()  # the end of stream reaches s while its 8 MiB are still buffered
    s.write(payload)
    assert s.write_queue_size > 0
    s.pause(False)
    await cli.wait_closed()
    await srv.wait_closed()
    assert sha256(cli.data) == sha256(payload)
    assert cli.events == ["data", "end", "close"]
    assert srv.events == ["end", "close"]
    assert await fds_back_to(before - 2) <= before - 2
    server.close()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_end_with_nothing_buffered_closes(host: str) -> None:
    """With nothing to send, the end of stream closes at once: end then close, then the
    addresses are still known and the sockets are gone."""
    server, c, s = await pair(host)
    before = open_fds()
    local, remote = s.local_address, s.remote_address
    srv = Collector(s)
    c.allow_half_open = True
    cli = Collector(c)
    c.write(b"last")
    await wait_for(lambda: srv.data == b"last")
    c.shutdown()
    await srv.wait_closed()
    await cli.wait_closed()
    assert srv.events == ["data", "end", "close"]
    assert cli.events == ["end", "close"]
    assert (s.local_address, s.remote_address) == (local, remote)
    assert c.local_address == s.remote_address
    assert await fds_back_to(before - 2) <= before - 2
    server.close()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("action", ["close", "write-close", "write-big-close", "close-abort"])
async def test_end_listener_that_closes(action: str) -> None:
    """An end listener may close (after writing, or then abort): what it wrote arrives
    whole, close is emitted once, after end; with nothing left to send (the kernel took
    it all), in the same reactor turn."""
    from twisted.internet import reactor

    payload = {"write-close": b"bye", "write-big-close": os.urandom(8 * 1024 * 1024)}.get(
        action, b""
    )
    server, c, s = await pair()
    before = open_fds()
    srv = Collector(s)
    c.allow_half_open = True
    cli = Collector(c)

    def on_end() -> None:
        reactor.callLater(0, srv.events.append, "next turn")
        if payload:
            s.write(payload)
        s.close()
        if action == "close-abort":
            s.abort()

    s.on("end", on_end)
    c.shutdown()
    await srv.wait_closed()
    await cli.wait_closed()
    assert sha256(cli.data) == sha256(payload)
    await wait_for(lambda: len(srv.events) == 3)
    if action in ("close", "write-close"):
        assert srv.events == ["end", "close", "next turn"]
    else:  # flushing 8 MiB, or an abort, takes turns
        assert srv.events == ["end", "next turn", "close"]
    # The abort wins over the close: the peer sees a reset.
    assert cli.events[-2:] == (["error", "close"] if action == "close-abort" else ["end", "close"])
    assert await fds_back_to(before - 2) <= before - 2
    server.close()
