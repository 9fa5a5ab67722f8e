# -*- test-case-name: tests.test_reactor -*-
"""
The lazily looked-up default reactor.
"""

from __future__ import annotations

from typing import Any, cast


def _default_reactor(loop: Any | None) -> Any:
    """
    Return C{loop}, or the global reactor when C{loop} is C{None}.

    The global reactor is imported here, when an object is built, never when a
    txtcp module is imported, so an application can install the reactor it
    wants (asyncio, for example) first.
    """
    if loop is not None:
        return loop
    from twisted.internet import reactor

    return cast(Any, reactor)
