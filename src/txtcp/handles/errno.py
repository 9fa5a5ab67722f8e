# -*- test-case-name: tests.test_handles -*-
"""
libuv's error codes, as pyuv's C{pyuv.errno} module gives them.

Every code is negative.  On Linux a system error is the negated C{errno}
value (C{UV_ECONNREFUSED == -errno.ECONNREFUSED}); the codes libuv adds
itself (L{UV_EOF}, the C{UV_EAI_*} lookup errors, C{UV_ECHARSET},
L{UV_UNKNOWN}) have libuv's fixed values.

L{errorcode} maps a code to its name and L{strerror} gives libuv's message
for a code.
"""

from __future__ import annotations

import errno as _errno

# System errors: the negated errno value (libuv's own number where the
# platform has no such errno).
UV_E2BIG: int = -_errno.E2BIG
UV_EACCES: int = -_errno.EACCES
UV_EADDRINUSE: int = -_errno.EADDRINUSE
UV_EADDRNOTAVAIL: int = -_errno.EADDRNOTAVAIL
UV_EAFNOSUPPORT: int = -_errno.EAFNOSUPPORT
UV_EAGAIN: int = -_errno.EAGAIN
UV_EALREADY: int = -_errno.EALREADY
UV_EBADF: int = -_errno.EBADF
UV_EBUSY: int = -_errno.EBUSY
UV_ECANCELED: int = -_errno.ECANCELED
UV_ECONNABORTED: int = -_errno.ECONNABORTED
UV_ECONNREFUSED: int = -_errno.ECONNREFUSED
UV_ECONNRESET: int = -_errno.ECONNRESET
UV_EDESTADDRREQ: int = -_errno.EDESTADDRREQ
UV_EEXIST: int = -_errno.EEXIST
UV_EFAULT: int = -_errno.EFAULT
UV_EFBIG: int = -_errno.EFBIG
UV_EHOSTDOWN: int = -getattr(_errno, "EHOSTDOWN", 4031)
UV_EHOSTUNREACH: int = -_errno.EHOSTUNREACH
UV_EILSEQ: int = -getattr(_errno, "EILSEQ", 4027)
UV_EINTR: int = -_errno.EINTR
UV_EINVAL: int = -_errno.EINVAL
UV_EIO: int = -_errno.EIO
UV_EISCONN: int = -_errno.EISCONN
UV_EISDIR: int = -_errno.EISDIR
UV_ELOOP: int = -_errno.ELOOP
UV_EMFILE: int = -_errno.EMFILE
UV_EMLINK: int = -getattr(_errno, "EMLINK", 4032)
UV_EMSGSIZE: int = -_errno.EMSGSIZE
UV_ENAMETOOLONG: int = -_errno.ENAMETOOLONG
UV_ENETDOWN: int = -_errno.ENETDOWN
UV_ENETUNREACH: int = -_errno.ENETUNREACH
UV_ENFILE: int = -_errno.ENFILE
UV_ENOBUFS: int = -_errno.ENOBUFS
UV_ENODEV: int = -_errno.ENODEV
UV_ENOENT: int = -_errno.ENOENT
UV_ENOMEM: int = -_errno.ENOMEM
UV_ENONET: int = -getattr(_errno, "ENONET", 4056)
UV_ENOPROTOOPT: int = -_errno.ENOPROTOOPT
UV_ENOSPC: int = -_errno.ENOSPC
UV_ENOSYS: int = -_errno.ENOSYS
UV_ENOTCONN: int = -_errno.ENOTCONN
UV_ENOTDIR: int = -_errno.ENOTDIR
UV_ENOTEMPTY: int = -_errno.ENOTEMPTY
UV_ENOTSOCK: int = -_errno.ENOTSOCK
UV_ENOTSUP: int = -getattr(_errno, "ENOTSUP", 4049)
UV_ENOTTY: int = -getattr(_errno, "ENOTTY", 4029)
UV_ENXIO: int = -getattr(_errno, "ENXIO", 4033)
UV_EOVERFLOW: int = -getattr(_errno, "EOVERFLOW", 4026)
UV_EPERM: int = -_errno.EPERM
UV_EPIPE: int = -_errno.EPIPE
UV_EPROTO: int = -_errno.EPROTO
UV_EPROTONOSUPPORT: int = -_errno.EPROTONOSUPPORT
UV_EPROTOTYPE: int = -_errno.EPROTOTYPE
UV_ERANGE: int = -_errno.ERANGE
UV_EREMOTEIO: int = -getattr(_errno, "EREMOTEIO", 4030)
UV_EROFS: int = -_errno.EROFS
UV_ESHUTDOWN: int = -_errno.ESHUTDOWN
UV_ESOCKTNOSUPPORT: int = -getattr(_errno, "ESOCKTNOSUPPORT", 4025)
UV_ESPIPE: int = -_errno.ESPIPE
UV_ESRCH: int = -_errno.ESRCH
UV_ETIMEDOUT: int = -_errno.ETIMEDOUT
UV_ETXTBSY: int = -_errno.ETXTBSY
UV_EXDEV: int = -_errno.EXDEV

