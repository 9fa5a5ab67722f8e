"""
Running the measurements: the worker processes, the proxies, the rounds.

Each measurement starts fresh processes: a server (and for the proxy
workload a proxy in front of it), then a client that does the work and
reports one figure.  A measurement that fails is recorded with its error
and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ._common import HOST
from ._contenders import ROOT, twistd_path

#: Seconds a server or proxy has to start listening.
START_TIMEOUT = 60.0
#: Seconds the idle-memory client has to open all its connections.
IDLE_TIMEOUT = 180.0


class MeasurementError(Exception):
    """A measurement could not be made; the message says why."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    rounds: int
    bulk_bytes: int
    seconds: float
    idle_connections: int
    proxy_bulk_bytes: int
    client_timeout: float


@dataclasses.dataclass
class Layout:
    """Which CPUs the processes may run on (C{None}: wherever the kernel likes)."""

    cpus: set[int] | None

    def describe(self) -> str:
        """A sentence for the report."""
        if self.cpus is None:
            return "processes unpinned (the kernel places them on any CPU)"
        cpus = ", ".join(map(str, sorted(self.cpus)))
        return f"every process pinned to CPU {cpus} (figures are the CPU cost of all ends)"

    def preexec(self) -> Callable[[], None] | None:
        """A C{preexec_fn} that pins the child, or C{None}."""
        cpus = self.cpus
        if cpus is None:
            return None
        return lambda: os.sched_setaffinity(0, cpus)


def _python() -> list[str]:
    return [sys.executable, "-m", "bench.worker"]


def _tail(f: IO[bytes], limit: int = 800) -> str:
    f.seek(0)
    text = f.read().decode("utf-8", "replace").strip()
    return text[-limit:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def server(contender: str, kind: str, total: int, layout: Layout) -> Iterator[tuple[int, int]]:
    """A C{contender} server of C{kind}, listening; yields C{(port, pid)}."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*_python(), "serve", contender, kind, str(total)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=layout.preexec(),
        )
        try:
            assert proc.stdout is not None
            line = _read_line(proc, proc.stdout, START_TIMEOUT)
            if not line.startswith("PORT "):
                raise MeasurementError(
                    f"{contender} server did not start: {line!r} {_tail(err)}".strip()
                )
            yield int(line.split()[1]), proc.pid
            if proc.poll() is not None:
                raise MeasurementError(f"{contender} server died: {_tail(err)}")
        finally:
            _stop(proc)


def _read_line(proc: subprocess.Popen[bytes], stream: IO[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"<no line within {timeout:.0f} s>"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                return f"<exited with status {proc.wait()}>"
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


@contextlib.contextmanager
def client(
    contender: str, workload: str, total: int, sizes: Sizes, layout: Layout
) -> Iterator[Callable[[int], float]]:
    """
    A client process, started at once so that it imports while the server
    starts; yields a function that gives it the server's port, waits for
    its figure and returns it.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*_python(), "client", contender, workload, "-", str(total), str(sizes.seconds)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=layout.preexec(),
        )

        def run(port: int) -> float:
            try:
                out, _ = proc.communicate(f"{port}\n".encode(), timeout=sizes.client_timeout)
            except subprocess.TimeoutExpired:
                raise MeasurementError(
                    f"{contender} {workload} client timed out after {sizes.client_timeout:.0f} s"
                ) from None
            for line in out.decode().splitlines():
                if line.startswith("RESULT "):
                    return float(line.split()[1])
            raise MeasurementError(
                f"{contender} {workload} client failed (status {proc.returncode}): {_tail(err)}"
            )

        try:
            yield run
        finally:
            _stop(proc)


