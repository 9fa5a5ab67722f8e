"""
Plain blocking sockets, one thread per connection: the cheapest ends there
are in Python.  The proxy workload puts them on both sides of each proxy, so
that what is measured is the proxy.  Also the idle-memory client, which
opens the connections whatever the server is.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from time import perf_counter

from ._common import (
    ACK,
    CHUNK,
    HOST,
    MESSAGE,
    MSG,
    PAYLOAD,
    ClientJob,
    Clock,
    Ready,
    nodelay,
    raise_fd_limit,
)


def _recv_exactly(sock: socket.socket, n: int) -> None:
    while n:
        data = sock.recv(n)
        if not data:
            raise ConnectionError("end of stream before the reply")
        n -= len(data)


def serve(kind: str, total: int, ready: Ready) -> None:
    """Serve C{kind} ("sink" or "echo") on 127.0.0.1 until killed."""

    def sink(conn: socket.socket) -> None:
        buf = bytearray(4 * CHUNK)
        got = 0
        with conn:
            while n := conn.recv_into(buf):
                before = got
                got += n
                if before < total <= got:
                    conn.sendall(ACK)

    def echo(conn: socket.socket) -> None:
        nodelay(conn)
        with conn:
            while data := conn.recv(CHUNK):
                conn.sendall(data)

    handler = sink if kind == "sink" else echo
    listener = socket.create_server((HOST, 0), backlog=511)
    ready(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def client(job: ClientJob) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""
    if job.workload == "bulk":
        with socket.create_connection((HOST, job.port)) as sock:
            started = perf_counter()
            sent = 0
            while sent < job.total:
                sock.sendall(PAYLOAD)
                sent += len(PAYLOAD)
            _recv_exactly(sock, len(ACK))
            return job.total / (perf_counter() - started) / 1e6
    clock = Clock(job.seconds)
    if job.workload == "pingpong":
        with socket.create_connection((HOST, job.port)) as sock:
            nodelay(sock)
            while True:
                sock.sendall(MESSAGE)
                _recv_exactly(sock, MSG)
                if not clock.tick():
                    return clock.rate()
    while True:
        with socket.create_connection((HOST, job.port)) as sock:
            sock.sendall(MESSAGE)
            _recv_exactly(sock, MSG)
        if not clock.tick():
            return clock.rate()


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_client(port: int, count: int, server_pid: int, timeout: float = 120.0) -> None:
    """
    Open C{count} connections to C{port} and keep them open, idle, until
    stdin is closed or a line arrives on it.  Connections are opened in
    batches, each once the server (process C{server_pid}) has accepted
    most of the previous ones, so that its accept queue never overflows.
    Writes C{READY <count>} on stdout when all are open and accepted.
    """
    raise_fd_limit()
    base = _fd_count(server_pid)
    socks: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    batch = 64
    while len(socks) < count:
        for _ in range(min(batch, count - len(socks))):
            socks.append(socket.create_connection((HOST, port)))
        while _fd_count(server_pid) < base + len(socks) - batch:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not accept the connections in time")
            time.sleep(0.001)
    while _fd_count(server_pid) < base + count:
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not accept the connections in time")
        time.sleep(0.005)
    sys.stdout.write(f"READY {len(socks)}\n")
    sys.stdout.flush()
    sys.stdin.readline()
    for sock in socks:
        sock.close()
