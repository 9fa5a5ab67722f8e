"""
Helpers for tests that run on the real reactor: waiting for events with a
timeout, collecting bytes, counting file descriptors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any, TypeVar, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

import txtcp

reactor: Any = _reactor
TIMEOUT = 15.0


def wait_event(emitter: txtcp.EventEmitter, name: str, timeout: float = TIMEOUT) -> Deferred[Any]:
    """A Deferred of the arguments (a tuple) of the next C{name} event."""
    d: Deferred[Any] = Deferred()

    def fire(*args: Any) -> None:
        if not d.called:
            d.callback(args)

    emitter.once(name, fire)
    d.addTimeout(timeout, reactor)
    return d


def sleep(seconds: float) -> Deferred[None]:
    """A Deferred that fires after C{seconds}."""
    return deferLater(reactor, seconds, lambda: None)


async def wait_for(predicate: Any, timeout: float = TIMEOUT, step: float = 0.01) -> None:
    """Wait until C{predicate()} is true, or raise TimeoutError."""
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise TimeoutError(f"condition not met within {timeout}s: {predicate!r}")
        await sleep(step)
        waited += step


def open_fds() -> int:
    """The number of open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


async def fds_back_to(baseline: int, timeout: float = 5.0) -> int:
    """Wait (up to C{timeout}) for the fd count to fall to C{baseline}; return it."""
    with contextlib.suppress(TimeoutError):
        await wait_for(lambda: open_fds() <= baseline, timeout)
    return open_fds()


class Collector:
    """Accumulates a connection's C{data}, and records its events in order."""

    def __init__(self, conn: txtcp.TcpConnection, *, unpause: bool = True) -> None:
        self.conn = conn
        self.chunks: list[bytes] = []
        self.size = 0
        self.events: list[str] = []
        self.closed: Deferred[None] = Deferred()
        self.error: BaseException | None = None
        conn.on("data", self._data)
        conn.on("end", lambda: self.events.append("end"))
        conn.on("error", self._error)
        conn.on("close", self._close)
        if unpause:
            conn.pause(False)

    def _data(self, data: bytes) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.chunks.append(data)
        self.size += len(data)

    def _error(self, exc: BaseException) -> None:
        self.events.append("error")
        self.error = exc

    def _close(self) -> None:
        self.events.append("close")
        self.closed.callback(None)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def wait_closed(self, timeout: float = TIMEOUT) -> Deferred[None]:
        return self.closed.addTimeout(timeout, reactor)


@contextlib.contextmanager
def logged() -> Iterator[list[LogEvent]]:
    """The log events published while in the block, in order."""
    seen: list[LogEvent] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observer)


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    """A free port of 127.0.0.1 made busy (a listening socket holds it) while in the block."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_Server = TypeVar("_Server", bound=txtcp.TcpServer)


async def listening(server: _Server, timeout: float = TIMEOUT) -> _Server:
    """Wait for C{server}'s C{start}; return the server."""
    if server.port is None or not server.listening:
        await wait_event(server, "start", timeout)
    else:
        await sleep(0)
    return server


async def connect(
    host: str, port: int, client: txtcp.TcpClient | None = None, timeout: float = TIMEOUT
) -> txtcp.TcpConnection:
    """Connect and return the connection, or raise on C{connect_error}."""
    client = client or txtcp.TcpClient()
    d: Deferred[Any] = Deferred()
    client.once("connect", lambda c: d.callback(c) if not d.called else None)
    client.once(
        "connect_error",
        lambda t, e: (
            d.errback(OSError(e, f"connect_error {t.__name__} {e}")) if not d.called else None
        ),
    )
    d.addTimeout(timeout, reactor)
    client.connect(host, port)
    conn: txtcp.TcpConnection = await d
    return conn


async def pair(
    host: str = "127.0.0.1", connect_host: str | None = None
) -> tuple[txtcp.TcpServer, txtcp.TcpConnection, txtcp.TcpConnection]:
    """A listening server on C{host}, and both ends of one connection to it
    (made to C{connect_host}, a name for example, when given)."""
    server = await listening(txtcp.TcpServer(host, 0))
    accepted = wait_event(server, "connect")
    client_conn = await connect(connect_host or host, server.port or 0)
    (server_conn,) = await accepted
    return server, client_conn, server_conn


def queued_connects(port: int, count: int) -> int:
    """
    Start C{count} connects to C{port} without letting the reactor run (so
    none is accepted); return how many completed their handshake, which the
    kernel allows only while the listen backlog has room.
    """
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        # Loopback handshakes complete at once, unless the machine is busy;
        # a connect the full queue dropped is retried only after 1 s.  The
        # reactor must not run meanwhile: this blocks on purpose.
        time.sleep(0.2)
        done = 0
        for sock in socks:
            try:
                sock.getpeername()
            except OSError:
                continue
            done += 1
        return done
    finally:
        for sock in socks:
            sock.close()


def accept_queue_room(backlog: int) -> int:
    """How many completed connects Linux queues for a listen C{backlog}: one
    more than the backlog, which C{net.core.somaxconn} caps."""
    with open("/proc/sys/net/core/somaxconn") as f:
        return min(backlog, int(f.read())) + 1