def rss_kib(pid: int) -> int:
    """The resident set size of process C{pid}, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise MeasurementError(f"no VmRSS for process {pid}")


def _echo_once(port: int) -> None:
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"x" * 64)
        got = 0
        while got < 64:
            data = sock.recv(64)
            if not data:
                raise MeasurementError("the echo server closed before replying")
            got += len(data)


def measure(contender: str, workload: str, sizes: Sizes, layout: Layout) -> float:
    """One direct measurement of C{contender} on C{workload}."""
    if workload == "idle":
        return measure_idle(contender, sizes, layout)
    kind = "sink" if workload == "bulk" else "echo"
    total = sizes.bulk_bytes
    with (
        client(contender, workload, total, sizes, layout) as run,
        server(contender, kind, total, layout) as (port, _),
    ):
        return run(port)


def measure_idle(contender: str, sizes: Sizes, layout: Layout) -> float:
    """KiB of the server's RSS per idle connection, over C{sizes.idle_connections}."""
    count = sizes.idle_connections
    with server(contender, "echo", 0, layout) as (port, pid):
        # Settle longer when there is more to settle.
        settle = 0.5 if count >= 1000 else 0.05
        _echo_once(port)
        time.sleep(settle)
        before = rss_kib(pid)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [*_python(), "idle", str(port), str(count), str(pid)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=layout.preexec(),
            )
            try:
                assert proc.stdout is not None and proc.stdin is not None
                line = _read_line(proc, proc.stdout, IDLE_TIMEOUT)
                if not line.startswith("READY "):
                    raise MeasurementError(f"idle client failed: {line!r} {_tail(err)}".strip())
                time.sleep(settle)
                after = rss_kib(pid)
                proc.stdin.close()
                proc.wait(30)
            finally:
                _stop(proc)
    return (after - before) / count


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 3 and fields[1] == want and fields[3] == "0A":
                return True
    return False


_HAPROXY_CONFIG = """\
global
    nbthread 1
    maxconn 1000
defaults
    mode tcp
    timeout connect 10s
    timeout client 120s
    timeout server 120s
listen bench
    bind {host}:{port}
    server upstream {host}:{upstream}
"""


def _proxy_command(name: str, port: int, upstream: int, workdir: Path) -> list[str]:
    twistd = [str(twistd_path()), "--pidfile=", "-n"]
    if name == "tcp-proxy":
        return [
            *twistd,
            "tcp-proxy",
            "--listen",
            f"tcp:{port}:interface={HOST}",
            "--connect",
            f"tcp:host={HOST}:port={upstream}",
        ]
    if name == "portforward":
        return [
            *twistd,
            "portforward",
            "-p",
            f"tcp:{port}:interface={HOST}",
            "-h",
            HOST,
            "-d",
            str(upstream),
        ]
    if name == "socat":
        return [
            "socat",
            "-b",
            "262144",
            f"TCP-LISTEN:{port},bind={HOST},reuseaddr",
            f"TCP:{HOST}:{upstream}",
        ]
    if name == "haproxy":
        config = workdir / "haproxy.cfg"
        config.write_text(_HAPROXY_CONFIG.format(host=HOST, port=port, upstream=upstream))
        return ["haproxy", "-db", "-f", str(config)]
    raise ValueError(f"unknown proxy {name!r}")


@contextlib.contextmanager
def proxy(name: str, upstream: int, layout: Layout) -> Iterator[int]:
    """A running proxy C{name} in front of C{upstream}; yields its port."""
    if name == "direct":
        yield upstream
        return
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as out:
        port = free_port()
        proc = subprocess.Popen(
            _proxy_command(name, port, upstream, Path(tmp)),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=layout.preexec(),
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _listening(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise MeasurementError(f"{name} did not start listening: {_tail(out)}")
                time.sleep(0.02)
            yield port
        finally:
            _stop(proc)


def measure_proxy(name: str, workload: str, sizes: Sizes, layout: Layout) -> float:
    """One proxy measurement: blocking-socket client and server, C{name} between."""
    kind = "sink" if workload == "bulk" else "echo"
    total = sizes.proxy_bulk_bytes
    with (
        client("socket", workload, total, sizes, layout) as run,
        server("socket", kind, total, layout) as (upstream, _),
        proxy(name, upstream, layout) as port,
    ):
        return run(port)


def rotated(items: Sequence[str], by: int) -> list[str]:
    """C{items} rotated left by C{by}: each round starts with another contender."""
    if not items:
        return []
    k = by % len(items)
    return [*items[k:], *items[:k]]
