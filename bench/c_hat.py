"""
hat-drivers (C{hat.drivers.tcp}: C{listen}, C{connect}, C{Connection}) on
asyncio's default event loop.  C{await conn.write()} waits while the
transport's buffer is full, which is hat's flow control.
"""

from __future__ import annotations

import asyncio
import warnings
from time import perf_counter
from typing import Any

with warnings.catch_warnings():
    # hat.drivers.tcp is kept as an alias of hat.drivers.net and warns so.
    warnings.simplefilter("ignore", DeprecationWarning)
    from hat.drivers import tcp  # type: ignore[import-untyped]

from ._common import ACK, HOST, MESSAGE, MSG, PAYLOAD, ClientJob, Clock, Ready


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
                    await conn.write(ACK)
        except ConnectionError:
            pass
        finally:
            await conn.async_close()

    async def echo(conn: Any) -> None:
        try:
            while True:
                await conn.write(await conn.read())
        except ConnectionError:
            pass
        finally:
            await conn.async_close()

    async def main() -> None:
        server = await tcp.listen(
            sink if kind == "sink" else echo, tcp.Address(HOST, 0), backlog=511
        )
        ready(server.info.addresses[0].port)
        await server.wait_closed()

    asyncio.run(main())


def client(job: ClientJob) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""
    address = tcp.Address(HOST, job.port)

    async def bulk() -> float:
        conn = await tcp.connect(address)
        started = perf_counter()
        sent = 0
        while sent < job.total:
            await conn.write(PAYLOAD)
            sent += len(PAYLOAD)
        await conn.readexactly(1)
        elapsed = perf_counter() - started
        await conn.async_close()
        return job.total / elapsed / 1e6

    async def ping() -> float:
        conn = await tcp.connect(address)
        clock = Clock(job.seconds)
        while True:
            await conn.write(MESSAGE)
            await conn.readexactly(MSG)
            if not clock.tick():
                break
        await conn.async_close()
        return clock.rate()

    async def connrate() -> float:
        clock = Clock(job.seconds)
        while True:
            conn = await tcp.connect(address)
            await conn.write(MESSAGE)
            await conn.readexactly(MSG)
            await conn.async_close()
            if not clock.tick():
                return clock.rate()

    work = {"bulk": bulk, "pingpong": ping, "connrate": connrate}[job.workload]
    return float(asyncio.run(work()))
