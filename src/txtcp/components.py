# -*- test-case-name: tests.test_components -*-
"""
Kamaelia's component style over txtcp's core: components with named inboxes
and outboxes, linked into L{Pipeline}s and L{Graphline}s, and a L{TCPClient}
whose C{makessl} upgrades a live connection to verified TLS.

The scheduler is the Twisted reactor.  There are no threads (except the one
L{ConsoleReader} uses to read a terminal) and no busy loop: a component's
C{async def main(self)} is run as a coroutine when it is activated, and
L{Component.recv} is a C{Deferred} of the next message.

Messages on C{signal} say how a component ended: L{producerFinished} for a
normal end, L{shutdownMicroprocess} for anything else; a failure is first
described by a L{socketError} (whose C{kind} is an L{ErrorKind}) or an
L{errorInformation}.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from txtcp.core import (
    ConnectionClosedError,
    ErrorInfo,
    ErrorKind,
    TcpClient,
    TcpConnection,
    TcpServer,
    TrustRoot,
    TxtcpError,
    as_bytes,
    check_host,
    check_port,
    check_timeout,
    default_reactor,
    error_info,
    load_trust_root,
)

__all__ = [
    "Component",
    "ConnectedSocketAdapter",
    "ConsoleEchoer",
    "ConsoleReader",
    "Graphline",
    "NoSpaceInBoxError",
    "OneShot",
    "Pipeline",
    "RateControlledFileReader",
    "ServerCore",
    "SimpleServer",
    "TCPClient",
    "TCPServer",
    "errorInformation",
    "newCSA",
    "producerFinished",
    "run",
    "shutdownMicroprocess",
    "socketError",
]

_C = TypeVar("_C", bound="Component")
BoxRef = tuple["Component", str]

# -- messages -------------------------------------------------------------


class _Notice:
    """A control message with its sender and an optional detail.

    @ivar caller: the component that sent it, or C{None}.
    @ivar message: an optional detail.
    """

    __slots__ = ("caller", "message")

    def __init__(self, caller: object = None, message: object = None) -> None:
        self.caller = caller
        self.message = message

    def __repr__(self) -> str:
        return f"<{type(self).__name__} from {type(self.caller).__name__}>"


class producerFinished(_Notice):  # noqa: N801 - Kamaelia's name
    """
    Sent on C{signal} when a component has finished normally (its input
    ended, or its connection was closed cleanly); sent to C{control} to ask
    a component to finish once it has handled what it was given.
    """

    __slots__ = ()


class shutdownMicroprocess(_Notice):  # noqa: N801 - Kamaelia's name
    """
    Sent to C{control} to stop a component at once (a L{TCPClient} drops
    what it has not sent); sent on C{signal} when a component ended for any
    reason but a normal end.
    """

    __slots__ = ()


class errorInformation:  # noqa: N801 - Kamaelia's name
    """
    An error a component reports on C{signal}.  On its own (a message
    rejected, a C{makessl} refused) the component goes on; when a component
    ends because of an error, the L{errorInformation} is followed by a
    L{shutdownMicroprocess}.

    @ivar caller: the component that sent it.
    @ivar exception: the exception that describes the error.
    @ivar message: a human-readable description.
    """

    __slots__ = ("caller", "exception", "message")

    def __init__(self, caller: object, exception: BaseException, message: str = "") -> None:
        self.caller = caller
        self.exception = exception
        self.message = message or str(exception) or type(exception).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.message!r}>"


class socketError(errorInformation):  # noqa: N801 - Kamaelia's style of name
    """
    A network failure: the connection was refused, timed out, the host name
    did not resolve, the connection was reset, or TLS failed (handshake or
    certificate verification).  Always followed by L{shutdownMicroprocess}
    on the same outbox.

    @ivar info: the failure in every layer's terms (L{ErrorInfo}).
    """

    __slots__ = ("info",)

    def __init__(self, caller: object, info: ErrorInfo) -> None:
        errorInformation.__init__(self, caller, info.exception, info.message)
        self.info = info

    @property
    def kind(self) -> ErrorKind:
        """What went wrong: L{ErrorKind.REFUSED}, L{ErrorKind.TIMEOUT},
        L{ErrorKind.HOST_NOT_FOUND}, L{ErrorKind.RESET}, L{ErrorKind.TLS}, ..."""
        return self.info.kind

    def __repr__(self) -> str:
        return f"<socketError {self.kind.name}: {self.message!r}>"


class newCSA:  # noqa: N801 - Kamaelia's name
    """
    Sent by L{TCPServer} on C{protocolHandlerSignal} for each accepted
    connection.

    @ivar caller: the L{TCPServer}.
    @ivar object: the L{ConnectedSocketAdapter} of the connection, not yet
        activated: link it, then activate it.
    """

    __slots__ = ("caller", "object")

    def __init__(self, caller: object, csa: ConnectedSocketAdapter) -> None:
        self.caller = caller
        self.object = csa


class NoSpaceInBoxError(TxtcpError):
    """
    L{Component.send} found the destination inbox full (it has a size limit,
    see L{Component.set_inbox_size}).  Wait with L{Component.wait_room}.

    @ivar box: the C{(component, inbox name)} that is full.
    """

    def __init__(self, component: Component, inbox: str, size: int) -> None:
        TxtcpError.__init__(
            self,
            f"inbox {inbox!r} of {type(component).__name__} is full ({size} messages); "
            "wait for room with wait_room() before sending",
        )
        self.box: BoxRef = (component, inbox)


def _ends(message: object) -> bool:
    return isinstance(message, (producerFinished, shutdownMicroprocess))


# -- boxes ------------------------------------------------------------------


class _Inbox:
    __slots__ = ("forward", "name", "owner", "queue", "readers", "room", "size")

    def __init__(self, owner: Component, name: str) -> None:
        self.owner = owner
        self.name = name
        self.queue: deque[object] = deque()
        self.readers: deque[Deferred[Any]] = deque()
        self.room: list[Deferred[None]] = []
        self.size: int | None = None
        self.forward: _Inbox | None = None

    def final(self) -> _Inbox:
        box = self
        while box.forward is not None:
            box = box.forward
        return box

    def full(self) -> bool:
        return self.size is not None and not self.readers and len(self.queue) >= self.size

    def put(self, message: object) -> None:
        if self.readers:
            self.readers.popleft().callback(message)
        else:
            self.queue.append(message)
        self.owner._delivered(self.name)

    def take(self) -> object:
        message = self.queue.popleft()
        if self.room and not self.full():
            waiters, self.room = self.room, []
            for d in waiters:
                d.callback(None)
        return message


class _Outbox:
    __slots__ = ("held", "name", "owner", "target")

    def __init__(self, owner: Component, name: str) -> None:
        self.owner = owner
        self.name = name
        self.target: _Inbox | _Outbox | None = None
        self.held: deque[object] = deque()

    def end(self) -> _Inbox | _Outbox:
        box: _Inbox | _Outbox = self
        while isinstance(box, _Outbox) and box.target is not None:
            box = box.target
        return box.final() if isinstance(box, _Inbox) else box


def _deliver(box: _Inbox | _Outbox, message: object) -> None:
    if isinstance(box, _Inbox):
        box.put(message)
    else:
        box.held.append(message)


# -- components and the scheduler ---------------------------------------------

_NEW, _ACTIVE, _FINISHED = range(3)
_active: set[Component] = set()
_runners: list[Any] = []


_V = TypeVar("_V")


def _waiter(waiters: list[Deferred[_V]] | deque[Deferred[_V]]) -> Deferred[_V]:
    """A new C{Deferred} at the end of C{waiters}; cancelling it removes it."""

    def cancel(d: Deferred[_V]) -> None:
        if d in waiters:
            waiters.remove(d)

    d: Deferred[_V] = Deferred(cancel)
    waiters.append(d)
    return d


def run(loop: Any = None) -> None:
    """
    Run the reactor until every activated component has finished, then stop
    it: Kamaelia's C{scheduler.run.runThreads()}.  Returns at once if no
    component is active.  Twisted's reactor runs once per process.
    """
    reactor = default_reactor(loop)
    if not _active:
        return
    _runners.append(reactor)
    try:
        reactor.run()
    finally:
        if reactor in _runners:
            _runners.remove(reactor)


def _all_finished() -> None:
    # Stop each reactor that run() is running, once.
    while _runners:
        reactor = _runners.pop()

        def stop(reactor: Any = reactor) -> None:
            if reactor.running:
                reactor.stop()

        reactor.callWhenRunning(stop)


class Component:
    """
    A component with named inboxes and outboxes (listed, with a description
    of each, in the class attributes C{Inboxes} and C{Outboxes}).

    Messages sent on an outbox go to the inbox it is linked to
    (L{link}), synchronously; messages on an outbox that is not linked are
    kept until it is.  An inbox keeps what it receives until it is read with
    L{recv}.  An inbox has no size limit unless L{set_inbox_size} gives one:
    then L{send} to it raises L{NoSpaceInBoxError} while it is full, and
    L{wait_room} says when it has room again.

    Subclasses define C{async def main(self)}, run (as a coroutine) by
    L{activate}; the component has finished when it returns.  A component
    without C{main} finishes when it says so.  An exception raised by
    C{main} is logged, and the component has finished.
    """

    Inboxes: ClassVar[Mapping[str, str]] = {
        "inbox": "data",
        "control": "producerFinished or shutdownMicroprocess",
    }
    Outboxes: ClassVar[Mapping[str, str]] = {
        "outbox": "data",
        "signal": "producerFinished, shutdownMicroprocess, errors",
    }
    _log = Logger()

    def __init__(self, *, loop: Any = None) -> None:
        self._reactor = default_reactor(loop)
        self.inboxes: dict[str, _Inbox] = {n: _Inbox(self, n) for n in self.Inboxes}
        self.outboxes: dict[str, _Outbox] = {n: _Outbox(self, n) for n in self.Outboxes}
        self._children: list[Component] = []
        self._sleepers: list[Deferred[None]] = []
        self._finish_waiters: list[Deferred[None]] = []
        self._state = _NEW

    @property
    def loop(self) -> Any:
        """The reactor this component runs on."""
        return self._reactor

    # -- boxes

    def _inbox(self, name: str) -> _Inbox:
        box = self.inboxes.get(name) if isinstance(name, str) else None
        if box is None:
            raise ValueError(
                f"{type(self).__name__} has no inbox {name!r}; its inboxes are "
                f"{sorted(self.inboxes)}"
            )
        return box

    def _outbox(self, name: str) -> _Outbox:
        box = self.outboxes.get(name) if isinstance(name, str) else None
        if box is None:
            raise ValueError(
                f"{type(self).__name__} has no outbox {name!r}; its outboxes are "
                f"{sorted(self.outboxes)}"
            )
        return box

    def send(self, message: object, outbox: str = "outbox") -> None:
        """
        Send C{message} on C{outbox}: it is in the linked inbox when this
        returns (kept in the outbox if it is not linked).

        @raise NoSpaceInBoxError: the destination inbox is full.
        @raise ValueError: there is no such outbox.
        """
        end = self._outbox(outbox).end()
        if isinstance(end, _Inbox) and end.full():
            assert end.size is not None
            raise NoSpaceInBoxError(end.owner, end.name, end.size)
        _deliver(end, message)

    def _post(self, message: object, outbox: str) -> None:
        # Send whatever the destination's size limit: for signals, and for a
        # producer that holds back as soon as the destination is full.
        _deliver(self._outbox(outbox).end(), message)

    def has_room(self, outbox: str = "outbox") -> bool:
        """Whether L{send} on C{outbox} would succeed now."""
        end = self._outbox(outbox).end()
        return not (isinstance(end, _Inbox) and end.full())

    def wait_room(self, outbox: str = "outbox") -> Deferred[None]:
        """A C{Deferred} that fires when L{send} on C{outbox} can succeed."""
        end = self._outbox(outbox).end()
        if not (isinstance(end, _Inbox) and end.full()):
            return succeed(None)
        return _waiter(end.room)

    def data_ready(self, inbox: str = "inbox") -> bool:
        """Whether C{inbox} holds a message that L{recv} returns at once."""
        return bool(self._inbox(inbox).queue)

    def queued(self, inbox: str = "inbox") -> int:
        """How many messages wait in C{inbox}."""
        return len(self._inbox(inbox).queue)

    def recv(self, inbox: str = "inbox") -> Deferred[Any]:
        """
        A C{Deferred} of the next message on C{inbox}: already fired if one
        is waiting.  Several pending calls get messages in the order they
        were made; cancelling one gives up its place.
        """
        box = self._inbox(inbox)
        if box.queue:
            return succeed(box.take())
        return _waiter(box.readers)

    def _take(self, inbox: str) -> object:
        return self._inbox(inbox).take()

    def pause(self) -> Deferred[None]:
        """
        A C{Deferred} that fires when the next message arrives on any inbox
        (Kamaelia's C{self.pause(); yield 1}).  Check L{data_ready} first:
        messages already waiting do not fire it.
        """
        d: Deferred[None] = Deferred(
            lambda d: self._sleepers.remove(d) if d in self._sleepers else None
        )
        self._sleepers.append(d)
        return d

    def set_inbox_size(self, inbox: str, size: int | None) -> None:
        """
        Limit C{inbox} to C{size} waiting messages (C{None}: no limit).

        A L{TCPClient} whose outbox is linked to a full inbox stops reading
        from its connection until there is room; a L{RateControlledFileReader}
        or L{OneShot} waits; a component that calls L{send} gets
        L{NoSpaceInBoxError}.

        @raise ValueError: C{size} is not a positive int or C{None}.
        """
        box = self._inbox(inbox)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive int or None, not {size!r}")
        box.size = size

    def _delivered(self, inbox: str) -> None:
        if self._sleepers:
            sleepers, self._sleepers = self._sleepers, []
            for d in sleepers:
                d.callback(None)

    def link(self, source: BoxRef, sink: BoxRef, passthrough: int = 0) -> None:
        """
        Link C{source}, a C{(component, outbox)}, to C{sink}, a
        C{(component, inbox)}.  With C{passthrough=1} both are inboxes (what
        arrives at a container's inbox goes to a child's inbox); with
        C{passthrough=2} both are outboxes (a child's outbox feeds its
        container's outbox).  Messages the source holds are delivered now.

        @raise ValueError: a box does not exist, or the source is already
            linked.
        """
        src, src_name = _check_ref(source, "source")
        dst, dst_name = _check_ref(sink, "sink")
        if passthrough == 1:
            inbox = src._inbox(src_name)
            target_in = dst._inbox(dst_name)
            if inbox.forward is not None:
                raise ValueError(f"inbox {src_name!r} of {type(src).__name__} is already linked")
            inbox.forward = target_in
            while inbox.queue:
                target_in.final().put(inbox.queue.popleft())
            return
        if passthrough not in (0, 2):
            raise ValueError(f"passthrough must be 0, 1 or 2, not {passthrough!r}")
        outbox = src._outbox(src_name)
        target = dst._outbox(dst_name) if passthrough == 2 else dst._inbox(dst_name)
        if outbox.target is not None:
            raise ValueError(f"outbox {src_name!r} of {type(src).__name__} is already linked")
        outbox.target = target
        end = outbox.end()
        while outbox.held:
            _deliver(end, outbox.held.popleft())

    # -- life cycle

    def _add_children(self, *children: Component) -> None:
        for child in children:
            if not isinstance(child, Component):
                raise TypeError(f"a child must be a Component, not {child!r}")
            self._children.append(child)

    def activate(self: _C) -> _C:
        """
        Start the component (and its children): run C{main}, or start its
        work.  Returns the component.  Activating it again does nothing.
        """
        if self._state != _NEW:
            return self
        self._state = _ACTIVE
        _active.add(self)
        for child in self._children:
            child.activate()
        self._start()
        return self

    def _start(self) -> None:
        main: Callable[[], Any] | None = getattr(self, "main", None)
        if main is None:
            return
        coro = main()
        if not hasattr(coro, "send"):
            raise TypeError(f"{type(self).__name__}.main must be an 'async def' method")
        d: Deferred[Any] = Deferred.fromCoroutine(coro)
        d.addErrback(lambda f: self._log.failure("{component!r}.main failed", f, component=self))
        d.addBoth(lambda _: self._finish())

    def _finish(self) -> None:
        if self._state == _FINISHED:
            return
        self._state = _FINISHED
        _active.discard(self)
        waiters, self._finish_waiters = self._finish_waiters, []
        for d in waiters:
            d.callback(None)
        if not _active:
            _all_finished()

    def _finish_with(self, *messages: object) -> None:
        # Finished first, so that whoever gets the signal sees it finished.
        self._finish()
        for message in messages:
            self._post(message, "signal")

    @property
    def finished(self) -> bool:
        """Whether the component has finished."""
        return self._state == _FINISHED

    def when_finished(self) -> Deferred[None]:
        """A C{Deferred} that fires when the component has finished."""
        if self._state == _FINISHED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._finish_waiters.append(d)
        return d

    def run(self) -> None:
        """Activate the component and run the reactor until every active
        component has finished (see L{txtcp.components.run})."""
        self.activate()
        run(self._reactor)

    def _sleep(self, seconds: float) -> Deferred[None]:
        return deferLater(self._reactor, seconds, lambda: None)

    def __repr__(self) -> str:
        state = ("new", "active", "finished")[self._state]
        return f"<{type(self).__name__} {state}>"


def _check_ref(ref: object, name: str) -> BoxRef:
    if (
        not isinstance(ref, tuple)
        or len(ref) != 2
        or not isinstance(ref[0], Component)
        or not isinstance(ref[1], str)
    ):
        raise ValueError(f"{name} must be a (component, box name) tuple, not {ref!r}")
    return ref


# -- containers -------------------------------------------------------------


class Graphline(Component):
    """
    Components linked as C{linkages} says, run together; finished when all
    of them have.

    C{linkages} maps C{(name, outbox)} to C{(name, inbox)}, where a name is
    a keyword argument's; the name C{""} is the Graphline itself (its inbox
    passed through to a child's inbox, a child's outbox passed through to
    its outbox).  A C{producerFinished} or C{shutdownMicroprocess} on the
    Graphline's C{control}, when that inbox is not linked, is passed to every
    child's C{control}.

    @raise ValueError: a linkage names an unknown component or box.
    """

    def __init__(
        self,
        linkages: Mapping[tuple[str, str], tuple[str, str]] | None = None,
        **components: Any,
    ) -> None:
        loop = components.pop("loop", None)
        children: dict[str, Component] = {}
        for name, child in components.items():
            if not isinstance(child, Component):
                raise TypeError(f"Graphline argument {name}={child!r} is not a Component")
            children[name] = child
        if loop is None and children:
            loop = next(iter(children.values()))._reactor
        Component.__init__(self, loop=loop)
        self.components = children
        self._add_children(*children.values())
        for (src_name, src_box), (dst_name, dst_box) in dict(linkages or {}).items():
            src = self._named(src_name)
            dst = self._named(dst_name)
            if src is self and dst is self:
                raise ValueError(f"linkage {(src_name, src_box)!r} links the Graphline to itself")
            passthrough = 1 if src is self else 2 if dst is self else 0
            self.link((src, src_box), (dst, dst_box), passthrough=passthrough)

    def _named(self, name: str) -> Component:
        if name == "":
            return self
        child = self.components.get(name)
        if child is None:
            raise ValueError(
                f"linkage names {name!r}, which is not one of {sorted(self.components)}"
            )
        return child

    def _start(self) -> None:
        remaining = [c for c in self._children if not c.finished]
        if not remaining:
            self._finish()
            return
        for child in remaining:
            child.when_finished().addCallback(lambda _: self._child_finished())

    def _child_finished(self) -> None:
        if all(c.finished for c in self._children):
            self._finish()

    def _delivered(self, inbox: str) -> None:
        Component._delivered(self, inbox)
        control = self.inboxes["control"]
        if inbox != "control" or control.forward is not None or self._state != _ACTIVE:
            return
        while control.queue:
            message = control.take()
            if _ends(message):
                for child in self._children:
                    box = child.inboxes.get("control")
                    if box is not None:
                        box.final().put(message)


class Pipeline(Graphline):
    """
    Components linked in a chain: each one's C{outbox} to the next one's
    C{inbox}, and its C{signal} to the next one's C{control}.  The Pipeline's
    C{inbox} and C{control} feed the first component; the last one's
    C{outbox} and C{signal} are the Pipeline's.
    """

    def __init__(self, *components: Component, loop: Any = None) -> None:
        if not components:
            raise ValueError("Pipeline needs at least one component")
        names = {str(i): c for i, c in enumerate(components)}
        last = str(len(components) - 1)
        linkages: dict[tuple[str, str], tuple[str, str]] = {
            ("", "inbox"): ("0", "inbox"),
            ("", "control"): ("0", "control"),
            (last, "outbox"): ("", "outbox"),
            (last, "signal"): ("", "signal"),
        }
        for i in range(len(components) - 1):
            linkages[(str(i), "outbox")] = (str(i + 1), "inbox")
            linkages[(str(i), "signal")] = (str(i + 1), "control")
        Graphline.__init__(self, linkages, loop=loop, **names)


# -- sockets ------------------------------------------------------------------

# The reason under which a socket component pauses its connection's reading
# while the inbox its outbox feeds is full.
_OUTBOX_FULL = "txtcp.components: outbox full"


def _message_bytes(message: object) -> bytes:
    if isinstance(message, str):
        raise TypeError(
            f"the inbox takes bytes, not str: {message!r:.60}; encode it first "
            "(for example message.encode('utf-8'))"
        )
    return as_bytes(message, "a message on inbox")


class _SocketComponent(Component):
    """What L{TCPClient} and L{ConnectedSocketAdapter} share: one connection
    driven through inboxes and outboxes."""

    Inboxes: ClassVar[Mapping[str, str]] = {
        "inbox": "bytes to send",
        "control": "producerFinished: send what is queued, then close; "
        "shutdownMicroprocess: close at once",
        "makessl": "any message: upgrade the connection to TLS",
    }
    Outboxes: ClassVar[Mapping[str, str]] = {
        "outbox": "bytes received",
        "signal": "producerFinished (closed normally), socketError then "
        "shutdownMicroprocess (failed), errorInformation (message rejected)",
        "sslready": "True once the TLS handshake has completed and the peer was verified",
    }

    def __init__(self, *, loop: Any = None, trust_root: Any = None) -> None:
        Component.__init__(self, loop=loop)
        self._conn: TcpConnection | None = None
        self._trust_root = trust_root
        self._write_paused = False
        self._finishing = False
        self._stopping = False
        self._closing = False
        self._read_held = False
        self._failure: ErrorInfo | None = None
        self._pumping = False
        self._again = False

    @property
    def connection(self) -> TcpConnection | None:
        """The connection, once made (C{None} before)."""
        return self._conn

    def _attach(self, conn: TcpConnection) -> None:
        self._conn = conn
        conn.on("data", self._on_data)
        conn.on("pause", self._on_write_pause)
        conn.on("tls", self._on_tls)
        conn.on("error", self._on_error)
        conn.on("close", self._on_close)
        conn.pause(False)
        self._pump()

    def _delivered(self, inbox: str) -> None:
        Component._delivered(self, inbox)
        self._pump()

    def _pump(self) -> None:
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._pump_once()
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        if self._state != _ACTIVE:
            return
        control = self.inboxes["control"]
        while control.queue:
            message = control.take()
            if isinstance(message, shutdownMicroprocess):
                self._stop_now()
                return
            if isinstance(message, producerFinished):
                self._finishing = True
        conn = self._conn
        if conn is None or conn.closed or self._closing:
            return
        makessl = self.inboxes["makessl"]
        while makessl.queue:
            makessl.take()
            self._start_tls(conn)
        inbox = self.inboxes["inbox"]
        while inbox.queue and not self._write_paused and not conn.closed:
            message = inbox.take()
            try:
                data = _message_bytes(message)
            except TypeError as exc:
                self._post(errorInformation(self, exc), "signal")
                continue
            try:
                conn.write(data)
            except ConnectionClosedError:
                return
        if self._finishing and not inbox.queue and not conn.closed:
            self._closing = True
            conn.close()

    def _start_tls(self, conn: TcpConnection) -> None:
        try:
            conn.start_tls(trust_root=self._trust_root)
        except (TxtcpError, TypeError, ValueError) as exc:
            self._post(errorInformation(self, exc, f"makessl refused: {exc}"), "signal")

    def _stop_now(self) -> None:
        self._stopping = True
        conn = self._conn
        if conn is not None and not conn.closed:
            conn.abort()
        else:
            self._end()

    def _on_data(self, data: bytes) -> None:
        self._post(data, "outbox")
        if not self._read_held and not self.has_room("outbox"):
            conn = self._conn
            assert conn is not None
            self._read_held = True
            conn.pause(True, reason=_OUTBOX_FULL)
            self.wait_room("outbox").addCallback(self._resume_reading)

    def _resume_reading(self, _: object) -> None:
        self._read_held = False
        conn = self._conn
        if conn is not None and not conn.closed:
            conn.pause(False, reason=_OUTBOX_FULL)

    def _on_write_pause(self, paused: bool) -> None:
        self._write_paused = paused
        if not paused:
            self._pump()

    def _on_tls(self) -> None:
        self._post(True, "sslready")

    def _on_error(self, exc: BaseException) -> None:
        self._failure = error_info(exc)

    def _on_close(self) -> None:
        self._end()

    def _end(self) -> None:
        if self._state == _FINISHED:
            return
        if self._failure is not None:
            self._finish_with(socketError(self, self._failure), shutdownMicroprocess(self))
        elif self._stopping:
            self._finish_with(shutdownMicroprocess(self))
        else:
            self._finish_with(producerFinished(self))


class TCPClient(_SocketComponent):
    """
    A TCP connection to C{host} and C{port} as a component.

    Inboxes:
      - C{inbox}: bytes to send (C{bytes}, C{bytearray} or C{memoryview}).
        A C{str} is rejected: an L{errorInformation} whose C{exception} is a
        C{TypeError} goes out on C{signal}, and the component goes on.
        Messages sent before the connection is made wait for it.
      - C{control}: L{producerFinished} sends everything queued (in the
        inbox and in the connection), then closes; L{shutdownMicroprocess}
        closes at once, dropping what is not sent.
      - C{makessl}: any message upgrades the connection to TLS: SNI, and
        the server's certificate and host name verified against
        C{trust_root} (C{None}: the platform's trust store).  Nothing
        blocks during the handshake; bytes sent meanwhile wait for it.

    Outboxes:
      - C{outbox}: bytes received.  If it feeds an inbox with a size limit,
        reading from the connection stops while that inbox is full.
      - C{sslready}: C{True} once the TLS handshake has completed.
      - C{signal}: L{producerFinished} when the connection closed normally
        (either end closed it); L{socketError} (with its C{kind}: refused,
        timed out, host not found, reset, TLS failure) then
        L{shutdownMicroprocess} when it failed; L{shutdownMicroprocess}
        alone after a L{shutdownMicroprocess} on C{control}.  The component
        has then finished.

    The connection is attempted C{delay} seconds after activation and must
    be made within C{connect_timeout} seconds.

    @raise TypeError: an argument has the wrong type.
    @raise ValueError: C{port} is out of range, a delay is negative, or
        C{trust_root} names a file without certificates.
    """

    def __init__(
        self,
        host: str | bytes,
        port: int | str,
        delay: float = 0,
        connect_timeout: float = 60,
        *,
        trust_root: TrustRoot = None,
        loop: Any = None,
    ) -> None:
        self._host = check_host(host)
        self._port = check_port(port)
        self._delay = check_timeout(delay, "delay") or 0.0
        self._connect_timeout = check_timeout(connect_timeout, "connect_timeout")
        root = load_trust_root(trust_root) if trust_root is not None else None
        _SocketComponent.__init__(self, loop=loop, trust_root=root)
        self._timer: Any = None

    def _start(self) -> None:
        if self._delay:
            self._timer = self._reactor.callLater(self._delay, self._connect)
        else:
            self._connect()

    def _connect(self) -> None:
        self._timer = None
        client = TcpClient(self._reactor)
        client.once("connect", self._connected)
        client.once("connect_failure", self._connect_failed)
        client.connect(self._host, self._port, self._connect_timeout)

    def _connected(self, conn: TcpConnection) -> None:
        if self._state != _ACTIVE:
            conn.abort()
            return
        self._attach(conn)

    def _connect_failed(self, info: ErrorInfo) -> None:
        if self._state != _ACTIVE:
            return
        self._failure = info
        self._end()

    def _stop_now(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
            self._timer = None
        _SocketComponent._stop_now(self)


class ConnectedSocketAdapter(_SocketComponent):
    """
    One accepted connection as a component, with the inboxes and outboxes of
    L{TCPClient}.  Made by L{TCPServer}; reading starts when it is activated.
    C{makessl} is refused (an L{errorInformation} on C{signal}): the server
    side has no certificate to offer.
    """

    def __init__(self, connection: TcpConnection, *, loop: Any = None) -> None:
        if not isinstance(connection, TcpConnection):
            raise TypeError(f"connection must be a TcpConnection, not {connection!r}")
        _SocketComponent.__init__(self, loop=loop)
        self._pending = connection

    def _start(self) -> None:
        conn = self._pending
        if conn.closed:
            self._end()
            return
        self._attach(conn)


class TCPServer(Component):
    """
    Listens on C{port} (0 picks a free one; L{port} tells it) of C{host}
    (C{""}: every IPv4 interface, as Kamaelia does) once activated, and
    sends a L{newCSA} on C{protocolHandlerSignal} for each connection.

    C{signal} gets a L{socketError} then L{shutdownMicroprocess} if
    listening fails, or L{producerFinished} once it stops after a message on
    C{control}.
    """

    Inboxes: ClassVar[Mapping[str, str]] = {
        "control": "producerFinished or shutdownMicroprocess: stop listening",
    }
    Outboxes: ClassVar[Mapping[str, str]] = {
        "protocolHandlerSignal": "newCSA for each accepted connection",
        "signal": "producerFinished once stopped; socketError if listening failed",
    }

    def __init__(self, listenport: int | str, *, host: str = "", loop: Any = None) -> None:
        self._host = check_host(host)
        self._listen_port = check_port(listenport, "listenport")
        Component.__init__(self, loop=loop)
        self._server: TcpServer | None = None
        self._listening: list[Deferred[int]] = []

    @property
    def port(self) -> int | None:
        """The bound port once listening, else C{None}."""
        return self._server.port if self._server is not None else None

    def when_listening(self) -> Deferred[int]:
        """A C{Deferred} of the bound port, once listening.  It never fires
        if listening fails."""
        port = self.port
        if port is not None and self._server is not None and self._server.listening:
            return succeed(port)
        d: Deferred[int] = Deferred()
        self._listening.append(d)
        return d

    def _start(self) -> None:
        server = self._server = TcpServer(self._host, self._listen_port, self._reactor)
        server.on("start", self._started)
        server.on("connect", self._accepted)
        server.on("error", self._failed)
        server.on("stop", self._stopped)

    def _started(self) -> None:
        waiters, self._listening = self._listening, []
        port = self.port or 0
        for d in waiters:
            d.callback(port)

    def _accepted(self, conn: TcpConnection) -> None:
        self._post(
            newCSA(self, ConnectedSocketAdapter(conn, loop=self._reactor)), "protocolHandlerSignal"
        )

    def _failed(self, exc: BaseException) -> None:
        self._finish_with(socketError(self, error_info(exc)), shutdownMicroprocess(self))

    def _stopped(self) -> None:
        self._finish_with(producerFinished(self))

    def _delivered(self, inbox: str) -> None:
        Component._delivered(self, inbox)
        control = self.inboxes["control"]
        while control.queue:
            if _ends(control.take()) and self._server is not None:
                self._server.close()


class ServerCore(Component):
    """
    A server that makes a handler component per connection: C{protocol} is
    called as C{protocol(peer=..., peerport=..., localip=..., localport=...)}
    for each connection (Kamaelia's C{ServerCore}).

    The connection's L{ConnectedSocketAdapter} and the handler are linked as
    Kamaelia links them: socket C{outbox} to handler C{inbox}, handler
    C{outbox} to socket C{inbox}, handler C{signal} to socket C{control}; and
    socket C{signal} to handler C{control}, so the handler learns that the
    connection closed (L{producerFinished}) or failed (L{socketError},
    L{shutdownMicroprocess}).

    C{port} 0 picks a free port; L{port} gives it once listening.  A
    L{producerFinished} or L{shutdownMicroprocess} on C{control} stops
    listening and is passed to every connection's C{control}; the server
    has finished when the listener and every connection have, and sends
    L{producerFinished} on C{signal}.  If listening fails, C{signal} gets a
    L{socketError} then L{shutdownMicroprocess}.
    """

    Inboxes: ClassVar[Mapping[str, str]] = {
        "control": "producerFinished or shutdownMicroprocess: stop the server",
        "_tcp": "newCSA from the listener",
        "_tcpsignal": "the listener's signal",
    }
    Outboxes: ClassVar[Mapping[str, str]] = {
        "signal": "producerFinished once stopped; socketError if listening failed",
        "_tcpcontrol": "to the listener's control",
    }

    def __init__(
        self,
        protocol: Callable[..., Component],
        port: int | str = 1601,
        *,
        host: str = "",
        loop: Any = None,
    ) -> None:
        if not callable(protocol):
            raise TypeError(f"protocol must be a callable that makes a Component, not {protocol!r}")
        self.protocol = protocol
        Component.__init__(self, loop=loop)
        self._tcp = TCPServer(port, host=host, loop=self._reactor)
        self.link((self._tcp, "protocolHandlerSignal"), (self, "_tcp"))
        self.link((self._tcp, "signal"), (self, "_tcpsignal"))
        self.link((self, "_tcpcontrol"), (self._tcp, "control"))
        self._connections: set[ConnectedSocketAdapter] = set()
        self._listener_done = False
        self._failed = False

    @property
    def port(self) -> int | None:
        """The bound port once listening, else C{None}."""
        return self._tcp.port

    def when_listening(self) -> Deferred[int]:
        """A C{Deferred} of the bound port, once listening."""
        return self._tcp.when_listening()

    def _start(self) -> None:
        self._tcp.activate()

    def _make_handler(self, sock_info: dict[str, Any]) -> Component:
        return self.protocol(**sock_info)

    def _delivered(self, inbox: str) -> None:
        Component._delivered(self, inbox)
        if self._state != _ACTIVE:
            return
        for name in ("_tcp", "_tcpsignal", "control"):
            box = self.inboxes[name]
            while box.queue:
                message = box.take()
                if name == "_tcp" and isinstance(message, newCSA):
                    self._new_connection(message.object)
                elif name == "_tcpsignal":
                    self._listener_signal(message)
                elif name == "control" and _ends(message):
                    self._post(shutdownMicroprocess(self), "_tcpcontrol")
                    for csa in list(self._connections):
                        csa.inboxes["control"].put(message)

    def _new_connection(self, csa: ConnectedSocketAdapter) -> None:
        conn = csa._pending
        local, peer = conn.local_address, conn.remote_address
        info = {"peer": peer[0], "peerport": peer[1], "localip": local[0], "localport": local[1]}
        try:
            handler = self._make_handler(info)
            if not isinstance(handler, Component):
                raise TypeError(f"protocol returned {handler!r}, not a Component")
        except Exception:
            self._log.failure("ServerCore protocol {protocol!r} failed", protocol=self.protocol)
            conn.abort()
            return
        self.link((csa, "outbox"), (handler, "inbox"))
        self.link((handler, "outbox"), (csa, "inbox"))
        self.link((handler, "signal"), (csa, "control"))
        self.link((csa, "signal"), (handler, "control"))
        self._connections.add(csa)
        csa.when_finished().addCallback(lambda _: self._connection_done(csa))
        handler.activate()
        csa.activate()

    def _connection_done(self, csa: ConnectedSocketAdapter) -> None:
        self._connections.discard(csa)
        self._maybe_done()

    def _listener_signal(self, message: object) -> None:
        if isinstance(message, socketError):
            self._post(message, "signal")
            self._failed = True
        elif _ends(message):
            self._listener_done = True
            self._maybe_done()

    def _maybe_done(self) -> None:
        if self._listener_done and not self._connections and self._state == _ACTIVE:
            self._finish_with(
                shutdownMicroprocess(self) if self._failed else producerFinished(self)
            )


class SimpleServer(ServerCore):
    """A L{ServerCore} that calls C{protocol()} with no arguments."""

    def _make_handler(self, sock_info: dict[str, Any]) -> Component:
        return self.protocol()


# -- stock components ---------------------------------------------------------


class OneShot(Component):
    """Sends C{msg} on C{outbox} once, then L{producerFinished} on C{signal},
    and finishes."""

    def __init__(self, msg: object = None, *, loop: Any = None) -> None:
        Component.__init__(self, loop=loop)
        self._msg = msg

    async def main(self) -> None:
        """Send the message, then finish."""
        await self.wait_room("outbox")
        self.send(self._msg, "outbox")
        self._post(producerFinished(self), "signal")


class ConsoleEchoer(Component):
    """
    Writes every message from C{inbox} to standard output: C{bytes} as they
    are, anything else as C{str(message)} (C{repr} with C{use_repr}).  With
    C{forwarder} each message is also sent on C{outbox}.  A
    L{producerFinished} or L{shutdownMicroprocess} on C{control} is passed on
    C{signal}, and it finishes.
    """

    def __init__(
        self, forwarder: bool = False, use_repr: bool = False, *, loop: Any = None
    ) -> None:
        Component.__init__(self, loop=loop)
        self._forwarder = forwarder
        self._use_repr = use_repr

    def _write(self, message: object) -> None:
        out = sys.stdout
        if self._use_repr:
            out.write(repr(message))
        elif isinstance(message, (bytes, bytearray, memoryview)):
            out.flush()
            buffer = getattr(out, "buffer", None)
            if buffer is not None:
                buffer.write(bytes(message))
                buffer.flush()
            else:
                out.write(bytes(message).decode("utf-8", "replace"))
        else:
            out.write(str(message))
        out.flush()

    async def main(self) -> None:
        """Echo until told to finish."""
        while True:
            while self.data_ready("inbox"):
                message = self._take("inbox")
                self._write(message)
                if self._forwarder:
                    await self.wait_room("outbox")
                    self.send(message, "outbox")
            while self.data_ready("control"):
                message = self._take("control")
                if _ends(message):
                    self._post(message, "signal")
                    return
            await self.pause()


class ConsoleReader(Component):
    """
    Reads lines from standard input without blocking the reactor (a daemon
    thread reads them) and sends each, as C{bytes}, on C{outbox}: the line
    without its newline, then C{eol}.  C{prompt} is written to standard
    output before each line.  At end of input it sends L{producerFinished}
    on C{signal} and finishes; a L{producerFinished} or
    L{shutdownMicroprocess} on C{control} makes it finish sooner.  It reads
    the next line only when C{outbox} has room.
    """

    def __init__(self, prompt: str = ">>> ", eol: str = "\n", *, loop: Any = None) -> None:
        Component.__init__(self, loop=loop)
        self._prompt = prompt
        self._eol = eol.encode("utf-8")
        self._lines: deque[bytes] = deque()
        self._go_on = threading.Event()

    def _show_prompt(self) -> None:
        if self._prompt:
            sys.stdout.write(self._prompt)
            sys.stdout.flush()

    def _read_lines(self) -> None:
        # In the thread: one line at a time, the next one when it was sent.
        stream = sys.stdin.buffer
        while True:
            try:
                line = stream.readline()
            except (OSError, ValueError):
                line = b""
            self._go_on.clear()
            self._reactor.callFromThread(self._got, line)
            if not line:
                return
            self._go_on.wait()
            if self._state == _FINISHED:
                return

    def _got(self, line: bytes) -> None:
        self._lines.append(line)
        Component._delivered(self, "stdin")

    async def main(self) -> None:
        """Send lines until end of input or until told to finish."""
        thread = threading.Thread(target=self._read_lines, name="ConsoleReader", daemon=True)
        self._show_prompt()
        thread.start()
        try:
            while True:
                while self.data_ready("control"):
                    if _ends(self._take("control")):
                        return
                if not self._lines:
                    await self.pause()
                    continue
                line = self._lines.popleft()
                if not line:
                    self._post(producerFinished(self), "signal")
                    return
                await self.wait_room("outbox")
                self.send(line[:-1] + self._eol if line.endswith(b"\n") else line, "outbox")
                self._show_prompt()
                self._go_on.set()
        finally:
            self._go_on.set()


class RateControlledFileReader(Component):
    """
    Reads the file C{filename} and sends it on C{outbox} at C{rate} units a
    second (bytes, or lines when C{readmode="lines"}): C{chunksize} units at
    a time (default: a tenth of the rate), or C{chunkrate} chunks a second.
    Each chunk is one C{bytes} message (one per line in C{"lines"} mode).
    When the file is sent, L{producerFinished} goes on C{signal}.  It waits
    while C{outbox} feeds a full inbox.  If the file cannot be read,
    C{signal} gets an L{errorInformation} then L{shutdownMicroprocess}.
    A message on C{control} stops it.

    @raise ValueError: C{readmode}, C{rate}, C{chunksize} or C{chunkrate} is
        invalid.
    """

    def __init__(
        self,
        filename: str,
        readmode: str = "bytes",
        *,
        rate: float = 100000,
        chunksize: int | None = None,
        chunkrate: float | None = None,
        allowchunkaggregation: bool = False,
        loop: Any = None,
    ) -> None:
        if readmode not in ("bytes", "lines"):
            raise ValueError(f"readmode must be 'bytes' or 'lines', not {readmode!r}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError(f"rate must be a positive number, not {rate!r}")
        if chunksize is not None and chunkrate is not None:
            raise ValueError("give chunksize or chunkrate, not both")
        if chunkrate is not None:
            if (
                isinstance(chunkrate, bool)
                or not isinstance(chunkrate, (int, float))
                or not chunkrate > 0
            ):
                raise ValueError(f"chunkrate must be a positive number, not {chunkrate!r}")
            chunksize = max(1, int(rate / chunkrate))
        if chunksize is None:
            chunksize = max(1, int(rate / 10))
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
        Component.__init__(self, loop=loop)
        self._filename = filename
        self._lines = readmode == "lines"
        self._chunksize = chunksize
        self._interval = chunksize / rate

    async def main(self) -> None:
        """Send the file, paced."""
        try:
            f = open(self._filename, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            self._post(errorInformation(self, exc), "signal")
            self._post(shutdownMicroprocess(self), "signal")
            return
        with f:
            start = self._reactor.seconds()
            ticks = 0
            while not self.data_ready("control"):
                if self._lines:
                    items = [
                        line for line in (f.readline() for _ in range(self._chunksize)) if line
                    ]
                else:
                    chunk = f.read(self._chunksize)
                    items = [chunk] if chunk else []
                if not items:
                    break
                for item in items:
                    await self.wait_room("outbox")
                    self.send(item, "outbox")
                ticks += 1
                delay = start + ticks * self._interval - self._reactor.seconds()
                if delay < 0:
                    start -= delay
                    delay = 0
                await self._sleep(delay)
        if self.data_ready("control"):
            message = self._take("control")
            self._post(message if _ends(message) else shutdownMicroprocess(self), "signal")
            return
        self._post(producerFinished(self), "signal")
