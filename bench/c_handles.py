"""
C{txtcp.handles}: pyuv-style C{Loop} and C{TCP} handles, run by
C{Loop.run()} as a pyuv program is.  Flow control the libuv way: keep
writing while C{write_queue_size} is small, else wait for a write callback.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from txtcp.handles import TCP, Loop

from ._common import ACK, CHUNK, HOST, MESSAGE, MSG, PAYLOAD, ClientJob, Clock, Ready

#: Bytes queued in user space before the bulk client waits for a write callback.
HIGH_WATER = CHUNK


def serve(kind: str, total: int, ready: Ready) -> None:
    """Serve C{kind} ("sink" or "echo") on 127.0.0.1 until killed."""
    loop = Loop()
    got: dict[TCP, int] = {}

    def on_sink_read(handle: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            got.pop(handle, None)
            handle.close()
            return
        before = got.get(handle, 0)
        after = got[handle] = before + len(data)
        if before < total <= after:
            handle.write(ACK)

    def on_echo_read(handle: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            handle.close()
        else:
            handle.write(data)

    def on_connection(server: TCP, error: int | None) -> None:
        conn = TCP(loop)
        server.accept(conn)
        if kind == "sink":
            conn.start_read(on_sink_read)
        else:
            conn.nodelay(True)
            conn.start_read(on_echo_read)

    server = TCP(loop)
    server.bind((HOST, 0))
    server.listen(on_connection, 511)
    ready(server.getsockname()[1])
    loop.run()


def client(job: ClientJob) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""
    loop = Loop()
    address = (HOST, job.port)
    result: list[float] = []
    errors: list[int] = []

    def check(error: int | None) -> bool:
        if error is not None:
            errors.append(error)
        return error is None

    def bulk() -> None:
        handle = TCP(loop)
        sent = 0
        started = 0.0

        def pump(h: Any = None, error: int | None = None) -> None:
            nonlocal sent
            if not check(error):
                return
            while sent < job.total:
                sent += len(PAYLOAD)
                if handle.write_queue_size >= HIGH_WATER:
                    handle.write(PAYLOAD, pump)
                    return
                handle.write(PAYLOAD)

        def on_read(h: TCP, data: bytes | None, error: int | None) -> None:
            if data:
                result.append(job.total / (perf_counter() - started) / 1e6)
            h.close()

        def on_connect(h: TCP, error: int | None) -> None:
            nonlocal started
            if not check(error):
                h.close()
                return
            started = perf_counter()
            h.start_read(on_read)
            pump()

        handle.connect(address, on_connect)

    def ping() -> None:
        handle = TCP(loop)
        clock = Clock(job.seconds)
        got = 0

        def on_read(h: TCP, data: bytes | None, error: int | None) -> None:
            nonlocal got
            if data is None:
                check(error)
                h.close()
                return
            got += len(data)
            if got < MSG:
                return
            got = 0
            if clock.tick():
                h.write(MESSAGE)
            else:
                result.append(clock.rate())
                h.close()

        def on_connect(h: TCP, error: int | None) -> None:
            if not check(error):
                h.close()
                return
            h.nodelay(True)
            h.start_read(on_read)
            h.write(MESSAGE)

        handle.connect(address, on_connect)

    clock = Clock(job.seconds)

    def once() -> None:
        handle = TCP(loop)
        got = 0

        def on_read(h: TCP, data: bytes | None, error: int | None) -> None:
            nonlocal got
            if data is None:
                check(error)
                h.close()
                return
            got += len(data)
            if got >= MSG:
                h.close()
                if clock.tick():
                    once()
                else:
                    result.append(clock.rate())

        def on_connect(h: TCP, error: int | None) -> None:
            if not check(error):
                h.close()
                return
            h.start_read(on_read)
            h.write(MESSAGE)

        handle.connect(address, on_connect)

    {"bulk": bulk, "pingpong": ping, "connrate": once}[job.workload]()
    loop.run()
    if errors or not result:
        raise ConnectionError(f"txtcp.handles client failed: libuv errors {errors!r}")
    return result[0]
