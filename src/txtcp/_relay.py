# -*- test-case-name: tests.test_relay -*-
"""
L{relay}: two connections forwarded into each other, with flow control and
half-close both ways; on Linux, between two plain TCP connections, the bytes
move in the kernel (C{splice(2)} through a pipe) and never reach Python.

How the zero-copy path shares the sockets with Twisted: while it runs, both
connections are paused for reading (under a reason of their own) and their
transports have nothing buffered, so neither transport is registered with
the reactor; one descriptor per socket (L{_SpliceSide}) is registered in
their place, reading into a pipe and writing from one.  Anything that
would touch a transport (a call on either connection, an end of stream, an
error, a failed pipe) first hands both sockets back: the bytes still in a
pipe are moved into the sink transport's write buffer, ahead of anything
newer, and the pair goes on along the normal event path from there.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Hashable
from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorFDSet
from twisted.python.failure import Failure

from ._connection import _WRITE_SHUT, TcpConnection, _buffered
from ._errors import ConnectionClosedError, TxtcpError

__all__ = ["Relay", "relay"]

_splice = getattr(os, "splice", None)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
#: The most one splice asks for; the pipe's capacity is the real limit.
_CHUNK = 1024 * 1024
#: The capacity asked for each pipe (the kernel may give less).
PIPE_SIZE = 256 * 1024
#: Reads per wake-up at most, and the size of a read worth another one.
_ROUNDS = 4
_FULL_READ = 64 * 1024
#: Empty pipes kept for reuse while any relay is on the zero-copy path.
_POOL_MAX = 4

# Pause reasons: the sink's write buffer is full (normal path); the relay
# has taken the socket over (zero-copy path).
_FULL: Hashable = "relay"
_SPLICING: Hashable = "relay: zero-copy"

# Connections in a relay (weakly: a relay and its connections go together).
_relayed: weakref.WeakSet[TcpConnection] = weakref.WeakSet()


class _PipePool:
    """Empty pipes for the zero-copy path, closed when no relay uses it."""

    def __init__(self) -> None:
        self._free: list[tuple[int, int]] = []
        self.users = 0

    def get(self) -> tuple[int, int]:
        if self._free:
            return self._free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            import fcntl

            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError):
            pass  # the default size (64 KiB on Linux) will do
        return r, w

    def put(self, pipe: tuple[int, int]) -> None:
        if self.users > 0 and len(self._free) < _POOL_MAX:
            self._free.append(pipe)
        else:
            _close_pipe(pipe)

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.users = 0
            while self._free:
                _close_pipe(self._free.pop())


def _close_pipe(pipe: tuple[int, int]) -> None:
    for fd in pipe:
        with contextlib.suppress(OSError):
            os.close(fd)


_POOL = _PipePool()


class _Flow:
    """One direction of a relay: its byte count and, on the zero-copy path,
    the pipe holding bytes the sink has not taken yet."""

    __slots__ = ("count", "pending", "pipe", "sink", "sink_fd", "source", "source_fd")

    def __init__(self, source: TcpConnection, sink: TcpConnection) -> None:
        self.source = source
        self.sink = sink
        self.source_fd = -1
        self.sink_fd = -1
        self.count = 0
        self.pipe: tuple[int, int] | None = None
        self.pending = 0

    def take_pending(self) -> bytes:
        """Read what the pipe still holds, and give the pipe back."""
        pipe, self.pipe = self.pipe, None
        if pipe is None:
            return b""
        chunks = []
        try:
            while self.pending > 0:
                chunk = os.read(pipe[0], self.pending)
                if not chunk:
                    break
                chunks.append(chunk)
                self.pending -= len(chunk)
        except OSError:
            pass
        self.pending = 0
        _POOL.put(pipe)
        return b"".join(chunks)


class _SpliceSide:
    """The reactor's descriptor for one socket while the relay moves its bytes."""

    __slots__ = ("_fd", "conn", "inbound", "outbound", "relay")

    def __init__(self, relay: Relay, conn: TcpConnection, outbound: _Flow, inbound: _Flow) -> None:
        self.relay = relay
        self.conn = conn
        self.outbound = outbound
        self.inbound = inbound
        self._fd = conn.fileno()

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "txtcp relay"

    def doRead(self) -> None:
        self.relay._readable(self.outbound)

    def doWrite(self) -> None:
        self.relay._writable(self.inbound)

    def connectionLost(self, reason: Failure) -> None:
        # The reactor gave up on the socket (hang-up without data, or the
        # reactor is stopping): hand back, and let the transport end as
        # Twisted would have ended it.
        relay = self.relay
        relay._leave_splice()
        if not reason.check(ConnectionDone):
            relay._fail(self.conn, reason)


