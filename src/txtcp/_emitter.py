# -*- test-case-name: tests.test_emitter -*-
"""
A small event emitter in the shape of thor's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

Listener = Callable[..., object]


class EventEmitter:
    """
    Named events with any number of listeners.

    Listeners run in the order they were added.  An exception raised by a
    listener is logged with its traceback through C{twisted.logger} and does
    not stop the other listeners, nor the reactor.
    """

    __slots__ = ("_events",)
    _log = Logger()

    def __init__(self) -> None:
        self._events: dict[str, tuple[Listener, ...]] | None = None

    def on(self, event: str, listener: Listener) -> None:
        """Call C{listener} every time C{event} is emitted."""
        _check_event(event)
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {listener!r}")
        events = self._events
        if events is None:
            events = self._events = {}
        events[event] = (*events.get(event, ()), listener)

    def once(self, event: str, listener: Listener) -> None:
        """Call C{listener} the next time C{event} is emitted, then forget it."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {listener!r}")

        def wrapper(*args: Any) -> None:
            self.remove_listener(event, wrapper)
            listener(*args)

        wrapper.listener = listener  # type: ignore[attr-defined]
        self.on(event, wrapper)

    def remove_listener(self, event: str, listener: Listener) -> None:
        """
        Forget one registration of C{listener} for C{event} (one added with
        L{on} or L{once}); do nothing if there is none.
        """
        _check_event(event)
        current = self._events.get(event, ()) if self._events else ()
        for index, candidate in enumerate(current):
            if candidate == listener or getattr(candidate, "listener", None) == listener:
                rest = current[:index] + current[index + 1 :]
                assert self._events is not None
                if rest:
                    self._events[event] = rest
                else:
                    del self._events[event]
                return

    def remove_listeners(self, *events: str) -> None:
        """Forget every listener of the given events, or of all events if none is named."""
        if not events:
            self._events = None
            return
        for event in events:
            _check_event(event)
            if self._events:
                self._events.pop(event, None)

    def listeners(self, event: str) -> list[Listener]:
        """Return the listeners of C{event}, in the order they run."""
        _check_event(event)
        if not self._events:
            return []
        return [getattr(item, "listener", item) for item in self._events.get(event, ())]

    def emit(self, event: str, *args: Any) -> None:
        """Call every listener of C{event} with C{args}."""
        self._emit(event, *args)

    def _emit(self, event: str, *args: Any) -> bool:
        """
        Emit C{event}; return C{False} if a listener raised (the exception is
        logged), C{True} otherwise.
        """
        events = self._events
        if not events:
            return True
        listeners = events.get(event)
        if not listeners:
            return True
        ok = True
        for listener in listeners:
            try:
                listener(*args)
            except Exception:
                ok = False
                self._log.failure(
                    "Listener {listener!r} for event {event!r} raised",
                    listener=listener,
                    event=event,
                )
        return ok


def _check_event(event: object) -> None:
    if not isinstance(event, str):
        raise TypeError(f"event name must be a str, not {event!r}")
