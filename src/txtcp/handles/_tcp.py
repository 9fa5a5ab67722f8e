# -*- test-case-name: tests.test_handles -*-
"""
L{TCP}: pyuv's TCP handle, over txtcp's core.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from txtcp.core import (
    ConnectionClosedError,
    TcpClient,
    TcpConnection,
    TcpServer,
    adopt_connection,
    error_info,
)

from . import errno as uverrno
from ._loop import Loop
from .error import HandleClosedError, _tcp_error

#: L{TCP.bind} flag: an IPv6 socket that does not accept IPv4 (no dual stack).
UV_TCP_IPV6ONLY = 1

#: Seconds before a L{TCP.connect} gives up with C{UV_ETIMEDOUT}.
CONNECT_TIMEOUT = 30.0

ConnectCallback = Callable[["TCP", "int | None"], object]
ReadCallback = Callable[["TCP", "bytes | None", "int | None"], object]
CloseCallback = Callable[["TCP"], object]

# The longest wait between two looks at a connection's write buffer while
# write callbacks are due.
_MAX_POLL = 0.02

_FAMILIES = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6)


class _Request:
    """A write (or a shutdown) waiting for its bytes to reach the kernel."""

    __slots__ = ("callback", "end")

    def __init__(self, end: int, callback: ConnectCallback | None) -> None:
        self.end = end
        self.callback = callback


class TCP:
    """
    A TCP handle, as pyuv's C{pyuv.TCP}: a server (L{bind}, L{listen},
    L{accept}) or a client (L{connect}), read with L{start_read}, written
    with L{write}.

    Callbacks follow pyuv: C{callback(handle, error)}, C{error} being
    C{None} or a negative code of L{txtcp.handles.errno}; reads arrive as
    C{read_callback(handle, data, error)}, with C{(handle, None, UV_EOF)}
    at the end of the stream and C{(handle, None, code)} when the
    connection fails, after which reading has stopped.  Callbacks never run
    inside the call that asks for them; an exception they raise goes to
    the loop's C{excepthook}, or is logged.

    Write callbacks run in the order of the writes, once the bytes are
    handed to the kernel.  All of them run even when the handle is closed
    right after writing: L{close} sends what is queued before it closes,
    then the write callbacks run, then the close callback.

    Any call on a closed (or closing) handle raises L{HandleClosedError};
    failures of the call itself raise L{TCPError}.

    Unlike libuv on Unix, L{writable} is false after L{shutdown} (a write
    then raises C{TCPError(UV_EPIPE)}), and L{readable} is false after the
    end of the stream.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_accepted",
        "_close_cb",
        "_close_done",
        "_closing",
        "_conn",
        "_conn_error",
        "_conn_gone",
        "_connect_cb",
        "_connecting",
        "_core_pending",
        "_delayed_error",
        "_eof",
        "_keepalive",
        "_listen_cb",
        "_loop",
        "_nodelay",
        "_pause_heard",
        "_poll",
        "_poll_delay",
        "_pre",
        "_rcvbuf",
        "_reactor",
        "_read_cb",
        "_reading",
        "_reqs",
        "_server",
        "_shut",
        "_sndbuf",
        "_sock",
        "_submitted",
    )

    _log = Logger()

    def __init__(self, loop: Loop, family: int = socket.AF_UNSPEC) -> None:
        """
        @param loop: the L{Loop} the handle runs on.
        @param family: C{AF_INET} or C{AF_INET6} to create the socket now;
            C{AF_UNSPEC} (the default) creates it when needed, of the
            family of the address given to L{bind} or L{connect}.
        @raise TypeError: C{loop} is not a L{Loop}, or C{family} not an int.
        @raise TCPError: C{family} is not one of the three (C{UV_EINVAL}).
        """
        if not isinstance(loop, Loop):
            raise TypeError(f"loop must be a txtcp.handles.Loop, not {loop!r}")
        if isinstance(family, bool) or not isinstance(family, int):
            raise TypeError(f"family must be an int, not {family!r}")
        if family not in _FAMILIES:
            raise _tcp_error(uverrno.UV_EINVAL, f"unsupported family {family!r}")
        self._loop = loop
        self._reactor = loop.reactor
        self._sock: socket.socket | None = None
        self._delayed_error: int | None = None
        self._server: TcpServer | None = None
        self._listen_cb: ConnectCallback | None = None
        self._accepted: deque[TcpConnection] | None = None
        self._conn: TcpConnection | None = None
        self._conn_gone = False
        self._conn_error: int | None = None
        self._connecting = False
        self._connect_cb: ConnectCallback | None = None
        self._core_pending = 0
        self._read_cb: ReadCallback | None = None
        self._reading = False
        self._eof = False
        self._shut = False
        self._submitted = 0
        self._pre: list[bytes] | None = None
        self._reqs: deque[_Request] | None = None
        self._poll: Any = None
        self._poll_delay = 0.0
        self._pause_heard = False
        self._closing = False
        self._close_done = False
        self._close_cb: CloseCallback | None = None
        self._nodelay: bool | None = None
        self._keepalive: tuple[bool, int] | None = None
        self._sndbuf: int | None = None
        self._rcvbuf: int | None = None
        loop._add(self)
        if family != socket.AF_UNSPEC:
            self._sock = self._new_socket(socket.AddressFamily(family))

    # -- properties ----------------------------------------------------------

    @property
    def loop(self) -> Loop:
        """The L{Loop} this handle runs on."""
        return self._loop

    @property
    def closed(self) -> bool:
        """Whether L{close} was called (the handle is closing or closed)."""
        return self._closing

    @property
    def active(self) -> bool:
        """
        Whether the handle is listening, reading, connecting, or has writes
        or a shutdown still to complete; C{False} once closing.
        """
        if self._closing:
            return False
        return bool(
            self._server is not None
            or self._connecting
            or self._reqs
            or (self._reading and self._open_conn() is not None and not self._eof)
        )

    @property
    def readable(self) -> bool:
        """Whether the handle is connected and its stream has not ended."""
        return not self._closing and self._open_conn() is not None and not self._eof

    @property
    def writable(self) -> bool:
        """Whether L{write} is possible: connected (or connecting) and not shut down."""
        if self._closing or self._shut:
            return False
        return self._connecting or self._open_conn() is not None

    @property
    def write_queue_size(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        conn = self._open_conn()
        queued = sum(map(len, self._pre)) if self._pre else 0
        return queued + (conn.write_queue_size if conn is not None else 0)

    @property
    def family(self) -> int:
        """
        The socket's address family.

        @raise TCPError: the handle has no socket yet (C{UV_EBADF}).
        @raise HandleClosedError: the handle is closed.
        """
        self._check_open()
        conn = self._open_conn()
        if conn is not None:
            with _Dup(conn.fileno()) as sock:
                return int(sock.family)
        if self._sock is not None:
            return int(self._sock.family)
        raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket yet")

    @property
    def send_buffer_size(self) -> int:
        """
        The kernel's send buffer size (C{SO_SNDBUF}); Linux doubles the
        value that is set.

        @raise TCPError: the handle has no socket (C{UV_EBADF}), or the
            value is not positive (C{UV_EINVAL}).
        """
        return self._buffer_size(socket.SO_SNDBUF)

    @send_buffer_size.setter
    def send_buffer_size(self, value: int) -> None:
        self._set_buffer_size(socket.SO_SNDBUF, value)

    @property
    def receive_buffer_size(self) -> int:
        """The kernel's receive buffer size (C{SO_RCVBUF}); as L{send_buffer_size}."""
        return self._buffer_size(socket.SO_RCVBUF)

    @receive_buffer_size.setter
    def receive_buffer_size(self, value: int) -> None:
        self._set_buffer_size(socket.SO_RCVBUF, value)

    # -- server side ---------------------------------------------------------

    def bind(self, address: tuple[Any, ...], flags: int = 0) -> None:
        """
        Bind to C{address}, C{(ip, port[, flowinfo[, scope_id]])}; C{""}
        means C{0.0.0.0}.  C{flags} may be L{UV_TCP_IPV6ONLY}.

        As in libuv, an address in use is reported by the next L{listen}
        (raised) or L{connect} (to its callback).

        @raise TypeError: C{address} is not a tuple of C{(str, int, ...)}.
        @raise OverflowError: the port is outside 0..65535.
        @raise ValueError: the host is not an IP address.
        @raise TCPError: the family differs from the handle's, the flag is
            given for IPv4, the handle is already bound or connected
            (C{UV_EINVAL}), or the kernel refused (its code).
        """
        self._check_open()
        family, sockaddr = _parse_address(address)
        if isinstance(flags, bool) or not isinstance(flags, int):
            raise TypeError(f"flags must be an int, not {flags!r}")
        if self._conn is not None or self._connecting or self._server is not None:
            raise _tcp_error(uverrno.UV_EINVAL, "the handle is already in use")
        if flags & UV_TCP_IPV6ONLY and family != socket.AF_INET6:
            raise _tcp_error(uverrno.UV_EINVAL, "UV_TCP_IPV6ONLY needs an IPv6 address")
        sock = self._sock
        if sock is not None and sock.family != family:
            raise _tcp_error(
                uverrno.UV_EINVAL,
                f"cannot bind a {sock.family.name} handle to {sockaddr[0]!r}",
            )
        if sock is None:
            sock = self._sock = self._new_socket(family)
        try:
            if family == socket.AF_INET6:
                v6only = 1 if flags & UV_TCP_IPV6ONLY else 0
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            sock.bind(sockaddr)
        except OSError as exc:
            code = uverrno.from_errno(exc.errno or 0)
            if code == uverrno.UV_EADDRINUSE:
                self._delayed_error = code
                return
            raise _tcp_error(code, str(sockaddr)) from exc

    def listen(self, callback: ConnectCallback, backlog: int = 511) -> None:
        """
        Start listening; C{callback(handle, error)} runs for every new
        connection, and should L{accept} it.  An unbound handle listens on
        a free port of every IPv4 interface, as libuv does.

        Calling it again on a listening handle replaces the callback.

        @raise TypeError: C{callback} is not callable, or C{backlog} not an int.
        @raise TCPError: the handle is connected (C{UV_EINVAL}), or binding
            failed (C{UV_EADDRINUSE}, ...).
        """
        self._check_open()
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        if isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError(f"backlog must be an int, not {backlog!r}")
        if self._conn is not None or self._connecting:
            raise _tcp_error(uverrno.UV_EINVAL, "a connected handle cannot listen")
        if self._delayed_error is not None:
            raise _tcp_error(self._delayed_error)
        self._listen_cb = callback
        if self._server is not None:
            return
        sock = self._sock
        if sock is None:
            sock = self._sock = self._new_socket(socket.AF_INET)
        try:
            sock.listen(max(backlog, 1))
        except OSError as exc:
            raise _tcp_error(uverrno.from_errno(exc.errno or 0)) from exc
        server = self._server = TcpServer.from_socket(sock, self._reactor)
        server.on("connect", self._on_accepted)
        server.on("error", self._on_server_error)

    def accept(self, client: TCP) -> None:
        """
        Hand the oldest pending connection to C{client}, a new L{TCP}
        handle (usually from inside the L{listen} callback).

        @raise TypeError: C{client} is not a L{TCP} handle.
        @raise HandleClosedError: this handle or C{client} is closed.
        @raise TCPError: this handle is not listening (C{UV_EINVAL}), no
            connection is pending (C{UV_EAGAIN}), or C{client} is in use
            (C{UV_EBUSY}).
        """
        self._check_open()
        if not isinstance(client, TCP):
            raise TypeError(f"client must be a TCP handle, not {client!r}")
        client._check_open()
        if self._server is None:
            raise _tcp_error(uverrno.UV_EINVAL, "the handle is not listening")
        if client._sock is not None or client._conn is not None or client._connecting:
            raise _tcp_error(uverrno.UV_EBUSY, "the client handle is already in use")
        if client._server is not None:
            raise _tcp_error(uverrno.UV_EBUSY, "the client handle is listening")
        if not self._accepted:
            raise _tcp_error(uverrno.UV_EAGAIN, "no connection is pending")
        client._attach(self._accepted.popleft())

    def simultaneous_accepts(self, enable: bool) -> None:
        """Accepted for pyuv compatibility; it only matters on Windows."""
        self._check_open()
        _check_bool(enable, "enable")

    # -- client side ---------------------------------------------------------

    def connect(self, address: tuple[Any, ...], callback: ConnectCallback) -> None:
        """
        Connect to C{address}, C{(ip, port[, flowinfo[, scope_id]])};
        C{callback(handle, error)} runs when the connection is made
        (C{error} C{None}) or has failed (C{UV_ECONNREFUSED},
        C{UV_ETIMEDOUT} after L{CONNECT_TIMEOUT} seconds, ...).  A bound
        handle connects from its bound address.  Writes made before the
        connection completes are sent once it does.

        @raise TypeError: C{address} is malformed or C{callback} not callable.
        @raise OverflowError: the port is outside 0..65535.
        @raise ValueError: the host is not an IP address.
        @raise TCPError: the handle is connected (C{UV_EISCONN}),
            connecting (C{UV_EALREADY}) or listening (C{UV_EINVAL}), or its
            socket is of the other family (C{UV_EINVAL}).
        """
        self._check_open()
        family, sockaddr = _parse_address(address)
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        if self._connecting:
            raise _tcp_error(uverrno.UV_EALREADY)
        if self._conn is not None:
            raise _tcp_error(uverrno.UV_EISCONN)
        if self._server is not None:
            raise _tcp_error(uverrno.UV_EINVAL, "a listening handle cannot connect")
        bind: tuple[str, int] | None = None
        sock = self._sock
        if sock is not None:
            if sock.family != family:
                raise _tcp_error(
                    uverrno.UV_EINVAL,
                    f"cannot connect a {sock.family.name} handle to {sockaddr[0]!r}",
                )
            local = sock.getsockname()
            if local[1] != 0 and self._delayed_error is None:
                bind = (local[0], local[1])
            sock.close()
            self._sock = None
        self._connecting = True
        self._connect_cb = callback
        delayed, self._delayed_error = self._delayed_error, None
        if delayed is not None:
            self._reactor.callLater(0, self._connect_failed, delayed)
            return
        host = sockaddr[0]
        if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3]:
            host = f"{host}%{sockaddr[3]}"
        # This client makes one attempt: its listeners need no removing.
        client = TcpClient(self._reactor)
        client.on("connect", self._on_connected)
        client.on("connect_error", self._on_connect_error)
        self._core_pending += 1
        client.connect(host, sockaddr[1], CONNECT_TIMEOUT, bind_address=bind)

    def open(self, fd: int) -> None:
        """
        Use C{fd}, an open TCP socket (connected, bound or not), as this
        handle's socket.  The handle owns C{fd} from then on: for a
        connected socket it is closed at once (the handle works on a
        duplicate), otherwise when the handle is closed.

        @raise TypeError: C{fd} is not an int.
        @raise TCPError: the handle already has a socket (C{UV_EBUSY}), or
            C{fd} is not an IPv4/IPv6 stream socket (C{UV_EINVAL},
            C{UV_ENOTSOCK}, C{UV_EBADF}).
        """
        self._check_open()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"fd must be an int, not {fd!r}")
        if (
            self._sock is not None
            or self._conn is not None
            or self._connecting
            or self._server is not None
        ):
            raise _tcp_error(uverrno.UV_EBUSY, "the handle already has a socket")
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise _tcp_error(uverrno.from_errno(exc.errno or 0), f"fd {fd}") from exc
        if sock.type != socket.SOCK_STREAM or sock.family not in _FAMILIES[1:]:
            sock.detach()
            raise _tcp_error(uverrno.UV_EINVAL, f"fd {fd} is not a TCP socket")
        sock.setblocking(False)
        try:
            sock.getpeername()
        except OSError:
            self._sock = sock
            self._apply_options_to_socket(sock)
            return
        try:
            conn = adopt_connection(sock, self._reactor)
        finally:
            sock.close()
        self._attach(conn)

    # -- reading and writing -------------------------------------------------

    def start_read(self, callback: ReadCallback) -> None:
        """
        Start reading: C{callback(handle, data, error)} runs with each
        chunk of bytes (C{error} C{None}); then once with C{(handle, None,
        UV_EOF)} at the end of the stream, or C{(handle, None, code)} if
        the connection fails, and reading stops.

        @raise TypeError: C{callback} is not callable.
        @raise TCPError: the handle is not connected, or its stream ended
            (C{UV_ENOTCONN}).
        """
        self._check_open()
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        conn = self._open_conn()
        if conn is None or self._eof:
            raise _tcp_error(uverrno.UV_ENOTCONN)
        self._read_cb = callback
        self._reading = True
        conn.pause(False)

    def stop_read(self) -> None:
        """Stop reading; bytes that arrive meanwhile wait for L{start_read}."""
        self._check_open()
        self._reading = False
        conn = self._open_conn()
        if conn is not None:
            conn.pause(True)

    def write(self, data: Any, callback: ConnectCallback | None = None) -> None:
        """
        Send C{data}: a bytes-like object, or a list (or tuple) of them,
        sent as one concatenation.  C{callback(handle, error)} runs once
        the bytes are handed to the kernel, in the order of the writes.

        @raise TypeError: C{data} is not bytes-like (C{str}, C{int}, a list
            with such an item), or C{callback} not callable.
        @raise ValueError: C{data} is an empty list.
        @raise TCPError: the handle has no socket (C{UV_EBADF}), or is not
            connected, or was shut down (C{UV_EPIPE}).
        """
        self._check_open()
        buf = _to_bytes(data)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        self._check_writable()
        if self._connecting:
            self._submitted += len(buf)
            self._request(callback)
            if self._pre is None:
                self._pre = []
            self._pre.append(buf)
            return
        conn = self._conn
        assert conn is not None
        try:
            conn.write(buf)
        except ConnectionClosedError as exc:
            raise _tcp_error(uverrno.UV_EPIPE) from exc
        self._submitted += len(buf)
        if conn.write_queue_size:
            # Bytes stay buffered: the request completes when they drain.
            self._request(callback)
            self._watch_writes(0.0)
            return
        # The core handed every byte to the kernel on the spot, so every
        # request is complete: their callbacks run on the next turn.
        if callback is not None:
            self._request(callback)
        if self._reqs:
            self._watch_writes(0.0)

    def try_write(self, data: Any) -> int:
        """
        Send what the kernel takes of C{data} now, without queueing;
        return the number of bytes sent.

        @raise TypeError: C{data} is not bytes-like.
        @raise TCPError: nothing can be sent now (C{UV_EAGAIN}: the kernel's
            buffer is full, earlier writes are queued, or the connection is
            still being made), or the handle cannot write (C{UV_EBADF},
            C{UV_EPIPE}).
        """
        self._check_open()
        if isinstance(data, (list, tuple)):
            raise TypeError(f"data must be a bytes-like object, not {type(data).__name__}")
        buf = _to_bytes(data)
        self._check_writable()
        conn = self._open_conn()
        if conn is None:
            raise _tcp_error(uverrno.UV_EAGAIN)
        try:
            return conn.try_write(buf)
        except BlockingIOError as exc:
            raise _tcp_error(uverrno.UV_EAGAIN) from exc
        except ConnectionClosedError as exc:
            raise _tcp_error(uverrno.UV_EPIPE) from exc
        except OSError as exc:
            raise _tcp_error(uverrno.from_errno(exc.errno or 0)) from exc

    def shutdown(self, callback: ConnectCallback | None = None) -> None:
        """
        End the outgoing stream once the bytes written so far are sent;
        C{callback(handle, error)} runs then.  Reading goes on; L{writable}
        becomes false at once.

        @raise TypeError: C{callback} is not callable.
        @raise TCPError: the handle is not connected, or was already shut
            down (C{UV_ENOTCONN}).
        """
        self._check_open()
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        conn = self._open_conn()
        if self._shut or (conn is None and not self._connecting):
            raise _tcp_error(uverrno.UV_ENOTCONN)
        self._shut = True
        self._request(callback)
        if conn is not None:
            conn.shutdown()
            self._watch_writes(0.0)

    # -- options and addresses -----------------------------------------------

    def nodelay(self, enable: bool) -> None:
        """Turn Nagle's algorithm off (C{True}) or on; kept for a later socket."""
        self._check_open()
        value = _check_bool(enable, "enable")
        self._nodelay = value
        conn = self._open_conn()
        if conn is not None:
            conn.nodelay = value
        elif self._sock is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(value))

    def keepalive(self, enable: bool, delay: int) -> None:
        """
        Turn TCP keep-alive on or off; C{delay} is the idle time in seconds
        before the first probe.  Kept for a later socket.

        @raise TypeError: C{delay} is not an int.
        @raise TCPError: C{delay} is below 1 while enabling (C{UV_EINVAL}).
        """
        self._check_open()
        value = _check_bool(enable, "enable")
        if isinstance(delay, bool) or not isinstance(delay, int):
            raise TypeError(f"delay must be an int, not {delay!r}")
        if value and delay < 1:
            raise _tcp_error(uverrno.UV_EINVAL, f"delay must be >= 1, not {delay!r}")
        self._keepalive = (value, delay)
        conn = self._open_conn()
        if conn is not None:
            conn.keepalive(value, delay if value else None)
        elif self._sock is not None:
            _keepalive(self._sock, value, delay)

    def fileno(self) -> int:
        """
        The socket's file descriptor.

        @raise TCPError: the handle has no socket (C{UV_EBADF}).
        """
        self._check_open()
        conn = self._open_conn()
        if conn is not None:
            return conn.fileno()
        if self._sock is not None:
            return self._sock.fileno()
        raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")

    def getsockname(self) -> tuple[Any, ...]:
        """
        The local address: C{(ip, port)} for IPv4, C{(ip, port, flowinfo,
        scope_id)} for IPv6.

        @raise TCPError: the handle has no socket (C{UV_EBADF}), or its
            bind failed (that error).
        """
        self._check_open()
        conn = self._open_conn()
        if conn is not None:
            with _Dup(conn.fileno()) as sock:
                return tuple(sock.getsockname())
        if self._sock is not None:
            if self._delayed_error is not None:
                raise _tcp_error(self._delayed_error)
            return tuple(self._sock.getsockname())
        raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")

    def getpeername(self) -> tuple[Any, ...]:
        """
        The peer's address, in the shape of L{getsockname}.

        @raise TCPError: the handle is not connected (C{UV_ENOTCONN}), or has
            no socket (C{UV_EBADF}).
        """
        self._check_open()
        conn = self._open_conn()
        try:
            if conn is not None:
                with _Dup(conn.fileno()) as sock:
                    return tuple(sock.getpeername())
            if self._sock is not None:
                return tuple(self._sock.getpeername())
        except OSError as exc:
            raise _tcp_error(uverrno.from_errno(exc.errno or 0)) from exc
        if self._conn is not None:
            raise _tcp_error(uverrno.UV_ENOTCONN)
        raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")

    # -- closing -------------------------------------------------------------

    def close(self, callback: CloseCallback | None = None) -> None:
        """
        Close the handle; C{callback(handle)} runs when it is closed.

        A connected handle first sends what is queued; the pending write
        callbacks run then (with C{None}, or the error that ended the
        connection), before C{callback}.  A pending L{connect} gets
        C{UV_ECANCELED}.  Connections a listening handle has not accepted
        are dropped.

        @raise HandleClosedError: the handle is already closing or closed.
        @raise TypeError: C{callback} is not callable.
        """
        self._check_open()
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        self._closing = True
        self._close_cb = callback
        self._reading = False
        later = self._reactor.callLater
        server, self._server = self._server, None
        if server is not None:
            accepted, self._accepted = self._accepted, None
            while accepted:
                accepted.popleft().abort()
            if server.listening:
                server.once("stop", self._finish_close)
                server.close()
            else:
                later(0, self._finish_close)
        elif self._connecting:
            self._connecting = False
            later(0, self._connect_failed, uverrno.UV_ECANCELED, True)
        elif self._conn is not None and not self._conn_gone:
            self._conn.close()
        else:
            later(0, self._finish_close)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- internals -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise HandleClosedError("Handle is closing/closed")

    def _check_writable(self) -> None:
        if self._shut:
            raise _tcp_error(uverrno.UV_EPIPE, "the handle was shut down")
        if self._connecting:
            return
        if self._conn is not None:
            if self._conn_gone:
                raise _tcp_error(uverrno.UV_EPIPE, "the connection is closed")
            return
        if self._sock is None and self._server is None:
            raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")
        raise _tcp_error(uverrno.UV_EPIPE, "the handle is not connected")

    def _open_conn(self) -> TcpConnection | None:
        if self._conn_gone:
            return None
        return self._conn

    def _keeps_loop(self) -> bool:
        """Whether L{Loop.run} must go on for this handle."""
        if self._core_pending:
            return True
        if self._closing:
            return not self._close_done
        return self.active

    def _new_socket(self, family: socket.AddressFamily) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._apply_options_to_socket(sock)
        return sock

    def _apply_options_to_socket(self, sock: socket.socket) -> None:
        if self._nodelay is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self._nodelay))
        if self._keepalive is not None:
            _keepalive(sock, *self._keepalive)
        if self._sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sndbuf)
        if self._rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)

    def _apply_options_to_conn(self, conn: TcpConnection) -> None:
        if self._nodelay is not None:
            conn.nodelay = self._nodelay
        if self._keepalive is not None:
            enable, delay = self._keepalive
            conn.keepalive(enable, delay if enable else None)
        if self._sndbuf is not None:
            conn.send_buffer_size = self._sndbuf
        if self._rcvbuf is not None:
            conn.receive_buffer_size = self._rcvbuf

    def _buffer_size(self, option: int) -> int:
        self._check_open()
        conn = self._open_conn()
        if conn is not None:
            if option == socket.SO_SNDBUF:
                return conn.send_buffer_size
            return conn.receive_buffer_size
        if self._sock is not None:
            return self._sock.getsockopt(socket.SOL_SOCKET, option)
        raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")

    def _set_buffer_size(self, option: int, value: int) -> None:
        self._check_open()
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"buffer size must be an int, not {value!r}")
        if value <= 0:
            raise _tcp_error(uverrno.UV_EINVAL, f"buffer size must be positive, not {value!r}")
        conn = self._open_conn()
        if conn is None and self._sock is None:
            raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")
        if option == socket.SO_SNDBUF:
            self._sndbuf = value
        else:
            self._rcvbuf = value
        if conn is not None:
            if option == socket.SO_SNDBUF:
                conn.send_buffer_size = value
            else:
                conn.receive_buffer_size = value
        elif self._sock is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, option, value)

    def _attach(self, conn: TcpConnection) -> None:
        """Make C{conn} this handle's connection (accepted, adopted or made)."""
        self._conn = conn
        conn.allow_half_open = True
        conn.on("data", self._on_data)
        conn.on("end", self._on_end)
        conn.on("error", self._on_error)
        conn.on("close", self._on_close)
        try:
            self._apply_options_to_conn(conn)
        except Exception:
            self._log.failure("Cannot apply the handle's socket options")

    # Events of the listening server.

    def _on_accepted(self, conn: TcpConnection) -> None:
        if self._closing or self._listen_cb is None:
            conn.abort()
            return
        if self._accepted is None:
            self._accepted = deque()
        self._accepted.append(conn)
        self._loop._call(self._listen_cb, self, None)

    def _on_server_error(self, exc: BaseException) -> None:
        if self._closing or self._listen_cb is None:
            return
        server, self._server = self._server, None
        del server
        self._loop._call(self._listen_cb, self, error_info(exc).uv_code)

    # Events of a connection attempt.

    def _on_connected(self, conn: TcpConnection) -> None:
        self._core_pending -= 1
        if self._closing or not self._connecting:
            conn.abort()
            self._forget_if_done()
            return
        self._connecting = False
        self._attach(conn)
        pre, self._pre = self._pre, None
        for buf in pre or ():
            conn.write(buf)
        if self._shut:
            conn.shutdown()
        if self._reqs:
            self._watch_writes(0.0)
        callback, self._connect_cb = self._connect_cb, None
        if callback is not None:
            self._loop._call(callback, self, None)

    def _on_connect_error(self, errtype: type[OSError], code: int) -> None:
        self._core_pending -= 1
        if self._closing or not self._connecting:
            self._forget_if_done()
            return
        uv = uverrno.UV_EAI_NONAME if errtype is socket.gaierror else uverrno.from_errno(code)
        self._connect_failed(uv)

    def _connect_failed(self, code: int, closing: bool = False) -> None:
        self._connecting = False
        self._pre = None
        self._shut = False
        callback, self._connect_cb = self._connect_cb, None
        if callback is not None:
            self._loop._call(callback, self, code)
        self._fail_requests(uverrno.UV_ECANCELED)
        if closing:
            self._finish_close()

    # Events of the connection.

    def _on_data(self, data: bytes) -> None:
        if self._reading and not self._closing and self._read_cb is not None:
            self._loop._call(self._read_cb, self, data, None)

    def _on_end(self) -> None:
        self._eof = True
        if self._reading and not self._closing and self._read_cb is not None:
            self._reading = False
            self._loop._call(self._read_cb, self, None, uverrno.UV_EOF)

    def _on_error(self, exc: BaseException) -> None:
        self._conn_error = error_info(exc).uv_code

    def _on_close(self) -> None:
        self._conn_gone = True
        self._stop_watching()
        code = self._conn_error
        self._fail_requests(code)
        if self._reading and not self._closing and self._read_cb is not None:
            self._reading = False
            if not self._eof:
                self._eof = True
                self._loop._call(self._read_cb, self, None, code or uverrno.UV_EOF)
        if self._closing:
            self._reactor.callLater(0, self._finish_close)

    def _on_write_pause(self, paused: bool) -> None:
        if not paused and self._reqs:
            self._watch_writes(0.0)

    # Write completion: a request is done when every byte up to its end has
    # left the connection's buffer.

    def _request(self, callback: ConnectCallback | None) -> None:
        """Queue a request that completes once every byte submitted so far is sent."""
        reqs = self._reqs
        if reqs is None:
            reqs = self._reqs = deque()
        reqs.append(_Request(self._submitted, callback))

    def _watch_writes(self, delay: float) -> None:
        poll = self._poll
        if poll is not None and poll.active():
            if delay >= poll.getTime() - self._reactor.seconds():
                return
            poll.cancel()
        self._poll = self._reactor.callLater(delay, self._check_writes)

    def _stop_watching(self) -> None:
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None

    def _check_writes(self) -> None:
        self._poll = None
        conn = self._open_conn()
        if conn is None or self._connecting:
            return
        reqs = self._reqs
        if not reqs:
            return
        done = self._submitted - conn.write_queue_size
        progressed = False
        call = self._loop._call
        while reqs and reqs[0].end <= done:
            request = reqs.popleft()
            progressed = True
            if request.callback is not None:
                call(request.callback, self, None)
            if self._conn_gone:
                return
        if reqs and self._poll is None:
            if conn.write_paused and not self._shut:
                # The buffer is full: the core's pause(False) says when it
                # has drained, and _on_write_pause looks again then.  Few
                # connections ever fill it, so the listener is added then.
                if not self._pause_heard:
                    self._pause_heard = True
                    conn.on("pause", self._on_write_pause)
                if conn.write_paused:
                    return
            self._poll_delay = (
                0.0 if progressed else min(max(self._poll_delay * 2, 0.001), _MAX_POLL)
            )
            self._watch_writes(self._poll_delay)

    def _fail_requests(self, code: int | None) -> None:
        """Complete every pending request, with C{code} (or success)."""
        reqs = self._reqs
        while reqs:
            request = reqs.popleft()
            if request.callback is not None:
                self._loop._call(request.callback, self, code)

    def _finish_close(self) -> None:
        if self._close_done:
            return
        self._fail_requests(uverrno.UV_ECANCELED)
        self._close_done = True
        self._forget_if_done()
        callback, self._close_cb = self._close_cb, None
        if callback is not None:
            self._loop._call(callback, self)

    def _forget_if_done(self) -> None:
        # A handle that is closed and waits for nothing never keeps its loop
        # again: the loop stops looking at it.
        if self._close_done and not self._core_pending:
            self._loop._forget(self)

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<txtcp.handles.TCP {state} at {id(self):#x}>"


def _parse_address(address: object) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """Check a pyuv address tuple; return its family and socket address."""
    if not isinstance(address, tuple):
        raise TypeError(f"address must be tuple, not {type(address).__name__}")
    if not 2 <= len(address) <= 4:
        raise TypeError(f"address must be (ip, port[, flowinfo[, scope_id]]), not {address!r}")
    host, port, *rest = address
    if not isinstance(host, str):
        raise TypeError(f"address ip must be a str, not {host!r}")
    for name, value in zip(("port", "flowinfo", "scope_id"), (port, *rest), strict=False):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"address {name} must be an int, not {value!r}")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"port must be 0-65535, not {port!r}")
    flowinfo = rest[0] if rest else 0
    scope_id = rest[1] if len(rest) > 1 else 0
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError(f"flowinfo must be 0-1048575, not {flowinfo!r}")
    if scope_id < 0:
        raise OverflowError(f"scope_id must be >= 0, not {scope_id!r}")
    if host == "":
        host = "0.0.0.0"
    elif host == "<broadcast>":
        host = "255.255.255.255"
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    else:
        return socket.AF_INET, (host, port)
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        raise ValueError(f"invalid IP address: {host!r}") from None
    return socket.AF_INET6, (host, port, flowinfo, scope_id)


