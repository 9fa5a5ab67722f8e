# -*- test-case-name: tests.test_handles -*-
"""
L{Loop}: pyuv's event loop, over a Twisted reactor.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.logger import Logger
from twisted.python import threadable

from txtcp.core import default_reactor

if TYPE_CHECKING:
    from ._tcp import TCP

#: L{Loop.run} mode: run until no handle is active, or L{Loop.stop}.
UV_RUN_DEFAULT = 0
#: L{Loop.run} mode: one turn of the loop, waiting for I/O if need be.
UV_RUN_ONCE = 1
#: L{Loop.run} mode: one turn of the loop, without waiting.
UV_RUN_NOWAIT = 2

# The longest single wait for I/O; the loop re-checks its handles after it.
_MAX_WAIT = 1.0

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


class Loop:
    """
    An event loop in pyuv's shape, over a Twisted reactor.

    A L{Loop} does no I/O of its own: it keeps the L{TCP} handles made on
    it that are I{active} (listening, reading, connecting, with writes,
    a shutdown or a close still to complete) and L{run} turns the reactor
    until none is left.  Several L{Loop} objects can share one reactor;
    each one's L{run} waits for its own handles only, and the handles of
    the others go on meanwhile.

    L{run} never calls C{reactor.run()}, so it can be called again and
    again in one process.  When the reactor is not running yet (a plain
    script), the first L{run} starts it (without signal handlers) and
    every L{run} turns it itself.  When it is already running (a twistd
    service, a test harness), handles work without L{run} at all; calling
    L{run} from inside a reactor callback turns the reactor re-entrantly
    until the loop's handles are done.

    @ivar excepthook: when set, C{excepthook(type, value, traceback)} is
        called with any exception a callback raises; when C{None} (the
        default) the exception is logged.  The loop goes on either way.
    """

    _log = Logger()
    _default: ClassVar[Loop | None] = None

    def __init__(self, reactor: Any = None) -> None:
        """
        @param reactor: the Twisted reactor to run on; C{None} for the
            global one (looked up now, not at import).
        """
        self._reactor = default_reactor(reactor)
        # Every handle not yet closed is in one of these (TCP._track moves
        # it).  An active handle has I/O under way, which the reactor holds
        # anyway; the others are held weakly, as pyuv lets an inactive
        # handle go.
        self._active: set[TCP] = set()
        self._inactive: weakref.WeakSet[TCP] = weakref.WeakSet()
        self._stopping = False
        self._running = False
        self.excepthook: ExceptHook | None = None

    @classmethod
    def default_loop(cls) -> Loop:
        """The loop over the global reactor; the same object every time."""
        if cls._default is None:
            Loop._default = cls()
        assert cls._default is not None
        return cls._default

    @property
    def reactor(self) -> Any:
        """The Twisted reactor under this loop."""
        return self._reactor

    @property
    def handles(self) -> list[TCP]:
        """The handles made on this loop that are not closed yet."""
        return [h for h in (*self._active, *self._inactive) if not h.closed]

    @property
    def alive(self) -> bool:
        """Whether the loop has an active handle (L{run} would not return at once)."""
        return bool(self._active)

    def now(self) -> int:
        """The reactor's clock, in milliseconds."""
        return int(self._reactor.seconds() * 1000)

    def update_time(self) -> None:
        """Kept for pyuv compatibility; the reactor's clock is always current."""

    def run(self, mode: int = UV_RUN_DEFAULT) -> bool:
        """
        Turn the reactor until no handle of this loop is active, or until
        L{stop} is called (L{UV_RUN_DEFAULT}); or for one turn
        (L{UV_RUN_ONCE} waits for I/O if a handle is active,
        L{UV_RUN_NOWAIT} does not wait).

        @return: whether handles are still active (after L{stop}, or after
            one turn), as libuv's C{uv_run} says.
        @raise RuntimeError: L{run} is already running on this loop (it was
            called from one of its callbacks), or the reactor runs in
            another thread.
        @raise ValueError: C{mode} is not one of the three modes.
        """
        if mode not in (UV_RUN_DEFAULT, UV_RUN_ONCE, UV_RUN_NOWAIT):
            raise ValueError(
                f"mode must be UV_RUN_DEFAULT, UV_RUN_ONCE or UV_RUN_NOWAIT, not {mode!r}"
            )
        if self._running:
            raise RuntimeError("Loop.run() is already running on this loop")
        if self._reactor.running and not threadable.isInIOThread():
            raise RuntimeError("Loop.run() must be called in the reactor's thread")
        self._start_reactor()
        self._running = True
        self._stopping = False
        try:
            if mode == UV_RUN_DEFAULT:
                # Calls that are due run before the first wait and after
                # every wait, as in the reactor's own loop.
                self._reactor.runUntilCurrent()
                while not self._stopping and self._active:
                    self._reactor.doIteration(self._wait())
                    self._reactor.runUntilCurrent()
            elif mode == UV_RUN_ONCE:
                self._turn(self._wait() if self._active else 0.0)
            else:
                self._turn(0.0)
        finally:
            self._running = False
            self._stopping = False
        return bool(self._active)

    def stop(self) -> None:
        """Make a running L{run} return after the current turn."""
        self._stopping = True
        wake = getattr(self._reactor, "wakeUp", None)
        if wake is not None:
            wake()

    # -- internals ---------------------------------------------------------

    def _start_reactor(self) -> None:
        reactor = self._reactor
        if reactor.running:
            return
        start = getattr(reactor, "startRunning", None)
        if start is None:
            return
        # A reactor that was started and stopped before refuses to start
        # again; turning it still works.
        with contextlib.suppress(Exception):
            start(installSignalHandlers=False)

    def _wait(self) -> float:
        timeout: float | None = self._reactor.timeout()
        if timeout is None or timeout > _MAX_WAIT:
            return _MAX_WAIT
        return max(0.0, timeout)

    def _turn(self, wait: float) -> None:
        reactor = self._reactor
        reactor.runUntilCurrent()
        if self._stopping:
            return
        reactor.doIteration(wait)
        reactor.runUntilCurrent()

    def _call(self, callback: Callable[..., object], *args: Any) -> None:
        """Run a user callback; route what it raises to L{excepthook}."""
        try:
            callback(*args)
        except Exception:
            self._raised(callback)

    def _raised(self, callback: Callable[..., object]) -> None:
        """Handle the exception C{callback} raised (called in its C{except} block)."""
        hook = self.excepthook
        exc_type, exc, tb = sys.exc_info()
        if hook is not None and exc_type is not None and exc is not None:
            try:
                hook(exc_type, exc, tb)
                return
            except Exception:
                self._log.failure("Loop.excepthook raised")
        self._log.failure("Unhandled exception in callback {callback!r}", callback=callback)


__all__ = ["UV_RUN_DEFAULT", "UV_RUN_NOWAIT", "UV_RUN_ONCE", "Loop"]
