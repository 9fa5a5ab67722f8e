"""The harness itself: a round trip on the shared reactor."""

from __future__ import annotations

import pytest_twisted
from _helpers import Collector, pair, wait_for


@pytest_twisted.ensureDeferred
async def test_round_trip() -> None:
    """Bytes written by the client arrive at the server."""
    server, c, s = await pair()
    got = Collector(s)
    c.write(b"ping")
    await wait_for(lambda: got.data == b"ping")
    c.close()
    await got.wait_closed()
    server.close()
