# -*- test-case-name: tests.test_streams -*-
"""
Coroutine streams in the shape of C{hat.drivers.tcp}, on Twisted.

L{connect} and L{listen} are C{async def} functions for coroutines that
Twisted runs (C{Deferred.fromCoroutine}, C{ensureDeferred}); inside them
any C{Deferred} can be awaited.  A L{Connection} reads with
L{Connection.read}, L{Connection.readexactly} and L{Connection.readline},
and writes with L{Connection.write} and L{Connection.drain}.  L{Server}
and L{Connection} are resources: each owns a L{Group} of tasks that closing
the resource cancels.

Example::

    async def main() -> None:
        server = await streams.listen(on_connection, streams.Address("127.0.0.1", 0))
        conn = await streams.connect(server.addresses[0])
        conn.write(b"ping")
        await conn.drain()
        print(await conn.readexactly(4))
        await conn.async_close()
        await server.async_close()

This module depends only on L{txtcp.core}.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable
from contextvars import copy_context
from inspect import isawaitable, iscoroutine, isgenerator
from typing import Any, NamedTuple, NoReturn, TypeVar, cast, overload

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtcp.core import (
    ErrorInfo,
    TcpClient,
    TcpConnection,
    TcpServer,
    TlsClient,
    TlsServer,
    TrustRoot,
    check_host,
    check_port,
    check_timeout,
    default_reactor,
    error_info,
)

__all__ = [
    "READ_LIMIT",
    "Address",
    "Connection",
    "ConnectionCb",
    "ConnectionInfo",
    "Group",
    "Server",
    "connect",
    "listen",
]

_T = TypeVar("_T")

#: Bytes a L{Connection} buffers before it stops reading from the socket,
#: when no read is waiting (64 KiB).
READ_LIMIT = 64 * 1024

# The pause reason this layer uses on the core connection, so that its
# backpressure never undoes anybody else's pause.
_BACKPRESSURE: Hashable = ("txtcp.streams", "backpressure")

_log = Logger()


class Address(NamedTuple):
    """A TCP address: a host (name, IPv4 or IPv6 literal) and a port."""

    host: str
    port: int


class ConnectionInfo(NamedTuple):
    """Both ends of a connection, as the operating system reports them."""

    local_addr: Address
    remote_addr: Address


# ---------------------------------------------------------------------------
# Task group


class Group:
    """
    A small task group: the tasks it L{spawn}s are cancelled when it closes.

    A group is open, then closing (L{close} was called: every task still
    running is cancelled, every subgroup is closed), then closed (every task
    has finished and every subgroup is closed).  A coroutine spawned here
    may await C{Deferred}s and other coroutines.

    Usable as C{async with Group() as group:}; leaving the block closes the
    group and waits until it is closed.
    """

    # Every container is made only when first needed: a connection's group
    # usually holds one task, and lives long.
    __slots__ = (
        "_children",
        "_closed_waiters",
        "_closing_waiters",
        "_parent",
        "_resource",
        "_resource_closing",
        "_state",
        "_tasks",
    )

    _log = Logger()

    def __init__(self) -> None:
        self._state = _OPEN
        # None, the one running task, or a list of them.
        self._tasks: _Task | list[_Task] | None = None
        self._children: set[Group] | None = None
        self._parent: Group | None = None
        # The Server or Connection whose life this group is, if any: closing
        # the group closes it, and the group is closed once it is.
        self._resource: _Resource | None = None
        self._resource_closing = False
        self._closing_waiters: list[Deferred[None]] | None = None
        self._closed_waiters: list[Deferred[None]] | None = None

    @property
    def is_open(self) -> bool:
        """Whether the group is open (not closing, not closed)."""
        return self._state == _OPEN

    @property
    def is_closing(self) -> bool:
        """Whether L{close} was called (also true once closed)."""
        return self._state != _OPEN

    @property
    def is_closed(self) -> bool:
        """Whether the group is closed: every task and subgroup is done."""
        return self._state == _CLOSED

    @overload
    def spawn(
        self, fn: Callable[..., Coroutine[Any, Any, _T]], *args: Any, **kwargs: Any
    ) -> Deferred[_T]: ...

    @overload
    def spawn(self, fn: Callable[..., Deferred[_T]], *args: Any, **kwargs: Any) -> Deferred[_T]: ...

    @overload
    def spawn(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Deferred[_T]: ...

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Call C{fn(*args, **kwargs)} and track what it returns until it
        finishes.  A coroutine runs as with C{Deferred.fromCoroutine}: at
        once, in a copy of the current C{contextvars} context.

        @return: a C{Deferred} of C{fn}'s result.  Cancelling it cancels the
            task (the C{Deferred} fails with C{CancelledError} at once; the
            group tracks the task until it has really finished).  When the
            group closes, the task is cancelled the same way, and the group
            consumes that C{CancelledError} after the callbacks already
            added (a coroutine awaiting the task still sees it), so tasks
            cancelled by closing are not logged as unhandled errors.
        @raise TypeError: C{fn} is not callable.
        @raise RuntimeError: the group is closing or closed.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {fn!r}")
        if self._state != _OPEN:
            raise RuntimeError("cannot spawn: the group is closing or closed")
        try:
            result = fn(*args, **kwargs)
        except Exception:
            return fail()
        if isinstance(result, Deferred) and result.called:
            return result
        coro = _as_coroutine(result)
        if coro is None:
            return succeed(result)
        task = _SpawnedTask(coro, self)
        outcome: Deferred[Any] = Deferred(task._cancel_outcome)
        task._outcome = outcome
        self._track(task)
        task._run(None, False)
        return outcome

    def _track(self, task: _Task) -> None:
        """Track C{task} until it calls L{_untrack}; closing the group cancels it."""
        tasks = self._tasks
        if tasks is None:
            self._tasks = task
        elif isinstance(tasks, list):
            tasks.append(task)
        else:
            self._tasks = [tasks, task]

    def _untrack(self, task: _Task) -> None:
        """Forget C{task}, which has finished (L{_check_closed} is up to the caller)."""
        tasks = self._tasks
        if tasks is task:
            self._tasks = None
        elif isinstance(tasks, list) and task in tasks:
            tasks.remove(task)

    def create_subgroup(self) -> Group:
        """
        A new group that closes when this one closes (closing the subgroup
        leaves this one open).  This group is closed only once all its
        subgroups are.

        @raise RuntimeError: the group is closing or closed.
        """
        if self._state != _OPEN:
            raise RuntimeError("cannot create a subgroup: the group is closing or closed")
        child = Group()
        child._parent = self
        if self._children is None:
            self._children = set()
        self._children.add(child)
        return child

    def close(self) -> None:
        """
        Start closing: cancel every running task and close every subgroup.
        Closing a closing or closed group does nothing.
        """
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        if self._closing_waiters:
            waiters, self._closing_waiters = self._closing_waiters, None
            for d in waiters:
                d.callback(None)
        tasks = self._tasks
        if tasks is not None:
            # A task whose coroutine is running (it closed its own group) is
            # left to finish: there is nothing it waits for to cancel.
            for task in list(tasks) if isinstance(tasks, list) else (tasks,):
                task._close()
        if self._children:
            for child in list(self._children):
                child.close()
        # Forgotten once closing: the resource holds this group.
        resource, self._resource = self._resource, None
        if resource is not None:
            try:
                self._resource_closing = resource._close_resource()
            except Exception:
                self._log.failure("Closing {resource!r} raised", resource=resource)
        self._check_closed()

    def _resource_closed(self) -> None:
        """The resource this group was closing is closed."""
        self._resource_closing = False
        self._check_closed()

    def _check_closed(self) -> None:
        if self._state != _CLOSING or self._tasks or self._children or self._resource_closing:
            return
        self._state = _CLOSED
        parent = self._parent
        if parent is not None and parent._children is not None:
            parent._children.discard(self)
        waiters, self._closed_waiters = self._closed_waiters, None
        for d in waiters or ():
            d.callback(None)
        if parent is not None:
            parent._check_closed()

    def wait_closing(self) -> Deferred[None]:
        """A C{Deferred} that fires when the group starts closing."""
        if self._state != _OPEN:
            return succeed(None)
        if self._closing_waiters is None:
            self._closing_waiters = []
        return _waiter(self._closing_waiters)

    def wait_closed(self) -> Deferred[None]:
        """A C{Deferred} that fires when the group is closed."""
        if self._state == _CLOSED:
            return succeed(None)
        if self._closed_waiters is None:
            self._closed_waiters = []
        return _waiter(self._closed_waiters)

    async def async_close(self) -> None:
        """Close the group and wait until it is closed."""
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> Group:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.async_close()

    def __repr__(self) -> str:
        state = ("open", "closing", "closed")[self._state]
        tasks = self._tasks
        count = 0 if tasks is None else len(tasks) if isinstance(tasks, list) else 1
        return f"<Group {state} tasks={count}>"


_OPEN, _CLOSING, _CLOSED = range(3)


def _as_coroutine(result: object) -> Coroutine[Any, Any, Any] | None:
    """C{result} as a coroutine to run: itself, or one awaiting it (a
    C{Deferred} or another awaitable); C{None} when it is a plain value."""
    if iscoroutine(result):
        return result
    if isinstance(result, Deferred) or isawaitable(result):
        return _await(result)
    return None


def _ignore_cancelled(failure: Failure) -> None:
    failure.trap(CancelledError)


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _waiter(waiters: list[Deferred[None]]) -> Deferred[None]:
    """A new C{Deferred} in C{waiters}; cancelling it removes it."""

    def cancel(d: Deferred[None]) -> None:
        if d in waiters:
            waiters.remove(d)

    d: Deferred[None] = Deferred(cancel)
    waiters.append(d)
    return d


# ---------------------------------------------------------------------------
# Tasks: the coroutines this module starts itself


class _Task:
    """
    A coroutine run as C{Deferred.fromCoroutine} runs one: each step in
    the same copy of the C{contextvars} context current at its start; an
    awaited C{Deferred} resumes it with its result (a failure is thrown
    in), a yielded coroutine or generator runs as C{Deferred.fromCoroutine}
    runs it, anything else yielded is sent straight back.  A waiting read
    of a L{Connection} resumes it straight from the data, without a
    C{Deferred}.  Subclasses get its end in L{_finish}.
    """

    __slots__ = ("_context", "_coro", "_fired", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._context = copy_context()
        # What the coroutine waits for: None while it runs (or has ended).
        self._waiting: _Wait | Deferred[Any] | None = None
        # The result of a Deferred that fired while its callback was added.
        self._fired: object = _NOTHING

    def _run(self, value: object, throw: bool) -> None:
        """Send C{value} in (throw it in, when C{throw}: an exception or a
        C{Failure}) and go on until the coroutine waits or ends."""
        coro = self._coro
        run = self._context.run
        while True:
            try:
                if not throw:
                    yielded = run(coro.send, value)
                elif isinstance(value, Failure):
                    yielded = run(value.throwExceptionIntoGenerator, coro)
                else:
                    yielded = run(coro.throw, cast(BaseException, value))
            except StopIteration as e:
                self._finish(e.value)
                return
            except BaseException:
                self._finish(Failure())
                return
            if type(yielded) is _Wait:
                yielded._task = self
                self._waiting = yielded
                return
            if not isinstance(yielded, Deferred):
                if not (iscoroutine(yielded) or isgenerator(yielded)):
                    value, throw = yielded, False
                    continue
                yielded = Deferred.fromCoroutine(cast(Coroutine[Any, Any, Any], yielded))
            yielded.addBoth(self._resume)
            value, self._fired = self._fired, _NOTHING
            if value is _NOTHING:
                self._waiting = yielded
                return
            throw = isinstance(value, Failure)

    def _resume(self, result: object) -> None:
        """The awaited C{Deferred} fired (its result is consumed)."""
        if self._waiting is None:
            # It fired while _run added this callback: _run goes on.
            self._fired = result
            return
        self._waiting = None
        self._run(result, isinstance(result, Failure))

    def _wake(self, result: bytes | BaseException) -> None:
        """The awaited read got its bytes, or the exception it raises."""
        self._waiting = None
        self._run(result, isinstance(result, BaseException))

    def cancel(self) -> None:
        """
        Cancel what the coroutine waits for, as cancelling the C{Deferred}
        of C{Deferred.fromCoroutine} does: a waiting read gives up its place
        and raises C{CancelledError}; an awaited C{Deferred} is cancelled.
        Nothing happens while the coroutine runs.
        """
        waiting = self._waiting
        if isinstance(waiting, _Wait):
            waiting._drop()
            self._waiting = None
            self._run(CancelledError(), True)
        elif waiting is not None:
            waiting.cancel()

    def _close(self) -> None:
        """Its group is closing."""
        self.cancel()

    def _finish(self, result: object) -> None:
        """The coroutine returned C{result}, or raised (a C{Failure})."""
        raise NotImplementedError


_NOTHING: Any = object()


class _SpawnedTask(_Task):
    """A task of L{Group.spawn}: its end fires C{_outcome}."""

    __slots__ = ("_group", "_outcome")

    def __init__(self, coro: Coroutine[Any, Any, Any], group: Group) -> None:
        _Task.__init__(self, coro)
        self._group = group
        # The Deferred spawn() returned; forgotten at the end (its canceller
        # holds this task).
        self._outcome: Deferred[Any] | None = None

    def _cancel_outcome(self, outcome: Deferred[Any]) -> None:
        self.cancel()

    def _close(self) -> None:
        # Consumed after the callbacks already added: a coroutine awaiting
        # the task still sees the CancelledError.
        if self._outcome is not None:
            self._outcome.addErrback(_ignore_cancelled)
        self.cancel()

    def _finish(self, result: object) -> None:
        group = self._group
        group._untrack(self)
        outcome, self._outcome = self._outcome, None
        if outcome is not None and not outcome.called:
            outcome.callback(result)
        elif isinstance(result, Failure) and not result.check(CancelledError):
            group._log.failure(
                "A task of {group!r} failed after it was cancelled", result, group=group
            )
        group._check_closed()


class _Resource:
    """What L{Server} and L{Connection} share: a group that is their life."""

    __slots__ = ()

    _group: Group

    def _close_resource(self) -> bool:
        """
        Start closing the resource itself (its group is closing).

        @return: whether it is still closing; it then calls its group's
            L{Group._resource_closed} once closed.
        """
        raise NotImplementedError

    @property
    def async_group(self) -> Group:
        """The resource's task group; closing the resource closes it."""
        return self._group

    @property
    def is_open(self) -> bool:
        """Whether the resource is open."""
        return self._group.is_open

    @property
    def is_closing(self) -> bool:
        """Whether the resource is closing or closed."""
        return self._group.is_closing

    @property
    def is_closed(self) -> bool:
        """Whether the resource is closed."""
        return self._group.is_closed

    def close(self) -> None:
        """Start closing the resource (and cancel what its group spawned)."""
        self._group.close()

    async def async_close(self) -> None:
        """Close the resource and wait until it is closed."""
        self._group.close()
        await self._group.wait_closed()

    def wait_closing(self) -> Deferred[None]:
        """A C{Deferred} that fires when the resource starts closing."""
        return self._group.wait_closing()

    def wait_closed(self) -> Deferred[None]:
        """A C{Deferred} that fires when the resource is closed."""
        return self._group.wait_closed()


