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

# TCP._flags: the handle's booleans, packed in one int (a slot each would
# cost 8 bytes per handle).
_CONNECTING = 1  # connect() is under way
_CORE_PENDING = 2  # the core's connection attempt has not reported yet
_READING = 4
_EOF = 8  # the stream ended (or the connection went) while reading
_SHUT = 16  # shutdown() was called
_CONN_GONE = 32  # the core connection is closed
_CLOSING = 64  # close() was called
_CLOSE_DONE = 128
_IN_CLOSE = 256  # close() is closing the core connection
_PAUSE_HEARD = 512  # the core connection's pause event is listened to
_ACTIVE = 1024  # in the loop's set of active handles


class _Request:
    """A write (or a shutdown) waiting for its bytes to reach the kernel."""

    __slots__ = ("callback", "end")

    def __init__(self, end: int, callback: ConnectCallback | None) -> None:
        self.end = end
        self.callback = callback


class _Writes:
    """
    A handle's pending requests, made with the first and dropped with the
    last: a request is done once every byte up to its C{end} has left the
    connection's buffer.
    """

    __slots__ = ("delay", "poll", "reqs", "submitted")

    def __init__(self, buffered: int) -> None:
        # Bytes counted since this object was made, from the C{buffered}
        # ones (still to send, in order) on.
        self.submitted = buffered
        self.reqs: deque[_Request] = deque()
        self.poll: Any = None
        self.delay = 0.0


