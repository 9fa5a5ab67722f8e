# -*- test-case-name: tests.test_errors -*-
"""
txtcp's exceptions, and the one table that maps network failures to the codes
of every API layer.
"""

from __future__ import annotations

import enum
import errno
import socket
from dataclasses import dataclass

from twisted.internet import error as terror
from twisted.internet.defer import CancelledError


class TxtcpError(Exception):
    """Base class of the exceptions that txtcp raises itself."""


class ConnectionClosedError(TxtcpError):
    """
    The connection, or its write side, is closed (or closing), so the call
    cannot be carried out.
    """


class UnsupportedOperationError(TxtcpError):
    """The operation is not possible on this kind of transport (for example
    half-closing a TLS connection, or a TCP option on a UNIX socket)."""


class HostNotFoundError(TxtcpError, ConnectionError):
    """A host name could not be resolved; C{errno} holds the C{socket.EAI_*}
    code."""


class TlsError(TxtcpError, ConnectionError):
    """The TLS handshake failed or the peer's certificate was not trusted;
    the Twisted or OpenSSL exception is chained as C{__cause__}."""


class ErrorKind(enum.Enum):
    """What went wrong with a connection, whatever layer reports it."""

    #: Nothing is listening there (C{ECONNREFUSED}).
    REFUSED = "connection refused"
    #: A connect or idle timeout expired (C{ETIMEDOUT}).
    TIMEOUT = "timed out"
    #: The host name did not resolve (C{socket.EAI_NONAME}).
    HOST_NOT_FOUND = "host not found"
    #: No route to the network or host (C{ENETUNREACH}, C{EHOSTUNREACH}).
    UNREACHABLE = "network unreachable"
    #: The peer reset the connection, or it was lost abnormally.
    RESET = "connection reset"
    #: The TLS handshake or the certificate verification failed.
    TLS = "TLS failure"
    #: The address is already in use (C{EADDRINUSE}).
    ADDRESS_IN_USE = "address in use"
    #: The address does not exist on this host (C{EADDRNOTAVAIL}).
    ADDRESS_NOT_AVAILABLE = "address not available"
    #: Permission denied (C{EACCES}).
    ACCESS = "permission denied"
    #: The connection was closed normally.
    CLOSED = "closed"
    #: The connection was aborted locally.
    ABORTED = "aborted"
    #: Anything else.
    OTHER = "error"


@dataclass(frozen=True)
class _Codes:
    errno: int
    qt: int


# Every layer's code for every kind, in one place.  Qt's numbers are
# QAbstractSocket::SocketError's; libuv's are the negated errno.
_TABLE: dict[ErrorKind, _Codes] = {
    ErrorKind.REFUSED: _Codes(errno.ECONNREFUSED, 0),
    ErrorKind.TIMEOUT: _Codes(errno.ETIMEDOUT, 5),
    ErrorKind.HOST_NOT_FOUND: _Codes(socket.EAI_NONAME, 2),
    ErrorKind.UNREACHABLE: _Codes(errno.ENETUNREACH, 7),
    ErrorKind.RESET: _Codes(errno.ECONNRESET, 1),
    ErrorKind.TLS: _Codes(errno.ECONNABORTED, 13),
    ErrorKind.ADDRESS_IN_USE: _Codes(errno.EADDRINUSE, 8),
    ErrorKind.ADDRESS_NOT_AVAILABLE: _Codes(errno.EADDRNOTAVAIL, 9),
    ErrorKind.ACCESS: _Codes(errno.EACCES, 3),
    ErrorKind.CLOSED: _Codes(errno.EPIPE, 1),
    ErrorKind.ABORTED: _Codes(errno.ECONNABORTED, 19),
    ErrorKind.OTHER: _Codes(errno.EIO, -1),
}

_BY_ERRNO: dict[int, ErrorKind] = {
    errno.ECONNREFUSED: ErrorKind.REFUSED,
    errno.ETIMEDOUT: ErrorKind.TIMEOUT,
    errno.ENETUNREACH: ErrorKind.UNREACHABLE,
    errno.EHOSTUNREACH: ErrorKind.UNREACHABLE,
    errno.ECONNRESET: ErrorKind.RESET,
    errno.EPIPE: ErrorKind.RESET,
    errno.EADDRINUSE: ErrorKind.ADDRESS_IN_USE,
    errno.EADDRNOTAVAIL: ErrorKind.ADDRESS_NOT_AVAILABLE,
    errno.EACCES: ErrorKind.ACCESS,
    errno.EPERM: ErrorKind.ACCESS,
}