# ---------------------------------------------------------------------------
# Connection

_READ, _EXACT, _LINE = range(3)


class _Wait:
    """
    A waiting read of a L{Connection}: what C{read}, C{readexactly} and
    C{readline} await when nothing can be taken yet.  It gets its bytes, or
    the exception the read raises.

    It is its own iterator for C{await} (no generator per wait): a L{_Task}
    takes it as it is, and L{_fire} resumes the task straight away; any other
    runner (Twisted's sends back what is not a C{Deferred}) gets a
    C{Deferred} to wait on instead.  It has no C{close} method: with one,
    it would pass for a coroutine (C{collections.abc.Coroutine}), and
    Twisted's runner would run it as one.
    """

    __slots__ = ("_conn", "_deferred", "_kind", "_n", "_result", "_task")

    def __init__(self, conn: Connection, kind: int, n: int) -> None:
        self._conn = conn
        self._kind = kind
        self._n = n
        self._task: _Task | None = None
        self._deferred: Deferred[bytes | BaseException] | None = None
        # The result, when the read was served before its await started.
        self._result: bytes | BaseException | None = None

    def __await__(self) -> Generator[Any, Any, bytes]:
        # Not a Generator by type, but it implements what await uses of one.
        return self  # type: ignore[return-value]

    def __next__(self) -> _Wait:
        # The await starts: this object goes to the runner, unless the read
        # was served already (by data that the core delivered at once when
        # the read resumed reading).
        result = self._result
        if result is None:
            return self
        self._result = None
        self._end(result)

    def send(self, value: object) -> Deferred[bytes | BaseException]:
        """The runner resumed the await with C{value}: the read's result, or
        this object sent back by a runner that does not know it."""
        if value is self:
            d = self._deferred = Deferred(self._cancel)
            return d
        self._end(value)

    def _end(self, result: object) -> NoReturn:
        """End the await: it returns C{result} (bytes), or raises it."""
        if isinstance(result, bytes):
            raise StopIteration(result)
        try:
            raise cast(BaseException, result)
        finally:
            # The traceback holds this frame: no cycle through it.
            del result

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> NoReturn:
        """The runner threw an exception in (the read's, or a cancellation):
        the await raises it."""
        try:
            raise typ if val is None else val
        finally:
            del typ, val, tb

    def _fire(self, result: bytes | BaseException) -> None:
        task = self._task
        if task is not None:
            self._task = None
            task._wake(result)
            return
        d = self._deferred
        if d is not None:
            self._deferred = None
            d.callback(result)
        else:
            # Its await has not started yet.
            self._result = result

    def _drop(self) -> None:
        """Give up the read's place; it takes nothing."""
        self._task = None
        self._conn._drop_read(self)

    def _cancel(self, d: Deferred[bytes | BaseException]) -> None:
        self._deferred = None
        self._conn._drop_read(self)


