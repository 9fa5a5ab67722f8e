# -*- test-case-name: tests.test_services_echo -*-
"""
The C{tcp-echo} twistd service: every byte a client sends comes back.

Run it with C{twistd -n tcp-echo [--listen ENDPOINT ...]}, or build it
inside an application with L{echo_service}.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from txtcp.core import TcpConnection, default_reactor

from ._common import (
    ConnectionsService,
    ListenOptions,
    ListenService,
    check_listen,
    error_cause,
    format_address,
)

__all__ = [
    "DEFAULT_LISTEN",
    "EchoService",
    "ListenService",
    "Options",
    "echo_service",
    "makeService",
]

#: Where C{tcp-echo} listens when no C{--listen} is given: loopback only.
DEFAULT_LISTEN = "tcp:8007:interface=127.0.0.1"


class Options(ListenOptions):
    """The command line of C{twistd tcp-echo}."""

    synopsis = "[--listen ENDPOINT ...]"
    longdesc = (
        "Echo every byte back to the client that sent it, with flow control "
        "(a client that does not read is not read from either) and half-close "
        "(after the client's end of stream the rest is echoed, then the "
        "connection is closed).  ENDPOINT is any Twisted server endpoint string: "
        "tcp:, tcp6:, ssl:, unix:, haproxy:, systemd:."
    )
    default_listen = DEFAULT_LISTEN

    def opt_listen(self, description: str) -> None:
        """Server ENDPOINT to listen on; repeatable. [default: tcp:8007:interface=127.0.0.1]"""
        ListenOptions.opt_listen(self, description)


def makeService(options: usage.Options) -> EchoService:
    """The twistd entry point: the L{echo_service} for C{options}."""
    service = echo_service(options["listen"])
    service.stop_reactor_on_listen_error = True
    return service


def echo_service(listen: Sequence[str] = (DEFAULT_LISTEN,), *, loop: Any = None) -> EchoService:
    """
    An echo service listening on every endpoint string in C{listen} once
    started.

    @raise TypeError: C{listen} is not a sequence of strings.
    @raise ValueError: C{listen} is empty or an endpoint string does not parse.
    """
    reactor = default_reactor(loop)
    return EchoService(check_listen(listen, reactor), loop=reactor)


class EchoService(ConnectionsService):
    """
    Echoes every byte back on the connections it accepts.

    Reading pauses while the echo cannot be sent (the client does not
    read), so what the service holds per connection is bounded by the
    transport's write buffer (64 KiB) plus one read (64 KiB).  After the
    client's end of stream, the rest is echoed and the connection closed.
    One log line per connection when it ends: client, bytes echoed,
    duration, how it ended.
    """

    label = "tcp-echo"

    def _accepted(self, conn: TcpConnection) -> None:
        if self._stopping:
            conn.close()
            return
        self._track(_EchoSession(conn, self._reactor))


class _EchoSession:
    """One echoed connection."""

    _log = Logger()

    def __init__(self, conn: TcpConnection, reactor: Any) -> None:
        self.done: Deferred[None] = Deferred()
        self._conn = conn
        self._reactor = reactor
        self._started = reactor.seconds()
        self._bytes = 0
        self._how: str | None = None
        try:
            self._client = format_address(conn.remote_address)
        except Exception:
            self._client = "?"
        conn.allow_half_open = True
        conn.on("data", self._data)
        conn.on("pause", lambda paused: conn.pause(paused, reason="echo"))
        conn.on("end", self._end)
        conn.on("error", self._error)
        conn.on("close", self._closed)
        conn.pause(False)

    def _data(self, data: bytes) -> None:
        self._bytes += len(data)
        self._conn.write(data)

    def _end(self) -> None:
        if self._how is None:
            self._how = "client ended its stream"
        self._conn.close()

    def _error(self, exc: BaseException) -> None:
        if self._how is None:
            self._how = f"error: {error_cause(exc)}"

    def _closed(self) -> None:
        # Behind a haproxy: endpoint the client's address comes from the
        # PROXY header, which is read after the connection was accepted.
        with contextlib.suppress(Exception):
            self._client = format_address(self._conn.remote_address)
        self._log.info(
            "tcp-echo connection from {client} ended: {bytes} bytes echoed, "
            "{duration:.3f} s, {how}",
            client=self._client,
            bytes=self._bytes,
            duration=self._reactor.seconds() - self._started,
            how=self._how or "closed",
        )
        self.done.callback(None)

    def stop(self) -> None:
        """Close after flushing (the service is stopping)."""
        if self._how is None:
            self._how = "service stopped"
        self._conn.close()

    def abort(self) -> None:
        """Close now."""
        self._conn.abort()
