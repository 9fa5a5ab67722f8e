"""The event emitter: listener order, once, removal, and exceptions."""

from __future__ import annotations

from typing import Any

import pytest
from _helpers import logged

from txtcp import EventEmitter


def test_listeners_run_in_order() -> None:
    """Listeners run in the order they were added, with the emitted arguments."""
    e = EventEmitter()
    calls: list[tuple[str, tuple[object, ...]]] = []
    e.on("x", lambda *a: calls.append(("first", a)))
    e.on("x", lambda *a: calls.append(("second", a)))
    e.emit("x", 1, 2)
    assert calls == [("first", (1, 2)), ("second", (1, 2))]


def test_once_fires_once() -> None:
    """A listener added with once runs for the next emit only."""
    e = EventEmitter()
    calls: list[int] = []
    e.once("x", calls.append)
    e.emit("x", 1)
    e.emit("x", 2)
    assert calls == [1]
    assert e.listeners("x") == []


def test_remove_listener_and_listeners() -> None:
    """remove_listener forgets one registration, including a once one."""
    e = EventEmitter()
    calls: list[object] = []
    e.on("x", calls.append)
    e.once("y", calls.append)
    assert e.listeners("x") == [calls.append]
    assert e.listeners("y") == [calls.append]
    e.remove_listener("x", calls.append)
    e.remove_listener("y", calls.append)
    e.remove_listener("z", calls.append)
    e.emit("x", 1)
    e.emit("y", 2)
    assert calls == []


def test_remove_listeners() -> None:
    """remove_listeners forgets the named events, or all events."""
    e = EventEmitter()
    calls: list[object] = []
    e.on("x", calls.append)
    e.on("y", calls.append)
    e.remove_listeners("x")
    e.emit("x", 1)
    e.emit("y", 2)
    e.remove_listeners()
    e.emit("y", 3)
    assert calls == [2]


def test_removal_during_emit() -> None:
    """A listener that removes another during an emit does not disturb that emit."""
    e = EventEmitter()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")
        e.remove_listener("x", second)

    def second() -> None:
        calls.append("second")

    e.on("x", first)
    e.on("x", second)
    e.emit("x")
    e.emit("x")
    assert calls == ["first", "second", "first"]


def test_listener_exception_is_logged_and_others_run() -> None:
    """An exception in a listener is logged with its traceback; the next listener still runs."""
    e = EventEmitter()
    calls: list[str] = []
    with logged() as seen:

        def bad() -> None:
            raise RuntimeError("boom")

        e.on("x", bad)
        e.on("x", lambda: calls.append("ok"))
        e.emit("x")
    assert calls == ["ok"]
    failures = [ev for ev in seen if "log_failure" in ev]
    assert len(failures) == 1
    assert isinstance(failures[0]["log_failure"].value, RuntimeError)
    failures[0]["log_failure"].cleanFailure()


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.on(1, print),
        lambda e: e.on("x", "not callable"),
        lambda e: e.once("x", None),
        lambda e: e.listeners(None),
    ],
)
def test_bad_arguments(call: object) -> None:
    """Non-str event names and non-callable listeners raise TypeError."""
    with pytest.raises(TypeError):
        call(EventEmitter())  # type: ignore[operator]


def test_many_events_keep_their_listeners_apart() -> None:
    """Listeners of several events (one or many each, on and once) stay apart and in order."""
    e = EventEmitter()
    calls: list[tuple[str, object]] = []

    def rec(tag: str) -> Any:
        def listener(*args: object) -> None:
            calls.append((tag, args))

        return listener

    x1, x2, y1, z1 = rec("x1"), rec("x2"), rec("y1"), rec("z1")
    e.on("x", x1)
    e.on("y", y1)
    e.once("x", x2)
    e.on("z", z1)
    e.on("x", x1)
    assert e.listeners("x") == [x1, x2, x1]
    assert e.listeners("y") == [y1]
    e.emit("x", 1)
    e.emit("x", 2)
    assert calls == [("x1", (1,)), ("x2", (1,)), ("x1", (1,)), ("x1", (2,)), ("x1", (2,))]
    calls.clear()
    e.remove_listener("x", x1)
    assert e.listeners("x") == [x1]
    e.remove_listeners("y")
    assert e.listeners("y") == []
    e.emit("y", 3)
    e.emit("z", 4)
    e.emit("x", 5)
    assert calls == [("z1", (4,)), ("x1", (5,))]
    e.remove_listener("x", x1)
    e.remove_listener("z", z1)
    assert (e.listeners("x"), e.listeners("z")) == ([], [])
    e.emit("x", 6)
    e.on("y", y1)
    e.emit("y", 7)
    assert calls == [("z1", (4,)), ("x1", (5,)), ("y1", (7,))]


def test_listener_added_during_emit_waits_for_the_next() -> None:
    """A listener added while its event is being emitted runs from the next emit on."""
    e = EventEmitter()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")
        e.on("x", lambda: calls.append("added"))

    e.on("x", first)
    e.emit("x")
    assert calls == ["first"]
    e.emit("x")
    assert calls == ["first", "first", "added"]