def _to_bytes(data: object) -> bytes:
    """C{data} (a buffer, or a non-empty list or tuple of buffers) as bytes."""
    if type(data) is bytes:
        return data
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("data must not be an empty list")
        try:
            return b"".join(_one_buffer(item) for item in data)
        except TypeError:
            raise TypeError(
                "data must be a list of bytes-like objects, "
                f"not one holding {[type(i).__name__ for i in data]!r:.80}"
            ) from None
    return _one_buffer(data)


def _one_buffer(item: object) -> bytes:
    if type(item) is bytes:
        return item
    if isinstance(item, str):
        raise TypeError(f"data must be bytes-like, not str: {item!r:.40}")
    try:
        return memoryview(item).tobytes()  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"data must be a bytes-like object or a list of them, not {type(item).__name__}"
        ) from None


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, int)):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return bool(value)


def _keepalive(sock: socket.socket, enable: bool, delay: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(enable))
    if enable and hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, delay)


class _Dup:
    """A socket object on a duplicate of C{fd}, closed on exit."""

    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise _tcp_error(uverrno.UV_EBADF, "the connection has no socket")
        self._sock = socket.socket(fileno=os.dup(fd))

    def __enter__(self) -> socket.socket:
        return self._sock

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


__all__ = ["CONNECT_TIMEOUT", "TCP", "UV_TCP_IPV6ONLY"]
