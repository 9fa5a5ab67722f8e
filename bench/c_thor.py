"""
thor (C{thor.TcpServer}, C{thor.TcpClient}, C{thor.loop}): the event-emitter
library whose API txtcp's core copies.  Flow control through the C{pause}
event.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import thor
import thor.loop
from thor.tcp import TcpConnection

from ._common import ACK, HOST, MESSAGE, MSG, PAYLOAD, ClientJob, Clock, Ready, nodelay


def serve(kind: str, total: int, ready: Ready) -> None:
    """Serve C{kind} ("sink" or "echo") on 127.0.0.1 until killed."""
    server = thor.TcpServer(HOST.encode(), 0, backlog=511)
    assert server.sock is not None

    def on_connect(conn: TcpConnection) -> None:
        # thor's "close" is the peer's end of stream; the socket stays open
        # until we close our side.
        conn.on("close", conn.close)
        if kind == "sink":
            got = 0

            def on_data(data: bytes) -> None:
                nonlocal got
                before = got
                got += len(data)
                if before < total <= got:
                    conn.write(ACK)

            conn.on("data", on_data)
        else:
            nodelay(conn.socket)
            conn.on("data", conn.write)
        conn.pause(False)

    server.on("connect", on_connect)
    ready(server.sock.getsockname()[1])
    thor.loop.run()


def client(job: ClientJob) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""
    result: list[float] = []
    errors: list[Any] = []

    def failed(*args: Any) -> None:
        errors.append(args)
        thor.loop.stop()

    def finish(value: float) -> None:
        result.append(value)
        thor.loop.stop()

    def bulk(conn: TcpConnection) -> None:
        sent = 0
        paused = False
        started = perf_counter()

        def pump() -> None:
            nonlocal sent
            while not paused and sent < job.total:
                sent += len(PAYLOAD)
                conn.write(PAYLOAD)

        def on_pause(p: bool) -> None:
            nonlocal paused
            paused = p
            if not p:
                pump()

        def on_data(data: bytes) -> None:
            conn.close()
            finish(job.total / (perf_counter() - started) / 1e6)

        conn.on("pause", on_pause)
        conn.on("data", on_data)
        conn.pause(False)
        pump()

    def ping(conn: TcpConnection) -> None:
        clock = Clock(job.seconds)
        got = 0

        def on_data(data: bytes) -> None:
            nonlocal got
            got += len(data)
            if got < MSG:
                return
            got = 0
            if clock.tick():
                conn.write(MESSAGE)
            else:
                conn.close()
                finish(clock.rate())

        nodelay(conn.socket)
        conn.on("data", on_data)
        conn.pause(False)
        conn.write(MESSAGE)

    clock = Clock(job.seconds)

    def once(conn: TcpConnection) -> None:
        got = 0

        def on_data(data: bytes) -> None:
            nonlocal got
            got += len(data)
            if got >= MSG:
                conn.close()
                next_connection()

        conn.on("data", on_data)
        conn.pause(False)
        conn.write(MESSAGE)

    def next_connection() -> None:
        if not clock.tick():
            finish(clock.rate())
            return
        c = thor.TcpClient()
        c.on("connect", once)
        c.on("connect_error", failed)
        c.connect(HOST.encode(), job.port)

    if job.workload == "connrate":
        next_connection()
    else:
        c = thor.TcpClient()
        c.on("connect", bulk if job.workload == "bulk" else ping)
        c.on("connect_error", failed)
        c.connect(HOST.encode(), job.port)
    thor.loop.run()
    if errors or not result:
        raise ConnectionError(f"thor client failed: {errors!r}")
    return result[0]
