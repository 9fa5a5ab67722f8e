# -*- test-case-name: tests.test_loop -*-
"""
The loop conveniences of thor: L{run}, L{stop} and L{schedule}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._reactor import _default_reactor


class ScheduledCall:
    """A call scheduled by L{schedule}; L{delete} cancels it."""

    __slots__ = ("_call",)

    def __init__(self, call: Any) -> None:
        self._call = call

    def delete(self) -> None:
        """Cancel the call if it has not run yet; otherwise do nothing."""
        if self._call.active():
            self._call.cancel()

    @property
    def active(self) -> bool:
        """Whether the call is still to run."""
        return bool(self._call.active())


def run(loop: Any = None) -> None:
    """Run the reactor until L{stop} is called (once per process: Twisted's
    reactor cannot be restarted)."""
    _default_reactor(loop).run()


def stop(loop: Any = None) -> None:
    """Stop the reactor once the current callbacks are done; safe to call
    when it is already stopping, and from any thread."""
    reactor = _default_reactor(loop)

    def _stop() -> None:
        if reactor.running:
            reactor.stop()

    reactor.callFromThread(_stop)


def schedule(delay: float, callback: Callable[..., object], *args: Any) -> ScheduledCall:
    """
    Call C{callback(*args)} after C{delay} seconds on the global reactor.

    @raise TypeError: C{callback} is not callable, or C{delay} not a number.
    @raise ValueError: C{delay} is negative.
    """
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise TypeError(f"delay must be a number of seconds, not {delay!r}")
    if not delay >= 0:
        raise ValueError(f"delay must be >= 0, not {delay!r}")
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {callback!r}")
    return ScheduledCall(_default_reactor(None).callLater(delay, callback, *args))
