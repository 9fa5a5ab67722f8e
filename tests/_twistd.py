"""
Real C{twistd -n ...} subprocesses for the service tests: start one, wait
for a line of its log (with a timeout), read its memory use, stop it.

The processes' output goes to a file that the tests poll without blocking
the shared reactor, so in-process servers keep running meanwhile.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from _helpers import TIMEOUT, wait_for

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")
_LISTENING = re.compile(r"(tcp-echo|tcp-proxy) listening on (\[[^\]]+\]|[^\s:]+):(\d+)")


class Twistd:
    """One running C{twistd} process and its log."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill)
        self.proc = subprocess.Popen(
            [TWISTD, "--pidfile=", "-n", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.ports: list[int] = []

    @property
    def output(self) -> str:
        """Everything the process wrote so far."""
        self._out.seek(0)
        return self._out.read().decode("utf-8", "replace")

    @property
    def port(self) -> int:
        """The first port it listens on."""
        return self.ports[0]

    async def wait_output(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait for a log line matching the regular expression C{pattern}."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.output)
            if match:
                found.append(match)
                return True
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"twistd exited ({self.proc.returncode}) before {pattern!r}:\n{self.output}"
                )
            return False

        try:
            await wait_for(seen, timeout)
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.output}") from None
        return found[0]

    async def listening(self, count: int = 1, timeout: float = TIMEOUT) -> int:
        """Wait until it listens on C{count} endpoints; return the first port."""

        def enough() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited ({self.proc.returncode}):\n{self.output}")
            return len(_LISTENING.findall(self.output)) >= count

        try:
            await wait_for(enough, timeout)
        except TimeoutError:
            raise AssertionError(f"not listening within {timeout}s:\n{self.output}") from None
        self.ports = [int(m[2]) for m in _LISTENING.findall(self.output)]
        return self.ports[0]

    def rss_kib(self) -> int:
        """The process's resident memory (C{VmRSS}), in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match.group(1))

    async def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to end; return its exit status."""
        try:
            await wait_for(lambda: self.proc.poll() is not None, timeout)
        except TimeoutError:
            raise AssertionError(f"twistd still running after {timeout}s:\n{self.output}") from None
        return self.proc.returncode

    async def terminate(self, timeout: float = TIMEOUT) -> int:
        """Send SIGTERM and wait for the process to end; return its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    def kill(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()


async def start(*args: str, listen: int = 1, timeout: float = TIMEOUT) -> Twistd:
    """Start C{twistd -n ARGS} and wait until it listens on C{listen} endpoints."""
    proc = Twistd(list(args))
    try:
        await proc.listening(listen, timeout)
    except BaseException:
        proc.kill()
        raise
    return proc


def run_twistd(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run C{twistd ARGS} to completion (for options that make it exit)."""
    return subprocess.run(
        [TWISTD, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
