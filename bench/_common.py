"""
What the contenders' servers and clients share: the wire protocol of each
workload, the sizes, and small helpers.

Wire protocol (the same for every contender, so any client could talk to
any server):

  - C{sink} server: counts the bytes of each connection and writes one
    byte, L{ACK}, once it has C{total} of them.  The bulk client times from
    "connected" to that byte.
  - C{echo} server: writes back whatever it reads, and closes when the
    client closes.  Ping-pong, connection rate and idle memory use it.
"""

from __future__ import annotations

import dataclasses
import resource
import socket
import sys
from collections.abc import Callable
from time import perf_counter

#: Size of each write of the bulk workload.
CHUNK = 64 * 1024
#: Size of each ping-pong message (request and reply).
MSG = 64
#: The byte a sink server writes once it has read everything.
ACK = b"!"
#: Round trips (ping-pong) or connections (connection rate) made before the
#: clock starts.
WARMUP = 50

HOST = "127.0.0.1"

PAYLOAD = bytes(range(256)) * (CHUNK // 256)
MESSAGE = b"p" * MSG


@dataclasses.dataclass(frozen=True)
class ClientJob:
    """What a client is asked to do."""

    workload: str
    port: int
    total: int
    seconds: float


#: A server reports its port through this once it listens.
Ready = Callable[[int], None]


def report_port(port: int) -> None:
    """Tell the parent process the server's port (a line on stdout)."""
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on C{sock}."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Clock:
    """
    Counts operations (round trips, connections) after a warm-up, until
    C{seconds} have passed.
    """

    __slots__ = ("count", "deadline", "seconds", "started")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.count = -WARMUP
        self.started = 0.0
        self.deadline = float("inf")

    def tick(self) -> bool:
        """Count one operation; return whether to go on."""
        self.count += 1
        if self.count == 0:
            self.started = perf_counter()
            self.deadline = self.started + self.seconds
            return True
        return self.count < 0 or perf_counter() < self.deadline

    def rate(self) -> float:
        """Operations per second over the timed part."""
        return self.count / (perf_counter() - self.started)
