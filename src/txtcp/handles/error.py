# -*- test-case-name: tests.test_handles -*-
"""
The exceptions of L{txtcp.handles}, in pyuv's hierarchy.

C{TCPError} is a C{StreamError}, which is a C{HandleError}, which is a
C{UVError}.  They are raised with C{args == (code, message)}, C{code}
being a negative libuv error code from L{txtcp.handles.errno} and
C{message} its L{txtcp.handles.errno.strerror} text.  L{HandleClosedError}
(a C{HandleError}) is raised by any call on a closed or closing handle,
with the message alone, as pyuv does.
"""

from __future__ import annotations

from .errno import strerror


class UVError(Exception):
    """Base class of every error of L{txtcp.handles}."""

    @property
    def code(self) -> int | None:
        """The negative libuv code, when the exception carries one."""
        if self.args and isinstance(self.args[0], int):
            return self.args[0]
        return None


class HandleError(UVError):
    """An operation on a handle failed."""


class HandleClosedError(HandleError):
    """The handle is closing or closed: no operation is possible on it."""


class StreamError(HandleError):
    """An operation on a stream handle failed."""


class TCPError(StreamError):
    """An operation on a L{txtcp.handles.TCP} handle failed."""


def _tcp_error(code: int, detail: str | None = None) -> TCPError:
    """A L{TCPError} for C{code}, with libuv's message (and C{detail})."""
    message = strerror(code)
    if detail:
        message = f"{message}: {detail}"
    return TCPError(code, message)


__all__ = ["HandleClosedError", "HandleError", "StreamError", "TCPError", "UVError"]
