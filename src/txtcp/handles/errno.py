# -*- test-case-name: tests.test_handles -*-
"""
libuv's error codes, as pyuv's C{pyuv.errno} module gives them.

Every code is negative.  On Linux a system error is the negated C{errno}
value (C{UV_ECONNREFUSED == -errno.ECONNREFUSED}); the codes libuv adds
itself (L{UV_EOF}, the C{UV_EAI_*} lookup errors, L{UV_ECHARSET},
L{UV_UNKNOWN}) have libuv's fixed values.

L{errorcode} maps a code to its name and L{strerror} gives libuv's message
for a code.
"""

from __future__ import annotations

import errno as _errno

# name, libuv's message; the value is -errno.<name> where Python knows it.
_SYSTEM: tuple[tuple[str, str], ...] = (
    ("E2BIG", "argument list too long"),
    ("EACCES", "permission denied"),
    ("EADDRINUSE", "address already in use"),
    ("EADDRNOTAVAIL", "address not available"),
    ("EAFNOSUPPORT", "address family not supported"),
    ("EAGAIN", "resource temporarily unavailable"),
    ("EALREADY", "connection already in progress"),
    ("EBADF", "bad file descriptor"),
    ("EBUSY", "resource busy or locked"),
    ("ECANCELED", "operation canceled"),
    ("ECONNABORTED", "software caused connection abort"),
    ("ECONNREFUSED", "connection refused"),
    ("ECONNRESET", "connection reset by peer"),
    ("EDESTADDRREQ", "destination address required"),
    ("EEXIST", "file already exists"),
    ("EFAULT", "bad address in system call argument"),
    ("EFBIG", "file too large"),
    ("EHOSTDOWN", "host is down"),
    ("EHOSTUNREACH", "host is unreachable"),
    ("EILSEQ", "illegal byte sequence"),
    ("EINTR", "interrupted system call"),
    ("EINVAL", "invalid argument"),
    ("EIO", "i/o error"),
    ("EISCONN", "socket is already connected"),
    ("EISDIR", "illegal operation on a directory"),
    ("ELOOP", "too many symbolic links encountered"),
    ("EMFILE", "too many open files"),
    ("EMLINK", "too many links"),
    ("EMSGSIZE", "message too long"),
    ("ENAMETOOLONG", "name too long"),
    ("ENETDOWN", "network is down"),
    ("ENETUNREACH", "network is unreachable"),
    ("ENFILE", "file table overflow"),
    ("ENOBUFS", "no buffer space available"),
    ("ENODEV", "no such device"),
    ("ENOENT", "no such file or directory"),
    ("ENOMEM", "not enough memory"),
    ("ENONET", "machine is not on the network"),
    ("ENOPROTOOPT", "protocol not available"),
    ("ENOSPC", "no space left on device"),
    ("ENOSYS", "function not implemented"),
    ("ENOTCONN", "socket is not connected"),
    ("ENOTDIR", "not a directory"),
    ("ENOTEMPTY", "directory not empty"),
    ("ENOTSOCK", "socket operation on non-socket"),
    ("ENOTSUP", "operation not supported on socket"),
    ("ENOTTY", "inappropriate ioctl for device"),
    ("ENXIO", "no such device or address"),
    ("EOVERFLOW", "value too large for defined data type"),
    ("EPERM", "operation not permitted"),
    ("EPIPE", "broken pipe"),
    ("EPROTO", "protocol error"),
    ("EPROTONOSUPPORT", "protocol not supported"),
    ("EPROTOTYPE", "protocol wrong type for socket"),
    ("ERANGE", "result too large"),
    ("EREMOTEIO", "remote I/O error"),
    ("EROFS", "read-only file system"),
    ("ESHUTDOWN", "cannot send after transport endpoint shutdown"),
    ("ESOCKTNOSUPPORT", "socket type not supported"),
    ("ESPIPE", "invalid seek"),
    ("ESRCH", "no such process"),
    ("ETIMEDOUT", "connection timed out"),
    ("ETXTBSY", "text file is busy"),
    ("EXDEV", "cross-device link not permitted"),
)

