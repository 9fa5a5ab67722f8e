# -*- test-case-name: tests.test_exports -*-
"""
The lazily looked-up default reactor.
"""

from __future__ import annotations

from typing import Any

# The global reactor once looked up: it is installed for good by then.
_installed: Any = None


def _default_reactor(loop: Any | None) -> Any:
    """
    Return C{loop}, or the global reactor when C{loop} is C{None}.

    The global reactor is imported here, when an object is built, never when a
    txtcp module is imported, so an application can install the reactor it
    wants (asyncio, for example) first.
    """
    global _installed
    if loop is not None:
        return loop
    if _installed is None:
        from twisted.internet import reactor

        _installed = reactor
    return _installed