class _Extra:
    """The parts of a handle that a connected one seldom needs; made on first use."""

    __slots__ = (
        "accepted",
        "conn_error",
        "delayed_error",
        "keepalive",
        "listen_cb",
        "nodelay",
        "pre",
        "rcvbuf",
        "server",
        "sndbuf",
        "sock",
    )

    def __init__(self) -> None:
        #: The socket before there is a connection (bound, or made early).
        self.sock: socket.socket | None = None
        #: An error of bind() that listen() or connect() reports.
        self.delayed_error: int | None = None
        self.server: TcpServer | None = None
        self.listen_cb: ConnectCallback | None = None
        self.accepted: deque[TcpConnection] | None = None
        #: What the connection ended with, as a libuv code.
        self.conn_error: int | None = None
        #: Writes made while connecting.
        self.pre: list[bytes] | None = None
        # Options set before there is a connection, applied once there is.
        self.nodelay: bool | None = None
        self.keepalive: tuple[bool, int] | None = None
        self.sndbuf: int | None = None
        self.rcvbuf: int | None = None


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

    # A handle takes attributes of the user's, as pyuv's do (__dict__, made
    # on first use).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_close_cb",
        "_conn",
        "_connect_cb",
        "_flags",
        "_loop",
        "_read_cb",
        "_writes",
        "_x",
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
        if type(loop) is not Loop and not isinstance(loop, Loop):
            raise TypeError(f"loop must be a txtcp.handles.Loop, not {loop!r}")
        if family is not socket.AF_UNSPEC:
            if isinstance(family, bool) or not isinstance(family, int):
                raise TypeError(f"family must be an int, not {family!r}")
            if family not in _FAMILIES:
                raise _tcp_error(uverrno.UV_EINVAL, f"unsupported family {family!r}")
        self._loop = loop
        self._flags = 0
        self._conn: TcpConnection | None = None
        self._read_cb: ReadCallback | None = None
        self._connect_cb: ConnectCallback | None = None
        self._close_cb: CloseCallback | None = None
        self._writes: _Writes | None = None
        self._x: _Extra | None = None
        loop._inactive.add(self)
        if family is not socket.AF_UNSPEC and family != socket.AF_UNSPEC:
            self._extra().sock = self._new_socket(socket.AddressFamily(family))

    # -- properties ----------------------------------------------------------

    @property
    def loop(self) -> Loop:
        """The L{Loop} this handle runs on."""
        return self._loop

    @property
    def closed(self) -> bool:
        """Whether L{close} was called (the handle is closing or closed)."""
        return bool(self._flags & _CLOSING)

    @property
    def active(self) -> bool:
        """
        Whether the handle is listening, reading, connecting, or has writes
        or a shutdown still to complete; C{False} once closing.
        """
        flags = self._flags
        if flags & _CLOSING:
            return False
        x = self._x
        return bool(
            flags & _CONNECTING
            or self._writes is not None
            or (x is not None and x.server is not None)
            or (flags & (_READING | _EOF | _CONN_GONE) == _READING and self._conn is not None)
        )

    @property
    def readable(self) -> bool:
        """Whether the handle is connected and its stream has not ended."""
        return not self._flags & (_CLOSING | _EOF | _CONN_GONE) and self._conn is not None

    @property
    def writable(self) -> bool:
        """Whether L{write} is possible: connected (or connecting) and not shut down."""
        flags = self._flags
        if flags & (_CLOSING | _SHUT):
            return False
        return bool(flags & _CONNECTING) or self._open_conn() is not None

    @property
    def write_queue_size(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        conn = self._open_conn()
        x = self._x
        queued = sum(map(len, x.pre)) if x is not None and x.pre else 0
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
            with _Dup(conn.fileno()) as dup:
                return int(dup.family)
        sock = self._sock()
        if sock is not None:
            return int(sock.family)
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
        if self._conn is not None or self._flags & _CONNECTING or self._server() is not None:
            raise _tcp_error(uverrno.UV_EINVAL, "the handle is already in use")
        if flags & UV_TCP_IPV6ONLY and family != socket.AF_INET6:
            raise _tcp_error(uverrno.UV_EINVAL, "UV_TCP_IPV6ONLY needs an IPv6 address")
        x = self._extra()
        sock = x.sock
        if sock is not None and sock.family != family:
            raise _tcp_error(
                uverrno.UV_EINVAL,
                f"cannot bind a {sock.family.name} handle to {sockaddr[0]!r}",
            )
        if sock is None:
            sock = x.sock = self._new_socket(family)
        try:
            if family == socket.AF_INET6:
                v6only = 1 if flags & UV_TCP_IPV6ONLY else 0
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            sock.bind(sockaddr)
        except OSError as exc:
            code = uverrno.from_errno(exc.errno or 0)
            if code == uverrno.UV_EADDRINUSE:
                x.delayed_error = code
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
        if self._conn is not None or self._flags & _CONNECTING:
            raise _tcp_error(uverrno.UV_EINVAL, "a connected handle cannot listen")
        x = self._extra()
        if x.delayed_error is not None:
            raise _tcp_error(x.delayed_error)
        x.listen_cb = callback
        if x.server is not None:
            return
        sock = x.sock
        if sock is None:
            sock = x.sock = self._new_socket(socket.AF_INET)
        try:
            sock.listen(max(backlog, 1))
        except OSError as exc:
            raise _tcp_error(uverrno.from_errno(exc.errno or 0)) from exc
        server = x.server = TcpServer.from_socket(sock, self._loop._reactor)
        server.on("connect", self._on_accepted)
        server.on("error", self._on_server_error)
        self._track()

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
        if self._flags & _CLOSING:
            raise HandleClosedError("Handle is closing/closed")
        if not isinstance(client, TCP):
            raise TypeError(f"client must be a TCP handle, not {client!r}")
        if client._flags & _CLOSING:
            raise HandleClosedError("Handle is closing/closed")
        x = self._x
        if x is None or x.server is None:
            raise _tcp_error(uverrno.UV_EINVAL, "the handle is not listening")
        if client._conn is not None or client._flags & _CONNECTING:
            raise _tcp_error(uverrno.UV_EBUSY, "the client handle is already in use")
        if client._x is not None:
            if client._x.sock is not None:
                raise _tcp_error(uverrno.UV_EBUSY, "the client handle is already in use")
            if client._x.server is not None:
                raise _tcp_error(uverrno.UV_EBUSY, "the client handle is listening")
        if not x.accepted:
            raise _tcp_error(uverrno.UV_EAGAIN, "no connection is pending")
        client._attach(x.accepted.popleft())

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
        if self._flags & _CLOSING:
            raise HandleClosedError("Handle is closing/closed")
        family, sockaddr = _parse_address(address)
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        if self._flags & _CONNECTING:
            raise _tcp_error(uverrno.UV_EALREADY)
        if self._conn is not None:
            raise _tcp_error(uverrno.UV_EISCONN)
        x = self._x
        delayed = None
        bind: tuple[str, int] | None = None
        if x is not None:
            if x.server is not None:
                raise _tcp_error(uverrno.UV_EINVAL, "a listening handle cannot connect")
            sock = x.sock
            if sock is not None:
                if sock.family != family:
                    raise _tcp_error(
                        uverrno.UV_EINVAL,
                        f"cannot connect a {sock.family.name} handle to {sockaddr[0]!r}",
                    )
                local = sock.getsockname()
                if local[1] != 0 and x.delayed_error is None:
                    bind = (local[0], local[1])
                sock.close()
                x.sock = None
            delayed, x.delayed_error = x.delayed_error, None
        self._flags |= _CONNECTING
        self._connect_cb = callback
        reactor = self._loop._reactor
        if delayed is not None:
            reactor.callLater(0, self._connect_failed, delayed)
            self._track()
            return
        host = sockaddr[0]
        if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3]:
            host = f"{host}%{sockaddr[3]}"
        # This client makes one attempt: its listeners need no removing.
        client = TcpClient(reactor)
        client.on("connect", self._on_connected)
        client.on("connect_error", self._on_connect_error)
        self._flags |= _CORE_PENDING
        self._track()
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
        x = self._x
        if (
            self._conn is not None
            or self._flags & _CONNECTING
            or (x is not None and (x.sock is not None or x.server is not None))
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
            self._extra().sock = sock
            self._apply_options_to_socket(sock)
            return
        try:
            conn = adopt_connection(sock, self._loop._reactor)
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
        flags = self._flags
        if flags & _CLOSING:
            raise HandleClosedError("Handle is closing/closed")
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        conn = self._conn
        if conn is None or flags & (_EOF | _CONN_GONE):
            raise _tcp_error(uverrno.UV_ENOTCONN)
        self._read_cb = callback
        self._flags = flags | _READING
        if not flags & _ACTIVE:
            self._activate()  # a reading handle is active
        conn.pause(False)

    def stop_read(self) -> None:
        """Stop reading; bytes that arrive meanwhile wait for L{start_read}."""
        self._check_open()
        self._flags &= ~_READING
        self._track()
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
        flags = self._flags
        if flags & _CLOSING:
            raise HandleClosedError("Handle is closing/closed")
        buf = data if type(data) is bytes else _to_bytes(data)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        conn = self._conn
        if conn is None or flags & (_SHUT | _CONNECTING | _CONN_GONE):
            self._check_writable()
            # Connecting: sent once connected.
            x = self._extra()
            if x.pre is None:
                x.pre = []
            x.pre.append(buf)
            self._request(callback, len(buf))
            return
        try:
            conn.write(buf)
        except ConnectionClosedError as exc:
            raise _tcp_error(uverrno.UV_EPIPE) from exc
        if self._writes is None and callback is None and not conn.write_queue_size:
            # Sent on the spot, and no request waits: nothing to complete.
            return
        # Bytes stay buffered (the request completes when they drain), or
        # the core sent them on the spot and callbacks run on the next turn.
        self._request(callback, len(buf))

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
        if self._flags & _SHUT or (conn is None and not self._flags & _CONNECTING):
            raise _tcp_error(uverrno.UV_ENOTCONN)
        self._flags |= _SHUT
        self._request(callback, 0)
        if conn is not None:
            conn.shutdown()

    # -- options and addresses -----------------------------------------------

    def nodelay(self, enable: bool) -> None:
        """Turn Nagle's algorithm off (C{True}) or on; kept for a later socket."""
        if self._flags & (_CLOSING | _CONN_GONE) == 0 and self._conn is not None:
            self._conn.nodelay = enable if type(enable) is bool else _check_bool(enable, "enable")
            return
        self._check_open()
        value = _check_bool(enable, "enable")
        if self._conn is None:
            x = self._extra()
            x.nodelay = value
            if x.sock is not None:
                x.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(value))

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
        conn = self._open_conn()
        if conn is not None:
            conn.keepalive(value, delay if value else None)
        elif self._conn is None:
            x = self._extra()
            x.keepalive = (value, delay)
            if x.sock is not None:
                _keepalive(x.sock, value, delay)

    def fileno(self) -> int:
        """
        The socket's file descriptor.

        @raise TCPError: the handle has no socket (C{UV_EBADF}).
        """
        self._check_open()
        conn = self._open_conn()
        if conn is not None:
            return conn.fileno()
        sock = self._sock()
        if sock is not None:
            return sock.fileno()
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
        x = self._x
        if x is not None and x.sock is not None:
            if x.delayed_error is not None:
                raise _tcp_error(x.delayed_error)
            return tuple(x.sock.getsockname())
        raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")

    def getpeername(self) -> tuple[Any, ...]:
        """
        The peer's address, in the shape of L{getsockname}.

        @raise TCPError: the handle is not connected (C{UV_ENOTCONN}), or has
            no socket (C{UV_EBADF}).
        """
        self._check_open()
        conn = self._open_conn()
        sock = self._sock()
        try:
            if conn is not None:
                with _Dup(conn.fileno()) as dup:
                    return tuple(dup.getpeername())
            if sock is not None:
                return tuple(sock.getpeername())
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
        flags = self._flags
        if flags & _CLOSING:
            raise HandleClosedError("Handle is closing/closed")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        self._flags = (flags | _CLOSING) & ~_READING
        self._close_cb = callback
        if not flags & _ACTIVE:
            self._track()  # a closing handle is active until closed
        later = self._loop._reactor.callLater
        x = self._x
        server = x.server if x is not None else None
        conn = self._conn
        if server is not None:
            assert x is not None
            x.server = None
            accepted, x.accepted = x.accepted, None
            while accepted:
                accepted.popleft().abort()
            if server.listening:
                server.once("stop", self._finish_close)
                server.close()
            else:
                later(0, self._finish_close)
        elif flags & _CONNECTING:
            self._flags &= ~_CONNECTING
            later(0, self._connect_failed, uverrno.UV_ECANCELED, True)
        elif conn is not None and not flags & _CONN_GONE:
            # The core may close inside its close(): _on_close must then wait.
            self._flags |= _IN_CLOSE
            try:
                conn.close()
            finally:
                self._flags &= ~_IN_CLOSE
        else:
            later(0, self._finish_close)
        if x is not None and x.sock is not None:
            x.sock.close()
            x.sock = None

    # -- internals -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._flags & _CLOSING:
            raise HandleClosedError("Handle is closing/closed")

    def _check_writable(self) -> None:
        flags = self._flags
        if flags & _SHUT:
            raise _tcp_error(uverrno.UV_EPIPE, "the handle was shut down")
        if flags & _CONNECTING:
            return
        if self._conn is not None:
            if flags & _CONN_GONE:
                raise _tcp_error(uverrno.UV_EPIPE, "the connection is closed")
            return
        if self._sock() is None and self._server() is None:
            raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")
        raise _tcp_error(uverrno.UV_EPIPE, "the handle is not connected")

    def _open_conn(self) -> TcpConnection | None:
        if self._flags & _CONN_GONE:
            return None
        return self._conn

    def _extra(self) -> _Extra:
        x = self._x
        if x is None:
            x = self._x = _Extra()
        return x

    def _sock(self) -> socket.socket | None:
        x = self._x
        return x.sock if x is not None else None

    def _server(self) -> TcpServer | None:
        x = self._x
        return x.server if x is not None else None

    def _track(self) -> None:
        """
        Keep the handle in its loop's set of active handles while L{Loop.run}
        must go on for it (it is L{active}, closing, or a connection attempt
        has still to report), in its set of the others otherwise; called
        after every change that can alter it.
        """
        flags = self._flags
        if flags & (_CORE_PENDING | _CLOSING):
            keeps = bool(flags & _CORE_PENDING or not flags & _CLOSE_DONE)
        else:
            keeps = self.active
        loop = self._loop
        if keeps:
            if not flags & _ACTIVE:
                self._activate()
        elif flags & _ACTIVE:
            self._flags = flags & ~_ACTIVE
            loop._active.discard(self)
            if not flags & _CLOSE_DONE:
                loop._inactive.add(self)
        elif flags & _CLOSE_DONE:
            # Closed and waiting for nothing: the loop forgets it.
            loop._inactive.discard(self)

    def _activate(self) -> None:
        """Move the handle, which was not, to its loop's active ones."""
        self._flags |= _ACTIVE
        loop = self._loop
        loop._inactive.discard(self)
        loop._active.add(self)

    def _new_socket(self, family: socket.AddressFamily) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._apply_options_to_socket(sock)
        return sock

    def _apply_options_to_socket(self, sock: socket.socket) -> None:
        x = self._x
        if x is None:
            return
        if x.nodelay is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(x.nodelay))
        if x.keepalive is not None:
            _keepalive(sock, *x.keepalive)
        if x.sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, x.sndbuf)
        if x.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, x.rcvbuf)

    def _apply_options_to_conn(self, conn: TcpConnection, x: _Extra) -> None:
        if x.nodelay is not None:
            conn.nodelay = x.nodelay
        if x.keepalive is not None:
            enable, delay = x.keepalive
            conn.keepalive(enable, delay if enable else None)
        if x.sndbuf is not None:
            conn.send_buffer_size = x.sndbuf
        if x.rcvbuf is not None:
            conn.receive_buffer_size = x.rcvbuf

    def _buffer_size(self, option: int) -> int:
        self._check_open()
        conn = self._open_conn()
        if conn is not None:
            if option == socket.SO_SNDBUF:
                return conn.send_buffer_size
            return conn.receive_buffer_size
        sock = self._sock()
        if sock is not None:
            return sock.getsockopt(socket.SOL_SOCKET, option)
        raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")

    def _set_buffer_size(self, option: int, value: int) -> None:
        self._check_open()
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"buffer size must be an int, not {value!r}")
        if value <= 0:
            raise _tcp_error(uverrno.UV_EINVAL, f"buffer size must be positive, not {value!r}")
        conn = self._open_conn()
        sock = self._sock()
        if conn is None and sock is None:
            raise _tcp_error(uverrno.UV_EBADF, "the handle has no socket")
        if conn is not None:
            if option == socket.SO_SNDBUF:
                conn.send_buffer_size = value
            else:
                conn.receive_buffer_size = value
            return
        x = self._extra()
        if option == socket.SO_SNDBUF:
            x.sndbuf = value
        else:
            x.rcvbuf = value
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, option, value)

    def _attach(self, conn: TcpConnection) -> None:
        """Make C{conn} this handle's connection (accepted, adopted or made)."""
        self._conn = conn
        conn.allow_half_open = True
        conn.on("data", self._on_data)
        on_state = self._on_state
        conn.on("end", on_state)
        conn.on("error", on_state)
        conn.on("close", on_state)
        x = self._x
        if x is not None:
            try:
                self._apply_options_to_conn(conn, x)
            except Exception:
                self._log.failure("Cannot apply the handle's socket options")

    # Events of the listening server.

    def _on_accepted(self, conn: TcpConnection) -> None:
        x = self._x
        if self._flags & _CLOSING or x is None or x.listen_cb is None:
            conn.abort()
            return
        if x.accepted is None:
            x.accepted = deque()
        x.accepted.append(conn)
        callback = x.listen_cb
        try:
            callback(self, None)
        except Exception:
            self._loop._raised(callback)

    def _on_server_error(self, exc: BaseException) -> None:
        x = self._x
        if self._flags & _CLOSING or x is None or x.listen_cb is None:
            return
        x.server = None
        self._track()
        self._loop._call(x.listen_cb, self, error_info(exc).uv_code)

    # Events of a connection attempt.

    def _on_connected(self, conn: TcpConnection) -> None:
        flags = self._flags & ~_CORE_PENDING
        if flags & _CLOSING or not flags & _CONNECTING:
            self._flags = flags
            conn.abort()
            self._track()
            return
        self._flags = flags & ~_CONNECTING
        self._attach(conn)
        x = self._x
        if x is not None:
            pre, x.pre = x.pre, None
            for buf in pre or ():
                conn.write(buf)
        if flags & _SHUT:
            conn.shutdown()
        if self._writes is not None:
            self._watch_writes(0.0)
        self._track()
        callback, self._connect_cb = self._connect_cb, None
        if callback is not None:
            self._loop._call(callback, self, None)

    def _on_connect_error(self, errtype: type[OSError], code: int) -> None:
        self._flags &= ~_CORE_PENDING
        if self._flags & _CLOSING or not self._flags & _CONNECTING:
            self._track()
            return
        uv = uverrno.UV_EAI_NONAME if errtype is socket.gaierror else uverrno.from_errno(code)
        self._connect_failed(uv)

    def _connect_failed(self, code: int, closing: bool = False) -> None:
        self._flags &= ~(_CONNECTING | _SHUT)
        if self._x is not None:
            self._x.pre = None
        callback, self._connect_cb = self._connect_cb, None
        if callback is not None:
            self._loop._call(callback, self, code)
        self._fail_requests(uverrno.UV_ECANCELED)
        if closing:
            self._finish_close()
        else:
            self._track()

    # Events of the connection.

    def _on_data(self, data: bytes) -> None:
        callback = self._read_cb
        if self._flags & (_READING | _CLOSING) == _READING and callback is not None:
            # The hottest path: Loop._call's guard, without the extra call.
            try:
                callback(self, data, None)
            except Exception:
                self._loop._raised(callback)

    def _on_state(self, exc: BaseException | None = None) -> None:
        """
        The core connection's C{end}, C{error} and C{close} events: one
        listener for the three.  C{error} brings its exception; C{close}
        comes once the core connection is closed, and so does an C{end}
        emitted as it closes: that one is taken for the end and the close
        together.
        """
        if exc is not None:
            self._extra().conn_error = error_info(exc).uv_code
            return
        conn = self._conn
        assert conn is not None
        if not conn.closed:
            self._on_end()
            return
        flags = self._flags
        if flags & _CONN_GONE:
            return
        x = self._x
        if not flags & (_EOF | _CLOSING) and (x is None or x.conn_error is None):
            self._on_end()  # a clean close: the end of the stream came with it
        self._on_close()

    def _on_end(self) -> None:
        flags = self._flags | _EOF
        self._flags = flags & ~_READING
        callback = self._read_cb
        if flags & (_READING | _CLOSING) == _READING and callback is not None:
            try:
                callback(self, None, uverrno.UV_EOF)
            except Exception:
                self._loop._raised(callback)
        if not self._flags & _CLOSING:
            self._track()

    def _on_close(self) -> None:
        flags = self._flags
        self._flags = (flags | _CONN_GONE) & ~_READING
        x = self._x
        code = x.conn_error if x is not None else None
        if flags & _IN_CLOSE:
            # Closed inside close(): the rest waits for the next turn.
            self._loop._reactor.callLater(0, self._finish_close, code)
            return
        if self._writes is not None:
            self._fail_requests(code)
        if flags & (_READING | _CLOSING | _EOF) == _READING and self._read_cb is not None:
            self._flags |= _EOF
            self._loop._call(self._read_cb, self, None, code or uverrno.UV_EOF)
        if flags & _CLOSING:
            self._finish_close()
        else:
            self._track()

    def _on_write_pause(self, paused: bool) -> None:
        if not paused and self._writes is not None:
            self._watch_writes(0.0)

    # Write completion: a request is done when every byte up to its end has
    # left the connection's buffer.

    def _request(self, callback: ConnectCallback | None, size: int) -> None:
        """
        Count C{size} more bytes written and queue a request that completes
        once every byte written so far is sent; look for it on the next turn.
        """
        writes = self._writes
        if writes is None:
            # Its count starts from what is buffered now, these bytes included.
            writes = self._writes = _Writes(self.write_queue_size)
            self._track()
        else:
            writes.submitted += size
        writes.reqs.append(_Request(writes.submitted, callback))
        if self._open_conn() is not None:
            self._watch_writes(0.0)

    def _watch_writes(self, delay: float) -> None:
        writes = self._writes
        assert writes is not None
        reactor = self._loop._reactor
        poll = writes.poll
        if poll is not None and poll.active():
            if delay >= poll.getTime() - reactor.seconds():
                return
            poll.cancel()
        writes.poll = reactor.callLater(delay, self._check_writes)

    def _check_writes(self) -> None:
        writes = self._writes
        if writes is None:
            return
        writes.poll = None
        conn = self._open_conn()
        if conn is None or self._flags & _CONNECTING:
            return
        reqs = writes.reqs
        done = writes.submitted - conn.write_queue_size
        progressed = False
        call = self._loop._call
        while reqs and reqs[0].end <= done:
            request = reqs.popleft()
            progressed = True
            last = not reqs
            if last:
                # No request left: the handle may be inactive in this callback.
                self._writes = None
                self._track()
            if request.callback is not None:
                call(request.callback, self, None)
            if last or self._writes is not writes:
                return  # done, or the connection went (_fail_requests took the rest)
        if writes.poll is None:
            if conn.write_paused and not self._flags & _SHUT:
                # The buffer is full: the core's pause(False) says when it
                # has drained, and _on_write_pause looks again then.  Few
                # connections ever fill it, so the listener is added then.
                if not self._flags & _PAUSE_HEARD:
                    self._flags |= _PAUSE_HEARD
                    conn.on("pause", self._on_write_pause)
                if conn.write_paused:
                    return
            writes.delay = 0.0 if progressed else min(max(writes.delay * 2, 0.001), _MAX_POLL)
            self._watch_writes(writes.delay)

    def _fail_requests(self, code: int | None) -> None:
        """Complete every pending request, with C{code} (or success)."""
        writes, self._writes = self._writes, None
        if writes is None:
            return
        _cancel(writes.poll)
        reqs = writes.reqs
        while reqs:
            request = reqs.popleft()
            if request.callback is not None:
                self._loop._call(request.callback, self, code)

    def _finish_close(self, code: int | None = uverrno.UV_ECANCELED) -> None:
        """Complete the close: pending requests get C{code}, then the close callback runs."""
        if self._flags & _CLOSE_DONE:
            return
        if self._writes is not None:
            self._fail_requests(code)
        flags = self._flags | _CLOSE_DONE
        if flags & (_ACTIVE | _CORE_PENDING) == _ACTIVE:
            # The usual end of a handle, without _track's look at it.
            self._flags = flags & ~_ACTIVE
            self._loop._active.discard(self)
        else:
            self._flags = flags
            self._track()
        callback, self._close_cb = self._close_cb, None
        if callback is not None:
            self._loop._call(callback, self)

    def __repr__(self) -> str:
        state = "closed" if self._flags & _CLOSING else "open"
        return f"<txtcp.handles.TCP {state} at {id(self):#x}>"


def _parse_address(address: object) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """Check a pyuv address tuple; return its family and socket address."""
    if type(address) is tuple and len(address) == 2:
        # The usual (IPv4 literal, port) goes the short way.
        host, port = address
        if type(host) is str and type(port) is int and 0 <= port <= 0xFFFF:
            try:
                socket.inet_pton(socket.AF_INET, host)
            except OSError:
                pass
            else:
                return socket.AF_INET, address
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


def _cancel(call: Any) -> None:
    """Cancel C{call}, a delayed call or C{None}, unless it has run."""
    if call is not None and call.active():
        call.cancel()


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