class Relay:
    """
    Two connections forwarded into each other; made by L{relay}.

    @ivar a: the first connection given to L{relay}.
    @ivar b: the second.
    @ivar last_activity: the reactor's time (C{seconds()}) when bytes last
        moved either way, or when the relay started.
    """

    __slots__ = (
        "__weakref__",
        "_ab",
        "_ba",
        "_may_splice",
        "_reactor",
        "_side_a",
        "_side_b",
        "_splicing",
        "a",
        "b",
        "last_activity",
    )

    def __init__(self, a: TcpConnection, b: TcpConnection, reactor: Any, zero_copy: bool) -> None:
        self.a = a
        self.b = b
        self._reactor = reactor
        self._ab = _Flow(a, b)
        self._ba = _Flow(b, a)
        self._may_splice = zero_copy and _splice is not None and IReactorFDSet.providedBy(reactor)
        self._splicing = False
        self._side_a: _SpliceSide | None = None
        self._side_b: _SpliceSide | None = None
        self.last_activity: float = reactor.seconds()

    @property
    def bytes_a_to_b(self) -> int:
        """Bytes received from L{a} and passed on to L{b} so far."""
        return self._ab.count

    @property
    def bytes_b_to_a(self) -> int:
        """Bytes received from L{b} and passed on to L{a} so far."""
        return self._ba.count

    @property
    def zero_copy(self) -> bool:
        """Whether the bytes move in the kernel now (C{splice}), not through Python."""
        return self._splicing

    # -- the normal path ---------------------------------------------------

    def _wire(self, flow: _Flow) -> None:
        source, sink = flow.source, flow.sink
        reactor = self._reactor

        def data(chunk: bytes) -> None:
            flow.count += len(chunk)
            self.last_activity = reactor.seconds()
            sink.write(chunk)

        def sink_paused(paused: bool) -> None:
            source.pause(paused, reason=_FULL)
            if not paused and self._may_splice:
                self._enter_splice()

        source.on("data", data)
        sink.on("pause", sink_paused)
        sink.on(_WRITE_SHUT, self._write_shut)
        source.on("end", lambda: _half_close(sink))
        source.on("close", sink.close)

    def _write_shut(self) -> None:
        # One direction has ended and its end has been passed on: the other
        # may go on in the kernel.
        if self._may_splice:
            self._enter_splice()

    # -- the zero-copy path --------------------------------------------------

    def _enter_splice(self, starting: bool = False) -> bool:
        """
        Take both sockets over if each direction either can move in the
        kernel now or is finished (its end passed on); at least one must
        be able to move.
        """
        if self._splicing:
            return False
        ab, ba = self._ab, self._ba
        live_ab = _flow_spliceable(ab, starting)
        live_ba = _flow_spliceable(ba, starting)
        if not (
            (live_ab or live_ba)
            and (live_ab or _flow_finished(ab))
            and (live_ba or _flow_finished(ba))
        ):
            return False
        a, b = self.a, self.b
        a.pause(True, reason=_SPLICING)
        b.pause(True, reason=_SPLICING)
        if starting:
            a.pause(False)
            b.pause(False)
        side_a = self._side_a = _SpliceSide(self, a, ab, ba)
        side_b = self._side_b = _SpliceSide(self, b, ba, ab)
        ab.source_fd = ba.sink_fd = side_a.fileno()
        ba.source_fd = ab.sink_fd = side_b.fileno()
        self._splicing = True
        _POOL.users += 1
        a._relay = b._relay = self
        # A finished direction's source has no more to read, and its
        # transport no longer reads either.
        if live_ab:
            self._reactor.addReader(side_a)
        if live_ba:
            self._reactor.addReader(side_b)
        return True

    def _leave_splice(self, for_good: bool = True) -> None:
        """
        Hand both sockets back to their transports; unless C{for_good}
        (after an end of stream), the direction still open may come back to
        the kernel once that end has been passed on.
        """
        if for_good:
            self._may_splice = False
        if not self._splicing:
            return
        self._splicing = False
        a, b = self.a, self.b
        a._relay = b._relay = None
        reactor = self._reactor
        for side in (self._side_a, self._side_b):
            reactor.removeReader(side)
            reactor.removeWriter(side)
        self._side_a = self._side_b = None
        leftovers = [(flow.sink, flow.take_pending()) for flow in (self._ab, self._ba)]
        _POOL.release()
        a.pause(False, reason=_SPLICING)
        b.pause(False, reason=_SPLICING)
        # Older than anything written from now on: first in the buffer.  A
        # full buffer emits pause(True), which pauses the source again.
        for sink, data in leftovers:
            if data and not sink.closed:
                sink._transport.write(data)

    def _fail(self, conn: TcpConnection, reason: Failure | None = None) -> None:
        """End C{conn}'s transport with C{reason}, as the reactor would."""
        if conn.closed:
            return
        transport = conn._transport
        self._reactor.removeReader(transport)
        self._reactor.removeWriter(transport)
        # A reset, as Twisted's own transports report it.
        transport.connectionLost(reason or Failure(ConnectionLost()))

    def _readable(self, flow: _Flow) -> None:
        # A few rounds per wake-up while the sink takes everything at once:
        # fewer trips through the reactor for a bulk transfer.
        for _ in range(_ROUNDS):
            if flow.pipe is not None or not self._splicing:
                return  # waiting for the sink, or back on the normal path
            try:
                pipe = _POOL.get()
            except OSError:
                self._leave_splice()  # out of file descriptors: the normal path
                return
            try:
                n = _splice(flow.source_fd, pipe[1], _CHUNK, flags=_SPLICE_FLAGS)  # type: ignore[misc]
            except BlockingIOError:
                _POOL.put(pipe)
                return
            except OSError:
                _POOL.put(pipe)
                self._leave_splice()
                self._fail(flow.source)
                return
            if not n:
                # End of stream: the transport reads it again and reports it.
                _POOL.put(pipe)
                self._leave_splice(for_good=False)
                return
            flow.count += n
            self.last_activity = self._reactor.seconds()
            flow.pipe = pipe
            flow.pending = n
            if self._flush(flow):
                self._reactor.removeReader(self._side_of(flow.source))
                self._reactor.addWriter(self._side_of(flow.sink))
                return
            if n < _FULL_READ:
                return  # the socket is most likely empty now

    def _writable(self, flow: _Flow) -> None:
        if flow.pipe is None or self._flush(flow) or not self._splicing:
            return
        self._reactor.removeWriter(self._side_of(flow.sink))
        self._reactor.addReader(self._side_of(flow.source))

    def _flush(self, flow: _Flow) -> bool:
        """Move the pipe's bytes to the sink; return whether some are left."""
        pipe = flow.pipe
        assert pipe is not None
        fd = flow.sink_fd
        while flow.pending:
            try:
                sent = _splice(pipe[0], fd, flow.pending, flags=_SPLICE_FLAGS)  # type: ignore[misc]
            except BlockingIOError:
                return True
            except OSError:
                self._leave_splice()
                self._fail(flow.sink)
                return False
            flow.pending -= sent
        flow.pipe = None
        _POOL.put(pipe)
        return False

    def _held_for(self, sink: TcpConnection) -> int:
        """Bytes in the pipe that C{sink} has not taken yet."""
        flow = self._ba if sink is self.a else self._ab
        return flow.pending if flow.pipe is not None else 0

    def _side_of(self, conn: TcpConnection) -> _SpliceSide:
        side = self._side_a if conn is self.a else self._side_b
        assert side is not None
        return side


