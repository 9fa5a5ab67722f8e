# -*- test-case-name: tests.test_handles -*-
"""
pyuv's TCP handle on Twisted: L{Loop} and L{TCP}, with libuv's error codes
in L{txtcp.handles.errno} and pyuv's exceptions in L{txtcp.handles.error}.

Code written for C{pyuv} (whose releases no longer build on current
Python) runs on these with its imports changed::

    from txtcp.handles import Loop, TCP
    from txtcp.handles import errno, error
"""

from __future__ import annotations

from . import errno, error
from ._loop import UV_RUN_DEFAULT, UV_RUN_NOWAIT, UV_RUN_ONCE, Loop
from ._tcp import CONNECT_TIMEOUT, TCP, UV_TCP_IPV6ONLY

__all__ = [
    "CONNECT_TIMEOUT",
    "TCP",
    "UV_RUN_DEFAULT",
    "UV_RUN_NOWAIT",
    "UV_RUN_ONCE",
    "UV_TCP_IPV6ONLY",
    "Loop",
    "errno",
    "error",
]
