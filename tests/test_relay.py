"""
txtcp.core.relay: two connections forwarded into each other, on the
zero-copy path (splice, plain TCP on Linux) and on the normal event path
(forced with zero_copy=False, or by a TLS side), over real loopback sockets.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, connect, fds_back_to, listening, open_fds, sleep, wait_for

import txtcp
from txtcp.core import Relay, error_info, relay

MiB = 1024 * 1024
CHUNK = 64 * 1024
SPLICE = sys.platform.startswith("linux") and hasattr(os, "splice")
PATHS = [
    pytest.param(True, id="zero-copy", marks=pytest.mark.skipif(not SPLICE, reason="needs splice")),
    pytest.param(False, id="normal"),
]


class Setup:
    """A client, and a relay from its accepted end to an upstream server."""

    client: txtcp.TcpConnection
    upstream: txtcp.TcpConnection
    relay: Relay

    def __init__(self) -> None:
        self.servers: list[txtcp.TcpServer] = []

    async def start(
        self,
        zero_copy: bool,
        *,
        front: txtcp.TcpServer | None = None,
        client_factory: txtcp.TcpClient | None = None,
        before: Callable[[txtcp.TcpConnection, txtcp.TcpConnection], Any] | None = None,
    ) -> None:
        origin = await listening(txtcp.TcpServer("127.0.0.1", 0))
        front = await listening(front or txtcp.TcpServer("127.0.0.1", 0))
        self.servers += [origin, front]
        upstreams: list[txtcp.TcpConnection] = []
        origin.on("connect", upstreams.append)
        accepted: list[txtcp.TcpConnection] = []
        front.on("connect", accepted.append)
        self.client = await connect("127.0.0.1", front.port or 0, client_factory)
        await wait_for(lambda: bool(accepted))
        near = await connect("127.0.0.1", origin.port or 0)
        await wait_for(lambda: bool(upstreams))
        self.upstream = upstreams[0]
        if before is not None:
            await before(accepted[0], near)
        self.relay = relay(accepted[0], near, zero_copy=zero_copy)

    def close(self) -> None:
        for server in self.servers:
            server.close()


def pattern(size: int) -> bytes:
    """C{size} bytes that are not all alike."""
    block = hashlib.sha256(str(size).encode()).digest() * (CHUNK // 32)
    return (block * (size // len(block) + 1))[:size]


def send_all(conn: txtcp.TcpConnection, data: bytes, then: Callable[[], None]) -> None:
    """Write C{data} in 64 KiB pieces, honouring C{pause} events, then call C{then}."""
    view = memoryview(data)
    offset = 0
    paused = False

    def pump() -> None:
        nonlocal offset
        while offset < len(view) and not paused:
            conn.write(view[offset : offset + CHUNK])
            offset += CHUNK
        if offset >= len(view) and not paused:
            conn.remove_listener("pause", on_pause)
            then()

    def on_pause(now: bool) -> None:
        nonlocal paused
        paused = now
        if not now:
            pump()

    conn.on("pause", on_pause)
    pump()


class Hasher:
    """Hashes what a connection receives, and records its events."""

    def __init__(self, conn: txtcp.TcpConnection) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self.events: list[str] = []
        conn.allow_half_open = True
        conn.on("data", self._data)
        conn.on("end", lambda: self.events.append("end"))
        conn.on("close", lambda: self.events.append("close"))
        conn.pause(False)

    def _data(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.hash.update(chunk)


@pytest.mark.parametrize("zero_copy", PATHS)
@pytest_twisted.ensureDeferred
async def test_64_mib_each_way_by_hash(zero_copy: bool) -> None:
    """64 MiB go through each way, intact, on the path asked for, with the counts."""
    setup = Setup()
    await setup.start(zero_copy)
    assert setup.relay.zero_copy is zero_copy
    up, down = pattern(64 * MiB), pattern(64 * MiB - 7)
    at_upstream, at_client = Hasher(setup.upstream), Hasher(setup.client)
    send_all(setup.client, up, setup.client.shutdown)
    send_all(setup.upstream, down, setup.upstream.shutdown)
    await wait_for(lambda: setup.relay.bytes_a_to_b > 32 * MiB, 60)
    assert setup.relay.zero_copy is zero_copy  # still, in mid-stream
    await wait_for(lambda: "end" in at_upstream.events and "end" in at_client.events, 60)
    assert at_upstream.hash.hexdigest() == hashlib.sha256(up).hexdigest()
    assert at_client.hash.hexdigest() == hashlib.sha256(down).hexdigest()
    assert (setup.relay.bytes_a_to_b, setup.relay.bytes_b_to_a) == (len(up), len(down))
    # Both ends half-closed: the relay closes both of its connections.
    await wait_for(lambda: setup.relay.a.closed and setup.relay.b.closed)
    setup.client.close()
    setup.upstream.close()
    setup.close()


@pytest_twisted.ensureDeferred
async def test_tls_side_uses_the_normal_path(certs: Any) -> None:
    """A TLS side takes the normal path; 8 MiB each way arrive intact."""
    setup = Setup()
    front = txtcp.TlsServer("127.0.0.1", 0, certificate=certs.server_path)
    await setup.start(True, front=front, client_factory=txtcp.TlsClient(trust_root=certs.ca_path))
    assert setup.relay.zero_copy is False
    up, down = pattern(8 * MiB), pattern(8 * MiB + 3)
    at_upstream, at_client = Hasher(setup.upstream), Hasher(setup.client)
    send_all(setup.client, up, lambda: None)
    send_all(setup.upstream, down, setup.upstream.shutdown)
    await wait_for(lambda: at_upstream.size == len(up) and "end" in at_client.events, 60)
    assert at_upstream.hash.hexdigest() == hashlib.sha256(up).hexdigest()
    assert at_client.hash.hexdigest() == hashlib.sha256(down).hexdigest()
    # A TLS sink cannot half-close: the upstream's end closes it after flushing.
    assert at_client.events == ["end", "close"]
    setup.upstream.close()
    setup.close()


@pytest.mark.parametrize("zero_copy", PATHS)
@pytest.mark.parametrize("half_closed", [False, True], ids=["both-ways", "after-half-close"])
@pytest_twisted.ensureDeferred
async def test_slow_reader_holds_the_source_back(zero_copy: bool, half_closed: bool) -> None:
    """A sink that does not read stops the source being read; the relay holds a
    bounded amount.  The same for the upstream's reply after the client's
    half-close."""
    setup = Setup()
    await setup.start(zero_copy)
    for conn in (setup.client, setup.upstream):
        conn.send_buffer_size = conn.receive_buffer_size = 64 * 1024
    source, sink = setup.client, setup.upstream
    flow, into = setup.relay._ab, setup.relay.b
    if half_closed:
        source, sink = setup.upstream, setup.client
        flow, into = setup.relay._ba, setup.relay.a
        source.allow_half_open = True
        ended = Collector(source)
        sink.shutdown()
        await wait_for(lambda: ended.events == ["end"])
    data = pattern(48 * MiB)
    sent: list[bool] = []
    send_all(source, data, lambda: sent.append(True))
    at_sink = Hasher(sink)
    sink.pause(True)
    await sleep(0.5)
    taken = flow.count
    held = into.write_queue_size  # the pipe's bytes too, on the zero-copy path
    if zero_copy:
        assert flow.pending > 0 and held >= flow.pending
    await sleep(0.5)
    # The source is not read while the sink is full ...
    assert flow.count == taken
    # ... the relay holds at most a pipe, or the write threshold plus one read.
    assert held <= (256 * 1024 if zero_copy else 128 * 1024 + CHUNK)
    assert not sent and taken < 8 * MiB
    assert setup.relay.zero_copy is zero_copy
    sink.pause(False)
    await wait_for(lambda: at_sink.size == len(data), 60)
    assert at_sink.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert setup.relay.zero_copy is zero_copy
    source.close()
    sink.close()
    setup.close()


@pytest.mark.parametrize("zero_copy", PATHS)
@pytest_twisted.ensureDeferred
async def test_half_close_from_the_client(zero_copy: bool) -> None:
    """A request then a client half-close still gets the whole reply, then the end."""
    setup = Setup()
    await setup.start(zero_copy)
    setup.client.allow_half_open = setup.upstream.allow_half_open = True
    client, upstream = Collector(setup.client), Collector(setup.upstream)
    setup.client.write(b"request")
    setup.client.shutdown()
    await wait_for(lambda: upstream.events == ["data", "end"])
    assert upstream.data == b"request"
    # The end passed on, the reply's direction is back in the kernel.
    assert setup.relay.zero_copy is zero_copy
    reply = pattern(4 * MiB)
    send_all(setup.upstream, reply, lambda: None)
    await wait_for(lambda: client.size == len(reply), 30)
    assert setup.relay.zero_copy is zero_copy  # the whole reply went that way
    setup.upstream.shutdown()
    await wait_for(lambda: "end" in client.events, 30)
    assert setup.relay.bytes_b_to_a == len(reply)
    assert hashlib.sha256(client.data).digest() == hashlib.sha256(reply).digest()
    await client.wait_closed()
    await upstream.wait_closed()
    assert client.events == ["data", "end", "close"]
    assert upstream.events == ["data", "end", "close"]
    setup.close()


@pytest.mark.parametrize("zero_copy", PATHS)
@pytest_twisted.ensureDeferred
async def test_half_close_from_the_upstream(zero_copy: bool) -> None:
    """The upstream's end reaches the client while the client can still send."""
    setup = Setup()
    await setup.start(zero_copy)
    setup.client.allow_half_open = setup.upstream.allow_half_open = True
    client, upstream = Collector(setup.client), Collector(setup.upstream)
    setup.upstream.write(b"banner")
    setup.upstream.shutdown()
    await wait_for(lambda: client.events == ["data", "end"])
    assert setup.relay.zero_copy is zero_copy
    setup.client.write(b"late request")
    await wait_for(lambda: upstream.data == b"late request")
    assert setup.relay.zero_copy is zero_copy
    setup.client.shutdown()
    await client.wait_closed()
    await upstream.wait_closed()
    assert client.data == b"banner"
    assert client.events == ["data", "end", "close"]
    assert upstream.events == ["data", "end", "close"]
    setup.close()


