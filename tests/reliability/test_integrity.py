"""
Integrity under backpressure: 1 GiB through real C{twistd tcp-echo} and
C{twistd tcp-proxy} processes, written in random-sized chunks by a client
that reads slowly and irregularly, checked by SHA-256, with the services'
peak memory bounded; and property-based random schedules of write / pause /
resume / shutdown on the core connection over real loopback sockets.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, connect, pair, reactor, sleep
from _rel import GiB, MiB, as_deferred, record, status_kib
from _twistd import Twistd, start
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThread

import txtcp

LOOPBACK = "tcp:0:interface=127.0.0.1"
#: The most a service may grow (peak RSS over its RSS when it started).
RSS_BUDGET_KIB = 64 * 1024


class SlowIrregularClient:
    """
    Writes C{total} bytes in random-sized chunks (1 byte to 1 MiB) as fast as
    the connection's write side allows, then half-closes; reads what comes
    back with random pauses (mostly a few milliseconds, now and then a
    quarter of a second).  Both directions are hashed on the fly.
    """

    def __init__(self, conn: txtcp.TcpConnection, total: int, seed: int) -> None:
        self.conn = conn
        self.total = total
        self.sent = 0
        self.received = 0
        self.pauses = 0
        self.events: list[str] = []
        self.error: BaseException | None = None
        self._rng = random.Random(seed)
        self._pool = os.urandom(8 * MiB)
        self._sent_hash = hashlib.sha256()
        self._received_hash = hashlib.sha256()
        self.done: Deferred[None] = Deferred()
        conn.allow_half_open = True
        conn.on("data", self._data)
        conn.on("pause", self._write_pause)
        conn.on("end", lambda: self.events.append("end"))
        conn.on("error", self._error)
        conn.on("close", self._close)
        conn.pause(False)
        reactor.callLater(0, self._fill)

    @property
    def sent_digest(self) -> str:
        return self._sent_hash.hexdigest()

    @property
    def received_digest(self) -> str:
        return self._received_hash.hexdigest()

    def _chunk_size(self) -> int:
        r = self._rng.random()
        if r < 0.05:
            return self._rng.randint(1, 16)
        if r < 0.85:
            return self._rng.randint(1, 64 * 1024)
        return self._rng.randint(64 * 1024, MiB)

    def _fill(self) -> None:
        conn = self.conn
        while self.sent < self.total and not conn.write_paused and not conn.closed:
            size = min(self._chunk_size(), self.total - self.sent)
            start = self._rng.randrange(len(self._pool) - size)
            chunk = self._pool[start : start + size]
            self._sent_hash.update(chunk)
            self.sent += size
            conn.write(chunk)
        if self.sent == self.total and not conn.closed:
            self.sent += 1  # only once
            conn.shutdown()

    def _write_pause(self, paused: bool) -> None:
        if not paused:
            reactor.callLater(0, self._fill)

    def _data(self, data: bytes) -> None:
        self._received_hash.update(data)
        self.received += len(data)
        r = self._rng.random()
        if r < 0.02:
            self._hold(self._rng.uniform(0.001, 0.02))
        elif r < 0.0205:
            self._hold(0.25)

    def _hold(self, seconds: float) -> None:
        self.pauses += 1
        self.conn.pause(True)
        reactor.callLater(seconds, self.conn.pause, False)

    def _error(self, exc: BaseException) -> None:
        self.events.append("error")
        self.error = exc

    def _close(self) -> None:
        self.events.append("close")
        self.done.callback(None)


async def through(
    port: int, procs: list[Twistd], total: int, seed: int, timeout: float
) -> dict[str, Any]:
    """Send C{total} bytes to C{port} and back; check them; measure C{procs}."""
    conn = await connect("127.0.0.1", port)
    base = {p.proc.pid: status_kib(p.proc.pid, "VmRSS") for p in procs}
    started = time.monotonic()
    client = SlowIrregularClient(conn, total, seed)
    await as_deferred(wait_closed(client), timeout)
    seconds = time.monotonic() - started
    assert client.events == ["end", "close"], (client.events, client.error)
    assert client.received == total
    assert client.received_digest == client.sent_digest
    growth = {pid: status_kib(pid, "VmHWM") - base[pid] for pid in base}  # peak over the start
    for pid, kib in growth.items():
        assert kib <= RSS_BUDGET_KIB, f"process {pid} grew by {kib} KiB"
    return {
        "bytes": total,
        "seconds": round(seconds, 1),
        "reader_pauses": client.pauses,
        "rss_growth_kib": list(growth.values()),
        "rss_base_kib": list(base.values()),
    }


async def wait_closed(client: SlowIrregularClient) -> None:
    """Wait for C{client}'s connection to close."""
    await client.done


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_one_gib_through_tcp_echo() -> None:
    """1 GiB in random chunks through twistd tcp-echo comes back intact; RSS grows <= 64 MiB."""
    echo = await start("tcp-echo", "--listen", LOOPBACK)
    try:
        figures = await through(echo.port, [echo], GiB, seed=1, timeout=240)
        record("one_gib_through_tcp_echo", **figures)
        assert "Traceback" not in echo.output
    finally:
        echo.kill()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_one_gib_through_tcp_proxy() -> None:
    """1 GiB through twistd tcp-proxy to twistd tcp-echo comes back intact; RSS grows <= 64 MiB."""
    echo = await start("tcp-echo", "--listen", LOOPBACK)
    proxy = None
    try:
        proxy = await start(
            "tcp-proxy", "--listen", LOOPBACK, "--connect", f"tcp:host=127.0.0.1:port={echo.port}"
        )
        figures = await through(proxy.port, [proxy, echo], GiB, seed=2, timeout=280)
        record("one_gib_through_tcp_proxy", **figures)
        assert "Traceback" not in proxy.output + echo.output
    finally:
        if proxy is not None:
            proxy.kill()
        echo.kill()


