"""
A line echo server and a client, written with txtcp.streams coroutines and
run by Twisted.  Run it: ``python streams_echo.py``.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from txtcp import streams


async def echo(conn: streams.Connection) -> None:
    """Send every line back, upper-cased, until the client goes away."""
    try:
        while True:
            line = await conn.readline()
            conn.write(line.upper())
            await conn.drain()
    except ConnectionError:
        pass  # the client ended the stream
    finally:
        conn.close()


async def main() -> None:
    # Port 0: the system picks a free port; server.addresses tells which.
    async with await streams.listen(echo, streams.Address("127.0.0.1", 0)) as server:
        conn = await streams.connect(server.addresses[0], timeout=5)
        async with conn:
            for word in (b"hello", b"twisted", b"streams"):
                conn.write(word + b"\n")
                reply = await conn.readline()
                print(reply.decode().rstrip())


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main()))
