# -*- test-case-name: tests.test_tcpsocket -*-
"""
L{TcpSocket}: the stateful socket of Qt's C{QAbstractSocket} (as a Lua
C{net.TcpSocket} copies it), over txtcp's core.

A L{TcpSocket} has a state (L{SocketState}), a last error (L{SocketError}),
an internal read buffer, and handlers assigned as attributes.  State changes
and handler calls come in the orders Qt shows; see L{TcpSocket}.
"""

from __future__ import annotations

import enum
import errno
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IResolutionReceiver
from twisted.logger import Logger
from zope.interface import implementer

from txtcp.core import (
    Address,
    ConnectionClosedError,
    HostNotFoundError,
    TcpClient,
    TcpConnection,
    TlsError,
    TrustRoot,
    as_bytes,
    check_host,
    check_port,
    check_timeout,
    default_reactor,
    error_info,
    load_trust_root,
)

__all__ = ["SocketError", "SocketState", "TcpSocket"]


class SocketState(enum.IntEnum):
    """
    The states of a L{TcpSocket}, with Qt's C{QAbstractSocket::SocketState}
    values (Qt's C{ListeningState}, 5, belongs to servers and is not used).
    """

    #: Not connected: the initial state, and the state after every end.
    UNCONNECTED = 0
    #: C{connect()} was called; the host name is being looked up.
    HOST_LOOKUP = 1
    #: The host was found; a connection (and, with TLS, the handshake) is
    #: under way.
    CONNECTING = 2
    #: Connected: reading and writing work.
    CONNECTED = 3
    #: C{bind()} chose the local port for the next connection.
    BOUND = 4
    #: Closing: written data is still being sent.
    CLOSING = 6


class SocketError(enum.IntEnum):
    """
    The errors a L{TcpSocket} reports, with Qt's
    C{QAbstractSocket::SocketError} values.
    """

    #: The connection was refused by the peer.
    CONNECTION_REFUSED = 0
    #: The remote host closed the connection.
    REMOTE_HOST_CLOSED = 1
    #: The host name was not found.
    HOST_NOT_FOUND = 2
    #: Permission denied.
    SOCKET_ACCESS = 3
    #: Out of resources (too many open sockets, ...).
    SOCKET_RESOURCE = 4
    #: The operation timed out.
    SOCKET_TIMEOUT = 5
    #: The datagram was too large (never reported by TCP).
    DATAGRAM_TOO_LARGE = 6
    #: A network error (no route, network down, ...).
    NETWORK = 7
    #: The local address is already in use.
    ADDRESS_IN_USE = 8
    #: The local address is not available on this host.
    SOCKET_ADDRESS_NOT_AVAILABLE = 9
    #: The operation is not supported.
    UNSUPPORTED_SOCKET_OPERATION = 10
    #: The last operation has not finished yet.
    UNFINISHED_SOCKET_OPERATION = 11
    #: The TLS handshake failed (or the server's certificate was not trusted).
    SSL_HANDSHAKE_FAILED = 13
    #: The operation is not allowed in the socket's current state.
    OPERATION = 19
    #: The TLS library reported an internal error.
    SSL_INTERNAL = 20
    #: Invalid TLS data (certificate, key, ...) was given.
    SSL_INVALID_USER_DATA = 21
    #: A temporary error (the operation would block).
    TEMPORARY = 22
    #: Any other error.
    UNKNOWN_SOCKET = -1


_S = SocketState

#: Every state change a L{TcpSocket} may make; L{TcpSocket._set_state}
#: refuses any other.
_TRANSITIONS: frozenset[tuple[SocketState, SocketState]] = frozenset(
    {
        (_S.UNCONNECTED, _S.HOST_LOOKUP),  # connect()
        (_S.UNCONNECTED, _S.BOUND),  # bind()
        (_S.BOUND, _S.HOST_LOOKUP),  # connect() after bind()
        (_S.BOUND, _S.UNCONNECTED),  # disconnect() / abort()
        (_S.HOST_LOOKUP, _S.CONNECTING),  # the host was found
        (_S.HOST_LOOKUP, _S.UNCONNECTED),  # not found, timeout, abort()
        (_S.CONNECTING, _S.CONNECTED),  # connected (TLS: handshake done)
        (_S.CONNECTING, _S.UNCONNECTED),  # refused, timeout, TLS failure, abort()
        (_S.CONNECTED, _S.CLOSING),  # disconnect(), remote close, error
        (_S.CONNECTED, _S.UNCONNECTED),  # abort()
        (_S.CLOSING, _S.UNCONNECTED),  # closed
    }
)

