"""
C{txtcp.streams}: hat-style coroutine streams on Twisted, run by the global
reactor.  Flow control through C{await conn.drain()}.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from twisted.internet.defer import Deferred

from txtcp import streams

from ._common import ACK, HOST, MESSAGE, MSG, PAYLOAD, ClientJob, Clock, Ready
from .c_twisted import run_reactor


def _nodelay(conn: Any) -> None:
    core = getattr(conn, "connection", None)
    if core is not None:
        core.nodelay = True


def serve(kind: str, total: int, ready: Ready) -> None:
    """Serve C{kind} ("sink" or "echo") on 127.0.0.1 until killed."""

    async def sink(conn: Any) -> None:
        got = 0
        try:
            while True:
                data = await conn.read()
                before = got
                got += len(data)
                if before < total <= got:
                    conn.write(ACK)
        except ConnectionError:
            pass
        finally:
            conn.close()

    async def echo(conn: Any) -> None:
        _nodelay(conn)
        try:
            while True:
                conn.write(await conn.read())
        except ConnectionError:
            pass
        finally:
            conn.close()

    async def main() -> None:
        server = await streams.listen(sink if kind == "sink" else echo, streams.Address(HOST, 0))
        ready(server.addresses[0].port)
        await Deferred()

    def start(reactor: Any, done: Deferred[float]) -> None:
        Deferred.fromCoroutine(main()).addErrback(done.errback)

    run_reactor(start)


def client(job: ClientJob) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""
    address = streams.Address(HOST, job.port)

    async def bulk() -> float:
        conn = await streams.connect(address)
        started = perf_counter()
        sent = 0
        while sent < job.total:
            conn.write(PAYLOAD)
            await conn.drain()
            sent += len(PAYLOAD)
        await conn.readexactly(1)
        elapsed = perf_counter() - started
        await conn.async_close()
        return job.total / elapsed / 1e6

    async def ping() -> float:
        conn = await streams.connect(address)
        _nodelay(conn)
        clock = Clock(job.seconds)
        while True:
            conn.write(MESSAGE)
            await conn.readexactly(MSG)
            if not clock.tick():
                break
        await conn.async_close()
        return clock.rate()

    async def connrate() -> float:
        clock = Clock(job.seconds)
        while True:
            conn = await streams.connect(address)
            conn.write(MESSAGE)
            await conn.readexactly(MSG)
            conn.close()
            if not clock.tick():
                return clock.rate()

    work = {"bulk": bulk, "pingpong": ping, "connrate": connrate}[job.workload]

    def start(reactor: Any, done: Deferred[float]) -> None:
        Deferred.fromCoroutine(work()).chainDeferred(done)

    return run_reactor(start)
