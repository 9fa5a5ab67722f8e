"""
Load: 10,000 concurrent connections to a real C{twistd tcp-echo}, and 2,000
through a real C{twistd tcp-proxy}, each echoing a payload unique to it,
all held open at once; no error logged, no connection lost.

The clients run in a separate process (asyncio, see C{_load_client.py}),
so that this process's reactor and descriptor table stay small.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest
import pytest_twisted
from _helpers import wait_for
from _rel import fd_count, fds_settle, nofile_limit, record, status_kib
from _twistd import Twistd, start

# The client has up to 200 connections opening at a time; the accept queue
# must never overflow.  With a backlog of 50 (Twisted's for endpoint
# strings, before the services raised it to 511) it did: the kernel
# answered with SYN cookies, and under that load it at times accepted a
# connection twice.  The duplicate, an established socket no client knows
# of, is rightly held open by the server, and the descriptor count never
# came back to its baseline.
LOOPBACK = "tcp:0:interface=127.0.0.1:backlog=1024"
CLIENT = str(Path(__file__).resolve().parent / "_load_client.py")
PAYLOAD = 1000


class LoadClient:
    """The client process, its output file, and its stdin."""

    def __init__(self, port: int, count: int) -> None:
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill)
        self.proc = subprocess.Popen(
            [sys.executable, CLIENT, "127.0.0.1", str(port), str(count), str(PAYLOAD)],
            stdin=subprocess.PIPE,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        self._out.seek(0)
        return self._out.read().decode("utf-8", "replace")

    async def holding(self, timeout: float) -> int:
        """Wait until every connection is open and has echoed; return how many are held."""

        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"load client exited early:\n{self.output}")
            return "HOLDING" in self.output

        await wait_for(seen, timeout, step=0.1)
        match = re.search(r"HOLDING (\d+)", self.output)
        assert match
        return int(match.group(1))

    async def finish(self, timeout: float) -> dict[str, Any]:
        """Let the client close every connection; return its summary."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()
        await wait_for(lambda: self.proc.poll() is not None, timeout, step=0.1)
        assert self.proc.returncode == 0, self.output
        summary: dict[str, Any] = json.loads(self.output.strip().splitlines()[-1])
        return summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()


def assert_log_clean(proc: Twistd) -> None:
    """Nothing above info level, and no traceback, in C{proc}'s log."""
    out = proc.output
    assert "Traceback" not in out, out[-3000:]
    bad = re.findall(r"^.*#(?:warn|error|critical)\].*$", out, re.MULTILINE)
    assert not bad, bad[:5]


async def hold(
    port: int, count: int, servers: list[Twistd], timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run C{count} clients against C{port}; return their summary and the servers' figures."""
    base_fds = {p.proc.pid: fd_count(p.proc.pid) for p in servers}
    base_rss = {p.proc.pid: status_kib(p.proc.pid, "VmRSS") for p in servers}
    client = LoadClient(port, count)
    try:
        held = await client.holding(timeout)
        peak_fds = {pid: fd_count(pid) - base for pid, base in base_fds.items()}
        rss = {pid: status_kib(pid, "VmRSS") - base for pid, base in base_rss.items()}
        summary = await client.finish(timeout)
    finally:
        client.kill()
    assert summary["error_count"] == 0, summary["errors"]
    assert held == summary["opened"] == summary["echoed"] == count
    assert summary["closed_cleanly"] == count
    for pid, base in base_fds.items():
        assert await fds_settle(pid, base, 30) <= base
    return summary, {
        "held_by_client": held,
        "server_fds_at_peak": list(peak_fds.values()),
        "rss_growth_kib_while_held": list(rss.values()),
    }


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_ten_thousand_connections_to_tcp_echo() -> None:
    """10,000 connections held at once on twistd tcp-echo each echo their own payload."""
    count = 10_000
    with nofile_limit(count + 2000):
        echo = await start("tcp-echo", "--listen", LOOPBACK)
        try:
            summary, figures = await hold(echo.port, count, [echo], timeout=150)
            assert figures["server_fds_at_peak"][0] >= count
            await wait_for(lambda: echo.output.count(" bytes echoed, ") >= count, 30, step=0.1)
            ended = re.findall(r"ended: (\d+) bytes echoed, [0-9.]+ s, (.+)", echo.output)
            assert len(ended) == count
            assert {(int(b), how.strip()) for b, how in ended} == {
                (PAYLOAD, "client ended its stream")
            }
            assert_log_clean(echo)
            record("ten_thousand_connections_to_tcp_echo", **summary, **figures)
        finally:
            echo.kill()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_two_thousand_connections_through_tcp_proxy() -> None:
    """2,000 connections held at once through twistd tcp-proxy each echo their own payload."""
    count = 2_000
    with nofile_limit(3 * count + 2000):
        echo = await start("tcp-echo", "--listen", LOOPBACK)
        proxy = None
        try:
            proxy = await start(
                "tcp-proxy",
                "--listen",
                LOOPBACK,
                "--connect",
                f"tcp:host=127.0.0.1:port={echo.port}",
            )
            summary, figures = await hold(proxy.port, count, [proxy, echo], timeout=120)
            assert figures["server_fds_at_peak"][0] >= 2 * count
            assert figures["server_fds_at_peak"][1] >= count
            await wait_for(lambda: proxy.output.count(" bytes up, ") >= count, 30, step=0.1)
            ended = re.findall(r"ended: (\d+) bytes up, (\d+) bytes down", proxy.output)
            assert len(ended) == count
            assert set(ended) == {(str(PAYLOAD), str(PAYLOAD))}
            assert_log_clean(proxy)
            assert_log_clean(echo)
            record("two_thousand_connections_through_tcp_proxy", **summary, **figures)
        finally:
            if proxy is not None:
                proxy.kill()
            echo.kill()