# libuv's own codes (uv-errno.h), the same on every platform.
UV_EAI_ADDRFAMILY: int = -3000
UV_EAI_AGAIN: int = -3001
UV_EAI_BADFLAGS: int = -3002
UV_EAI_CANCELED: int = -3003
UV_EAI_FAIL: int = -3004
UV_EAI_FAMILY: int = -3005
UV_EAI_MEMORY: int = -3006
UV_EAI_NODATA: int = -3007
UV_EAI_NONAME: int = -3008
UV_EAI_OVERFLOW: int = -3009
UV_EAI_SERVICE: int = -3010
UV_EAI_SOCKTYPE: int = -3011
UV_EAI_BADHINTS: int = -3013
UV_EAI_PROTOCOL: int = -3014
UV_EFTYPE: int = -4028
UV_ECHARSET: int = -4080
UV_UNKNOWN: int = -4094
UV_EOF: int = -4095

_MESSAGES: dict[int, str] = {
    UV_E2BIG: "argument list too long",
    UV_EACCES: "permission denied",
    UV_EADDRINUSE: "address already in use",
    UV_EADDRNOTAVAIL: "address not available",
    UV_EAFNOSUPPORT: "address family not supported",
    UV_EAGAIN: "resource temporarily unavailable",
    UV_EALREADY: "connection already in progress",
    UV_EBADF: "bad file descriptor",
    UV_EBUSY: "resource busy or locked",
    UV_ECANCELED: "operation canceled",
    UV_ECONNABORTED: "software caused connection abort",
    UV_ECONNREFUSED: "connection refused",
    UV_ECONNRESET: "connection reset by peer",
    UV_EDESTADDRREQ: "destination address required",
    UV_EEXIST: "file already exists",
    UV_EFAULT: "bad address in system call argument",
    UV_EFBIG: "file too large",
    UV_EHOSTDOWN: "host is down",
    UV_EHOSTUNREACH: "host is unreachable",
    UV_EILSEQ: "illegal byte sequence",
    UV_EINTR: "interrupted system call",
    UV_EINVAL: "invalid argument",
    UV_EIO: "i/o error",
    UV_EISCONN: "socket is already connected",
    UV_EISDIR: "illegal operation on a directory",
    UV_ELOOP: "too many symbolic links encountered",
    UV_EMFILE: "too many open files",
    UV_EMLINK: "too many links",
    UV_EMSGSIZE: "message too long",
    UV_ENAMETOOLONG: "name too long",
    UV_ENETDOWN: "network is down",
    UV_ENETUNREACH: "network is unreachable",
    UV_ENFILE: "file table overflow",
    UV_ENOBUFS: "no buffer space available",
    UV_ENODEV: "no such device",
    UV_ENOENT: "no such file or directory",
    UV_ENOMEM: "not enough memory",
    UV_ENONET: "machine is not on the network",
    UV_ENOPROTOOPT: "protocol not available",
    UV_ENOSPC: "no space left on device",
    UV_ENOSYS: "function not implemented",
    UV_ENOTCONN: "socket is not connected",
    UV_ENOTDIR: "not a directory",
    UV_ENOTEMPTY: "directory not empty",
    UV_ENOTSOCK: "socket operation on non-socket",
    UV_ENOTSUP: "operation not supported on socket",
    UV_ENOTTY: "inappropriate ioctl for device",
    UV_ENXIO: "no such device or address",
    UV_EOVERFLOW: "value too large for defined data type",
    UV_EPERM: "operation not permitted",
    UV_EPIPE: "broken pipe",
    UV_EPROTO: "protocol error",
    UV_EPROTONOSUPPORT: "protocol not supported",
    UV_EPROTOTYPE: "protocol wrong type for socket",
    UV_ERANGE: "result too large",
    UV_EREMOTEIO: "remote I/O error",
    UV_EROFS: "read-only file system",
    UV_ESHUTDOWN: "cannot send after transport endpoint shutdown",
    UV_ESOCKTNOSUPPORT: "socket type not supported",
    UV_ESPIPE: "invalid seek",
    UV_ESRCH: "no such process",
    UV_ETIMEDOUT: "connection timed out",
    UV_ETXTBSY: "text file is busy",
    UV_EXDEV: "cross-device link not permitted",
    UV_EAI_ADDRFAMILY: "address family not supported",
    UV_EAI_AGAIN: "temporary failure",
    UV_EAI_BADFLAGS: "bad ai_flags value",
    UV_EAI_CANCELED: "request canceled",
    UV_EAI_FAIL: "permanent failure",
    UV_EAI_FAMILY: "ai_family not supported",
    UV_EAI_MEMORY: "out of memory",
    UV_EAI_NODATA: "no address",
    UV_EAI_NONAME: "unknown node or service",
    UV_EAI_OVERFLOW: "argument buffer overflow",
    UV_EAI_SERVICE: "service not available for socket type",
    UV_EAI_SOCKTYPE: "socket type not supported",
    UV_EAI_BADHINTS: "invalid value for hints",
    UV_EAI_PROTOCOL: "resolved protocol is unknown",
    UV_EFTYPE: "inappropriate file type or format",
    UV_ECHARSET: "invalid Unicode character",
    UV_UNKNOWN: "unknown error",
    UV_EOF: "end of file",
}

