# -*- test-case-name: tests.test_connection -*-
"""
L{TcpConnection}: one TCP (or TLS, or UNIX) connection, as events.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet import abstract, tcp
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IPushProducer,
    ISSLTransport,
    ITLSTransport,
)
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

from ._emitter import EventEmitter
from ._errors import ConnectionClosedError, TxtcpError, UnsupportedOperationError
from ._tls import (
    CertificateSource,
    KeySource,
    TrustRoot,
    check_trust_root,
    client_options,
    load_certificate,
    server_options,
)

Address = tuple[str, int]

_DONE = Failure(ConnectionDone())

# Shared pause-reason sets: most connections only ever hold one of these.
_USER_PAUSED: frozenset[Hashable] = frozenset({None})
_NOT_PAUSED: frozenset[Hashable] = frozenset()

# TcpConnection._flags: its rarely changing booleans, packed in one int (a
# slot each would cost 8 bytes per connection).
_ABORTED = 1
_ACCEPTED = 2
_DELIVERING = 4
_HANDSHAKING = 8
_TLS = 16
_TRANSPORT_PAUSED = 32
_WRITE_PAUSED = 64
_HALF_OPEN = 128
# Emitting the peer's end of stream, and close() was called by one of its
# listeners (see _end).
_ENDING = 256
_CLOSE_ASKED = 512

#: An internal event (for a relay): the write side is shut, the end of
#: stream sent after everything written before it.
_WRITE_SHUT = "_write_shut"

# Markers queued behind undelivered data: the peer's end of stream, and the
# loss of the connection.
_END = object()


class _Lost:
    __slots__ = ("reason",)

    def __init__(self, reason: Failure) -> None:
        self.reason = reason


def as_bytes(data: object, name: str = "data") -> bytes:
    """
    Return C{data} as C{bytes}; it must be C{bytes}, C{bytearray} or a
    C{memoryview}, or C{TypeError} is raised.
    """
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(
        f"{name} must be bytes, bytearray or memoryview, not {type(data).__name__}: {data!r:.60}"
    )


@implementer(IPushProducer)
class TcpConnection(EventEmitter):
    """
    One established connection; built by L{TcpClient} and L{TcpServer}, never
    by users.

    Events, in the order they can come:
      - C{data(bytes)}: bytes received.  None is emitted until reading is
        unpaused with C{pause(False)}.
      - C{pause(paused)}: the write side's buffer is full (C{True}) or has
        drained (C{False}).
      - C{tls()}: a TLS handshake completed and the peer was verified.
      - C{end()}: the peer ended its stream.  Unless L{allow_half_open} is
        set, the connection then sends what it still has and closes.
      - C{error(exception)}: the connection ended abnormally (reset, TLS
        failure); always followed by C{close}.
      - C{close()}: the connection is closed; emitted once, whatever the cause.

    An exception raised by a C{data} listener is logged and aborts the
    connection; one raised by any other listener is logged.
    """

    __slots__ = (
        "__weakref__",
        "_addresses",
        "_closed",
        "_closing",
        "_direct",
        "_ended",
        "_flags",
        "_peer_name",
        "_queue",
        "_reactor",
        "_read_eof",
        "_reasons",
        "_relay",
        "_transport",
        "_write_shut",
    )
    _log = Logger()

    def __init__(
        self, transport: Any, reactor: Any, *, accepted: bool, peer_name: str | None
    ) -> None:
        EventEmitter.__init__(self)
        self._transport = transport
        self._reactor = reactor
        self._peer_name = peer_name
        self._reasons: frozenset[Hashable] = _USER_PAUSED
        self._addresses: tuple[Address, Address] | None = None
        self._queue: deque[object] | None = None
        self._closing = False
        self._write_shut = False
        self._closed = False
        self._ended = False
        self._read_eof = False
        # A plain TCP transport whose buffer is empty can take a write on the
        # spot, a reactor turn sooner (see write()).
        self._direct = _direct_socket(transport)
        flags = _ACCEPTED if accepted else 0
        if self._direct is None and (
            ISSLTransport.providedBy(transport) or isinstance(transport, TLSMemoryBIOProtocol)
        ):
            flags |= _TLS | _HANDSHAKING
        self._flags = flags
        # The relay (see _relay.py) moving this socket's bytes in the kernel,
        # if any: it hands the socket back before anything else acts on it.
        self._relay: Any = None
        transport.registerProducer(self, True)
        # Reading is paused by _TcpProtocol once the connect event has run:
        # a listener that unpauses at once then costs no pause and resume.

    # -- reading ---------------------------------------------------------

    def pause(self, paused: bool, reason: Hashable = None) -> None:
        """
        Pause (C{True}) or resume (C{False}) the C{data} events.

        A new connection starts paused.  Pauses are kept per C{reason}:
        reading goes on only when no reason is left, so a component that
        shares the connection (a proxy, a buffering layer) pauses under a
        reason of its own and never undoes the user's pause.  The default
        reason C{None} is the user's.
        """
        if not isinstance(paused, bool):
            raise TypeError(f"paused must be a bool, not {paused!r}")
        if self._relay is not None:
            self._relay._leave_splice()
        reasons = self._reasons | {reason} if paused else self._reasons - {reason}
        self._reasons = reasons or _NOT_PAUSED
        self._apply_read_state()
        if not reasons and self._queue:
            self._deliver_queued()

    @property
    def paused(self) -> bool:
        """Whether C{data} events are paused (for any reason)."""
        return bool(self._reasons)

    @property
    def allow_half_open(self) -> bool:
        """
        When C{True}, the connection stays open for writing after the peer
        ends its stream, until L{close}.  C{False} at first; set it before
        unpausing.
        """
        return bool(self._flags & _HALF_OPEN)

    @allow_half_open.setter
    def allow_half_open(self, value: bool) -> None:
        if value:
            self._flags |= _HALF_OPEN
        else:
            self._flags &= ~_HALF_OPEN

    def _apply_read_state(self) -> None:
        # After the peer's end of stream the transport no longer reads;
        # resuming it would read the end of stream again.
        if self._closed or self._read_eof:
            return
        flags = self._flags
        want = bool(self._reasons) and not flags & _HANDSHAKING
        if want != bool(flags & _TRANSPORT_PAUSED):
            if want:
                self._flags = flags | _TRANSPORT_PAUSED
                self._transport.pauseProducing()
            else:
                self._flags = flags & ~_TRANSPORT_PAUSED
                self._transport.resumeProducing()

    def _data_received(self, data: bytes) -> None:
        if self._reasons or self._queue:
            self._enqueue(data)
            return
        if not self._emit("data", data):
            self.abort()

    def _enqueue(self, item: object) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)

    def _deliver_queued(self) -> None:
        if self._flags & _DELIVERING:
            return
        self._flags |= _DELIVERING
        try:
            queue = self._queue
            while queue and not self._reasons:
                item = queue.popleft()
                if item is _END:
                    self._end()
                elif isinstance(item, _Lost):
                    self._lost(item.reason)
                elif not self._closing and not self._emit("data", item):
                    self.abort()
        finally:
            self._flags &= ~_DELIVERING

    def _read_lost(self) -> None:
        if self._read_eof:
            return
        self._read_eof = True
        if self._queue:
            self._enqueue(_END)
        else:
            self._end(from_transport=True)

    def _end(self, from_transport: bool = False) -> None:
        self._ended = True
        # A close() by an end listener is finished here, once they all ran.
        self._flags |= _ENDING
        try:
            self._emit("end")
        finally:
            flags = self._flags
            self._flags = flags & ~(_ENDING | _CLOSE_ASKED)
        if self._closed or flags & _ABORTED:
            return
        if flags & _CLOSE_ASKED or (not self._closing and not flags & _HALF_OPEN):
            self._closing = True
            if from_transport and self._relay is None and self._unbuffered_tcp():
                # Nothing to flush: close at once, as Twisted itself does on
                # an end of stream, rather than a reactor turn later.
                self._forget_transport_producer()
                self._transport.connectionLost(_DONE)
                return
            if self._relay is not None:
                self._relay._leave_splice()
            self._lose_connection()
        elif not self._closing and self._write_shut:
            self._transport.loseConnection()

    def _unbuffered_tcp(self) -> bool:
        t = self._transport
        return (
            self._direct is not None
            and not self._write_shut
            and not t.disconnecting
            and not t._tempDataLen
            and len(t.dataBuffer) == t.offset
        )

    # -- writing ---------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """
        Send C{data} (bytes, bytearray or memoryview); it may be buffered.

        @raise TypeError: C{data} is not bytes-like.
        @raise ConnectionClosedError: the connection is closed or closing, or
            its write side was shut down.
        """
        if type(data) is not bytes:
            data = as_bytes(data)
        if self._relay is not None:
            self._relay._leave_splice()
        if self._closing or self._write_shut or self._closed:
            raise ConnectionClosedError(self._write_state())
        if not data:
            return
        sock = self._direct
        if sock is not None:
            t = self._transport
            if not t._tempDataLen and not t.dataBuffer:
                try:
                    sent = sock.send(data)
                except OSError:
                    sent = 0  # the transport meets the error again and reports it
                if sent == len(data):
                    return
                data = data[sent:]
        self._transport.write(data)

    def _write_state(self) -> str:
        if self._closed:
            return "cannot write: the connection is closed"
        if self._closing:
            return "cannot write: the connection is closing"
        return "cannot write: the write side was shut down"

    def try_write(self, data: bytes | bytearray | memoryview) -> int:
        """
        Send what the kernel takes of C{data} now, without buffering; return
        the number of bytes sent.

        @raise BlockingIOError: nothing could be sent now (the kernel's
            buffer is full, or earlier writes are still buffered).
        @raise TypeError: C{data} is not bytes-like.
        @raise ConnectionClosedError: as for L{write}.
        @raise UnsupportedOperationError: the connection uses TLS.
        """
        data = as_bytes(data)
        if self._relay is not None:
            self._relay._leave_splice()
        if self._closing or self._write_shut or self._closed:
            raise ConnectionClosedError(self._write_state())
        if self._flags & _TLS:
            raise UnsupportedOperationError("try_write is not possible on TLS connections")
        if not data:
            return 0
        if _buffered(self._transport):
            raise BlockingIOError(11, "earlier writes are still buffered")
        sent = self._sock().send(data)
        if not sent:
            raise BlockingIOError(11, "the kernel's send buffer is full")
        return sent

    @property
    def write_paused(self) -> bool:
        """Whether the write buffer is full (the last C{pause} event said so)."""
        return bool(self._flags & _WRITE_PAUSED)

    @property
    def write_queue_size(self) -> int:
        """Bytes waiting to be sent: written but not yet handed to the
        socket, including those a relay holds for it in a pipe."""
        if self._closed:
            return 0
        held = _buffered(self._transport)
        if self._relay is not None:
            held += self._relay._held_for(self)
        return held

    # IPushProducer, driven by the transport's write buffer.
    def pauseProducing(self) -> None:
        """The transport's buffer is full: emit C{pause(True)}."""
        if not self._flags & _WRITE_PAUSED:
            self._flags |= _WRITE_PAUSED
            self._emit("pause", True)

    def resumeProducing(self) -> None:
        """The transport's buffer has drained: emit C{pause(False)}."""
        if self._flags & _WRITE_PAUSED:
            self._flags &= ~_WRITE_PAUSED
            self._emit("pause", False)

    def stopProducing(self) -> None:
        """The transport is going away; C{close} follows."""
        with contextlib.suppress(ConnectionClosedError):
            self._remember_addresses()

    # -- closing ---------------------------------------------------------

    def close(self) -> None:
        """
        Close the connection once everything written so far has been sent;
        C{close} is emitted then.  No C{data} event comes after this call.
        Closing a closed connection does nothing.
        """
        if self._closed or self._closing:
            return
        if self._relay is not None:
            self._relay._leave_splice()
        self._closing = True
        if self._flags & _ENDING:
            self._flags |= _CLOSE_ASKED  # _end finishes it once its listeners ran
            return
        self._lose_connection()

    def _lose_connection(self) -> None:
        if self._finish_queued_loss():
            return
        self._forget_transport_producer()
        self._transport.loseConnection()

    def abort(self) -> None:
        """Close now, dropping whatever is still buffered for sending."""
        if self._closed or self._flags & _ABORTED:
            return
        if self._relay is not None:
            self._relay._leave_splice()
        self._flags |= _ABORTED
        self._closing = True
        if self._finish_queued_loss():
            return
        self._forget_transport_producer()
        self._transport.abortConnection()

    def _forget_transport_producer(self) -> None:
        # Once per connection: try/except costs less than contextlib.suppress.
        try:  # noqa: SIM105
            self._remember_addresses()
        except ConnectionClosedError:
            pass
        self._transport.unregisterProducer()

    def _finish_queued_loss(self) -> bool:
        """Drop undelivered data; if the connection is already gone, finish."""
        queue, self._queue = self._queue, None
        for item in queue or ():
            if isinstance(item, _Lost):
                self._lost(item.reason)
                return True
        return False

    def shutdown(self) -> None:
        """
        Half-close: send what is buffered, then end the stream (the peer sees
        end of stream).  Data events go on until the peer closes too.

        @raise ConnectionClosedError: the connection is closed or closing.
        @raise UnsupportedOperationError: the connection uses TLS, which
            cannot half-close, or its transport cannot.
        """
        if self._closed or self._closing:
            raise ConnectionClosedError("cannot shut down: the connection is closed")
        if self._relay is not None:
            self._relay._leave_splice()
        if self._write_shut:
            return
        if self._flags & _TLS:
            raise UnsupportedOperationError("TLS connections cannot half-close")
        lose_write = getattr(self._transport, "loseWriteConnection", None)
        if lose_write is None:
            raise UnsupportedOperationError(f"{type(self._transport).__name__} cannot half-close")
        self._write_shut = True
        self._forget_transport_producer()
        lose_write()

    def _write_lost(self) -> None:
        self._emit(_WRITE_SHUT)
        if self._ended and self._flags & _HALF_OPEN and not self._closed:
            self._transport.loseConnection()

    def _lost(self, reason: Failure) -> None:
        if self._queue and not self._closing:
            self._enqueue(_Lost(reason))
            return
        self._queue = None
        self._closed = True
        exc = reason.value
        clean = isinstance(exc, ConnectionDone)
        if clean and not self._ended and not self._closing:
            # The peer's end of stream can come with the loss itself: TLS
            # cannot half-close, nor can a TCP connection already shut down.
            self._ended = True
            self._emit("end")
        if not clean and not (self._flags & _ABORTED and isinstance(exc, ConnectionAborted)):
            self._emit("error", exc)
        self._emit("close")
        # Nothing is emitted after close: forget the listeners, so that
        # closures holding the connection do not keep it (and its socket)
        # alive until the garbage collector finds the cycle.
        self._events = None

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (C{close} has been emitted)."""
        return self._closed

    # -- TLS -------------------------------------------------------------

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS (handshake done or under way)."""
        return bool(self._flags & _TLS)

    def start_tls(
        self,
        *,
        server: bool = False,
        hostname: str | None = None,
        trust_root: TrustRoot = None,
        certificate: CertificateSource | None = None,
        private_key: KeySource = None,
    ) -> None:
        """
        Upgrade this plain connection to TLS; C{tls} is emitted when the
        handshake completes, C{error} and C{close} if it fails.

        What was written before this call is sent in clear first; what is
        written after it waits for the handshake.  As a client
        (C{server=False}), the peer's certificate is verified against
        C{trust_root} (C{None}: the platform's trust store) and C{hostname}
        (default: the host this connection was made to).  As a server,
        C{certificate} (and C{private_key}) are required.

        @raise ConnectionClosedError: the connection is closed or closing.
        @raise TxtcpError: the connection already uses TLS.
        @raise UnsupportedOperationError: the transport cannot start TLS.
        @raise ValueError: a required setting is missing.
        """
        if self._closed or self._closing:
            raise ConnectionClosedError("cannot start TLS: the connection is closed")
        if self._relay is not None:
            self._relay._leave_splice()
        if self._flags & _TLS:
            raise TxtcpError("the connection already uses TLS")
        if not ITLSTransport.providedBy(self._transport):
            raise UnsupportedOperationError(f"{type(self._transport).__name__} cannot start TLS")
        options = self._tls_options(server, hostname, trust_root, certificate, private_key)
        self._begin_tls(options, server)

    def _tls_options(
        self,
        server: bool,
        hostname: str | None,
        trust_root: TrustRoot,
        certificate: CertificateSource | None,
        private_key: KeySource,
    ) -> Any:
        if server:
            if certificate is None:
                raise ValueError("start_tls(server=True) needs a certificate")
            return server_options(load_certificate(certificate, private_key))
        if hostname is not None and not isinstance(hostname, str):
            raise TypeError(f"hostname must be a str or None, not {hostname!r}")
        name = hostname or self._peer_name
        if not name:
            raise ValueError("start_tls() on an accepted connection needs the hostname to verify")
        check_trust_root(trust_root)
        return client_options(name, trust_root)

    def _begin_tls(self, options: Any, server: bool) -> None:
        self._flags |= _TLS | _HANDSHAKING
        self._direct = None
        self._apply_read_state()
        self._transport.startTLS(options, server == bool(self._flags & _ACCEPTED))

    def _handshake_done(self) -> None:
        if self._closed or self._closing or not self._flags & _HANDSHAKING:
            return
        self._flags &= ~_HANDSHAKING
        self._apply_read_state()
        self._emit("tls")

    # -- addresses and socket options --------------------------------------

    @property
    def local_address(self) -> Address:
        """This end's C{(host, port)}; still known after the connection closed."""
        self._remember_addresses()
        assert self._addresses is not None
        return self._addresses[0]

    @property
    def remote_address(self) -> Address:
        """The peer's C{(host, port)} (for a PROXY-protocol endpoint, the
        client's address as the proxy reported it); still known after the
        connection closed."""
        self._remember_addresses()
        assert self._addresses is not None
        return self._addresses[1]

    def _remember_addresses(self) -> None:
        # Called while the socket is still open: by the properties, and on
        # every path to closing (the socket is gone once close is emitted).
        # While the connection is open the addresses are read afresh: behind
        # a PROXY-protocol endpoint they change once the header is read.
        if self._addresses is not None and self._closed:
            return
        sock = self._direct
        if sock is not None:
            # Plain TCP over IPv4: what getHost() and getPeer() would say,
            # without building their address objects.
            t = self._transport
            peer: Any = t.client if type(t) is tcp.Server else t.realAddress
            if len(peer) == 2:
                try:
                    host, port = sock.getsockname()
                except OSError:
                    pass  # the socket is gone: as below
                else:
                    self._addresses = ((host, port), (peer[0], peer[1]))
                    return
        try:
            local = _address(self._transport.getHost())
            remote = _address(self._transport.getPeer())
        except Exception as exc:
            if self._addresses is not None:
                return
            raise ConnectionClosedError("the connection's addresses are unknown") from exc
        self._addresses = (local, remote)

    def fileno(self) -> int:
        """The socket's file descriptor, or -1 once closed."""
        if self._closed:
            return -1
        sock = _socket_of(self._transport)
        return -1 if sock is None else sock.fileno()

    @property
    def nodelay(self) -> bool:
        """Whether Nagle's algorithm is off (C{TCP_NODELAY})."""
        return bool(self._sock_tcp().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    @nodelay.setter
    def nodelay(self, enable: bool) -> None:
        value = _check_bool(enable, "nodelay")
        self._sock_tcp().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, value)

    def keepalive(self, enable: bool, delay: int | None = None) -> None:
        """
        Turn TCP keep-alive on or off; C{delay} is the idle time in seconds
        before the first probe.
        """
        value = _check_bool(enable, "enable")
        if delay is not None and (
            not isinstance(delay, int) or isinstance(delay, bool) or delay < 1
        ):
            raise ValueError(f"delay must be a positive int or None, not {delay!r}")
        sock = self._sock_tcp()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, value)
        if value and delay is not None and hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, delay)

    @property
    def send_buffer_size(self) -> int:
        """The kernel's send buffer size (C{SO_SNDBUF}); Linux doubles what is set."""
        return self._sock().getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    @send_buffer_size.setter
    def send_buffer_size(self, size: int) -> None:
        self._sock().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _check_size(size))

    @property
    def receive_buffer_size(self) -> int:
        """The kernel's receive buffer size (C{SO_RCVBUF}); Linux doubles what is set."""
        return self._sock().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    @receive_buffer_size.setter
    def receive_buffer_size(self, size: int) -> None:
        self._sock().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _check_size(size))

    def _sock(self) -> socket.socket:
        if self._closed:
            raise ConnectionClosedError("the connection is closed")
        sock = _socket_of(self._transport)
        if sock is None:
            raise UnsupportedOperationError(f"{type(self._transport).__name__} has no socket")
        return sock

    def _sock_tcp(self) -> socket.socket:
        direct = self._direct
        if direct is not None and not self._closed:
            return direct  # a plain TCP transport's own socket
        sock = self._sock()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise UnsupportedOperationError("TCP options need a TCP socket")
        return sock

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        try:
            peer = self.remote_address
        except Exception:
            peer = None
        return f"<TcpConnection {state} peer={peer!r}>"


