"""
The example usage of hat.drivers.tcp, run by Twisted: only the imports
differ from the original (``from hat.drivers import tcp`` and
``from hat import util``).
"""

from __future__ import annotations

import asyncio

import streams_util as util
from twisted.internet.defer import Deferred
from twisted.internet.task import react

from txtcp import streams as tcp


# fmt: off
async def main() -> None:
    addr = tcp.Address('127.0.0.1', util.get_unused_tcp_port())

    conn2_future = asyncio.Future()
    srv = await tcp.listen(conn2_future.set_result, addr)
    conn1 = await tcp.connect(addr)
    conn2 = await conn2_future

    # send from conn1 to conn2
    data = b'123'
    conn1.write(data)
    result = await conn2.readexactly(len(data))
    assert result == data

    # send from conn2 to conn1
    data = b'321'
    conn2.write(data)
    result = await conn1.readexactly(len(data))
    assert result == data

    await conn1.async_close()
    await conn2.async_close()
    await srv.async_close()
# fmt: on


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main()))