class Connection(_Resource):
    """
    One TCP (or TLS) connection, read and written from coroutines; made by
    L{connect} and L{listen}, not by users.

    Reading: bytes received are buffered.  Reads are served in the order
    they were called; a cancelled read gives up its place and consumes
    nothing.  Once the buffer holds L{READ_LIMIT} bytes and no read is
    waiting, the connection stops reading from the socket (the peer's
    writes are held back by TCP) until a read takes bytes out.

    End of stream: when the peer ends its stream, or the connection is
    closed, buffered bytes stay readable; a read that needs more raises
    C{ConnectionError} (the cause of an abnormal end, such as
    C{ConnectionResetError} or L{TlsError<txtcp.core.TlsError>}, when
    there was one).  The connection closes itself when the peer ends its
    stream; its L{async_group} then closes.
    """

    __slots__ = (
        "_again",
        "_buffer",
        "_closed",
        "_conn",
        "_drainers",
        "_eof",
        "_error",
        "_group",
        "_info",
        "_more_readers",
        "_reader",
        "_reading_paused",
        "_rendezvous_handed",
        "_rendezvous_key",
        "_serving",
        "_watching_pause",
    )

    _log = Logger()

    def __init__(self, conn: TcpConnection, group: Group | None = None) -> None:
        """
        Take over C{conn}, a core L{TcpConnection} (it is unpaused).

        @param group: the connection's task group (a subgroup of a server's
            group, for example); a new L{Group} when C{None}.
        """
        self._conn = conn
        self._group = group if group is not None else Group()
        # Empty, or a bytearray of what was received and not read yet.
        self._buffer: bytes | bytearray = b""
        # The waiting reads, in order: the first, then a list of the others
        # (rarely any: the list is made once a second read waits).
        self._reader: _Wait | None = None
        self._more_readers: list[_Wait] | None = None
        self._eof = False
        self._closed = False
        self._error: BaseException | None = None
        self._serving = False
        self._again = False
        self._reading_paused = False
        self._watching_pause = False
        # Made only when something waits for them.
        self._drainers: list[Deferred[None]] | None = None
        self._info: ConnectionInfo | None = None
        # Set by a Server while an in-process connect() may wait for it.
        self._rendezvous_key: _Key | None = None
        self._rendezvous_handed = False
        conn.on("data", self._on_data)
        on_state = self._on_state
        conn.on("end", on_state)
        conn.on("error", on_state)
        conn.on("close", on_state)
        self._group._resource = self
        if conn.closed:
            self._on_close()
        else:
            conn.pause(False)

    @property
    def info(self) -> ConnectionInfo:
        """Local and remote addresses (read from the socket the first time
        this is asked; the same afterwards, also once closed)."""
        info = self._info
        if info is None:
            conn = self._conn
            info = self._info = ConnectionInfo(
                Address(*conn.local_address), Address(*conn.remote_address)
            )
        return info

    @property
    def connection(self) -> TcpConnection:
        """The core L{TcpConnection} underneath (for socket options and the
        like; reading from it directly would bypass this object's buffer)."""
        return self._conn

    # -- writing -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """
        Send C{data}; it is buffered and sent as the socket takes it.

        @raise TypeError: C{data} is not bytes-like.
        @raise ConnectionError: the connection is closing or closed.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data must be bytes, bytearray or memoryview, not {type(data).__name__}"
            )
        if self._group._state != _OPEN or self._closed or self._conn.closed:
            raise ConnectionError("cannot write: the connection is closing or closed")
        self._conn.write(data)

    async def drain(self) -> None:
        """
        Wait while the write buffer is full (the core's C{pause} event said
        so); return at once otherwise.  Never raises: it returns when the
        buffer drains or the connection closes.
        """
        conn = self._conn
        if not conn.write_paused or conn.closed:
            return
        if not self._watching_pause:
            # The pause event is listened to only once a drain has to wait.
            self._watching_pause = True
            conn.on("pause", self._on_pause)
        if self._drainers is None:
            self._drainers = []
        await _waiter(self._drainers)

    def _on_pause(self, paused: bool) -> None:
        if not paused:
            self._release_drainers()

    def _release_drainers(self) -> None:
        drainers, self._drainers = self._drainers, None
        for d in drainers or ():
            d.callback(None)

    # -- reading -----------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """
        Return what is buffered, at least one byte and at most C{n} (all of
        it when C{n} < 0); wait only when the buffer is empty.

        @raise ConnectionError: end of stream with nothing buffered.
        """
        n = _check_n(n, "n", allow_negative=True)
        if n == 0:
            return b""
        got = self._request(_READ, n)
        return got if isinstance(got, bytes) else await got

    async def readexactly(self, n: int) -> bytes:
        """
        Return exactly C{n} bytes, waiting for them.

        @raise ConnectionError: the stream ended first; what was buffered
            stays readable.
        @raise ValueError: C{n} is negative.
        """
        n = _check_n(n, "n", allow_negative=False)
        if n == 0:
            return b""
        got = self._request(_EXACT, n)
        return got if isinstance(got, bytes) else await got

    async def readline(self) -> bytes:
        """
        Return the next line, up to and including C{b"\\n"}; at end of stream
        the last bytes without a newline.  While a C{readline} waits, the
        buffer may grow past L{READ_LIMIT}.

        @raise ConnectionError: end of stream with nothing buffered.
        """
        got = self._request(_LINE, 0)
        return got if isinstance(got, bytes) else await got

    def _request(self, kind: int, n: int) -> bytes | _Wait:
        """The bytes at once when they are buffered (and no read waits), or
        a L{_Wait} for them; raises at once at end of stream."""
        first = self._reader
        if first is None:
            taken = self._take(kind, n)
            if taken is not None:
                if self._reading_paused:
                    self._update_pause()
                if isinstance(taken, bytes):
                    return taken
                try:
                    raise taken
                finally:
                    # The traceback holds this frame: no cycle through it.
                    del taken
        wait = _Wait(self, kind, n)
        if first is None:
            self._reader = wait
        elif self._more_readers is None:
            self._more_readers = [wait]
        else:
            self._more_readers.append(wait)
        if self._reading_paused:
            self._update_pause()
        return wait

    def _drop_read(self, wait: _Wait) -> None:
        """Remove C{wait} from the waiting reads, if it is there."""
        if wait is self._reader:
            self._next_reader()
            self._serve()
        elif self._more_readers and wait in self._more_readers:
            self._more_readers.remove(wait)

    def _next_reader(self) -> None:
        """The first waiting read is served or gone: the next one is first."""
        more = self._more_readers
        self._reader = more.pop(0) if more else None

    def _take(self, kind: int, n: int) -> bytes | BaseException | None:
        """Bytes for one read, an exception to raise, or C{None} to wait."""
        buf = self._buffer
        if kind == _READ:
            if buf:
                return self._pop(n if 0 <= n < len(buf) else len(buf))
        elif kind == _EXACT:
            if len(buf) >= n:
                return self._pop(n)
            if self._eof:
                return self._eof_error(
                    f"the stream ended after {len(buf)} of {n} bytes; they stay readable"
                )
            return None
        else:
            end = buf.find(b"\n")
            if end >= 0:
                return self._pop(end + 1)
            if self._eof and buf:
                return self._pop(len(buf))
        if self._eof:
            return self._eof_error("end of stream")
        return None

    def _pop(self, size: int) -> bytes:
        buf = self._buffer
        if size == len(buf):
            self._buffer = b""
            return bytes(buf)
        data = bytes(buf[:size])
        # Not empty, so a bytearray.
        del cast(bytearray, buf)[:size]
        return data

    def _eof_error(self, message: str) -> BaseException:
        if self._error is not None:
            exc = error_info(self._error).to_exception()
            if isinstance(exc, ConnectionError):
                return exc
        return ConnectionError(message)

    def _serve(self) -> None:
        """Serve waiting reads in order, as far as the buffer allows."""
        if self._serving:
            self._again = True
            return
        self._serving = True
        try:
            while True:
                self._again = False
                while (wait := self._reader) is not None:
                    taken = self._take(wait._kind, wait._n)
                    if taken is None:
                        break
                    self._next_reader()
                    # An exception is the read's result too: the read raises
                    # it, with no Failure made on the way.
                    wait._fire(taken)
                self._update_pause()
                if not self._again:
                    break
        finally:
            self._serving = False

    def _update_pause(self) -> None:
        want = len(self._buffer) >= READ_LIMIT and self._reader is None and not self._eof
        if want != self._reading_paused and not self._conn.closed:
            self._reading_paused = want
            self._conn.pause(want, reason=_BACKPRESSURE)

    def _on_data(self, data: bytes) -> None:
        wait = self._reader
        if wait is not None and not self._buffer and not self._serving:
            # Fast path: the first waiting read takes all of C{data} as is,
            # without a trip through the buffer.
            kind = wait._kind
            n = wait._n
            if (kind == _READ and (n < 0 or n >= len(data))) or (kind == _EXACT and n == len(data)):
                self._next_reader()
                wait._fire(data)
                return
        buf = self._buffer
        if buf:
            buf += data
        else:
            buf = self._buffer = bytearray(data)
        if wait is not None or len(buf) >= READ_LIMIT:
            self._serve()

    def _on_state(self, exc: BaseException | None = None) -> None:
        """
        The core connection's C{end}, C{error} and C{close} events: one
        listener for the three.  C{error} brings its exception; C{close}
        comes once the core connection is closed, and so does an C{end}
        emitted as it closes: that one is taken for the close itself.
        """
        if exc is not None:
            self._error = exc
        elif not self._conn.closed:
            self._eof = True
            self._serve()
        elif not self._closed:
            self._on_close()

    def _on_close(self) -> None:
        self._eof = True
        self._closed = True
        self._serve()
        self._release_drainers()
        group = self._group
        if group._state == _OPEN:
            group.close()
        else:
            group._resource_closed()

    def _close_resource(self) -> bool:
        key, self._rendezvous_key = self._rendezvous_key, None
        if key is not None:
            # A Server of this process will never hand this connection out
            # now: an in-process connect() waiting for it goes on.
            if not self._rendezvous_handed:
                self._rendezvous_handed = True
                _rendezvous.handed_over(key)
            _rendezvous.forget(key)
        if not self._closed:
            self._conn.close()
        return not self._closed

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.async_close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed" if self.is_closed else "closing"
        info = self.info
        return f"<streams.Connection {state} {info.local_addr} -> {info.remote_addr}>"


def _check_n(n: object, name: str, *, allow_negative: bool) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, not {n!r}")
    if n < 0 and not allow_negative:
        raise ValueError(f"{name} must be >= 0, not {n!r}")
    return n


# ---------------------------------------------------------------------------
# Server

#: What L{listen} calls with each new L{Connection}: a plain function, or a
#: coroutine function (its coroutine runs in the connection's group).
ConnectionCb = Callable[[Connection], object]


class Server(_Resource):
    """
    A listening socket that hands each accepted connection to a callback;
    made by L{listen}, not by users.

    Closing the server stops accepting.  With C{bind_connections}, every
    connection it accepted is closed too (their groups are subgroups of
    the server's); without, they stay open.
    """

    _log = Logger()

    def __init__(
        self, core: TcpServer, connection_cb: ConnectionCb, bind_connections: bool
    ) -> None:
        self._core = core
        self._cb = connection_cb
        self._bind = bind_connections
        self._group = Group()
        self._addresses: list[Address] = []
        self._stopped = False
        self._handshake = isinstance(core, TlsServer)
        core.on("connect", self._on_connect)
        core.on("stop", self._on_stop)
        core.on("error", lambda exc: self._on_stop())
        self._group._resource = self

    @property
    def addresses(self) -> list[Address]:
        """The bound addresses (port 0 resolved to the real port)."""
        return list(self._addresses)

    def _started(self) -> None:
        address = self._core.address
        if address is not None:
            self._addresses = [Address(*address)]
        _rendezvous.add_server(self)

    def _on_connect(self, conn: TcpConnection) -> None:
        if self._group._state != _OPEN:
            conn.abort()
            return
        group = self._group.create_subgroup() if self._bind else Group()
        stream = Connection(conn, group)
        if _rendezvous.connecting:
            # An in-process connect() is under way: it may be the peer, and
            # then waits until this connection is handed over.
            info = stream.info
            stream._rendezvous_key = _key(info.remote_addr, info.local_addr)
        if self._handshake:
            conn.once("tls", lambda: self._hand_over(stream) if stream.is_open else None)
        else:
            self._hand_over(stream)

    def _hand_over(self, stream: Connection) -> None:
        key = stream._rendezvous_key
        if key is None:
            self._call(stream)
        elif not stream._rendezvous_handed:
            stream._rendezvous_handed = True
            self._call(stream)
            _rendezvous.handed_over(key)
            if stream._rendezvous_key is None:
                # Closed meanwhile: the key was already forgotten.
                _rendezvous.forget(key)
        else:
            self._call(stream)

    def _call(self, stream: Connection) -> None:
        if self._group._state != _OPEN or stream._group._state != _OPEN:
            stream.close()
            return
        try:
            result = self._cb(stream)
        except Exception:
            self._failed(Failure(), stream)
            return
        coro = _as_coroutine(result)
        if coro is not None:
            # The task runs in the connection's group: closing it cancels
            # the task.
            task = _CallbackTask(coro, self, stream)
            stream._group._track(task)
            task._run(None, False)

    def _failed(self, failure: Failure, stream: Connection) -> None:
        if failure.check(CancelledError):
            return
        self._log.failure(
            "connection_cb {cb!r} raised; closing {connection!r}",
            failure,
            cb=self._cb,
            connection=stream,
        )
        stream.close()

    def _on_stop(self) -> None:
        _rendezvous.remove_server(self)
        if not self._stopped:
            self._stopped = True
            self._group._resource_closed()

    def _close_resource(self) -> bool:
        _rendezvous.remove_server(self)
        # Also while the core is still starting: it then stops as soon as it
        # listens, and emits stop (or error, if listening failed).
        self._core.close()
        return not self._stopped

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.async_close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed" if self.is_closed else "closing"
        return f"<streams.Server {state} {self._addresses}>"


class _CallbackTask(_Task):
    """The task of a coroutine C{connection_cb}, in its connection's group."""

    __slots__ = ("_server", "_stream")

    def __init__(self, coro: Coroutine[Any, Any, Any], server: Server, stream: Connection) -> None:
        _Task.__init__(self, coro)
        self._server = server
        self._stream = stream

    def _finish(self, result: object) -> None:
        stream = self._stream
        if isinstance(result, Failure):
            self._server._failed(result, stream)
        group = stream._group
        group._untrack(self)
        group._check_closed()


# ---------------------------------------------------------------------------
# connect and listen


async def connect(
    addr: Address | tuple[str, int],
    *,
    tls: bool = False,
    trust_root: TrustRoot = None,
    hostname: str | None = None,
    timeout: float | None = None,
    loop: Any = None,
) -> Connection:
    """
    Connect to C{addr} (a host name, IPv4 or IPv6 literal, and a port).

    With C{tls=True} the server's certificate and host name (C{hostname},
    by default C{addr.host}) are verified against C{trust_root} (a PEM file
    of CA certificates, a Twisted C{Certificate} or trust root, or C{None}
    for the platform's trust store), and this returns once the handshake
    is done.  C{timeout} bounds the whole attempt, handshake included.

    When the server is a L{Server} of this process, this returns only after
    that server has handed the connection to its C{connection_cb}.

    @raise TypeError: an argument has the wrong type (at the call).
    @raise ValueError: an argument has a wrong value (at the call).
    @raise ConnectionRefusedError: nothing listens there.
    @raise TimeoutError: C{timeout} expired.
    @raise txtcp.core.HostNotFoundError: the name did not resolve (a
        C{ConnectionError}).
    @raise txtcp.core.TlsError: the handshake or the verification failed
        (a C{ConnectionError}).
    @raise ConnectionError: any other failure to connect.
    """
    host, port = _check_addr(addr)
    limit = check_timeout(timeout)
    if not isinstance(tls, bool):
        raise TypeError(f"tls must be a bool, not {tls!r}")
    if hostname is not None:
        hostname = check_host(hostname, "hostname")
    if not tls and (hostname is not None or trust_root is not None):
        raise ValueError("hostname and trust_root are only used with tls=True")
    reactor = default_reactor(loop)
    client: TcpClient = TlsClient(reactor, trust_root=trust_root) if tls else TcpClient(reactor)
    started = reactor.seconds()
    connected: Deferred[TcpConnection] = Deferred()

    def on_connect(conn: TcpConnection) -> None:
        if connected.called:
            conn.abort()
        else:
            connected.callback(conn)

    def on_failure(info: ErrorInfo) -> None:
        if not connected.called:
            connected.errback(info.to_exception())

    # This client makes one attempt: its listeners need no removing.
    client.on("connect", on_connect)
    client.on("connect_failure", on_failure)
    _rendezvous.connecting += 1
    try:
        if hostname is not None and hostname != host:
            client.connect_endpoint(_tcp_description(host, port), limit, hostname=hostname)
        else:
            client.connect(host, port, limit)
        conn = await connected
        if tls:
            remaining = None if limit is None else max(0.0, limit - (reactor.seconds() - started))
            await _handshake(conn, reactor, remaining)
        stream = Connection(conn)
        waiting = _rendezvous.wait(stream, reactor)
        if waiting is not None:
            try:
                await waiting
            except BaseException:
                stream.close()
                raise
    finally:
        _rendezvous.connecting -= 1
    return stream


async def _handshake(conn: TcpConnection, reactor: Any, limit: float | None) -> None:
    """Wait for C{conn}'s TLS handshake; raise (and abort) if it fails."""
    errors: list[BaseException] = []
    done: Deferred[None] = Deferred(lambda d: conn.abort())

    def on_tls() -> None:
        if not done.called:
            done.callback(None)

    def on_close() -> None:
        if not done.called:
            if errors:
                done.errback(error_info(errors[0]).to_exception())
            else:
                done.errback(ConnectionError("the connection closed during the TLS handshake"))

    def expire() -> None:
        if not done.called:
            done.errback(TimeoutError(f"no TLS handshake within {limit} seconds"))
            conn.abort()

    on_error = errors.append
    conn.on("tls", on_tls)
    conn.on("error", on_error)
    conn.on("close", on_close)
    timer = reactor.callLater(limit, expire) if limit is not None else None
    if conn.closed:
        on_close()
    try:
        await done
    finally:
        if timer is not None and timer.active():
            timer.cancel()
        conn.remove_listener("tls", on_tls)
        conn.remove_listener("error", on_error)
        conn.remove_listener("close", on_close)


async def listen(
    connection_cb: ConnectionCb,
    addr: Address | tuple[str, int],
    *,
    bind_connections: bool = False,
    certificate: Any = None,
    private_key: Any = None,
    loop: Any = None,
) -> Server:
    """
    Listen on C{addr} (port 0 picks a free port; see L{Server.addresses})
    and call C{connection_cb} with each accepted L{Connection}.

    C{connection_cb} may be a plain function or a coroutine function; if
    it raises, that connection is closed and the error is logged.  A
    coroutine runs in the connection's L{Connection.async_group}, so
    closing the connection cancels it.  With C{certificate} (a PEM file
    path, the key in it or in C{private_key}; or a Twisted
    C{PrivateCertificate}) connections use TLS, and the callback is called
    once the handshake is done.

    @raise TypeError: an argument has the wrong type (at the call).
    @raise ValueError: an argument has a wrong value, or the certificate
        cannot be loaded (at the call).
    @raise OSError: listening failed (address in use, name not found, ...),
        with C{errno} set.
    """
    if not callable(connection_cb):
        raise TypeError(f"connection_cb must be callable, not {connection_cb!r}")
    host, port = _check_addr(addr)
    if not isinstance(bind_connections, bool):
        raise TypeError(f"bind_connections must be a bool, not {bind_connections!r}")
    if certificate is None and private_key is not None:
        raise ValueError("private_key is only used with certificate")
    reactor = default_reactor(loop)
    core: TcpServer
    if certificate is None:
        core = TcpServer(host, port, reactor)
    else:
        core = TlsServer(host, port, reactor, certificate=certificate, private_key=private_key)
    server = Server(core, connection_cb, bind_connections)
    started: Deferred[None] = Deferred(lambda d: server.close())

    def on_start() -> None:
        if not started.called:
            started.callback(None)

    def on_error(exc: BaseException) -> None:
        if not started.called:
            started.errback(error_info(exc).to_exception())

    core.once("start", on_start)
    core.once("error", on_error)
    try:
        await started
    except BaseException:
        server.close()
        raise
    server._started()
    return server


def _check_addr(addr: object) -> tuple[str, int]:
    if not isinstance(addr, tuple) or len(addr) != 2:
        raise TypeError(f"addr must be an Address(host, port), not {addr!r}")
    return check_host(addr[0], "addr.host"), check_port(addr[1], "addr.port")


def _tcp_description(host: str, port: int) -> str:
    escaped = host.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")
    return f"tcp:host={escaped}:port={port}"


# ---------------------------------------------------------------------------
# In-process rendezvous: connect() to a Server of this process returns once
# that server has handed the connection to its callback.

_Key = tuple[Address, Address]

# How long connect() waits for an in-process server before giving up on the
# rendezvous (it only matters if the two ends cannot be matched).
_RENDEZVOUS_LIMIT = 10.0


def _norm(addr: Address) -> Address:
    host = addr.host.lower()
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return Address(host, addr.port)


def _key(client_side: Address, server_side: Address) -> _Key:
    return (_norm(client_side), _norm(server_side))


class _Rendezvous:
    _log = Logger()

    def __init__(self) -> None:
        # connect() calls under way: a Server keys its connections for the
        # rendezvous only while there are some.
        self.connecting = 0
        self._servers: list[Server] = []
        self._handed: set[_Key] = set()
        self._waiting: dict[_Key, Deferred[None]] = {}

    def add_server(self, server: Server) -> None:
        if server not in self._servers:
            self._servers.append(server)

    def remove_server(self, server: Server) -> None:
        if server in self._servers:
            self._servers.remove(server)

    def _in_process(self, remote: Address) -> bool:
        remote = _norm(remote)
        for server in self._servers:
            for address in server.addresses:
                bound = _norm(address)
                if bound.port == remote.port and bound.host in (remote.host, "0.0.0.0", "::", ""):
                    return True
        return False

    def handed_over(self, key: _Key) -> None:
        waiter = self._waiting.pop(key, None)
        if waiter is not None:
            waiter.callback(None)
        else:
            self._handed.add(key)

    def forget(self, key: _Key) -> None:
        self._handed.discard(key)

    def wait(self, stream: Connection, reactor: Any) -> Coroutine[Any, Any, None] | None:
        """A coroutine to await, or C{None} when C{stream}'s peer is not a
        L{Server} of this process still to hand it over."""
        if not self._servers and not self._handed:
            return None
        info = stream.info
        key = _key(info.local_addr, info.remote_addr)
        if key in self._handed:
            self._handed.discard(key)
            return None
        if not self._in_process(info.remote_addr):
            return None
        return self._wait(stream, key, reactor)

    async def _wait(self, stream: Connection, key: _Key, reactor: Any) -> None:

        def cancel(d: Deferred[None]) -> None:
            self._waiting.pop(key, None)

        waiter: Deferred[None] = Deferred(cancel)
        self._waiting[key] = waiter

        def release(_: object = None) -> None:
            if self._waiting.get(key) is waiter:
                del self._waiting[key]
                waiter.callback(None)

        def give_up() -> None:
            self._log.warn("connect(): the in-process server never took {key!r}; going on", key=key)
            release()

        closing = stream.wait_closing().addCallback(release)
        timer = reactor.callLater(_RENDEZVOUS_LIMIT, give_up)
        try:
            await waiter
        finally:
            if timer.active():
                timer.cancel()
            closing.cancel()


_rendezvous = _Rendezvous()