def reset(conn: txtcp.TcpConnection) -> None:
    """Close C{conn}'s socket with a reset (SO_LINGER 0)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    conn.abort()


@pytest.mark.parametrize("zero_copy", PATHS)
@pytest.mark.parametrize("side", ["client", "upstream"])
@pytest_twisted.ensureDeferred
async def test_reset_is_reported_on_its_side(zero_copy: bool, side: str) -> None:
    """A reset gives error then close on the side it hit; the other side closes cleanly."""
    setup = Setup()
    await setup.start(zero_copy)
    events: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    for name in ("a", "b"):
        conn = getattr(setup.relay, name)

        def on_error(exc: BaseException, n: str = name) -> None:
            events[n].append("error")
            errors.append(exc)

        conn.on("error", on_error)
        conn.on("close", lambda n=name: events[n].append("close"))
    client, upstream = Collector(setup.client), Collector(setup.upstream)
    setup.client.write(b"ping")
    await wait_for(lambda: upstream.data == b"ping")
    assert setup.relay.zero_copy is zero_copy
    reset(setup.client if side == "client" else setup.upstream)
    await wait_for(lambda: events["a"][-1:] == ["close"] and events["b"][-1:] == ["close"])
    hit, other = ("a", "b") if side == "client" else ("b", "a")
    assert events[hit] == ["error", "close"]
    assert events[other] == ["close"]
    assert error_info(errors[0]).kind.name == "RESET"
    survivor = upstream if side == "client" else client
    await survivor.wait_closed()
    setup.close()


@pytest_twisted.ensureDeferred
async def test_early_data_and_end_before_the_relay_come_first() -> None:
    """Bytes and an end of stream that arrived before relay() are forwarded, in order."""
    setup = Setup()

    async def early(accepted: txtcp.TcpConnection, near: txtcp.TcpConnection) -> None:
        setup.client.write(b"early ")
        setup.client.write(b"bytes")
        setup.client.allow_half_open = True
        setup.client.shutdown()
        await sleep(0.1)

    await setup.start(True, before=early)
    setup.upstream.allow_half_open = True
    upstream = Collector(setup.upstream)
    await wait_for(lambda: "end" in upstream.events)
    assert upstream.data == b"early bytes"
    assert upstream.events == ["data", "end"]
    setup.upstream.close()
    setup.close()


@pytest.mark.skipif(not SPLICE, reason="needs splice")
@pytest_twisted.ensureDeferred
async def test_writing_to_a_relayed_connection_keeps_the_order() -> None:
    """A write from outside moves the relay to the normal path, after what it already took."""
    setup = Setup()
    await setup.start(True)
    upstream = Collector(setup.upstream)
    setup.client.write(b"abc")
    await wait_for(lambda: upstream.data == b"abc")
    assert setup.relay.zero_copy
    setup.relay.b.write(b"-marker-")
    assert not setup.relay.zero_copy
    setup.client.write(b"def")
    await wait_for(lambda: upstream.data == b"abc-marker-def")
    assert setup.relay.bytes_a_to_b == 6
    setup.client.close()
    await upstream.wait_closed()
    setup.close()


@pytest.mark.skipif(not SPLICE, reason="needs splice")
@pytest_twisted.ensureDeferred
async def test_after_a_half_close_a_write_keeps_the_order() -> None:
    """Back in the kernel after a half-close, a write from outside moves the
    relay to the normal path for good, after what the kernel already took."""
    setup = Setup()
    await setup.start(True)
    setup.upstream.allow_half_open = True
    client, upstream = Collector(setup.client), Collector(setup.upstream)
    setup.client.shutdown()
    await wait_for(lambda: upstream.events == ["end"])
    assert setup.relay.zero_copy
    setup.upstream.write(b"abc")
    await wait_for(lambda: client.data == b"abc")
    setup.relay.a.write(b"-marker-")
    assert not setup.relay.zero_copy
    setup.upstream.write(b"def")
    await wait_for(lambda: client.data == b"abc-marker-def")
    setup.upstream.shutdown()
    await client.wait_closed()
    await upstream.wait_closed()
    assert not setup.relay.zero_copy
    assert (setup.relay.bytes_a_to_b, setup.relay.bytes_b_to_a) == (0, 6)
    assert client.events == ["data", "end", "close"]
    setup.close()


@pytest_twisted.ensureDeferred
async def test_activity_time_and_file_descriptors() -> None:
    """last_activity moves with data; every pipe is closed once the relays end."""
    baseline = open_fds()
    setups = []
    for _ in range(3):
        setup = Setup()
        await setup.start(True)
        setups.append(setup)
    for setup in setups:
        before = setup.relay.last_activity
        await sleep(0.05)
        upstream = Collector(setup.upstream)
        setup.client.write(pattern(2 * MiB))
        await wait_for(lambda u=upstream: u.size == 2 * MiB)
        assert setup.relay.last_activity > before
    for setup in setups:
        setup.client.close()
        setup.upstream.close()
        setup.close()
    assert await fds_back_to(baseline) <= baseline


@pytest_twisted.ensureDeferred
async def test_bad_arguments() -> None:
    """Wrong types, a connection relayed twice or to itself, and closed ones raise at the call."""
    setup = Setup()
    await setup.start(False)
    a, b = setup.relay.a, setup.relay.b
    with pytest.raises(TypeError, match="a must be a TcpConnection"):
        relay("nope", b)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already relayed"):
        relay(a, setup.client)
    with pytest.raises(ValueError, match="itself"):
        relay(setup.client, setup.client)
    with pytest.raises(TypeError, match="zero_copy"):
        relay(setup.client, setup.upstream, zero_copy=1)  # type: ignore[arg-type]
    setup.client.close()
    await wait_for(lambda: setup.client.closed)
    with pytest.raises(txtcp.ConnectionClosedError):
        relay(setup.client, setup.upstream)
    setup.upstream.close()
    await wait_for(lambda: a.closed and b.closed)
    setup.close()


@pytest_twisted.ensureDeferred
async def test_a_finished_relay_is_freed() -> None:
    """Once both connections are closed, nothing keeps the relay alive."""
    import gc
    import weakref

    setup = Setup()
    await setup.start(True)
    ref: weakref.ref[Relay] = weakref.ref(setup.relay)
    ends = [setup.relay.a, setup.relay.b]
    setup.client.close()
    setup.upstream.close()
    await wait_for(lambda: all(conn.closed for conn in ends))
    setup.close()
    ends.clear()
    del setup
    await sleep(0.05)
    gc.collect()
    assert ref() is None