#: The name (C{"UV_ECONNREFUSED"}) of every code.
errorcode: dict[int, str] = {
    value: name
    for name, value in sorted(globals().items())
    if name.startswith("UV_") and isinstance(value, int)
}


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


__all__ = [
    "UV_E2BIG",
    "UV_EACCES",
    "UV_EADDRINUSE",
    "UV_EADDRNOTAVAIL",
    "UV_EAFNOSUPPORT",
    "UV_EAGAIN",
    "UV_EAI_ADDRFAMILY",
    "UV_EAI_AGAIN",
    "UV_EAI_BADFLAGS",
    "UV_EAI_BADHINTS",
    "UV_EAI_CANCELED",
    "UV_EAI_FAIL",
    "UV_EAI_FAMILY",
    "UV_EAI_MEMORY",
    "UV_EAI_NODATA",
    "UV_EAI_NONAME",
    "UV_EAI_OVERFLOW",
    "UV_EAI_PROTOCOL",
    "UV_EAI_SERVICE",
    "UV_EAI_SOCKTYPE",
    "UV_EALREADY",
    "UV_EBADF",
    "UV_EBUSY",
    "UV_ECANCELED",
    "UV_ECHARSET",
    "UV_ECONNABORTED",
    "UV_ECONNREFUSED",
    "UV_ECONNRESET",
    "UV_EDESTADDRREQ",
    "UV_EEXIST",
    "UV_EFAULT",
    "UV_EFBIG",
    "UV_EFTYPE",
    "UV_EHOSTDOWN",
    "UV_EHOSTUNREACH",
    "UV_EILSEQ",
    "UV_EINTR",
    "UV_EINVAL",
    "UV_EIO",
    "UV_EISCONN",
    "UV_EISDIR",
    "UV_ELOOP",
    "UV_EMFILE",
    "UV_EMLINK",
    "UV_EMSGSIZE",
    "UV_ENAMETOOLONG",
    "UV_ENETDOWN",
    "UV_ENETUNREACH",
    "UV_ENFILE",
    "UV_ENOBUFS",
    "UV_ENODEV",
    "UV_ENOENT",
    "UV_ENOMEM",
    "UV_ENONET",
    "UV_ENOPROTOOPT",
    "UV_ENOSPC",
    "UV_ENOSYS",
    "UV_ENOTCONN",
    "UV_ENOTDIR",
    "UV_ENOTEMPTY",
    "UV_ENOTSOCK",
    "UV_ENOTSUP",
    "UV_ENOTTY",
    "UV_ENXIO",
    "UV_EOF",
    "UV_EOVERFLOW",
    "UV_EPERM",
    "UV_EPIPE",
    "UV_EPROTO",
    "UV_EPROTONOSUPPORT",
    "UV_EPROTOTYPE",
    "UV_ERANGE",
    "UV_EREMOTEIO",
    "UV_EROFS",
    "UV_ESHUTDOWN",
    "UV_ESOCKTNOSUPPORT",
    "UV_ESPIPE",
    "UV_ESRCH",
    "UV_ETIMEDOUT",
    "UV_ETXTBSY",
    "UV_EXDEV",
    "UV_UNKNOWN",
    "errorcode",
    "from_errno",
    "strerror",
]