#: Error codes by Qt number.
_ERRORS: dict[int, SocketError] = {e.value: e for e in SocketError}

# How often bytes_written polls the write queue when it cannot wait for the
# core's pause(False): from the next reactor turn, doubling up to 50 ms.
_POLL_FIRST = 0.001
_POLL_MAX = 0.05

_Handler = Callable[..., object]


def _is_ip_literal(host: str) -> bool:
    return bool(isIPAddress(host) or isIPv6Address(host))


@implementer(IResolutionReceiver)
class _Resolution:
    """Collects the addresses of one host name lookup, in order, once each."""

    def __init__(self, done: Callable[[list[str]], None]) -> None:
        self._done = done
        self._addresses: list[str] = []

    def resolutionBegan(self, resolution: object) -> None:
        """Nothing to do: the lookup cannot be cancelled."""

    def addressResolved(self, address: Any) -> None:
        """Record one address."""
        host = getattr(address, "host", None)
        if isinstance(host, str) and host not in self._addresses:
            self._addresses.append(host)

    def resolutionComplete(self) -> None:
        """Hand the addresses over."""
        self._done(self._addresses)


class TcpSocket:
    """
    A TCP client socket with Qt's states, error codes and signal orders.

    States (L{state}; every change calls C{state_changed_handler(socket,
    state)} after L{state} has changed):
      - C{UNCONNECTED_STATE} (0): initial; after every end.
      - C{HOST_LOOKUP_STATE} (1): L{connect} was called, the name is being
        looked up.  For an IP literal the socket goes through it and on to
        C{CONNECTING_STATE} inside L{connect}.
      - C{CONNECTING_STATE} (2): the host was found (C{host_found_handler}
        comes right after this state); the connection, and with TLS the
        handshake, is under way.  The addresses of a name are tried in turn.
      - C{CONNECTED_STATE} (3): connected (with TLS: the server is verified);
        C{connected_handler} follows.
      - C{BOUND_STATE} (4): L{bind} chose the local port of the next
        connection.
      - C{CLOSING_STATE} (6): closing; what was written is still being sent.

    Orders (each line is what the handlers see):
      - connect to an IP literal: HOST_LOOKUP, CONNECTING, host_found, all
        inside L{connect}; later CONNECTED, connected.
      - connect to a name: HOST_LOOKUP inside L{connect}; later CONNECTING,
        host_found, CONNECTED, connected.
      - refused, TLS failure, timeout: ... UNCONNECTED, then
        C{error_handler} (C{CONNECTION_REFUSED_ERROR},
        C{SSL_HANDSHAKE_FAILED_ERROR}, C{SOCKET_TIMEOUT_ERROR}); no
        C{disconnected_handler}.  Host not found: HOST_LOOKUP, UNCONNECTED,
        error(C{HOST_NOT_FOUND_ERROR}).
      - remote close: C{ready_read_handler} for the last bytes,
        error(C{REMOTE_HOST_CLOSED_ERROR}) while still CONNECTED, then
        CLOSING, UNCONNECTED, disconnected.  A connection lost on an error
        (reset) goes the same way with that error's code.
      - L{disconnect} with data pending: CLOSING inside the call,
        C{bytes_written_handler} until every byte is sent, then UNCONNECTED,
        disconnected.  With nothing pending (every byte written already
        reported by C{bytes_written_handler}), all of it inside the call.
      - L{abort}: UNCONNECTED and disconnected inside the call; no CLOSING,
        no error; pending data dropped.

    Bytes that arrived stay readable in the C{disconnected_handler} and
    after it, until the next L{connect} or L{abort}.

    Handlers are attributes, C{None} by default: C{connected_handler(socket)},
    C{disconnected_handler(socket)}, C{error_handler(socket, error)},
    C{state_changed_handler(socket, state)}, C{host_found_handler(socket)},
    C{ready_read_handler(socket)} and C{bytes_written_handler(socket,
    count)}.  They run on the reactor thread and may call back into the
    socket.  An exception raised by a handler is logged and does not change
    the socket's course.

    C{bytes_written_handler} reports bytes once they have left txtcp's
    buffer for the kernel, never inside L{write} or L{disconnect} (as in
    Qt): the write queue is checked on the reactor turns after a L{write}
    (every 1 ms at first, backing off to 50 ms while nothing moves), when
    the core reports its buffer drained, and when the connection closes
    cleanly.  The counts add up to everything written, except after
    L{abort} or a lost connection.

    Methods other than the C{*_async} ones must be called on the reactor
    thread (in a handler, or in code the reactor runs); the C{*_async}
    ones may be called from any thread.
    """

    __slots__ = (
        "_addresses",
        "_attempt_port",
        "_bind_port",
        "_buffer",
        "_conn",
        "_conn_error",
        "_deadline",
        "_error",
        "_error_string",
        "_hostname",
        "_local",
        "_poll_call",
        "_poll_delay",
        "_reactor",
        "_remote",
        "_state",
        "_timer",
        "_tls_root",
        "_token",
        "_unreported",
        "bytes_written_handler",
        "connected_handler",
        "disconnected_handler",
        "error_handler",
        "host_found_handler",
        "ready_read_handler",
        "state_changed_handler",
    )
    _log = Logger()

    UNCONNECTED_STATE = SocketState.UNCONNECTED
    HOST_LOOKUP_STATE = SocketState.HOST_LOOKUP
    CONNECTING_STATE = SocketState.CONNECTING
    CONNECTED_STATE = SocketState.CONNECTED
    BOUND_STATE = SocketState.BOUND
    CLOSING_STATE = SocketState.CLOSING

    CONNECTION_REFUSED_ERROR = SocketError.CONNECTION_REFUSED
    REMOTE_HOST_CLOSED_ERROR = SocketError.REMOTE_HOST_CLOSED
    HOST_NOT_FOUND_ERROR = SocketError.HOST_NOT_FOUND
    SOCKET_ACCESS_ERROR = SocketError.SOCKET_ACCESS
    SOCKET_RESOURCE_ERROR = SocketError.SOCKET_RESOURCE
    SOCKET_TIMEOUT_ERROR = SocketError.SOCKET_TIMEOUT
    DATAGRAM_TOO_LARGE_ERROR = SocketError.DATAGRAM_TOO_LARGE
    NETWORK_ERROR = SocketError.NETWORK
    ADDRESS_IN_USE_ERROR = SocketError.ADDRESS_IN_USE
    SOCKET_ADDRESS_NOT_AVAILABLE_ERROR = SocketError.SOCKET_ADDRESS_NOT_AVAILABLE
    UNSUPPORTED_SOCKET_OPERATION_ERROR = SocketError.UNSUPPORTED_SOCKET_OPERATION
    UNFINISHED_SOCKET_OPERATION_ERROR = SocketError.UNFINISHED_SOCKET_OPERATION
    SSL_HANDSHAKE_FAILED_ERROR = SocketError.SSL_HANDSHAKE_FAILED
    OPERATION_ERROR = SocketError.OPERATION
    SSL_INTERNAL_ERROR = SocketError.SSL_INTERNAL
    SSL_INVALID_USER_DATA_ERROR = SocketError.SSL_INVALID_USER_DATA
    TEMPORARY_ERROR = SocketError.TEMPORARY
    UNKNOWN_SOCKET_ERROR = SocketError.UNKNOWN_SOCKET

    def __init__(self, loop: Any = None) -> None:
        """
        @param loop: the reactor; C{None} for the global one, looked up now.
        """
        self._reactor = default_reactor(loop)
        self._state = SocketState.UNCONNECTED
        self._error = SocketError.UNKNOWN_SOCKET
        self._error_string = "Unknown error"
        # The current connect attempt: callbacks of older attempts see a
        # different token and drop what they bring.
        self._token: object | None = None
        self._conn: TcpConnection | None = None
        self._conn_error: BaseException | None = None
        self._addresses: deque[str] = deque()
        self._hostname = ""
        self._attempt_port = 0
        self._tls_root: Any = None
        self._deadline: float | None = None
        self._timer: Any = None
        self._bind_port: int | None = None
        self._local: Address | None = None
        self._remote: Address | None = None
        self._buffer = bytearray()
        self._unreported = 0
        self._poll_call: Any = None
        self._poll_delay = 0.0
        #: C{connected_handler(socket)}: the connection is established.
        self.connected_handler: _Handler | None = None
        #: C{disconnected_handler(socket)}: a connection ended.
        self.disconnected_handler: _Handler | None = None
        #: C{error_handler(socket, error)}: an error occurred (a L{SocketError}).
        self.error_handler: _Handler | None = None
        #: C{state_changed_handler(socket, state)}: the state changed.
        self.state_changed_handler: _Handler | None = None
        #: C{host_found_handler(socket)}: the host name lookup succeeded.
        self.host_found_handler: _Handler | None = None
        #: C{ready_read_handler(socket)}: new bytes are in the read buffer.
        self.ready_read_handler: _Handler | None = None
        #: C{bytes_written_handler(socket, count)}: C{count} more bytes sent.
        self.bytes_written_handler: _Handler | None = None

    @classmethod
    def new(cls, loop: Any = None) -> TcpSocket:
        """Create a new, unconnected L{TcpSocket} (the seed's constructor)."""
        return cls(loop)

    # -- properties ----------------------------------------------------------

    @property
    def state(self) -> SocketState:
        """The current state."""
        return self._state

    @property
    def error(self) -> SocketError:
        """The last error that occurred (C{UNKNOWN_SOCKET_ERROR} at first)."""
        return self._error

    @property
    def error_string(self) -> str:
        """A human-readable description of L{error}."""
        return self._error_string

    @property
    def valid(self) -> bool:
        """Whether the socket is connected and ready for reading and writing."""
        return self._state is SocketState.CONNECTED

    @property
    def local_address(self) -> str:
        """This end's address, or C{""} when there is none."""
        return self._local[0] if self._local else ""

    @property
    def local_port(self) -> int:
        """This end's port, or 0 when there is none."""
        return self._local[1] if self._local else 0

    @property
    def remote_address(self) -> str:
        """
        The peer's address (while connecting: the address being tried), or
        C{""} when not connected.
        """
        return self._remote[0] if self._remote else ""

    @property
    def remote_port(self) -> int:
        """The peer's port (while connecting: the port asked for), or 0."""
        return self._remote[1] if self._remote else 0

    @property
    def bytes_available(self) -> int:
        """The number of bytes in the read buffer."""
        return len(self._buffer)

    # -- the state machine ---------------------------------------------------

    def _set_state(self, new: SocketState) -> None:
        """
        Change the state to C{new} if the transition table allows it, then
        call C{state_changed_handler}.

        @raise RuntimeError: the transition is not in the table (a bug).
        """
        old = self._state
        if (old, new) not in _TRANSITIONS:
            raise RuntimeError(f"TcpSocket cannot go from {old.name} to {new.name}")
        self._state = new
        self._call("state_changed_handler", new)

    def _still(self, token: object, state: SocketState) -> bool:
        """Whether the attempt C{token} is current and in C{state} (a handler
        may have changed both)."""
        return self._token is token and self._state is state

    def _call(self, name: str, *args: object) -> None:
        handler = getattr(self, name)
        if handler is None:
            return
        try:
            handler(self, *args)
        except Exception:
            self._log.failure("TcpSocket {handler} raised", handler=name)

    def _report(self, code: int, message: str) -> None:
        """Record an error and call C{error_handler}."""
        self._error = _ERRORS.get(code, SocketError.UNKNOWN_SOCKET)
        self._error_string = message
        self._call("error_handler", self._error)

    def _report_exception(self, exc: BaseException) -> None:
        info = error_info(exc)
        self._report(info.qt_code, info.message)

    # -- connecting ----------------------------------------------------------

    def connect(
        self,
        hostname: str | bytes,
        port: int | str,
        openmode: str | None = None,
        *,
        tls: bool = False,
        trust_root: TrustRoot = None,
        timeout: float | None = None,
    ) -> None:
        """
        Connect to C{port} on C{hostname} (a name, an IPv4 or an IPv6
        literal); the outcome arrives through the handlers, in the orders
        given in the class docstring.

        Names are looked up without blocking, and their addresses tried in
        turn.  With C{tls}, the socket is C{CONNECTED_STATE} only once the
        handshake is done and the server's certificate and name were
        verified against C{trust_root} (a PEM file path, a Twisted
        C{Certificate} or trust root; C{None}: the platform's trust store).
        C{timeout} bounds everything up to C{CONNECTED_STATE}, in seconds.

        Called while not unconnected or bound, it reports C{OPERATION_ERROR}
        and changes nothing.

        @param openmode: C{None} or C{"rw"}: the socket is always opened
            for reading and writing.
        @raise TypeError: an argument has the wrong type.
        @raise ValueError: an argument has a wrong value.
        """
        args = self._check_connect(hostname, port, openmode, tls, trust_root, timeout)
        self._connect(*args)

    def _check_connect(
        self,
        hostname: object,
        port: object,
        openmode: object,
        tls: object,
        trust_root: TrustRoot,
        timeout: object,
    ) -> tuple[str, int, Any, float | None]:
        host = check_host(hostname, "hostname")
        if not host:
            raise ValueError(f"hostname must not be empty, not {hostname!r}")
        port_n = check_port(port)
        if openmode not in (None, "rw"):
            raise ValueError(
                f"openmode must be None or 'rw' (read-write, the only mode), not {openmode!r}"
            )
        if not isinstance(tls, bool):
            raise TypeError(f"tls must be a bool, not {tls!r}")
        limit = check_timeout(timeout)
        root: Any = None
        if tls:
            root = load_trust_root(trust_root)
        elif trust_root is not None:
            raise ValueError(f"trust_root is only used with tls=True, not {trust_root!r}")
        return host, port_n, root if tls else None, limit

    def _connect(self, host: str, port: int, tls_root: Any, limit: float | None) -> bool:
        if self._state not in (SocketState.UNCONNECTED, SocketState.BOUND):
            self._report(
                SocketError.OPERATION,
                f"trying to connect while the socket is {self._state.name}",
            )
            return False
        token = self._token = object()
        self._buffer.clear()
        self._unreported = 0
        self._hostname = host
        self._attempt_port = port
        self._tls_root = tls_root
        self._addresses.clear()
        self._deadline = None
        if limit is not None:
            self._deadline = self._reactor.seconds() + limit
            self._timer = self._reactor.callLater(limit, self._timed_out, token, limit)
        self._set_state(SocketState.HOST_LOOKUP)
        if self._token is not token:
            return True
        if _is_ip_literal(host):
            self._found(token, [host])
        else:
            receiver = _Resolution(lambda addresses: self._found(token, addresses))
            self._reactor.nameResolver.resolveHostName(
                receiver, host, portNumber=port, transportSemantics="TCP"
            )
        return True

    def _found(self, token: object, addresses: list[str]) -> None:
        if self._token is not token:
            return
        if not addresses:
            self._fail(HostNotFoundError(socket.EAI_NONAME, f"host {self._hostname!r} not found"))
            return
        self._addresses.extend(addresses)
        self._remote = (addresses[0], self._attempt_port)
        self._set_state(SocketState.CONNECTING)
        if self._token is not token:
            return
        self._call("host_found_handler")
        if self._token is not token:
            return
        self._try_next(token)

    def _try_next(self, token: object) -> None:
        address = self._addresses.popleft()
        self._remote = (address, self._attempt_port)
        limit = None
        if self._deadline is not None:
            limit = max(self._deadline - self._reactor.seconds(), 0.001)
        bind = None
        if self._bind_port is not None:
            bind = ("::" if isIPv6Address(address) else "0.0.0.0", self._bind_port)
        client = TcpClient(self._reactor)
        client.once("connect", lambda conn: self._tcp_connected(token, conn))
        client.once("connect_error", lambda t, e: self._tcp_failed(token, t, e))
        client.connect(address, self._attempt_port, limit, bind_address=bind)

    def _tcp_failed(self, token: object, errtype: type[OSError], code: int) -> None:
        if self._token is not token:
            return
        if self._addresses:
            self._try_next(token)
            return
        self._fail(errtype(code, os.strerror(code) if code > 0 else "connect failed"))

    def _tcp_connected(self, token: object, conn: TcpConnection) -> None:
        if self._token is not token:
            conn.abort()
            return
        self._conn = conn
        self._conn_error = None
        conn.on("data", lambda data: self._on_data(conn, data))
        conn.on("pause", lambda paused: self._on_pause(conn, paused))
        conn.on("tls", lambda: self._on_tls(conn))
        conn.on("end", lambda: self._on_end(conn))
        conn.on("error", lambda exc: self._on_error(conn, exc))
        conn.on("close", lambda: self._on_close(conn))
        conn.pause(False)
        if self._tls_root is not None:
            conn.start_tls(hostname=self._hostname, trust_root=self._tls_root)
        else:
            self._established(conn)

    def _established(self, conn: TcpConnection) -> None:
        self._cancel_timer()
        self._local = conn.local_address
        self._remote = conn.remote_address
        token = self._token
        self._set_state(SocketState.CONNECTED)
        if self._token is token and self._conn is conn:
            self._call("connected_handler")

    def _timed_out(self, token: object, limit: float) -> None:
        self._timer = None
        if self._token is not token:
            return
        self._fail(TimeoutError(errno.ETIMEDOUT, f"no connection within {limit:g} seconds"))

    def _fail(self, exc: BaseException) -> None:
        """A connect attempt failed: UNCONNECTED, then C{error_handler}."""
        conn = self._detach()
        if conn is not None:
            conn.abort()
        self._set_state(SocketState.UNCONNECTED)
        self._report_exception(exc)
        self._forget_addresses()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _detach(self) -> TcpConnection | None:
        """End the current attempt or connection's hold on this socket."""
        self._token = None
        self._cancel_timer()
        poll, self._poll_call = self._poll_call, None
        if poll is not None and poll.active():
            poll.cancel()
        self._addresses.clear()
        self._bind_port = None
        conn, self._conn = self._conn, None
        return conn

    def _forget_addresses(self) -> None:
        if self._token is None and self._state is SocketState.UNCONNECTED:
            self._local = None
            self._remote = None

    # -- the connection's events -----------------------------------------------

    def _on_data(self, conn: TcpConnection, data: bytes) -> None:
        if self._conn is not conn:
            return
        self._buffer += data
        self._call("ready_read_handler")

    def _on_pause(self, conn: TcpConnection, paused: bool) -> None:
        if self._conn is conn and not paused:
            self._check_written()

    def _on_tls(self, conn: TcpConnection) -> None:
        if self._conn is conn and self._state is SocketState.CONNECTING:
            self._established(conn)

    def _on_end(self, conn: TcpConnection) -> None:
        if not self._still(self._token, SocketState.CONNECTED) or self._conn is not conn:
            return
        token = self._token
        self._report(SocketError.REMOTE_HOST_CLOSED, "the remote host closed the connection")
        if self._still(token, SocketState.CONNECTED):
            self._set_state(SocketState.CLOSING)

    def _on_error(self, conn: TcpConnection, exc: BaseException) -> None:
        if self._conn is not conn:
            return
        self._conn_error = exc
        if self._state is SocketState.CONNECTING:
            return  # reported as a failed connect when close comes
        token = self._token
        self._report_exception(exc)
        if self._still(token, SocketState.CONNECTED):
            self._set_state(SocketState.CLOSING)

    def _on_close(self, conn: TcpConnection) -> None:
        if self._conn is not conn:
            return
        if self._state is SocketState.CONNECTING:
            exc = self._conn_error or TlsError(
                "the server closed the connection during the TLS handshake"
            )
            self._fail(exc)
            return
        if self._state is SocketState.CONNECTED:
            token = self._token
            self._set_state(SocketState.CLOSING)
            if not self._still(token, SocketState.CLOSING):
                return
        if self._conn_error is None and self._unreported:
            # A clean close after close(): every byte was handed over.
            count, self._unreported = self._unreported, 0
            self._call("bytes_written_handler", count)
            if self._conn is not conn:
                return
        self._finish()

    def _finish(self) -> None:
        """CLOSING (or CONNECTED) is over: UNCONNECTED, then disconnected."""
        self._detach()
        self._unreported = 0
        self._set_state(SocketState.UNCONNECTED)
        self._call("disconnected_handler")
        self._forget_addresses()

    # -- bytes_written -----------------------------------------------------------

    def _check_written(self) -> None:
        """Report the bytes that left the core's write queue since last time."""
        conn = self._conn
        if conn is None or not self._unreported:
            return
        queued = conn.write_queue_size
        handed = self._unreported - queued
        if handed > 0:
            self._unreported = queued
            self._call("bytes_written_handler", handed)

    def _schedule_poll(self, delay: float) -> None:
        if self._poll_call is None:
            self._poll_call = self._reactor.callLater(delay, self._poll)

    def _poll(self) -> None:
        self._poll_call = None
        before = self._unreported
        self._check_written()
        if self._conn is not None and self._unreported:
            if self._unreported < before:
                self._poll_delay = _POLL_FIRST
            else:
                self._poll_delay = min(max(self._poll_delay * 2, _POLL_FIRST), _POLL_MAX)
            self._schedule_poll(self._poll_delay)

    # -- closing ---------------------------------------------------------------

    def disconnect(self) -> None:
        """
        Close the socket once everything written has been sent: CLOSING at
        once, C{bytes_written_handler} as the rest goes out, then
        UNCONNECTED and C{disconnected_handler}.  With nothing pending, all
        of it happens inside this call.  While connecting or bound, the
        attempt or binding is dropped (UNCONNECTED, no disconnected); when
        unconnected or closing, nothing happens.
        """
        state = self._state
        if state in (SocketState.HOST_LOOKUP, SocketState.CONNECTING, SocketState.BOUND):
            self._drop_attempt()
            return
        conn = self._conn
        if state is not SocketState.CONNECTED or conn is None:
            return
        token = self._token
        self._set_state(SocketState.CLOSING)
        if not self._still(token, SocketState.CLOSING):
            return
        conn.close()
        # Bytes written but not yet reported count as pending, as in Qt,
        # where bytes_written never comes inside write() or disconnect().
        if not self._unreported and not conn.write_queue_size:
            self._finish()

    def abort(self) -> None:
        """
        Close now, dropping the data not yet sent and the read buffer:
        UNCONNECTED and C{disconnected_handler} inside this call, with no
        CLOSING and no error.  While connecting or bound, the attempt or
        binding is dropped (UNCONNECTED, no disconnected).
        """
        state = self._state
        if state in (SocketState.HOST_LOOKUP, SocketState.CONNECTING, SocketState.BOUND):
            self._drop_attempt()
            return
        if state not in (SocketState.CONNECTED, SocketState.CLOSING):
            return
        self._buffer.clear()
        conn = self._detach()
        if conn is not None:
            conn.abort()
        self._unreported = 0
        self._set_state(SocketState.UNCONNECTED)
        self._call("disconnected_handler")
        self._forget_addresses()

    def _drop_attempt(self) -> None:
        conn = self._detach()
        if conn is not None:
            conn.abort()
        self._set_state(SocketState.UNCONNECTED)
        self._forget_addresses()

    # -- binding ---------------------------------------------------------------

    def bind(self, port: int | str) -> bool:
        """
        Choose the local port of the next connection (0: a free port); on
        success the socket enters C{BOUND_STATE} and L{local_port} tells
        the port.

        The port is checked by binding a probe socket on all IPv4
        interfaces, then released and bound again by L{connect}: another
        process may take it in between, and L{connect} then reports
        C{ADDRESS_IN_USE_ERROR}.

        @return: C{True} if bound; C{False} when the socket is not
            unconnected (nothing changes), or when the port cannot be bound
            (C{error_handler} was called, e.g. with C{ADDRESS_IN_USE_ERROR}).
        @raise TypeError: C{port} is not an int.
        @raise ValueError: C{port} is outside 0..65535.
        """
        port_n = check_port(port)
        return self._bind(port_n)

    def _bind(self, port: int) -> bool:
        if self._state is not SocketState.UNCONNECTED:
            return False
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind(("0.0.0.0", port))
            chosen = probe.getsockname()[1]
        except OSError as exc:
            self._report_exception(exc)
            return False
        finally:
            probe.close()
        self._bind_port = chosen
        self._local = ("0.0.0.0", chosen)
        self._remote = None
        self._set_state(SocketState.BOUND)
        return True

    # -- reading and writing -----------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """
        Queue C{data} for sending.

        @return: the number of bytes queued (all of C{data}), or -1 when the
            socket is not connected (no error is set, as in Qt).
        @raise TypeError: C{data} is not bytes-like.
        """
        payload = as_bytes(data)
        conn = self._conn
        if self._state is not SocketState.CONNECTED or conn is None:
            return -1
        try:
            conn.write(payload)
        except ConnectionClosedError:
            return -1
        if payload:
            self._unreported += len(payload)
            if self._poll_call is None:
                self._poll_delay = 0.0
                self._schedule_poll(0.0)
        return len(payload)

    def read(self, maxsize: int | None = None) -> bytes:
        """
        Take up to C{maxsize} bytes (C{None}: all) from the read buffer;
        C{b""} when it is empty.

        @raise TypeError: C{maxsize} is not an int or C{None}.
        @raise ValueError: C{maxsize} is negative.
        """
        if maxsize is None:
            return self.read_all()
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int or None, not {maxsize!r}")
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
        data = bytes(self._buffer[:maxsize])
        del self._buffer[:maxsize]
        return data

    def read_line(self) -> bytes:
        """
        Take one line from the read buffer, up to and including C{b"\\n"}
        (a C{b"\\r"} before it is kept); when no newline is buffered, all
        that is buffered; C{b""} when the buffer is empty.
        """
        end = self._buffer.find(b"\n")
        size = len(self._buffer) if end < 0 else end + 1
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_all(self) -> bytes:
        """Take everything in the read buffer (C{b""} when it is empty)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    # -- from other threads ----------------------------------------------------

    def _hop(self, run: Callable[[], object], callback: _Handler | None) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")

        def on_reactor() -> None:
            result: object = None
            error: BaseException | None = None
            try:
                result = run()
            except Exception as exc:
                error = exc
                self._log.failure("TcpSocket asynchronous call failed")
            if callback is not None:
                try:
                    callback(self, result, error)
                except Exception:
                    self._log.failure("TcpSocket callback {callback!r} raised", callback=callback)

        self._reactor.callFromThread(on_reactor)

    def connect_async(
        self,
        hostname: str | bytes,
        port: int | str,
        callback: _Handler | None = None,
        *,
        openmode: str | None = None,
        tls: bool = False,
        trust_root: TrustRoot = None,
        timeout: float | None = None,
    ) -> None:
        """
        L{connect}, from any thread: the arguments are checked here, the
        connect starts on the reactor thread, and then C{callback(socket,
        result, error)} runs there: C{result} is C{True} if the connect
        started, C{False} if the state did not allow it (C{error_handler}
        had C{OPERATION_ERROR}); C{error} is an unexpected exception or
        C{None}.  The outcome of the connection comes through the handlers.

        @raise TypeError: an argument has the wrong type.
        @raise ValueError: an argument has a wrong value.
        """
        args = self._check_connect(hostname, port, openmode, tls, trust_root, timeout)
        self._hop(lambda: self._connect(*args), callback)

    def disconnect_async(self, callback: _Handler | None = None) -> None:
        """
        L{disconnect}, from any thread; then C{callback(socket, True, None)}
        on the reactor thread.
        """

        def run() -> bool:
            self.disconnect()
            return True

        self._hop(run, callback)

    def bind_async(self, port: int | str, callback: _Handler | None) -> None:
        """
        L{bind}, from any thread; then C{callback(socket, result, error)} on
        the reactor thread, with C{result} what L{bind} returned.

        @raise TypeError: C{port} is not an int.
        @raise ValueError: C{port} is outside 0..65535.
        """
        port_n = check_port(port)
        self._hop(lambda: self._bind(port_n), callback)

    def read_async(self, maxsize: int | None, callback: _Handler | None) -> None:
        """
        L{read}, from any thread; then C{callback(socket, data, error)} on
        the reactor thread, with the bytes read.

        @raise TypeError: C{maxsize} is not an int or C{None}.
        @raise ValueError: C{maxsize} is negative.
        """
        if maxsize is not None:
            if isinstance(maxsize, bool) or not isinstance(maxsize, int):
                raise TypeError(f"maxsize must be an int or None, not {maxsize!r}")
            if maxsize < 0:
                raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
        self._hop(lambda: self.read(maxsize), callback)

    def write_async(
        self, data: bytes | bytearray | memoryview, callback: _Handler | None = None
    ) -> None:
        """
        L{write}, from any thread (C{data} is copied now); then
        C{callback(socket, count, error)} on the reactor thread, with what
        L{write} returned (-1 when not connected).

        @raise TypeError: C{data} is not bytes-like.
        """
        payload = as_bytes(data)
        self._hop(lambda: self.write(payload), callback)

    def __repr__(self) -> str:
        peer = f" {self.remote_address}:{self.remote_port}" if self._remote else ""
        return f"<TcpSocket {self._state.name}{peer}>"
