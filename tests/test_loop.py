"""schedule() and its handle; run()/stop() are exercised by the examples."""

from __future__ import annotations

import pytest
import pytest_twisted
from _helpers import sleep, wait_for

import txtcp


@pytest_twisted.ensureDeferred
async def test_schedule_runs_and_delete_cancels() -> None:
    """A scheduled call runs with its arguments; a deleted one never runs."""
    calls: list[str] = []
    kept = txtcp.schedule(0.01, calls.append, "kept")
    gone = txtcp.schedule(0.01, calls.append, "gone")
    gone.delete()
    assert not gone.active and kept.active
    await wait_for(lambda: calls)
    await sleep(0.05)
    assert calls == ["kept"]
    kept.delete()  # after it ran: nothing happens


@pytest.mark.parametrize(
    ("delay", "callback", "exc"),
    [(-1, print, ValueError), ("1", print, TypeError), (1, "print", TypeError)],
)
def test_schedule_bad_arguments(delay: object, callback: object, exc: type) -> None:
    """Bad arguments to schedule raise at the call."""
    with pytest.raises(exc):
        txtcp.schedule(delay, callback)  # type: ignore[arg-type]
