"""
txtcp's core API (C{TcpServer}, C{TcpClient}, C{TcpConnection} events),
written as a thor user would write it.  Flow control through the C{pause}
event.
"""

from __future__ import annotations

from time import perf_counter

from txtcp.core import TcpClient, TcpConnection, TcpServer, run, stop

from ._common import ACK, HOST, MESSAGE, MSG, PAYLOAD, ClientJob, Clock, Ready


def serve(kind: str, total: int, ready: Ready) -> None:
    """Serve C{kind} ("sink" or "echo") on 127.0.0.1 until killed."""
    server = TcpServer(HOST, 0)

    def sink(conn: TcpConnection) -> None:
        got = 0

        def on_data(data: bytes) -> None:
            nonlocal got
            before = got
            got += len(data)
            if before < total <= got:
                conn.write(ACK)

        conn.on("data", on_data)
        conn.pause(False)

    def echo(conn: TcpConnection) -> None:
        conn.nodelay = True
        conn.on("data", conn.write)
        conn.pause(False)

    server.on("start", lambda: ready(server.port or 0))
    server.on("connect", sink if kind == "sink" else echo)
    run()


def client(job: ClientJob) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""
    result: list[float] = []
    failures: list[object] = []

    def finish(value: float) -> None:
        result.append(value)
        stop()

    def failed(errtype: object, errno: object) -> None:
        failures.append((errtype, errno))
        stop()

    def bulk(conn: TcpConnection) -> None:
        sent = 0
        started = perf_counter()

        def pump() -> None:
            nonlocal sent
            while not conn.write_paused and sent < job.total:
                sent += len(PAYLOAD)
                conn.write(PAYLOAD)

        def on_data(data: bytes) -> None:
            conn.close()
            finish(job.total / (perf_counter() - started) / 1e6)

        conn.on("pause", lambda paused: None if paused else pump())
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

        conn.nodelay = True
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
        c = TcpClient()
        c.on("connect", once)
        c.on("connect_error", failed)
        c.connect(HOST, job.port)

    if job.workload == "connrate":
        next_connection()
    else:
        c = TcpClient()
        c.on("connect", bulk if job.workload == "bulk" else ping)
        c.on("connect_error", failed)
        c.connect(HOST, job.port)
    run()
    if failures or not result:
        raise ConnectionError(f"txtcp client failed: {failures!r}")
    return result[0]
