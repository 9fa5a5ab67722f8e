# -*- test-case-name: tests.test_services_proxy -*-
"""
The C{tcp-proxy} twistd service: every accepted connection is relayed to an
upstream server, with flow control and half-close both ways.

Run it with C{twistd -n tcp-proxy --connect ENDPOINT [--listen ENDPOINT ...]},
or build it inside an application with L{proxy_service}.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from txtcp.core import (
    Address,
    Relay,
    TcpClient,
    TcpConnection,
    TxtcpError,
    check_timeout,
    client_endpoint,
    default_reactor,
    relay,
)

from ._common import (
    ConnectionsService,
    ListenOptions,
    ListenService,
    _parse_seconds,
    check_listen,
    connect_error_cause,
    error_cause,
    format_address,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_LISTEN",
    "ListenService",
    "Options",
    "ProxyService",
    "makeService",
    "proxy_header_v1",
    "proxy_service",
]

#: Where C{tcp-proxy} listens when no C{--listen} is given: loopback only.
DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
#: Seconds allowed for the upstream connection when none is given.
DEFAULT_CONNECT_TIMEOUT = 30.0


class Options(ListenOptions):
    """The command line of C{twistd tcp-proxy}."""

    synopsis = "--connect ENDPOINT [--listen ENDPOINT ...] [options]"
    longdesc = (
        "Relay every accepted connection to the upstream server given by "
        "--connect, with flow control (a slow reader on either side holds the "
        "other back) and half-close both ways.  One log line per connection "
        "when it ends.  Clients beyond --max-connections are refused: accepted "
        "and closed at once.  --listen takes any Twisted server endpoint string: "
        "tcp:, tcp6:, ssl:, unix:, haproxy:, systemd:."
    )
    default_listen = DEFAULT_LISTEN
    optParameters = [
        [
            "connect",
            "c",
            None,
            "Upstream ENDPOINT, a Twisted client endpoint string: "
            "tcp:host=HOST:port=PORT (IPv4 and IPv6, names resolved without "
            "blocking), tls:host=HOST:port=PORT[:trustRoots=DIR] (the server "
            "is verified), unix:path=PATH.  Required.",
        ],
        [
            "connect-timeout",
            None,
            "30",
            "Seconds allowed for connecting upstream; the client is closed when it runs out.",
        ],
        [
            "idle-timeout",
            None,
            "0",
            "Close a connection pair after this many seconds with no data "
            "either way; 0 means never.",
        ],
        [
            "max-connections",
            None,
            "0",
            "Refuse (accept and close at once) clients beyond this many open "
            "connections; 0 means no limit.",
        ],
    ]
    optFlags = [
        [
            "send-proxy-header",
            None,
            "Send a PROXY protocol v1 header upstream first, so that the "
            "upstream learns the client's address.",
        ],
    ]

    def opt_listen(self, description: str) -> None:
        """Server ENDPOINT to listen on; repeatable. [default: tcp:8080:interface=127.0.0.1]"""
        ListenOptions.opt_listen(self, description)

    def postOptions(self) -> None:
        """Check C{--connect} and the numbers; apply the C{--listen} default."""
        ListenOptions.postOptions(self)
        connect = self["connect"]
        if not connect:
            raise usage.UsageError(
                "--connect ENDPOINT is required: the upstream server, for example "
                "--connect tcp:host=example.org:port=80"
            )
        try:
            client_endpoint(default_reactor(None), connect)
        except ValueError as exc:
            raise usage.UsageError(f"--connect {connect!r}: {exc}") from exc
        self["connect-timeout"] = _parse_seconds(
            "connect-timeout", self["connect-timeout"], allow_zero=False
        )
        self["idle-timeout"] = (
            _parse_seconds("idle-timeout", self["idle-timeout"], allow_zero=True) or None
        )
        raw = self["max-connections"]
        try:
            limit = int(str(raw))
        except ValueError:
            raise usage.UsageError(
                f"--max-connections must be a whole number, not {raw!r}"
            ) from None
        if limit < 0:
            raise usage.UsageError(f"--max-connections must be >= 0, not {raw!r}")
        self["max-connections"] = limit or None
        self["send-proxy-header"] = bool(self["send-proxy-header"])


def makeService(options: usage.Options) -> ProxyService:
    """The twistd entry point: the L{proxy_service} for C{options}."""
    service = proxy_service(
        options["listen"],
        options["connect"],
        connect_timeout=options["connect-timeout"],
        idle_timeout=options["idle-timeout"],
        max_connections=options["max-connections"],
        send_proxy_header=options["send-proxy-header"],
    )
    service.stop_reactor_on_listen_error = True
    return service


def proxy_service(
    listen: Sequence[str],
    connect: Any,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    idle_timeout: float | None = None,
    max_connections: int | None = None,
    send_proxy_header: bool = False,
    loop: Any = None,
) -> ProxyService:
    """
    A proxy listening on every endpoint string in C{listen} once started,
    relaying each connection to C{connect} (a client endpoint string or a
    Twisted C{IStreamClientEndpoint}).

    @param connect_timeout: seconds allowed for each upstream connection.
    @param idle_timeout: close a pair after this many seconds without data
        either way; C{None}: never.
    @param max_connections: refuse (accept and close at once) clients beyond
        this many open pairs; C{None}: no limit.
    @param send_proxy_header: write a PROXY protocol v1 header upstream first.
    @raise TypeError: an argument has the wrong type.
    @raise ValueError: an endpoint does not parse, or a number is out of range.
    """
    reactor = default_reactor(loop)
    listen_list = check_listen(listen, reactor)
    endpoint, _host = client_endpoint(reactor, connect)
    limit = check_timeout(connect_timeout, "connect_timeout")
    if not limit:
        raise ValueError(f"connect_timeout must be > 0 seconds, not {connect_timeout!r}")
    idle = check_timeout(idle_timeout, "idle_timeout")
    if idle == 0:
        raise ValueError(f"idle_timeout must be > 0 seconds or None, not {idle_timeout!r}")
    if max_connections is not None and (
        isinstance(max_connections, bool)
        or not isinstance(max_connections, int)
        or max_connections < 1
    ):
        raise ValueError(f"max_connections must be an int >= 1 or None, not {max_connections!r}")
    if not isinstance(send_proxy_header, bool):
        raise TypeError(f"send_proxy_header must be a bool, not {send_proxy_header!r}")
    return ProxyService(
        listen_list,
        endpoint,
        connect if isinstance(connect, str) else repr(connect),
        connect_timeout=limit,
        idle_timeout=idle,
        max_connections=max_connections,
        send_proxy_header=send_proxy_header,
        loop=reactor,
    )


def proxy_header_v1(client: Address, server: Address) -> bytes:
    """
    The PROXY protocol v1 line for a connection from C{client} to C{server}
    (both C{(host, port)}): C{PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\\r\\n},
    or C{PROXY UNKNOWN\\r\\n} when the addresses are not both IPv4 or both IPv6.
    """
    try:
        src = ipaddress.ip_address(client[0].split("%")[0])
        dst = ipaddress.ip_address(server[0].split("%")[0])
    except ValueError:
        return b"PROXY UNKNOWN\r\n"
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {client[1]} {server[1]}\r\n".encode("ascii")


class ProxyService(ConnectionsService):
    """
    Relays each accepted connection to the upstream endpoint.

    Each pair is a L{txtcp.core.relay}: in both directions, bytes go to the
    other side with flow control (between plain TCP connections on Linux
    they move in the kernel through a pipe of at most 256 KiB; otherwise
    the proxy holds at most about 128 KiB per direction, the transport's
    64 KiB write buffer threshold plus one 64 KiB read), plus the kernel's
    socket buffers.  An end of stream half-closes the other side (a TLS
    side cannot half-close: it is closed after flushing); a close closes
    the other side after flushing.

    The client is kept paused until the upstream connection is made, so
    its early data is neither lost nor reordered.  If connecting upstream
    fails, the client is closed at once and the cause logged.  Clients
    beyond C{max_connections} are refused: accepted and closed at once.
    One log line per connection when it ends: client host and port,
    upstream, bytes up and down, duration and how it ended.
    """

    label = "tcp-proxy"

    def __init__(
        self,
        listen: Sequence[str],
        endpoint: Any,
        upstream: str,
        *,
        connect_timeout: float,
        idle_timeout: float | None,
        max_connections: int | None,
        send_proxy_header: bool,
        loop: Any = None,
    ) -> None:
        ConnectionsService.__init__(self, listen, loop=loop)
        self.endpoint = endpoint
        self.upstream = upstream
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.send_proxy_header = send_proxy_header

    def _accepted(self, conn: TcpConnection) -> None:
        if self._stopping:
            conn.close()
            return
        limit = self.max_connections
        if limit is not None and len(self._sessions) >= limit:
            _ProxySession._log.info(
                _END_FORMAT,
                client=_remote(conn),
                upstream=self.upstream,
                bytes_up=0,
                bytes_down=0,
                duration=0.0,
                how=f"refused: {limit} connections open (max connections)",
            )
            conn.close()
            return
        self._track(_ProxySession(self, conn))


_END_FORMAT = (
    "tcp-proxy connection from {client} to {upstream} ended: {bytes_up} bytes up, "
    "{bytes_down} bytes down, {duration:.3f} s, {how}"
)


def _remote(conn: TcpConnection) -> str:
    try:
        return format_address(conn.remote_address)
    except Exception:
        return "?"


class _ProxySession:
    """A client connection and its upstream connection, wired together."""

    _log = Logger()

    def __init__(self, service: ProxyService, client: TcpConnection) -> None:
        self.done: Deferred[None] = Deferred()
        self._service = service
        self._reactor = service._reactor
        self._client = client
        self._upstream: TcpConnection | None = None
        self._client_label = _remote(client)
        self._upstream_label = service.upstream
        self._relay: Relay | None = None
        self._started = self._reactor.seconds()
        self._how: str | None = None
        self._client_closed = False
        self._connecting = True
        self._upstream_closed = False
        self._idle_call: Any = None
        self._finished = False
        self._abandoned = False
        client.allow_half_open = True
        client.on("error", lambda exc: self._note(f"client error: {error_cause(exc)}"))
        client.on("close", self._client_close)
        connector = TcpClient(self._reactor)
        connector.once("connect", self._connected)
        connector.once("connect_error", self._connect_failed)
        connector.connect_endpoint(service.endpoint, service.connect_timeout)

    def _note(self, how: str) -> None:
        if self._how is None:
            self._how = how

    # -- upstream connection -------------------------------------------------

    def _connect_failed(self, errtype: type[OSError], code: int) -> None:
        if self._abandoned:
            return
        self._connecting = False
        self._note(f"upstream connect failed: {connect_error_cause(errtype, code)}")
        self._client.close()
        self._maybe_finished()

    def _connected(self, upstream: TcpConnection) -> None:
        if self._abandoned:
            upstream.abort()
            return
        self._connecting = False
        self._upstream = upstream
        self._upstream_label = _remote(upstream)
        upstream.allow_half_open = True
        upstream.on("error", lambda exc: self._note(f"upstream error: {error_cause(exc)}"))
        upstream.on("close", self._upstream_close)
        client = self._client
        if self._client_closed or self._service._stopping:
            self._note("service stopped")
            upstream.close()
            client.close()
            return
        if self._service.send_proxy_header:
            upstream.write(proxy_header_v1(client.remote_address, client.local_address))
        for conn in (client, upstream):
            # A proxy passes bytes on as soon as they come: Nagle's delay is
            # the ends' choice to make, not the proxy's.
            with contextlib.suppress(TxtcpError, OSError):
                conn.nodelay = True
        # Nothing per chunk here: the relay counts the bytes and notes the
        # time of the last activity, which the idle check reads.
        self._relay = relay(client, upstream)
        if self._service.idle_timeout is not None:
            self._idle_call = self._reactor.callLater(self._service.idle_timeout, self._idle)

    # -- ending ------------------------------------------------------------

    def _idle(self) -> None:
        self._idle_call = None
        timeout = self._service.idle_timeout
        if timeout is None or self._finished:
            return
        last = self._relay.last_activity if self._relay is not None else self._started
        quiet = self._reactor.seconds() - last
        if quiet < timeout:
            self._idle_call = self._reactor.callLater(timeout - quiet, self._idle)
            return
        self._note(f"idle timeout ({timeout:g} s)")
        self.stop()

    def _client_close(self) -> None:
        self._client_closed = True
        self._note("client closed")
        self._maybe_finished()

    def _upstream_close(self) -> None:
        self._upstream_closed = True
        self._note("upstream closed")
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        if self._finished or not self._client_closed or self._connecting:
            return
        if self._upstream is not None and not self._upstream_closed:
            return
        self._finished = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        # Behind a haproxy: endpoint the client's address comes from the
        # PROXY header, which is read after the connection was accepted.
        label = _remote(self._client)
        if label != "?":
            self._client_label = label
        self._log.info(
            _END_FORMAT,
            client=self._client_label,
            upstream=self._upstream_label,
            bytes_up=self._relay.bytes_a_to_b if self._relay is not None else 0,
            bytes_down=self._relay.bytes_b_to_a if self._relay is not None else 0,
            duration=self._reactor.seconds() - self._started,
            how=self._how or "closed",
        )
        self.done.callback(None)

    def stop(self) -> None:
        """Close both sides after flushing (service stopping, idle timeout)."""
        self._note("service stopped")
        if self._connecting:
            # The attempt cannot be cancelled; its connection is dropped.
            self._abandoned = True
            self._connecting = False
        self._client.close()
        if self._upstream is not None:
            self._upstream.close()
        self._maybe_finished()

    def abort(self) -> None:
        """Close both sides now."""
        if self._connecting:
            self._abandoned = True
            self._connecting = False
        self._client.abort()
        if self._upstream is not None:
            self._upstream.abort()