def _flow_spliceable(flow: _Flow, starting: bool) -> bool:
    """Whether C{flow} can move in the kernel: its source reads, its sink
    writes, both plain TCP, nothing queued or buffered on either."""
    source, sink = flow.source, flow.sink
    return (
        _usable(source)
        and not (source._read_eof or source._ended or source._queue)
        and source._reasons <= ({None} if starting else set())
        and _usable(sink)
        and not sink._write_shut
        and not _buffered(sink._transport)
    )


def _flow_finished(flow: _Flow) -> bool:
    """Whether C{flow} is over: its source's end has been delivered and its
    sink's write side is shut, with nothing left to send."""
    source, sink = flow.source, flow.sink
    transport = sink._transport
    return (
        _usable(source)
        and source._ended
        and not source._queue
        and _usable(sink)
        and sink._write_shut
        and bool(getattr(transport, "_writeDisconnected", False))
        and not _buffered(transport)
    )


def _usable(conn: TcpConnection) -> bool:
    transport = conn._transport
    return (
        conn._direct is not None
        and not (conn._closed or conn._closing)
        and bool(transport.connected)
        and not transport.disconnecting
    )


def _half_close(conn: TcpConnection) -> None:
    """End C{conn}'s write side, or close it if it cannot half-close."""
    if conn.closed:
        return
    if conn.tls:
        conn.close()
        return
    try:
        conn.shutdown()
    except TxtcpError:
        conn.close()


