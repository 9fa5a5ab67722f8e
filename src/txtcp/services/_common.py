# -*- test-case-name: tests.test_services_echo,tests.test_services_proxy -*-
"""
What the twistd services share: the C{--listen} option, a service per
listening endpoint, and a parent service that tracks open connections and
closes them when it stops.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python import usage

from txtcp.core import (
    Address,
    TcpConnection,
    TcpServer,
    TxtcpError,
    default_reactor,
    error_info,
    server_endpoint,
)

#: Seconds that stopping a service gives open connections to flush what
#: they still have to send before they are aborted.
STOP_GRACE = 2.0


def format_address(address: Address | None) -> str:
    """C{host:port}, C{[v6]:port}, or the path of a UNIX socket."""
    if address is None:
        return "?"
    host, port = address
    if ":" in host:
        return f"[{host}]:{port}"
    if port == 0 and not _is_ip(host):
        return host or "?"
    return f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def connect_error_cause(errtype: type[OSError], code: int) -> str:
    """A readable cause for a C{connect_error(errtype, errno)} event."""
    if errtype is socket.gaierror:
        return f"host not found (EAI {code})"
    name = errno.errorcode.get(code, str(code))
    return f"{name} ({os.strerror(code)})"


def error_cause(exc: BaseException) -> str:
    """A readable cause for a connection's C{error} event."""
    info = error_info(exc)
    if info.message and info.message != info.kind.value:
        return f"{info.kind.value}: {info.message}"
    return info.kind.value


def check_listen(listen: object, reactor: Any) -> list[str]:
    """
    Check that C{listen} is a non-empty sequence of server endpoint strings
    that parse; return them as a list.

    @raise TypeError: C{listen} is not a sequence of strings.
    @raise ValueError: it is empty, or a string does not parse.
    """
    if isinstance(listen, (str, bytes)) or not isinstance(listen, Sequence):
        raise TypeError(f"listen must be a sequence of endpoint strings, not {listen!r}")
    result: list[str] = []
    for item in listen:
        if not isinstance(item, str):
            raise TypeError(f"listen items must be endpoint strings, not {item!r}")
        server_endpoint(reactor, item)
        result.append(item)
    if not result:
        raise ValueError("listen must name at least one endpoint, not []")
    return result


