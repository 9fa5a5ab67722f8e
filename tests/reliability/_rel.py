"""
Helpers of the reliability tests: memory and descriptors of a process, a
listener that never completes a connection, raising the descriptor limit,
and the figures the tests record for docs/reliability.rst.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _helpers import reactor, wait_for
from twisted.internet.defer import Deferred, ensureDeferred

MiB = 1024 * 1024
GiB = 1024 * MiB

#: Where the tests append the figures they measured (one JSON object a line);
#: set TXTCP_FIGURES to a path to collect them.
FIGURES = os.environ.get("TXTCP_FIGURES")


def record(name: str, **values: Any) -> None:
    """Append a measured figure to the C{TXTCP_FIGURES} file, if set."""
    if FIGURES:
        with open(FIGURES, "a") as f:
            f.write(json.dumps({"test": name, **values}) + "\n")


def status_kib(pid: int, field: str) -> int:
    """A C{Vm*} field of C{/proc/PID/status} (C{VmRSS}, C{VmHWM}), in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def fd_count(pid: int | None = None) -> int:
    """The number of open descriptors of process C{pid} (default: this one)."""
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


async def fds_settle(pid: int, baseline: int, timeout: float = 10.0) -> int:
    """Wait (up to C{timeout}) until C{pid} has at most C{baseline} descriptors."""
    with contextlib.suppress(TimeoutError):
        await wait_for(lambda: fd_count(pid) <= baseline, timeout, step=0.05)
    return fd_count(pid)


@contextlib.contextmanager
def nofile_limit(wanted: int) -> Iterator[int]:
    """
    Raise this process's soft C{RLIMIT_NOFILE} to C{wanted} (at most the hard
    limit) while the block runs; child processes started inside inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    try:
        yield max(soft, target)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """
    A port on 127.0.0.1 whose listener's accept queue is full: the kernel
    drops further SYNs, so a connection to it is never made (a connect
    timeout).  Yields the port.
    """
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting is refused."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


def reset_socket(fd: int) -> None:
    """Set C{SO_LINGER} 0 on the socket C{fd}, so that closing it sends RST."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    finally:
        sock.close()


def as_deferred(coro: Any, timeout: float) -> Deferred[Any]:
    """Run the coroutine C{coro} as a Deferred that times out."""
    d: Deferred[Any] = ensureDeferred(coro)
    d.addTimeout(timeout, reactor)
    return d