def relay(a: TcpConnection, b: TcpConnection, *, zero_copy: bool = True) -> Relay:
    """
    Forward everything C{a} receives to C{b}, and everything C{b} receives
    to C{a}, from now until both are closed.

    Both connections are resumed (the user's pause is lifted) and set to
    L{TcpConnection.allow_half_open}.  Per direction:
      - bytes go out in the order they came in, including any the source
        had received but not yet delivered;
      - flow control: while the sink cannot take more, the source is not
        read; the relay holds at most one pipe (256 KiB, in the kernel) on
        the zero-copy path, or the sink's write buffer threshold plus one
        read (about 128 KiB) on the normal path;
      - the source's end of stream half-closes the sink once everything
        before it was sent (a TLS sink, which cannot half-close, is closed
        after flushing);
      - the source closing (cleanly or not) closes the sink after flushing.
    Errors are reported on the connection they happened on (C{error}, then
    C{close}), as without a relay.

    The zero-copy path is used on Linux when both are plain TCP
    connections (not TLS, not UNIX sockets), nothing is buffered or queued
    on either, and C{zero_copy} is true.  Bytes on it never reach Python,
    so no C{data} event is emitted for them (on the normal path the relay's
    own C{data} listener forwards them, and other listeners see them too).
    An end of stream moves the pair to the normal path while it is passed
    on; once the other connection's write side is shut, the direction
    still open goes back to the zero-copy path (a request, a half-close,
    then a long reply: the reply moves in the kernel).  An error, or any
    call on either connection that acts on it while on the zero-copy path
    (L{TcpConnection.write}, C{pause}, C{close}, C{abort}, C{shutdown},
    C{start_tls}, C{try_write}), moves the pair to the normal path for good.
    Nothing is lost or reordered either way.

    @param zero_copy: C{False} to always use the normal path.
    @raise TypeError: C{a} or C{b} is not a L{TcpConnection}.
    @raise ValueError: C{a} is C{b}, or either is already relayed.
    @raise ConnectionClosedError: either is closed or closing.
    """
    for name, conn in (("a", a), ("b", b)):
        if not isinstance(conn, TcpConnection):
            raise TypeError(f"{name} must be a TcpConnection, not {conn!r}")
        if conn._closed or conn._closing:
            raise ConnectionClosedError(f"cannot relay {name}: the connection is closed")
        if conn in _relayed:
            raise ValueError(f"{name} is already relayed: {conn!r}")
    if a is b:
        raise ValueError(f"cannot relay a connection to itself: {a!r}")
    if not isinstance(zero_copy, bool):
        raise TypeError(f"zero_copy must be a bool, not {zero_copy!r}")
    pair = Relay(a, b, a._reactor, zero_copy)
    _relayed.add(a)
    _relayed.add(b)
    a.allow_half_open = b.allow_half_open = True
    pair._wire(pair._ab)
    pair._wire(pair._ba)
    if not (pair._may_splice and pair._enter_splice(starting=True)):
        a.pause(False)
        b.pause(False)
    return pair
