"""
The load tests' client, run as its own process (asyncio, one event loop):

    python _load_client.py HOST PORT COUNT PAYLOAD_SIZE

Opens COUNT connections and keeps them all open; each sends a payload
unique to it and reads the echo back as soon as it is open.  At most 200
are opening or echoing at a time, so that the server's accept queue stays
short: a connection echoed has been accepted.  Prints C{HOLDING <n>} once
all are open and echoed, waits for a line on stdin, then half-closes every
connection and waits for the server to close each one.  The last line of
output is a JSON summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time


def payload(index: int, size: int) -> bytes:
    """The bytes connection C{index} sends: its number, then a hash stream."""
    head = f"{index:08d}:".encode()
    out = bytearray(head)
    block = hashlib.sha256(head).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


async def main(host: str, port: int, count: int, size: int) -> dict[str, object]:
    started = time.monotonic()
    connecting = asyncio.Semaphore(200)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None] * count
    errors: list[str] = []

    async def open_one(i: int) -> bool:
        async with connecting:
            try:
                streams[i] = await asyncio.wait_for(asyncio.open_connection(host, port), 60)
            except Exception as exc:
                errors.append(f"connect {i}: {exc!r}")
                return False
            return await echo_one(i)

    async def echo_one(i: int) -> bool:
        pair = streams[i]
        assert pair is not None
        reader, writer = pair
        data = payload(i, size)
        try:
            writer.write(data)
            await writer.drain()
            back = await asyncio.wait_for(reader.readexactly(size), 120)
        except Exception as exc:
            errors.append(f"echo {i}: {exc!r}")
            return False
        if back != data:
            errors.append(f"echo {i}: wrong bytes")
            return False
        return True

    echoed = sum(await asyncio.gather(*(open_one(i) for i in range(count))))
    opened = sum(s is not None for s in streams)
    open_echo_seconds = time.monotonic() - started
    # Every connection must still be open: none was lost while the others echoed.
    still_open = sum(1 for s in streams if s is not None and not s[1].is_closing())
    print(f"HOLDING {still_open}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def close_one(i: int) -> bool:
        pair = streams[i]
        if pair is None:
            return False
        reader, writer = pair
        try:
            writer.write_eof()
            rest = await asyncio.wait_for(reader.read(), 120)
            writer.close()
        except Exception as exc:
            errors.append(f"close {i}: {exc!r}")
            return False
        return rest == b""

    closed_cleanly = sum(await asyncio.gather(*(close_one(i) for i in range(count))))
    return {
        "count": count,
        "opened": opened,
        "echoed": echoed,
        "held": still_open,
        "closed_cleanly": closed_cleanly,
        "open_echo_seconds": round(open_echo_seconds, 2),
        "seconds": round(time.monotonic() - started, 2),
        "errors": errors[:20],
        "error_count": len(errors),
    }


if __name__ == "__main__":
    host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(main(host, port, count, size))), flush=True)
