# -*- test-case-name: tests.test_client -*-
"""
L{TcpClient} and L{TlsClient}: outgoing connections, as events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._connection import TcpConnection, _TcpFactory, _TcpProtocol
from ._emitter import EventEmitter
from ._endpoints import (
    DEFAULT_CONNECT_TIMEOUT,
    check_host,
    check_port,
    check_timeout,
    client_endpoint,
    is_ip_literal,
)
from ._errors import error_info
from ._reactor import _default_reactor
from ._tls import TrustRoot, client_options, load_trust_root

_log = Logger()


class ConnectAttempt:
    """
    A connection attempt, as returned by L{TcpClient.connect}:
    L{cancel} gives it up.
    """

    __slots__ = ("_cancelled", "_deferred")

    def __init__(self, deferred: Deferred[Any] | _Pending) -> None:
        # A Deferred, or for an address literal the lighter _Pending; both
        # have called and cancel().
        self._deferred = deferred
        self._cancelled = False

    @property
    def done(self) -> bool:
        """Whether the attempt has ended (connected, failed or cancelled)."""
        return self._cancelled or self._deferred.called

    def cancel(self) -> None:
        """
        Give the attempt up: no event follows, and the lookup or connection
        under way is dropped.  Does nothing once the attempt has ended.
        """
        if self.done:
            return
        self._cancelled = True
        self._deferred.cancel()


class TcpClient(EventEmitter):
    """
    Makes outgoing connections.

    Events:
      - C{connect(connection)}: a L{TcpConnection}, paused for reading.
      - C{connect_error(errtype, error)}: the attempt failed.  C{errtype} is
        C{socket.error} (C{OSError}) with an C{errno} value (C{ECONNREFUSED},
        C{ETIMEDOUT}, C{ENETUNREACH}, ...), or C{socket.gaierror} with a
        C{socket.EAI_*} code when the name did not resolve.
      - C{connect_failure(info)}: the same failure as an L{ErrorInfo}
        (kind, codes, original exception), emitted right after
        C{connect_error} for layers that need more than an errno.

    Each call to L{connect} gives exactly one C{connect}, or one
    C{connect_error} followed by one C{connect_failure}, unless the
    L{ConnectAttempt} it returns is cancelled.
    """

    __slots__ = ("_reactor",)
    _log = Logger()

    def __init__(self, loop: Any = None) -> None:
        EventEmitter.__init__(self)
        self._reactor = _default_reactor(loop)

    @property
    def loop(self) -> Any:
        """The reactor this client uses."""
        return self._reactor

    def connect(
        self,
        host: str | bytes,
        port: int | str,
        timeout: float | None = None,
        *,
        bind_address: tuple[str, int] | None = None,
    ) -> ConnectAttempt:
        """
        Connect to C{port} on C{host} (a name, an IPv4 or an IPv6 literal).

        Names resolve without blocking the reactor and every address is
        tried, IPv4 and IPv6.  C{timeout} bounds the whole attempt, in
        seconds; without it each address gets Twisted's default of 30 s.
        C{bind_address} is the local C{(host, port)} to connect from.

        @raise TypeError: an argument has the wrong type.
        @raise ValueError: C{port} is outside 0..65535 or C{timeout} < 0.
        """
        host_s = check_host(host)
        port_n = check_port(port)
        limit = check_timeout(timeout)
        bind = _check_bind_address(bind_address)
        per_attempt = limit if limit else DEFAULT_CONNECT_TIMEOUT
        endpoint: Any
        if is_ip_literal(host_s):
            endpoint = _AddressEndpoint(self._reactor, host_s, port_n, per_attempt, bind)
        else:
            endpoint = HostnameEndpoint(
                self._reactor, host_s, port_n, timeout=per_attempt, bindAddress=bind
            )
        return self._connect(endpoint, host_s, limit)

    def connect_endpoint(
        self, endpoint: Any, timeout: float | None = None, *, hostname: str | None = None
    ) -> ConnectAttempt:
        """
        Connect through a Twisted client endpoint, or an endpoint description
        string (C{tcp:host=H:port=P}, C{tls:H:P}, C{unix:path=P}, ...).

        C{hostname} names the server for a later C{start_tls} when the
        endpoint does not say it.

        @raise TypeError: C{endpoint} is neither an endpoint nor a string.
        @raise ValueError: the string cannot be parsed, or C{timeout} < 0.
        """
        limit = check_timeout(timeout)
        if hostname is not None:
            hostname = check_host(hostname, "hostname")
        ep, host = client_endpoint(self._reactor, endpoint)
        return self._connect(ep, hostname or host, limit)

    def _tls_options(self, hostname: str) -> Any:
        return None

    def _connect(self, endpoint: Any, hostname: str | None, limit: float | None) -> ConnectAttempt:
        factory = _TcpFactory(
            self._reactor,
            accepted=False,
            peer_name=hostname,
            tls_options=self._tls_options(hostname) if hostname is not None else None,
        )
        timed_out: list[bool] = []
        timer = None

        def connected(result: _TcpProtocol | TcpConnection) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            conn = result if isinstance(result, TcpConnection) else result.connection
            self._emit("connect", conn)

        def failed(reason: Failure) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            if attempt._cancelled:
                return
            exc: BaseException = reason.value or Exception(str(reason))
            if timed_out or (own_timeout and reason.check(ConnectTimeoutError)):
                exc = ConnectTimeoutError(string=f"no connection within {limit} seconds")
            info = error_info(exc)
            self._emit("connect_error", info.errtype, info.errno)
            self._emit("connect_failure", info)

        job: Deferred[Any] | _Pending
        literal = type(endpoint) is _AddressEndpoint
        # One address, one attempt: the connector's own timeout is the limit.
        own_timeout = bool(limit) and literal
        if literal:
            job = endpoint.start(factory, connected, failed)
        else:
            d: Deferred[Any] = endpoint.connect(factory)
            d.addCallbacks(connected, failed)
            d.addErrback(lambda f: self._log.failure("Unexpected failure while connecting", f))
            job = d
        attempt = ConnectAttempt(job)
        if limit is not None and not own_timeout:

            def expire() -> None:
                timed_out.append(True)
                job.cancel()

            timer = self._reactor.callLater(limit, expire)
        return attempt


class _AddressEndpoint:
    """
    Connects to an address literal with C{connectTCP}: no lookup, no resolver
    thread, no endpoint wrapper and no Deferred.
    """

    __slots__ = ("_bind", "_host", "_port", "_reactor", "_timeout")

    def __init__(
        self, reactor: Any, host: str, port: int, timeout: float, bind: tuple[str, int] | None
    ) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout
        self._bind = bind

    def start(
        self,
        factory: _TcpFactory,
        connected: Callable[[TcpConnection], None],
        failed: Callable[[Failure], None],
    ) -> _Pending:
        """Start connecting; C{connected} or C{failed} is called once."""
        pending = _Pending(factory, connected, failed)
        pending.connector = self._reactor.connectTCP(
            self._host, self._port, factory, timeout=self._timeout, bindAddress=self._bind
        )
        return pending


class _Pending:
    """
    One attempt of L{_AddressEndpoint}: what a Deferred would do for it, for
    less.  Once it ends it lets go of the callbacks, the connector and the
    factory's hooks: no reference cycle outlives the attempt, so nothing of
    it waits for the garbage collector.
    """

    __slots__ = ("called", "connector", "factory", "on_connected", "on_failed")

    def __init__(
        self,
        factory: _TcpFactory,
        connected: Callable[[TcpConnection], None],
        failed: Callable[[Failure], None],
    ) -> None:
        self.called = False
        self.factory = factory
        self.connector: Any = None
        self.on_connected: Callable[[TcpConnection], None] | None = connected
        self.on_failed: Callable[[Failure], None] | None = failed
        factory.on_connection = self.connected
        factory.on_failure = self.failed

    def cancel(self) -> None:
        if not self.called and self.connector is not None:
            # The connector reports the failure (a UserError) at once.
            self.connector.stopConnecting()

    def connected(self, conn: TcpConnection) -> None:
        callback = self._end()[0]
        if callback is not None:
            try:
                callback(conn)
            except Exception:
                _log.failure("Unexpected failure while connecting")

    def failed(self, reason: Failure) -> None:
        errback = self._end()[1]
        if errback is not None:
            try:
                errback(reason)
            except Exception:
                _log.failure("Unexpected failure while connecting")

    def _end(
        self,
    ) -> tuple[Callable[[TcpConnection], None] | None, Callable[[Failure], None] | None]:
        callbacks = (self.on_connected, self.on_failed)
        self.called = True
        self.on_connected = self.on_failed = None
        self.connector = None
        self.factory.on_connection = self.factory.on_failure = None
        return callbacks


class TlsClient(TcpClient):
    """
    A L{TcpClient} whose connections use TLS.

    The server's certificate and host name are verified (service-identity)
    against C{trust_root}: a path to a PEM file of CA certificates, a
    Twisted C{Certificate} or C{IOpenSSLTrustRoot}, or C{None} for the
    platform's trust store.  C{connect} is emitted when the TCP connection
    is made (what is written waits for the handshake); C{tls} follows on the
    connection when the server is verified, or C{error} and C{close} when it
    is not.  TLS below 1.2 is refused.
    """

    __slots__ = ("_trust_root",)

    def __init__(self, loop: Any = None, *, trust_root: TrustRoot = None) -> None:
        root = load_trust_root(trust_root)
        TcpClient.__init__(self, loop)
        self._trust_root = root

    def _tls_options(self, hostname: str) -> Any:
        return client_options(hostname, self._trust_root)

    def connect_endpoint(
        self, endpoint: Any, timeout: float | None = None, *, hostname: str | None = None
    ) -> ConnectAttempt:
        """
        As L{TcpClient.connect_endpoint}, with TLS on top: the endpoint must
        name its host (a C{tcp:} string does), or C{hostname} must be given.
        """
        limit = check_timeout(timeout)
        if hostname is not None:
            hostname = check_host(hostname, "hostname")
        ep, host = client_endpoint(self._reactor, endpoint)
        if not (hostname or host):
            raise ValueError("TlsClient.connect_endpoint needs hostname= to verify the server")
        return self._connect(ep, hostname or host, limit)


def _check_bind_address(bind_address: object) -> tuple[str, int] | None:
    if bind_address is None:
        return None
    if not isinstance(bind_address, tuple) or len(bind_address) != 2:
        raise TypeError(f"bind_address must be a (host, port) tuple or None, not {bind_address!r}")
    return (check_host(bind_address[0], "bind_address host"), check_port(bind_address[1]))