# -- random schedules on the core connection ------------------------------------

_SIDES = st.sampled_from(["a", "b"])
_OPS = st.one_of(
    st.tuples(st.just("write"), _SIDES, st.integers(0, 300_000)),
    st.tuples(st.just("pause"), _SIDES, st.sampled_from([None, "other"])),
    st.tuples(st.just("resume"), _SIDES, st.sampled_from([None, "other"])),
    st.tuples(st.just("wait"), st.just("-"), st.integers(0, 20)),
    st.tuples(st.just("shutdown"), _SIDES, st.just(0)),
)


async def run_schedule(ops: list[tuple[str, str, Any]], seed: int) -> None:
    """Play C{ops} on both ends of a real connection and check what arrived."""
    server, a, b = await pair()
    server.close()
    ends = {"a": a, "b": b}
    got = {"a": Collector(a, unpause=False), "b": Collector(b, unpause=False)}
    written: dict[str, list[bytes]] = {"a": [], "b": []}
    shut = {"a": False, "b": False}
    rng = random.Random(seed)
    for end in (a, b):
        end.allow_half_open = True
        end.pause(False)
    for op, side, arg in ops:
        conn = ends.get(side)
        if op == "write":
            assert conn is not None
            data = rng.randbytes(arg)
            if shut[side]:
                with pytest.raises(txtcp.ConnectionClosedError):
                    conn.write(data)
            else:
                conn.write(data)
                written[side].append(data)
        elif op == "pause":
            assert conn is not None
            conn.pause(True, reason=arg)
            assert conn.paused
        elif op == "resume":
            assert conn is not None
            conn.pause(False, reason=arg)
        elif op == "wait":
            await sleep(arg / 1000)
        elif op == "shutdown" and conn is not None and not shut[side]:
            conn.shutdown()
            shut[side] = True
    for side, conn in ends.items():
        conn.pause(False, reason=None)
        conn.pause(False, reason="other")
        assert not conn.paused
        if not shut[side]:
            conn.shutdown()
    await as_deferred(both_closed(got["a"], got["b"]), 30)
    for side, other in (("a", "b"), ("b", "a")):
        expected = b"".join(written[other])
        assert got[side].data == expected, (side, got[side].size, len(expected))
        wanted = ["data", "end", "close"] if expected else ["end", "close"]
        assert got[side].events == wanted


async def both_closed(x: Collector, y: Collector) -> None:
    """Wait for both collectors' connections to close."""
    await x.closed
    await y.closed


@settings(
    max_examples=int(os.environ.get("TXTCP_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("TXTCP_EXAMPLES"),
    database=None,
)
@given(ops=st.lists(_OPS, max_size=25), seed=st.integers(0, 2**32))
def _schedules(ops: list[tuple[str, str, Any]], seed: int) -> None:
    # Hypothesis drives the examples from a worker thread; each example runs
    # on the reactor (in the main thread) and the worker waits for it.
    blockingCallFromThread(reactor, lambda: as_deferred(run_schedule(ops, seed), 60))


@pytest_twisted.ensureDeferred
async def test_random_schedules_deliver_every_byte_in_order() -> None:
    """Any schedule of write/pause/resume/shutdown delivers exactly the bytes written, in order."""
    await deferToThread(_schedules)


@pytest_twisted.ensureDeferred
async def test_schedule_with_pauses_across_backpressure() -> None:
    """A fixed schedule: 4 MiB written while the reader is paused arrives once resumed."""
    await run_schedule(
        [
            ("pause", "b", None),
            ("write", "a", 300_000),
            ("pause", "b", "other"),
            *[("write", "a", 250_000) for _ in range(15)],
            ("wait", "-", 20),
            ("resume", "b", None),
            ("wait", "-", 5),
            ("shutdown", "a", 0),
            ("write", "a", 10),
            ("write", "b", 100_000),
        ],
        seed=7,
    )


@pytest_twisted.ensureDeferred
async def test_pause_and_resume_after_end_of_stream_emit_end_once() -> None:
    """Pausing and resuming a half-open connection after the peer's end gives one end event."""
    await run_schedule(
        [("shutdown", "a", 0), ("wait", "-", 20), ("pause", "b", None), ("resume", "b", None)],
        seed=0,
    )