# libuv's own codes (uv-errno.h), the same on every platform.
_OWN: tuple[tuple[str, int, str], ...] = (
    ("EAI_ADDRFAMILY", -3000, "address family not supported"),
    ("EAI_AGAIN", -3001, "temporary failure"),
    ("EAI_BADFLAGS", -3002, "bad ai_flags value"),
    ("EAI_CANCELED", -3003, "request canceled"),
    ("EAI_FAIL", -3004, "permanent failure"),
    ("EAI_FAMILY", -3005, "ai_family not supported"),
    ("EAI_MEMORY", -3006, "out of memory"),
    ("EAI_NODATA", -3007, "no address"),
    ("EAI_NONAME", -3008, "unknown node or service"),
    ("EAI_OVERFLOW", -3009, "argument buffer overflow"),
    ("EAI_SERVICE", -3010, "service not available for socket type"),
    ("EAI_SOCKTYPE", -3011, "socket type not supported"),
    ("EAI_BADHINTS", -3013, "invalid value for hints"),
    ("EAI_PROTOCOL", -3014, "resolved protocol is unknown"),
    ("EFTYPE", -4028, "inappropriate file type or format"),
    ("ECHARSET", -4080, "invalid Unicode character"),
    ("UNKNOWN", -4094, "unknown error"),
    ("EOF", -4095, "end of file"),
)

#: Name (C{"UV_ECONNREFUSED"}) of every code.
errorcode: dict[int, str] = {}
_MESSAGES: dict[int, str] = {}

for _name, _message in _SYSTEM:
    _value = getattr(_errno, _name, None)
    if _value is not None:
        errorcode.setdefault(-_value, "UV_" + _name)
        _MESSAGES.setdefault(-_value, _message)
        globals()["UV_" + _name] = -_value
for _name, _code, _message in _OWN:
    errorcode[_code] = "UV_" + _name
    _MESSAGES[_code] = _message
    globals()["UV_" + _name] = _code

# Named here as well so that type checkers and readers see the usual ones.
UV_EOF: int = -4095
UV_UNKNOWN: int = -4094
UV_EAI_NONAME: int = -3008
UV_ECANCELED: int = -_errno.ECANCELED
UV_ECONNREFUSED: int = -_errno.ECONNREFUSED
UV_ECONNRESET: int = -_errno.ECONNRESET
UV_EAGAIN: int = -_errno.EAGAIN
UV_EBADF: int = -_errno.EBADF
UV_EINVAL: int = -_errno.EINVAL
UV_ETIMEDOUT: int = -_errno.ETIMEDOUT
UV_EPIPE: int = -_errno.EPIPE
UV_ENOTCONN: int = -_errno.ENOTCONN
UV_EISCONN: int = -_errno.EISCONN
UV_EALREADY: int = -_errno.EALREADY
UV_EBUSY: int = -_errno.EBUSY
UV_EADDRINUSE: int = -_errno.EADDRINUSE
UV_EADDRNOTAVAIL: int = -_errno.EADDRNOTAVAIL
UV_EAFNOSUPPORT: int = -_errno.EAFNOSUPPORT
UV_ENOTSUP: int = -_errno.ENOTSUP
UV_ENETUNREACH: int = -_errno.ENETUNREACH
UV_EHOSTUNREACH: int = -_errno.EHOSTUNREACH
UV_ECONNABORTED: int = -_errno.ECONNABORTED
UV_EACCES: int = -_errno.EACCES


def strerror(code: int) -> str:
    """
    libuv's message for C{code} (C{"connection refused"} for
    L{UV_ECONNREFUSED}); C{"Unknown system error N"} for a code libuv does
    not know, as libuv's C{uv_strerror} says.

    @raise TypeError: C{code} is not an C{int}.
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"code must be an int, not {code!r}")
    return _MESSAGES.get(code, f"Unknown system error {code}")


def from_errno(value: int) -> int:
    """
    The libuv code of a positive C{errno} value (its negation); a value that
    is already negative is returned unchanged, and 0 gives L{UV_UNKNOWN}.
    """
    if value > 0:
        return -value
    return value if value < 0 else UV_UNKNOWN


__all__ = sorted(["errorcode", "strerror", "from_errno", *errorcode.values()])