@dataclass(frozen=True)
class ErrorInfo:
    """
    A network failure described in every layer's terms.

    @ivar kind: what went wrong.
    @ivar errno: the C{errno} value (or the C{socket.EAI_*} code when C{kind}
        is L{ErrorKind.HOST_NOT_FOUND}).
    @ivar errtype: C{socket.error} or C{socket.gaierror}, as thor reports it.
    @ivar qt_code: the matching C{QAbstractSocket::SocketError} number.
    @ivar uv_code: the matching negative libuv error code.
    @ivar message: a human-readable description.
    @ivar exception: the original exception.
    """

    kind: ErrorKind
    errno: int
    errtype: type[OSError]
    qt_code: int
    uv_code: int
    message: str
    exception: BaseException

    def to_exception(self) -> BaseException:
        """
        The builtin exception that coroutine APIs raise for this failure:
        C{ConnectionRefusedError}, C{TimeoutError}, C{ConnectionResetError},
        C{ConnectionAbortedError}, L{HostNotFoundError}, L{TlsError}, or an
        C{OSError} with C{errno} set.
        """
        cls: type[OSError] = {
            ErrorKind.REFUSED: ConnectionRefusedError,
            ErrorKind.TIMEOUT: TimeoutError,
            ErrorKind.HOST_NOT_FOUND: HostNotFoundError,
            ErrorKind.RESET: ConnectionResetError,
            ErrorKind.CLOSED: ConnectionResetError,
            ErrorKind.ABORTED: ConnectionAbortedError,
            ErrorKind.TLS: TlsError,
        }.get(self.kind, ConnectionError)
        exc = cls(self.errno, self.message)
        exc.__cause__ = self.exception
        return exc


def _kind_of(exc: BaseException) -> tuple[ErrorKind, int | None]:
    if isinstance(exc, HostNotFoundError):
        return ErrorKind.HOST_NOT_FOUND, exc.errno
    if isinstance(exc, TlsError):
        return ErrorKind.TLS, None
    if isinstance(exc, socket.gaierror):
        return ErrorKind.HOST_NOT_FOUND, exc.errno
    if isinstance(exc, terror.DNSLookupError):
        return ErrorKind.HOST_NOT_FOUND, socket.EAI_NONAME
    if isinstance(exc, (terror.TimeoutError, CancelledError, TimeoutError)):
        return ErrorKind.TIMEOUT, errno.ETIMEDOUT
    if isinstance(exc, terror.ConnectionRefusedError):
        return ErrorKind.REFUSED, errno.ECONNREFUSED
    if isinstance(exc, terror.ConnectionDone):
        return ErrorKind.CLOSED, None
    if isinstance(exc, terror.ConnectionAborted):
        return ErrorKind.ABORTED, None
    if isinstance(exc, terror.ConnectionLost):
        return ErrorKind.RESET, errno.ECONNRESET
    if _is_tls_failure(exc):
        return ErrorKind.TLS, None
    if isinstance(exc, terror.NoRouteError):
        return ErrorKind.UNREACHABLE, errno.EHOSTUNREACH
    code = getattr(exc, "osError", None)
    if not isinstance(code, int):
        code = getattr(exc, "errno", None)
    if isinstance(exc, terror.CannotListenError):
        inner = exc.socketError
        code = getattr(inner, "errno", None)
    if isinstance(code, int):
        return _BY_ERRNO.get(code, ErrorKind.OTHER), code
    return ErrorKind.OTHER, None


def _is_tls_failure(exc: BaseException) -> bool:
    from OpenSSL.SSL import Error as OpenSSLError
    from service_identity.exceptions import VerificationError

    return isinstance(exc, (OpenSSLError, VerificationError))


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe C{exc}, a failure of a connect, a listen or a connection."""
    kind, code = _kind_of(exc)
    codes = _TABLE[kind]
    if code is None:
        code = codes.errno
    errtype: type[OSError] = socket.gaierror if kind is ErrorKind.HOST_NOT_FOUND else socket.error
    uv = -code if kind is not ErrorKind.HOST_NOT_FOUND else _UV_EAI_NONAME
    message = str(exc) or kind.value
    return ErrorInfo(kind, code, errtype, codes.qt, uv, message, exc)


# libuv reports a failed lookup as UV_EAI_NONAME.
_UV_EAI_NONAME = -3008
