# -*- test-case-name: tests.test_server -*-
"""
L{TcpServer} and L{TlsServer}: accepted connections, as events.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger
from zope.interface import implementer

from ._connection import Address, TcpConnection, _address, _TcpFactory
from ._emitter import EventEmitter
from ._endpoints import (
    DEFAULT_BACKLOG,
    check_host,
    check_port,
    is_ip_literal,
    server_endpoint,
    tcp_server_endpoint,
)
from ._errors import HostNotFoundError
from ._reactor import _default_reactor
from ._tls import CertificateSource, KeySource, TrustRoot, load_certificate, server_options

_NOT_STARTED, _STARTING, _LISTENING, _STOPPING, _STOPPED = range(5)


class TcpServer(EventEmitter):
    """
    Accepts connections on C{host} and C{port}.

    C{host} is an IPv4 or IPv6 literal, or a name (the server listens on the
    first address it resolves to); C{port} 0 picks a free port.  Listening
    starts at once; the events come from the reactor, so listeners added
    right after construction see them all.

    Events:
      - C{start()}: listening; L{port} and L{address} are known.
      - C{connect(connection)}: a L{TcpConnection}, paused for reading.
      - C{error(exception)}: listening failed (address in use, name not
        found, ...); no C{start} comes.
      - C{stop()}: the server stopped accepting, after L{close}.
    """

    __slots__ = ("_events_ready", "_factory", "_listen_error", "_port", "_reactor", "_state")
    _log = Logger()

    def __init__(
        self,
        host: str | bytes,
        port: int | str,
        loop: Any = None,
        *,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        host_s = check_host(host)
        port_n = check_port(port)
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise ValueError(f"backlog must be a positive int, not {backlog!r}")
        self._setup(loop)
        if host_s == "" or is_ip_literal(host_s):
            self._listen(tcp_server_endpoint(self._reactor, host_s, port_n, backlog))
        else:
            self._resolve_then_listen(host_s, port_n, backlog)

    @classmethod
    def from_endpoint(cls, endpoint: Any, loop: Any = None) -> TcpServer:
        """
        A server listening on a Twisted server endpoint, or an endpoint
        description string (C{tcp:8007:interface=127.0.0.1}, C{tcp6:...},
        C{ssl:...}, C{unix:...}, C{haproxy:...}, C{systemd:...}).

        @raise TypeError: C{endpoint} is neither an endpoint nor a string.
        @raise ValueError: the string cannot be parsed.
        """
        reactor = _default_reactor(loop)
        ep = server_endpoint(reactor, endpoint, backlog=DEFAULT_BACKLOG)
        self = cls.__new__(cls)
        self._setup(reactor)
        self._listen(ep)
        return self

    @classmethod
    def from_socket(cls, sock: socket.socket, loop: Any = None) -> TcpServer:
        """
        A server accepting on C{sock}, a bound and listening socket.  The
        server works on a duplicate of it: the caller still owns C{sock}, which
        is left in non-blocking mode.
        """
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {sock!r}")
        reactor = _default_reactor(loop)
        self = cls.__new__(cls)
        self._setup(reactor)
        self._state = _STARTING
        try:
            sock.setblocking(False)
            port = reactor.adoptStreamPort(sock.fileno(), sock.family, self._factory)
        except Exception as exc:
            self._fail(exc)
            return self
        self._port = port
        self._state = _LISTENING
        return self

    def _setup(self, loop: Any) -> None:
        EventEmitter.__init__(self)
        self._reactor = _default_reactor(loop)
        self._state = _NOT_STARTED
        self._port: Any = None
        self._listen_error: BaseException | None = None
        self._factory = _TcpFactory(
            self._reactor,
            accepted=True,
            on_connection=self._accepted,
            tls_options=self._tls_options(),
        )
        self._events_ready = False
        self._reactor.callLater(0, self._ready)

    def _tls_options(self) -> Any:
        return None

    @property
    def loop(self) -> Any:
        """The reactor this server uses."""
        return self._reactor

    def _ready(self) -> None:
        # Events that happened during construction are emitted from here.
        self._events_ready = True
        if self._state == _LISTENING:
            self._emit("start")

    def _accepted(self, conn: TcpConnection) -> None:
        self._emit("connect", conn)

    def _listen(self, endpoint: Any) -> None:
        self._state = _STARTING
        d: Deferred[Any] = Deferred.fromCoroutine(self._do_listen(endpoint))
        d.addErrback(lambda f: self._log.failure("Unexpected failure while listening", f))

    async def _do_listen(self, endpoint: Any) -> None:
        try:
            port = await endpoint.listen(self._factory)
        except Exception as exc:
            self._fail(exc)
            return
        self._port = port
        if self._state == _STOPPING:
            await port.stopListening()
            self._state = _STOPPED
            self._emit_when_ready("stop")
            return
        self._state = _LISTENING
        if self._events_ready:
            self._emit("start")

    def _fail(self, exc: BaseException) -> None:
        self._state = _STOPPED
        self._listen_error = exc
        self._emit_when_ready("error", exc)

    def _emit_when_ready(self, event: str, *args: Any) -> None:
        if self._events_ready:
            self._emit(event, *args)
        else:
            self._reactor.callLater(0, self._emit, event, *args)

    def _resolve_then_listen(self, host: str, port: int, backlog: int) -> None:
        self._state = _STARTING
        addresses: list[str] = []

        @implementer(IResolutionReceiver)
        class Receiver:
            def resolutionBegan(self, resolution: object) -> None:
                pass

            def addressResolved(self, address: Any) -> None:
                addresses.append(address.host)

            def resolutionComplete(receiver) -> None:  # noqa: N805
                if self._state == _STOPPING:
                    self._state = _STOPPED
                    self._emit_when_ready("stop")
                elif not addresses:
                    self._fail(HostNotFoundError(-2, f"cannot resolve {host!r}"))
                else:
                    self._listen(tcp_server_endpoint(self._reactor, addresses[0], port, backlog))

        self._reactor.nameResolver.resolveHostName(Receiver(), host, port)

    @property
    def port(self) -> int | None:
        """The bound port once listening (C{start} emitted), else C{None}."""
        addr = self.address
        return addr[1] if addr is not None else None

    @property
    def address(self) -> Address | None:
        """The bound C{(host, port)} once listening, else C{None}."""
        if self._port is None:
            return None
        return _address(self._port.getHost())

    @property
    def listen_error(self) -> BaseException | None:
        """
        Why listening failed, as soon as that is known (the C{error} event
        follows, a reactor turn later at the soonest), else C{None}.  An
        endpoint that fails at once (an address in use, for example) is
        known when the constructor returns.
        """
        return self._listen_error

    @property
    def listening(self) -> bool:
        """Whether the server is accepting connections."""
        return self._state == _LISTENING

    def close(self) -> None:
        """
        Stop accepting connections; C{stop} follows.  Connections already
        accepted stay open.  Closing twice does nothing.
        """
        if self._state in (_STOPPING, _STOPPED):
            return
        if self._state != _LISTENING:
            self._state = _STOPPING
            return
        self._state = _STOPPING
        d = Deferred.fromCoroutine(self._stop())
        d.addErrback(lambda f: self._log.failure("Unexpected failure while stopping", f))

    async def _stop(self) -> None:
        try:
            await self._port.stopListening()
        finally:
            self._state = _STOPPED
            self._emit_when_ready("stop")


class TlsServer(TcpServer):
    """
    A L{TcpServer} whose connections use TLS.

    C{certificate} is a PEM file path (the private key may sit in the same
    file, or in C{private_key}) or a Twisted C{PrivateCertificate}.  With
    C{require_client_certificate}, clients must present a certificate that
    C{trust_root} signed.  C{connect} is emitted when a client connects;
    C{tls} follows on the connection when the handshake completes.  TLS
    below 1.2 is refused.
    """

    __slots__ = ("_options",)

    def __init__(
        self,
        host: str | bytes,
        port: int | str,
        loop: Any = None,
        *,
        certificate: CertificateSource,
        private_key: KeySource = None,
        trust_root: TrustRoot = None,
        require_client_certificate: bool = False,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        self._options = server_options(
            load_certificate(certificate, private_key),
            trust_root=trust_root,
            require_client_certificate=require_client_certificate,
        )
        TcpServer.__init__(self, host, port, loop, backlog=backlog)

    @classmethod
    def from_endpoint(  # type: ignore[override]
        cls,
        endpoint: Any,
        loop: Any = None,
        *,
        certificate: CertificateSource,
        private_key: KeySource = None,
        trust_root: TrustRoot = None,
        require_client_certificate: bool = False,
    ) -> TlsServer:
        """A TLS server on a Twisted server endpoint or description string."""
        options = server_options(
            load_certificate(certificate, private_key),
            trust_root=trust_root,
            require_client_certificate=require_client_certificate,
        )
        reactor = _default_reactor(loop)
        ep = server_endpoint(reactor, endpoint, backlog=DEFAULT_BACKLOG)
        self = cls.__new__(cls)
        self._options = options
        self._setup(reactor)
        self._listen(ep)
        return self

    def _tls_options(self) -> Any:
        return self._options


def adopt_connection(sock: socket.socket, loop: Any = None) -> TcpConnection:
    """
    A L{TcpConnection} over C{sock}, a connected TCP socket.  The connection
    works on a duplicate of it: the caller still owns C{sock}, which is left
    in non-blocking mode.  It starts paused for reading, like every connection.
    """
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {sock!r}")
    reactor = _default_reactor(loop)
    made: list[TcpConnection] = []
    factory = _TcpFactory(reactor, accepted=True, on_connection=made.append)
    sock.setblocking(False)
    reactor.adoptStreamConnection(sock.fileno(), sock.family, factory)
    return made[0]