@implementer(IProtocol, IHalfCloseableProtocol, IHandshakeListener)
class _TcpProtocol:
    """Hands a transport's events to its L{TcpConnection}."""

    __slots__ = ("_factory", "connected", "connection", "transport")

    def __init__(self, factory: _TcpFactory) -> None:
        self._factory = factory
        self.connected = 0
        self.transport: Any = None
        self.connection: TcpConnection | None = None

    def makeConnection(self, transport: Any) -> None:
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        factory = self._factory
        conn = self.connection = TcpConnection(
            self.transport,
            factory.reactor,
            accepted=factory.accepted,
            peer_name=factory.peer_name,
        )
        _mend_endpoint_wrapper(self)
        if factory.tls_options is not None:
            conn._begin_tls(factory.tls_options, factory.accepted)
        try:
            if factory.on_connection is not None:
                factory.on_connection(conn)
        finally:
            conn._apply_read_state()

    def dataReceived(self, data: bytes) -> None:
        self.connection._data_received(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.connection._read_lost()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        self.connection._write_lost()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self.connected = 0
        # A client transport and its connector refer to each other: forget
        # the transport on the connector (which has no more use for it), so
        # that neither waits for the garbage collector.
        connector = getattr(self.transport, "connector", None)
        if connector is not None and getattr(connector, "transport", None) is self.transport:
            connector.transport = None
        if self.connection is not None:
            self.connection._lost(reason)

    def handshakeCompleted(self) -> None:
        self.connection._handshake_done()  # type: ignore[union-attr]


class _TcpFactory(ClientFactory):
    """Builds a L{_TcpProtocol} per connection."""

    noisy = False

    def __init__(
        self,
        reactor: Any,
        *,
        accepted: bool,
        on_connection: Callable[[TcpConnection], None] | None = None,
        tls_options: Any = None,
        peer_name: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.accepted = accepted
        self.on_connection = on_connection
        self.tls_options = tls_options
        self.peer_name = peer_name

    # A slotted IProtocol provider rather than a Protocol subclass: a few
    # hundred bytes less per connection.
    on_failure: Callable[[Failure], None] | None = None

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)

    def buildProtocol(self, addr: Any) -> _TcpProtocol:  # type: ignore[override]
        return _TcpProtocol(self)


def _mend_endpoint_wrapper(protocol: _TcpProtocol) -> None:
    # Twisted's endpoint wrapper (_WrappingProtocol) declares only the last of
    # the interfaces its protocol provides (directlyProvides in a loop), so a
    # client made through an endpoint would never hear of a half-close.
    # (directlyProvides with a fixed set hits zope's cache; alsoProvides would
    # build a new declaration for every connection.)
    outer = getattr(protocol.transport, "protocol", None)
    if outer is not protocol and getattr(outer, "_wrappedProtocol", None) is protocol:
        directlyProvides(outer, IHalfCloseableProtocol, IHandshakeListener)


def _address(addr: Any) -> Address:
    host = getattr(addr, "host", None)
    if host is not None:
        return (host, addr.port)
    name = getattr(addr, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return (name or "", 0)


def _socket_of(transport: Any) -> socket.socket | None:
    t = transport
    for _ in range(4):
        if t is None:
            return None
        get = getattr(t, "getHandle", None)
        handle = get() if get is not None else None
        if isinstance(handle, socket.socket):
            return handle
        t = getattr(t, "transport", None)
    return None


def _direct_socket(transport: Any) -> socket.socket | None:
    if type(transport) in (tcp.Server, tcp.Client) and not transport.TLS:
        sock = transport.getHandle()
        if isinstance(sock, socket.socket):
            return sock
    return None


def _buffered(transport: Any) -> int:
    total = 0
    t = transport
    for _ in range(4):
        if isinstance(t, TLSMemoryBIOProtocol):
            total += sum(map(len, t._appSendBuffer or ()))
            t = t.transport
            continue
        if isinstance(t, abstract.FileDescriptor):
            total += len(t.dataBuffer) - t.offset + t._tempDataLen
            inner = getattr(t, "protocol", None)
            if getattr(t, "TLS", False) and isinstance(inner, TLSMemoryBIOProtocol):
                total += sum(map(len, inner._appSendBuffer or ()))
        break
    return total


def _check_bool(value: object, name: str) -> int:
    if not isinstance(value, (bool, int)):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return 1 if value else 0


def _check_size(size: object) -> int:
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"size must be an int, not {size!r}")
    if size <= 0:
        raise ValueError(f"size must be positive, not {size!r}")
    return size
