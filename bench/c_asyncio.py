"""
asyncio streams (C{asyncio.start_server}, C{asyncio.open_connection}) on
the default event loop, or on uvloop's.  Flow control through
C{await writer.drain()}.  asyncio and uvloop turn C{TCP_NODELAY} on by
themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

from ._common import ACK, CHUNK, HOST, MESSAGE, MSG, PAYLOAD, ClientJob, Clock, Ready


def _run(main: Callable[[], Coroutine[Any, Any, Any]], uvloop: bool) -> Any:
    if uvloop:
        import uvloop as uv

        with asyncio.Runner(loop_factory=uv.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


def serve(kind: str, total: int, ready: Ready, *, uvloop: bool = False) -> None:
    """Serve C{kind} ("sink" or "echo") on 127.0.0.1 until killed."""

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = 0
        try:
            while data := await reader.read(CHUNK):
                before = got
                got += len(data)
                if before < total <= got:
                    writer.write(ACK)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(sink if kind == "sink" else echo, HOST, 0, backlog=511)
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    _run(main, uvloop)


def client(job: ClientJob, *, uvloop: bool = False) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""

    async def bulk() -> float:
        reader, writer = await asyncio.open_connection(HOST, job.port)
        started = perf_counter()
        sent = 0
        while sent < job.total:
            writer.write(PAYLOAD)
            await writer.drain()
            sent += len(PAYLOAD)
        await reader.readexactly(1)
        elapsed = perf_counter() - started
        writer.close()
        await writer.wait_closed()
        return job.total / elapsed / 1e6

    async def ping() -> float:
        reader, writer = await asyncio.open_connection(HOST, job.port)
        clock = Clock(job.seconds)
        while True:
            writer.write(MESSAGE)
            await reader.readexactly(MSG)
            if not clock.tick():
                break
        writer.close()
        await writer.wait_closed()
        return clock.rate()

    async def connrate() -> float:
        clock = Clock(job.seconds)
        while True:
            reader, writer = await asyncio.open_connection(HOST, job.port)
            writer.write(MESSAGE)
            await reader.readexactly(MSG)
            writer.close()
            await writer.wait_closed()
            if not clock.tick():
                return clock.rate()

    work = {"bulk": bulk, "pingpong": ping, "connrate": connrate}[job.workload]
    return float(_run(work, uvloop))