def _parse_seconds(option: str, value: object, *, allow_zero: bool) -> float:
    """Parse a number of seconds given on the command line."""
    try:
        seconds = float(str(value))
    except ValueError:
        raise usage.UsageError(f"--{option} must be a number of seconds, not {value!r}") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise usage.UsageError(f"--{option} must be a finite number of seconds, not {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise usage.UsageError(f"--{option} must be {expected} seconds, not {value!r}")
    return seconds


class ListenOptions(usage.Options):
    """
    Options with a repeatable C{--listen ENDPOINT}; a subclass sets
    C{default_listen} and gives C{opt_listen} its help text.
    """

    #: The endpoint used when no C{--listen} is given.
    default_listen = "tcp:8007:interface=127.0.0.1"

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Listen on ENDPOINT, a Twisted server endpoint string; may be repeated."""
        try:
            server_endpoint(default_reactor(None), description)
        except ValueError as exc:
            raise usage.UsageError(f"--listen {description!r}: {exc}") from exc
        self["listen"].append(description)

    def postOptions(self) -> None:
        """Listen on the loopback default when no C{--listen} was given."""
        if not self["listen"]:
            self["listen"] = [self.default_listen]


class _Session(Protocol):
    """One accepted connection (and what goes with it) that a service tracks."""

    #: Fires once the session's connections are all closed.
    done: Deferred[None]

    def stop(self) -> None:
        """Close the session's connections after flushing them."""

    def abort(self) -> None:
        """Close the session's connections now."""


class ListenError(TxtcpError):
    """A service could not listen on one of its endpoints."""


ListenError.__module__ = "txtcp.services"  # its public home, as tracebacks show it


class ListenService(Service):
    """
    Listens on one server endpoint while running, and hands every accepted
    L{TcpConnection} to a callback.

    Logs C{"<label> listening on HOST:PORT"} when listening starts, and the
    cause (at critical level) when listening fails.
    """

    _log = Logger()

    def __init__(
        self,
        description: str,
        accept: Callable[[TcpConnection], None],
        *,
        label: str,
        on_error: Callable[[BaseException], None] | None = None,
        loop: Any = None,
    ) -> None:
        self.description = description
        self.label = label
        self.setName(f"{label} {description}")
        self._accept = accept
        self._on_error = on_error
        self._reactor = loop
        self._server: TcpServer | None = None
        self._waiting: list[Deferred[Address]] = []
        self._failure: BaseException | None = None

    @property
    def server(self) -> TcpServer | None:
        """The L{TcpServer} while the service runs, else C{None}."""
        return self._server

    def when_listening(self) -> Deferred[Address]:
        """
        A C{Deferred} that fires with the bound address once listening, or
        fails with the error if listening failed.
        """
        d: Deferred[Address] = Deferred()
        server = self._server
        if server is not None and server.listening and server.address is not None:
            d.callback(server.address)
        elif self._failure is not None:
            d.errback(self._failure)
        else:
            self._waiting.append(d)
        return d

    @property
    def listen_error(self) -> BaseException | None:
        """Why listening failed, as soon as that is known, else C{None}."""
        server = self._server
        return server.listen_error if server is not None else self._failure

    def privilegedStartService(self) -> None:
        """Start listening, before C{twistd} sheds its privileges (as
        Twisted's own endpoint services do); the outcome is logged."""
        Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        """Start listening unless L{privilegedStartService} did; the outcome
        is logged."""
        Service.startService(self)
        if self._server is None:
            self._listen()

    def _listen(self) -> None:
        self._failure = None
        server = TcpServer.from_endpoint(self.description, default_reactor(self._reactor))
        self._server = server
        server.on("start", self._started)
        server.on("error", self._failed)
        server.on("connect", self._accept)

    def failure_message(self, exc: BaseException) -> str:
        """The line logged when listening fails with C{exc}."""
        return f"{self.label} cannot listen on {self.description}: {error_cause(exc)}"

    def _started(self) -> None:
        server = self._server
        assert server is not None
        self._log.info(
            "{label} listening on {address}",
            label=self.label,
            address=format_address(server.address),
            description=self.description,
        )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if server.address is not None:
                d.callback(server.address)

    def _failed(self, exc: BaseException) -> None:
        server = self._server
        if server is not None:
            server.remove_listener("error", self._failed)  # reported once, even if early
        self._failure = exc
        self._log.critical(
            "{message}",
            message=self.failure_message(exc),
            label=self.label,
            description=self.description,
        )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(exc)
        if self._on_error is not None:
            self._on_error(exc)

    def stopService(self) -> Deferred[None]:
        """Stop listening; the C{Deferred} fires when the port is closed."""
        Service.stopService(self)
        server, self._server = self._server, None
        if server is None or not server.listening:
            if server is not None:
                server.close()
            return succeed(None)
        stopped: Deferred[None] = Deferred()
        server.once("stop", lambda: stopped.callback(None))
        server.close()
        return stopped


class ConnectionsService(MultiService):
    """
    A C{MultiService} with one L{ListenService} child per endpoint; it
    tracks the sessions of the accepted connections.

    Stopping it stops listening, closes every open connection (what is
    buffered is flushed for up to L{STOP_GRACE} seconds, then the rest are
    aborted), logs it, and fires the returned C{Deferred} when all are closed.
    """

    _log = Logger()
    #: The name used in log lines.
    label = "txtcp"

    def __init__(self, listen: Sequence[str], *, loop: Any = None) -> None:
        MultiService.__init__(self)
        self._reactor = default_reactor(loop)
        self._sessions: set[_Session] = set()
        self._stopping = False
        #: When C{True} (twistd sets it), a listening failure known at once
        #: raises L{ListenError} from L{privilegedStartService} (twistd exits
        #: with status 1), and a later one stops the reactor.
        self.stop_reactor_on_listen_error = False
        for description in listen:
            ListenService(
                description,
                self._accepted,
                label=self.label,
                on_error=self._listen_failed,
                loop=self._reactor,
            ).setServiceParent(self)

    @property
    def listeners(self) -> list[ListenService]:
        """The L{ListenService} children, one per endpoint."""
        return [s for s in self if isinstance(s, ListenService)]

    @property
    def open_connections(self) -> int:
        """The number of sessions currently open."""
        return len(self._sessions)

    def _listen_failed(self, exc: BaseException) -> None:
        if self.stop_reactor_on_listen_error and self.running and self._reactor.running:
            self._reactor.stop()

    def _accepted(self, conn: TcpConnection) -> None:
        raise NotImplementedError

    def _track(self, session: _Session) -> None:
        self._sessions.add(session)
        session.done.addBoth(lambda _: self._sessions.discard(session))

    def privilegedStartService(self) -> None:
        """
        Start listening on every endpoint.

        @raise ListenError: L{stop_reactor_on_listen_error} is set and an
            endpoint failed at once; the message names the endpoint and the
            cause, and no endpoint is left listening.
        """
        MultiService.privilegedStartService(self)
        if not self.stop_reactor_on_listen_error:
            return
        for listener in self.listeners:
            exc = listener.listen_error
            if exc is not None:
                listener._failed(exc)
                for other in self.listeners:
                    other.stopService()
                raise ListenError(listener.failure_message(exc)) from None

    def startService(self) -> None:
        """Start listening on every endpoint."""
        self._stopping = False
        MultiService.startService(self)

    def stopService(self) -> Deferred[None]:
        """Stop listening and close every open connection; see the class."""
        self._stopping = True
        sessions = list(self._sessions)
        self._log.info(
            "{label} stopping: no longer listening, closing {count} open connections",
            label=self.label,
            count=len(sessions),
        )
        listening: Deferred[Any] = MultiService.stopService(self)
        for session in sessions:
            session.stop()
        timer = self._reactor.callLater(STOP_GRACE, self._abort_all)
        done = [listening, *(s.done for s in sessions)]
        result: Deferred[None] = Deferred()

        def finished(_: object) -> None:
            if timer.active():
                timer.cancel()
            self._log.info("{label} stopped", label=self.label)
            result.callback(None)

        DeferredList(done, consumeErrors=True).addCallback(finished)
        return result

    def _abort_all(self) -> None:
        for session in list(self._sessions):
            session.abort()
