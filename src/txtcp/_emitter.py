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

    # One tuple per emitter, or None: the event names first, then for each
    # name its listener, or a tuple of its listeners when there are several
    # (a connection usually has one or two events with one listener each:
    # a dict of tuples would cost four times the memory).
    __slots__ = ("_events",)
    _log = Logger()

    def __init__(self) -> None:
        self._events: tuple[Any, ...] | None = None

    def _get(self, event: str) -> tuple[Listener, ...]:
        events = self._events
        if events is None:
            return ()
        n = len(events) >> 1
        for i in range(n):
            if events[i] == event:
                value = events[n + i]
                return value if type(value) is tuple else (value,)
        return ()

    def _set(self, event: str, listeners: tuple[Listener, ...]) -> None:
        events = self._events or ()
        n = len(events) >> 1
        names = list(events[:n])
        values = list(events[n:])
        if event in names:
            i = names.index(event)
            if listeners:
                values[i] = listeners if len(listeners) > 1 else listeners[0]
            else:
                del names[i], values[i]
        elif listeners:
            names.append(event)
            values.append(listeners if len(listeners) > 1 else listeners[0])
        self._events = (*names, *values) if names else None

    def on(self, event: str, listener: Listener) -> None:
        """Call C{listener} every time C{event} is emitted."""
        _check_event(event)
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {listener!r}")
        events = self._events
        if events is None:
            self._events = (event, listener)
            return
        n = len(events) >> 1
        for i in range(n):
            if events[i] == event:
                value = events[n + i]
                value = (*value, listener) if type(value) is tuple else (value, listener)
                self._events = (*events[: n + i], value, *events[n + i + 1 :])
                return
        self._events = (*events[:n], event, *events[n:], listener)

    def once(self, event: str, listener: Listener) -> None:
        """Call C{listener} the next time C{event} is emitted, then forget it."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {listener!r}")
        self.on(event, _Once(self, event, listener))

    def remove_listener(self, event: str, listener: Listener) -> None:
        """
        Forget one registration of C{listener} for C{event} (one added with
        L{on} or L{once}); do nothing if there is none.
        """
        _check_event(event)
        current = self._get(event)
        for index, candidate in enumerate(current):
            if candidate == listener or getattr(candidate, "listener", None) == listener:
                self._set(event, current[:index] + current[index + 1 :])
                return

    def remove_listeners(self, *events: str) -> None:
        """Forget every listener of the given events, or of all events if none is named."""
        if not events:
            self._events = None
            return
        for event in events:
            _check_event(event)
            self._set(event, ())

    def listeners(self, event: str) -> list[Listener]:
        """Return the listeners of C{event}, in the order they run."""
        _check_event(event)
        return [getattr(item, "listener", item) for item in self._get(event)]

    def emit(self, event: str, *args: Any) -> None:
        """Call every listener of C{event} with C{args}."""
        self._emit(event, *args)

    def _emit(self, event: str, *args: Any) -> bool:
        """
        Emit C{event}; return C{False} if a listener raised (the exception is
        logged), C{True} otherwise.
        """
        events = self._events
        if events is None:
            return True
        n = len(events) >> 1
        i = 0
        while events[i] != event:
            i += 1
            if i == n:
                return True
        listeners = events[n + i]
        if type(listeners) is not tuple:
            try:
                listeners(*args)
            except Exception:
                self._log.failure(
                    "Listener {listener!r} for event {event!r} raised",
                    listener=listeners,
                    event=event,
                )
                return False
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


class _Once:
    """A listener that forgets itself when first called (an object rather
    than a closure: a closure would refer to itself, a cycle that only the
    garbage collector could free)."""

    __slots__ = ("emitter", "event", "listener")

    def __init__(self, emitter: EventEmitter, event: str, listener: Listener) -> None:
        self.emitter = emitter
        self.event = event
        self.listener = listener

    def __call__(self, *args: Any) -> None:
        self.emitter.remove_listener(self.event, self)
        self.listener(*args)


def _check_event(event: object) -> None:
    if not isinstance(event, str):
        raise TypeError(f"event name must be a str, not {event!r}")
