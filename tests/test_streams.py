"""
Tests for L{txtcp.streams}: coroutine streams in the shape of hat.drivers.tcp,
on real loopback sockets and the shared reactor.
"""

from __future__ import annotations

import contextvars
import errno
import gc
import importlib.util
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Awaitable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import pytest_twisted
from _helpers import TIMEOUT, fds_back_to, reactor, sha256, sleep, wait_for
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, succeed
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

import txtcp
from txtcp import streams
from txtcp.core import ErrorInfo, ErrorKind, HostNotFoundError, TlsError

_T = TypeVar("_T")
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
LOCAL = streams.Address("127.0.0.1", 0)


async def within(aw: Awaitable[_T], timeout: float = TIMEOUT) -> _T:
    """Await C{aw}, failing the test if it takes longer than C{timeout}."""
    d: Deferred[_T] = ensureDeferred(aw)  # type: ignore[arg-type]
    d.addTimeout(timeout, reactor)
    return await d


def task(aw: Awaitable[_T]) -> Deferred[_T]:
    """Run C{aw} now, as a Deferred."""
    return ensureDeferred(aw)  # type: ignore[arg-type]


async def connected_pair(
    **listen_kwargs: Any,
) -> tuple[streams.Server, streams.Connection, streams.Connection]:
    """A server, and the client and server ends of one connection to it."""
    accepted: list[streams.Connection] = []
    server = await within(streams.listen(accepted.append, LOCAL, **listen_kwargs))
    client = await within(streams.connect(server.addresses[0]))
    assert len(accepted) == 1
    return server, client, accepted[0]


def refused_port() -> Iterator[int]:
    """A port that is bound but not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A bound, non-listening port on 127.0.0.1."""
    yield from refused_port()


class LogCapture:
    """Failures logged through twisted.logger while it is installed."""

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            if "log_failure" in event:
                self.failures.append(event)

        self._observer = observe

    def __enter__(self) -> LogCapture:
        globalLogPublisher.addObserver(self._observer)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self._observer)


# -- the seed's example ------------------------------------------------------


def test_seed_example_runs_as_a_script() -> None:
    """The hat.drivers.tcp example runs under Twisted with only its imports changed."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "streams_seed.py")],
        capture_output=True,
        timeout=60,
        cwd=str(EXAMPLES),
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest_twisted.ensureDeferred
async def test_seed_example_runs_on_the_shared_reactor() -> None:
    """The seed example's coroutine, driven by Deferred.fromCoroutine, completes."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location("streams_seed", EXAMPLES / "streams_seed.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    for _ in range(5):
        await within(Deferred.fromCoroutine(module.main()))


ASYNCIO_RUNNER = """
import asyncio, sys
from twisted.internet import asyncioreactor
asyncioreactor.install(asyncio.new_event_loop())
from twisted.internet.defer import Deferred
from twisted.internet.task import react
import streams_seed
react(lambda reactor: Deferred.fromCoroutine(streams_seed.main()))
"""


def test_seed_example_runs_on_the_asyncio_reactor() -> None:
    """The seed example also runs when Twisted's asyncio reactor is installed."""
    result = subprocess.run(
        [sys.executable, "-c", ASYNCIO_RUNNER],
        capture_output=True,
        timeout=60,
        cwd=str(EXAMPLES),
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_echo_example_runs() -> None:
    """The echo example in the docs runs and prints the upper-cased lines."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "streams_echo.py")],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["HELLO", "TWISTED", "STREAMS"]


# -- connect and listen ------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest_twisted.ensureDeferred
async def test_connect_listen_round_trip_and_info(host: str) -> None:
    """Bytes go both ways, and info shows the same addresses from both ends."""
    accepted: list[streams.Connection] = []
    server = await within(streams.listen(accepted.append, streams.Address(host, 0)))
    (address,) = server.addresses
    assert address.host == host and address.port > 0
    client = await within(streams.connect(address))
    (peer,) = accepted
    assert client.info.remote_addr == address
    assert client.info.local_addr == peer.info.remote_addr
    assert peer.info.local_addr == address
    assert isinstance(client.info.local_addr, streams.Address)
    client.write(b"ping")
    assert await within(peer.readexactly(4)) == b"ping"
    peer.write(bytearray(b"pong"))
    assert await within(client.readexactly(4)) == b"pong"
    await within(client.async_close())
    await within(peer.wait_closed())
    await within(server.async_close())
    assert client.is_closed and peer.is_closed and server.is_closed


@pytest_twisted.ensureDeferred
async def test_connect_returns_after_the_in_process_callback() -> None:
    """Connecting to a server of this process returns after its callback ran."""
    accepted: list[streams.Connection] = []
    server = await within(streams.listen(accepted.append, LOCAL))
    for count in range(1, 21):
        conn = await within(streams.connect(server.addresses[0]))
        assert len(accepted) == count
        conn.close()
    await within(server.async_close())
    for peer in accepted:
        await within(peer.wait_closed())


@pytest_twisted.ensureDeferred
async def test_tls_connect_listen(certs: Any) -> None:
    """With a certificate the server speaks TLS and a verifying client talks to it."""
    accepted: list[streams.Connection] = []
    server = await within(streams.listen(accepted.append, LOCAL, certificate=certs.server_path))
    port = server.addresses[0].port
    client = await within(
        streams.connect(streams.Address("localhost", port), tls=True, trust_root=certs.ca_path)
    )
    (peer,) = accepted
    assert client.connection.tls and peer.connection.tls
    client.write(b"secret")
    assert await within(peer.readexactly(6)) == b"secret"
    peer.write(b"reply")
    assert await within(client.readexactly(5)) == b"reply"
    await within(client.async_close())
    await within(server.async_close())
    await within(peer.wait_closed())


@pytest_twisted.ensureDeferred
async def test_tls_separate_key_and_hostname(certs: Any) -> None:
    """A key in its own file works, and hostname= names the server to verify."""
    accepted: list[streams.Connection] = []
    server = await within(
        streams.listen(
            accepted.append, LOCAL, certificate=certs.cert_path, private_key=certs.key_path
        )
    )
    client = await within(
        streams.connect(
            server.addresses[0], tls=True, trust_root=certs.ca_path, hostname="localhost"
        )
    )
    client.write(b"x")
    assert await within(accepted[0].read()) == b"x"
    await within(client.async_close())
    await within(server.async_close())


@pytest.mark.parametrize("problem", ["other-ca", "wrong-name"])
@pytest_twisted.ensureDeferred
async def test_tls_verification_failure(certs: Any, problem: str) -> None:
    """An untrusted certificate or a wrong host name fails connect with TlsError."""
    accepted: list[streams.Connection] = []
    server = await within(streams.listen(accepted.append, LOCAL, certificate=certs.server_path))
    trust = certs.other_ca_path if problem == "other-ca" else certs.ca_path
    name = "example.com" if problem == "wrong-name" else None
    with pytest.raises(TlsError) as info:
        await within(
            streams.connect(server.addresses[0], tls=True, trust_root=trust, hostname=name)
        )
    assert isinstance(info.value, ConnectionError)
    assert accepted == []
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_refused_connect(dead_port: int) -> None:
    """Connecting where nothing listens raises ConnectionRefusedError."""
    with pytest.raises(ConnectionRefusedError) as info:
        await within(streams.connect(streams.Address("127.0.0.1", dead_port)))
    assert info.value.errno == errno.ECONNREFUSED


@pytest_twisted.ensureDeferred
async def test_timeout_covers_the_tls_handshake() -> None:
    """A server that never answers the TLS handshake makes connect raise TimeoutError."""
    silent = txtcp.TcpServer("127.0.0.1", 0)
    await within(_started(silent))
    held: list[txtcp.TcpConnection] = []
    silent.on("connect", held.append)
    started = reactor.seconds()
    with pytest.raises(TimeoutError):
        await within(
            streams.connect(streams.Address("127.0.0.1", silent.port or 0), tls=True, timeout=0.3)
        )
    assert reactor.seconds() - started < 5
    silent.close()
    for conn in held:
        conn.close()


async def _started(server: txtcp.TcpServer) -> None:
    if server.port is None:
        d: Deferred[None] = Deferred()
        server.once("start", lambda: d.callback(None))
        await d


@pytest_twisted.ensureDeferred
async def test_host_not_found() -> None:
    """A name that does not resolve raises HostNotFoundError, a ConnectionError."""
    with pytest.raises(HostNotFoundError) as info:
        await within(streams.connect(streams.Address("no-such-host.invalid", 80), timeout=10))
    assert isinstance(info.value, ConnectionError)


@pytest_twisted.ensureDeferred
async def test_listen_address_in_use() -> None:
    """Listening on a port in use raises an OSError with EADDRINUSE."""
    server = await within(streams.listen(lambda c: None, LOCAL))
    with pytest.raises(OSError) as info:
        await within(streams.listen(lambda c: None, server.addresses[0]))
    assert info.value.errno == errno.EADDRINUSE
    await within(server.async_close())


def test_bad_arguments_raise_before_any_side_effect() -> None:
    """Wrong argument types and values fail the call at once, before any I/O."""
    cases: list[tuple[Awaitable[Any], type[Exception]]] = [
        (streams.connect("127.0.0.1:80"), TypeError),  # type: ignore[arg-type]
        (streams.connect(("127.0.0.1", 70000)), ValueError),
        (streams.connect(LOCAL, hostname="x"), ValueError),
        (streams.connect(LOCAL, timeout=-1), ValueError),
        (streams.listen(lambda c: None, LOCAL, private_key="k.pem"), ValueError),
        (streams.listen(42, LOCAL), TypeError),  # type: ignore[arg-type]
        (streams.listen(lambda c: None, ["127.0.0.1", 0]), TypeError),  # type: ignore[arg-type]
    ]
    for aw, expected in cases:
        failures: list[Any] = []
        task(aw).addErrback(failures.append)
        assert len(failures) == 1 and failures[0].check(expected), (aw, failures)


@pytest_twisted.ensureDeferred
async def test_core_client_emits_connect_failure(dead_port: int) -> None:
    """The core TcpClient follows connect_error with connect_failure(ErrorInfo)."""
    client = txtcp.TcpClient()
    events: list[tuple[str, Any]] = []
    done: Deferred[None] = Deferred()
    client.on("connect_error", lambda t, e: events.append(("connect_error", (t, e))))

    def failure(info: ErrorInfo) -> None:
        events.append(("connect_failure", info))
        done.callback(None)

    client.on("connect_failure", failure)
    client.connect("127.0.0.1", dead_port)
    await within(done)
    assert [name for name, _ in events] == ["connect_error", "connect_failure"]
    info = events[1][1]
    assert events[0][1] == (socket.error, errno.ECONNREFUSED)
    assert info.kind is ErrorKind.REFUSED and info.errno == errno.ECONNREFUSED
    assert isinstance(info.to_exception(), ConnectionRefusedError)


# -- reading -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_read_partial_exact_and_oversized() -> None:
    """read returns at most n of what is buffered; readexactly waits for n bytes."""
    server, client, peer = await connected_pair()
    peer.write(b"hello")
    await wait_for(lambda: len(client._buffer) == 5)
    assert await within(client.read(2)) == b"he"  # partial
    assert await within(client.read(100)) == b"llo"  # oversized: what is buffered
    peer.write(b"abc")
    assert await within(client.readexactly(3)) == b"abc"  # exact
    waiting = task(client.readexactly(6))
    peer.write(b"12")
    await sleep(0.05)
    assert not waiting.called
    peer.write(b"3456")
    assert await within(waiting) == b"123456"
    peer.write(b"xyz")
    assert await within(client.read()) == b"xyz"
    assert await client.read(0) == b"" and await client.readexactly(0) == b""
    peer.write(b"one\ntwo\nthr")
    assert await within(client.readline()) == b"one\n"
    assert await within(client.readline()) == b"two\n"
    line = task(client.readline())
    peer.write(b"ee\n")
    assert await within(line) == b"three\n"
    with pytest.raises(ValueError):
        await client.readexactly(-1)
    await within(client.async_close())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_waiting_reads_take_arriving_data_in_order() -> None:
    """Data for a waiting read goes to it whole or in part, the rest stays buffered, in order."""
    server, client, peer = await connected_pair()
    whole = task(client.read())
    peer.write(b"abcd")
    assert await within(whole) == b"abcd"  # taken whole, nothing left buffered
    assert len(client._buffer) == 0
    small = task(client.read(2))
    exact = task(client.readexactly(3))
    peer.write(b"123456")
    assert await within(small) == b"12"
    assert await within(exact) == b"345"
    assert await within(client.read()) == b"6"
    exact = task(client.readexactly(4))
    peer.write(b"wxyz")
    assert await within(exact) == b"wxyz"
    assert not client.async_group._tasks
    await within(client.async_close())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_end_of_stream_during_read() -> None:
    """At end of stream read returns what is left, then raises ConnectionError."""
    server, client, peer = await connected_pair()
    pending = task(client.read())
    peer.write(b"xy")
    assert await within(pending) == b"xy"
    peer.write(b"last")
    peer.close()
    await within(client.wait_closed())
    assert await within(client.read()) == b"last"
    with pytest.raises(ConnectionError):
        await within(client.read())
    with pytest.raises(ConnectionError):
        await within(client.readline())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_end_of_stream_wakes_a_waiting_read() -> None:
    """A read waiting on an empty buffer raises ConnectionError when the peer closes."""
    server, client, peer = await connected_pair()
    pending = task(client.read())
    await sleep(0.02)
    peer.close()
    with pytest.raises(ConnectionError):
        await within(pending)
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_end_of_stream_during_readexactly() -> None:
    """readexactly raises ConnectionError if the stream ends first; the bytes stay readable."""
    server, client, peer = await connected_pair()
    pending = task(client.readexactly(10))
    peer.write(b"1234")
    await sleep(0.02)
    peer.close()
    with pytest.raises(ConnectionError):
        await within(pending)
    assert await within(client.readexactly(4)) == b"1234"
    with pytest.raises(ConnectionError):
        await within(client.readexactly(1))
    # readline at the end gives the last bytes, without a newline.
    server2, client2, peer2 = await connected_pair()
    peer2.write(b"no newline")
    peer2.close()
    await within(client2.wait_closed())
    assert await within(client2.readline()) == b"no newline"
    await within(server.async_close())
    await within(server2.async_close())


@pytest_twisted.ensureDeferred
async def test_concurrent_reads_in_order_and_cancellation() -> None:
    """Concurrent reads are served in call order; a cancelled one takes nothing."""
    server, client, peer = await connected_pair()
    order: list[str] = []

    def noted(name: str, aw: Awaitable[bytes]) -> Deferred[bytes]:
        def note(data: bytes) -> bytes:
            order.append(name)
            return data

        return task(aw).addCallback(note)

    first = noted("first", client.readexactly(3))
    second = task(client.read())
    third = noted("third", client.readexactly(2))
    fourth = noted("fourth", client.read())
    second.cancel()
    with pytest.raises(CancelledError):
        await second
    peer.write(b"abcdefg")
    assert await within(first) == b"abc"
    assert await within(third) == b"de"
    assert await within(fourth) == b"fg"
    assert order == ["first", "third", "fourth"]
    # A cancelled head of the queue lets the next read go on.
    big = task(client.readexactly(100))
    small = task(client.read())
    peer.write(b"z")
    await sleep(0.05)
    assert not small.called
    big.cancel()
    with pytest.raises(CancelledError):
        await big
    assert await within(small) == b"z"
    await within(client.async_close())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_read_waiting_in_a_spawned_task_is_cancelled_by_close() -> None:
    """Closing a connection cancels the reads its group spawned."""
    server, client, _peer = await connected_pair()
    spawned = client.async_group.spawn(client.readexactly, 5)
    seen: list[Any] = []
    spawned.addErrback(seen.append)  # a waiter that was there before the close
    await sleep(0.02)
    await within(client.async_close())
    assert len(seen) == 1 and seen[0].check(CancelledError)
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_cancelled_read_in_a_spawned_task_takes_nothing() -> None:
    """A read cancelled in a spawned task raises CancelledError and takes no bytes."""
    server, client, peer = await connected_pair()
    spawned = client.async_group.spawn(client.readexactly, 5)
    await sleep(0.02)
    spawned.cancel()
    with pytest.raises(CancelledError):
        await spawned
    assert client._reader is None
    peer.write(b"abc")
    assert await within(client.read()) == b"abc"
    await within(client.async_close())
    await within(server.async_close())


class _QueueingCore:
    """
    A stand-in for a core L{txtcp.core.TcpConnection}: data received while
    it is paused waits in its queue, and is delivered at once when it is
    resumed, as the core delivers what came in while it was paused.
    """

    closed = False
    write_paused = False

    def __init__(self) -> None:
        self.data_listeners: list[Any] = []
        self.reasons: set[object] = {None}
        self.queue: list[bytes] = []

    def on(self, event: str, listener: Any) -> None:
        if event == "data":
            self.data_listeners.append(listener)

    def pause(self, paused: bool, reason: object = None) -> None:
        if paused:
            self.reasons.add(reason)
        else:
            self.reasons.discard(reason)
        while not self.reasons and self.queue:
            self.receive(self.queue.pop(0))

    def receive(self, data: bytes) -> None:
        if self.reasons:
            self.queue.append(data)
        else:
            for listener in self.data_listeners:
                listener(data)


@pytest.mark.parametrize("runner", ["spawn", "ensureDeferred"])
def test_read_served_as_it_resumes_reading(runner: str) -> None:
    """
    A read that resumes reading (the buffer was full) and is served at once
    by the data the core then delivers, before its await has started, gets
    that data: with streams' own runner and with Twisted's.
    """
    core = _QueueingCore()
    conn = streams.Connection(cast(Any, core))
    core.receive(b"x" * streams.READ_LIMIT)
    assert core.reasons  # the full buffer paused reading
    core.receive(b"y" * 10)
    size = streams.READ_LIMIT + 10
    if runner == "spawn":
        d = streams.Group().spawn(conn.readexactly, size)
    else:
        d = ensureDeferred(conn.readexactly(size))
    got: list[bytes] = []
    d.addCallback(got.append)
    assert got == [b"x" * streams.READ_LIMIT + b"y" * 10]


@pytest_twisted.ensureDeferred
async def test_closed_connections_are_freed_without_the_garbage_collector() -> None:
    """
    Once closed, both ends of a connection (and the coroutine callback's
    task) are freed by reference counting alone: no reference cycle is
    left for the garbage collector.
    """

    async def echo(conn: streams.Connection) -> None:
        try:
            while True:
                conn.write(await conn.read())
        except ConnectionError:
            pass
        finally:
            conn.close()

    def alive() -> int:
        kinds = (streams.Connection, streams._CallbackTask, streams._Wait)
        return sum(type(o) in kinds for o in gc.get_objects())

    server = await within(streams.listen(echo, LOCAL))
    gc.collect()
    gc.disable()
    try:
        before = alive()  # left by other tests
        for _ in range(3):
            client = await within(streams.connect(server.addresses[0]))
            client.write(b"ping")
            assert await within(client.readexactly(4)) == b"ping"
            await within(client.async_close())
            del client
        await wait_for(lambda: alive() <= before, timeout=2)
    finally:
        gc.enable()
    await within(server.async_close())


# -- writing -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ten_mib_with_drain() -> None:
    """10 MiB written in chunks with drain arrive intact; drain really waited."""
    server, client, peer = await connected_pair()
    payload = os.urandom(10 * 1024 * 1024)
    received = task(peer.readexactly(len(payload)))
    waits = 0
    chunk = 64 * 1024
    for start in range(0, len(payload), chunk):
        client.write(payload[start : start + chunk])
        if client.connection.write_paused:
            waits += 1
        await within(client.drain())
        assert not client.connection.write_paused
    data = await within(received, 60)
    assert sha256(data) == sha256(payload)
    assert waits > 0
    await within(client.async_close())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_drain_returns_at_once_and_never_raises() -> None:
    """drain returns at once when nothing is held back, and after close does not raise."""
    server, client, _peer = await connected_pair()
    d = task(client.drain())
    assert d.called
    client.write(b"x" * (32 * 1024 * 1024))
    assert client.connection.write_paused
    waiting = task(client.drain())
    client.connection.abort()
    await within(waiting)
    await within(client.drain())
    with pytest.raises(ConnectionError):
        client.write(b"more")
    with pytest.raises(TypeError):
        client.write("text")  # type: ignore[arg-type]
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_input_backpressure_holds_the_sender_back() -> None:
    """Past the read limit with no reader, reading pauses and the sender is held back."""
    server, client, peer = await connected_pair()
    payload = os.urandom(32 * 1024 * 1024)
    client.write(payload)
    await sleep(0.5)
    assert peer.connection.paused
    assert len(peer._buffer) < streams.READ_LIMIT + 512 * 1024
    assert client.connection.write_paused
    assert client.connection.write_queue_size > 0
    drained = task(client.drain())
    await sleep(0.2)
    assert not drained.called  # nobody reads: the sender stays held back
    data = await within(peer.readexactly(len(payload)), 60)
    assert sha256(data) == sha256(payload)
    await within(drained)
    assert not peer.connection.paused
    await within(client.async_close())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_backpressure_keeps_other_pauses() -> None:
    """The layer's own pause reason never undoes a pause taken by someone else."""
    server, client, peer = await connected_pair()
    peer.connection.pause(True, reason="someone")
    client.write(b"a" * 1000)
    await sleep(0.1)
    assert len(peer._buffer) == 0
    peer.connection.pause(False, reason="someone")
    assert await within(peer.readexactly(1000)) == b"a" * 1000
    await within(client.async_close())
    await within(server.async_close())


# -- servers -----------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 5])
@pytest.mark.parametrize("bind", [True, False])
@pytest_twisted.ensureDeferred
async def test_bind_connections(bind: bool, count: int, fd_baseline: int) -> None:
    """Closing a server closes its connections only with bind_connections=True."""
    accepted: list[streams.Connection] = []
    server = await within(streams.listen(accepted.append, LOCAL, bind_connections=bind))
    clients = [await within(streams.connect(server.addresses[0])) for _ in range(count)]
    assert len(accepted) == count
    await within(server.async_close())
    assert server.is_closed
    if bind:
        assert all(peer.is_closed for peer in accepted)
        for client in clients:
            with pytest.raises(ConnectionError):
                await within(client.read())
    else:
        assert all(peer.is_open for peer in accepted)
        for client, peer in zip(clients, accepted, strict=True):
            client.write(b"still")
            assert await within(peer.readexactly(5)) == b"still"
            peer.write(b"open")
            assert await within(client.readexactly(4)) == b"open"
            await within(peer.async_close())
    for client in clients:
        await within(client.async_close())
    assert await fds_back_to(fd_baseline) <= fd_baseline


@pytest_twisted.ensureDeferred
async def test_coroutine_callback_runs_in_the_connection_group() -> None:
    """A coroutine callback runs in the connection's group; closing cancels it."""
    started: Deferred[None] = Deferred()
    cancelled: Deferred[None] = Deferred()

    async def handler(conn: streams.Connection) -> None:
        started.callback(None)
        try:
            while True:
                conn.write(await conn.readexactly(2))
        except CancelledError:
            cancelled.callback(None)
            raise

    async with await within(streams.listen(handler, LOCAL, bind_connections=True)) as server:
        client = await within(streams.connect(server.addresses[0]))
        await within(started)
        client.write(b"hi")
        assert await within(client.readexactly(2)) == b"hi"
    await within(cancelled)
    assert server.is_closed
    with pytest.raises(ConnectionError):
        await within(client.read())


@pytest_twisted.ensureDeferred
async def test_coroutine_callbacks_run_in_their_own_context() -> None:
    """
    Each coroutine callback runs in its own copy of the context, as with
    Deferred.fromCoroutine: what it sets stays its own across its reads,
    and neither another connection's callback nor the listener sees it.
    """
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[str, str]] = []
    done: list[Deferred[None]] = [Deferred(), Deferred()]

    async def handler(conn: streams.Connection) -> None:
        name = (await conn.readexactly(1)).decode()
        seen.append((name, var.get()))
        var.set(name)
        await conn.readexactly(1)
        seen.append((name, var.get()))
        done[int(name)].callback(None)

    server = await within(streams.listen(handler, LOCAL))
    zero = await within(streams.connect(server.addresses[0]))
    one = await within(streams.connect(server.addresses[0]))
    zero.write(b"0")
    one.write(b"1")
    await wait_for(lambda: len(seen) == 2)
    one.write(b"x")
    zero.write(b"x")
    await within(done[0])
    await within(done[1])
    assert sorted(seen) == [("0", "0"), ("0", "unset"), ("1", "1"), ("1", "unset")]
    assert var.get() == "unset"
    await within(zero.async_close())
    await within(one.async_close())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_closing_cancels_a_deferred_the_callback_awaits() -> None:
    """Closing a connection cancels the Deferred its coroutine callback awaits."""
    cancelled: list[Deferred[None]] = []
    outcome: Deferred[str] = Deferred()

    async def handler(conn: streams.Connection) -> None:
        waiting: Deferred[None] = Deferred(cancelled.append)
        try:
            await waiting
        except CancelledError:
            outcome.callback("cancelled")
            raise

    with LogCapture() as logs:
        server = await within(streams.listen(handler, LOCAL, bind_connections=True))
        client = await within(streams.connect(server.addresses[0]))
        await within(server.async_close())
        assert await within(outcome) == "cancelled"
        assert len(cancelled) == 1
        await within(client.async_close())
    assert logs.failures == []


@pytest.mark.parametrize("first_await", [False, True])
@pytest_twisted.ensureDeferred
async def test_callback_closing_its_own_connection_finishes(first_await: bool) -> None:
    """
    A coroutine callback that closes its own connection (before or after
    its first await) is not cancelled by it: it runs to its end, nothing is
    logged, and the connection's group closes once it has finished.
    """
    steps: list[str] = []
    groups: list[streams.Group] = []
    finished: Deferred[None] = Deferred()

    async def handler(conn: streams.Connection) -> None:
        groups.append(conn.async_group)
        if first_await:
            steps.append(f"read {await conn.readexactly(2)!r}")
        conn.close()
        steps.append(f"closed, group closing: {conn.async_group.is_closing}")
        await sleep(0.01)
        steps.append(f"after close, group closed: {conn.async_group.is_closed}")
        finished.callback(None)

    with LogCapture() as logs:
        server = await within(streams.listen(handler, LOCAL))
        client = await within(streams.connect(server.addresses[0]))
        if first_await:
            client.write(b"hi")
        await within(finished)
        await wait_for(lambda: groups[0].is_closed)
        with pytest.raises(ConnectionError):
            await within(client.read())
        await within(server.async_close())
    expected = ["read b'hi'"] if first_await else []
    expected += ["closed, group closing: True", "after close, group closed: False"]
    assert steps == expected
    assert logs.failures == []


@pytest.mark.parametrize("kind", ["function", "coroutine"])
@pytest_twisted.ensureDeferred
async def test_callback_that_raises(kind: str) -> None:
    """A callback that raises gets its connection closed and its error logged."""

    def plain(conn: streams.Connection) -> None:
        raise RuntimeError("callback failed")

    async def coroutine(conn: streams.Connection) -> None:
        await sleep(0.01)
        raise RuntimeError("callback failed")

    with LogCapture() as logs:
        server = await within(streams.listen(plain if kind == "function" else coroutine, LOCAL))
        client = await within(streams.connect(server.addresses[0]))
        with pytest.raises(ConnectionError):
            await within(client.read())
        await wait_for(lambda: len(logs.failures) == 1)
    failure = logs.failures[0]["log_failure"]
    assert failure.check(RuntimeError)
    # The server goes on accepting.
    other = await within(streams.connect(server.addresses[0]))
    with pytest.raises(ConnectionError):
        await within(other.read())
    await within(server.async_close())


@pytest_twisted.ensureDeferred
async def test_server_resource_api() -> None:
    """Server: addresses, is_open/is_closing/is_closed, wait_closing and wait_closed."""
    server = await within(streams.listen(lambda c: None, LOCAL))
    assert server.is_open and not server.is_closing and not server.is_closed
    closing, closed = server.wait_closing(), server.wait_closed()
    server.close()
    assert closing.called and server.is_closing
    await within(closed)
    assert server.is_closed and not server.is_open
    server.close()
    await within(server.async_close())
    with pytest.raises(ConnectionRefusedError):
        await within(streams.connect(server.addresses[0]))


# -- the task group ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_group_spawn_close_and_subgroups() -> None:
    """Closing a group cancels what it spawned and closes its subgroups."""
    group = streams.Group()
    child = group.create_subgroup()
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await Deferred()
        finally:
            await sleep(0.01)
            cleaned.append(name)

    async def quick(x: int) -> int:
        return x * 2

    assert await within(group.spawn(quick, 21)) == 42
    assert await group.spawn(lambda: 7) == 7
    parent_task = group.spawn(forever, "parent")
    child_task = child.spawn(forever, "child")
    failed = group.spawn(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        await failed
    closed = group.wait_closed()
    group.close()
    assert group.is_closing and child.is_closing and not group.is_closed
    await within(closed)
    assert sorted(cleaned) == ["child", "parent"]
    assert child.is_closed and group.is_closed
    # Tasks cancelled by the close: their CancelledError is consumed by the
    # group, so nothing is logged as unhandled.
    assert parent_task.called and child_task.called
    with pytest.raises(RuntimeError):
        group.spawn(quick, 1)
    with pytest.raises(RuntimeError):
        group.create_subgroup()
    async with streams.Group() as scoped:
        pending = scoped.spawn(forever, "scoped")
    assert scoped.is_closed and pending.called and "scoped" in cleaned
    with pytest.raises(TypeError):
        scoped.spawn(cast(Any, 42))


class _Yields:
    """An awaitable that yields C{value} to its runner and returns what is sent back."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _double(x: int) -> int:
    """Twice C{x}, from a coroutine."""
    return x * 2


async def _awaits_everything(later: Deferred[int]) -> list[object]:
    """Awaits what a coroutine may await, one of each; returns what it got."""
    got: list[object] = []
    got.append(await _Yields(succeed(1)))  # a Deferred that has fired
    got.append(await _Yields("plain"))  # not a Deferred: sent straight back
    got.append(await _Yields(_double(21)))  # a coroutine: run, its result sent
    got.append(await later)  # a Deferred that fires later
    try:
        await fail(ZeroDivisionError("failed"))
    except ZeroDivisionError as e:
        got.append(str(e))
    got.append(await _double(2))
    return got


@pytest.mark.parametrize("runner", ["spawn", "fromCoroutine"])
def test_spawned_coroutines_run_as_from_coroutine_runs_them(runner: str) -> None:
    """A spawned coroutine sees what it awaits as with Deferred.fromCoroutine."""
    later: Deferred[int] = Deferred()
    if runner == "spawn":
        d = streams.Group().spawn(_awaits_everything, later)
    else:
        d = Deferred.fromCoroutine(_awaits_everything(later))
    assert not d.called
    later.callback(3)
    assert d.called
    assert d.result == [1, "plain", 42, 3, "failed", 4]


def test_spawned_coroutine_context_and_failure() -> None:
    """
    A spawned coroutine runs in a copy of the spawner's context: it sees
    the spawner's values, and what it sets stays its own.  Its exception
    fails the Deferred spawn returned.
    """
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    resume: Deferred[None] = Deferred()

    async def task() -> str:
        before = var.get()
        var.set("task")
        await resume
        if var.get() != "task":
            raise AssertionError(var.get())
        raise ValueError(before)

    group = streams.Group()
    token = var.set("spawner")
    try:
        d = group.spawn(task)
    finally:
        var.reset(token)
    assert var.get() == "unset"
    resume.callback(None)
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures[0].check(ValueError) and str(failures[0].value) == "spawner"
    group.close()
    assert group.is_closed


@pytest_twisted.ensureDeferred
async def test_closing_a_subgroup_leaves_the_parent_open() -> None:
    """A subgroup closes alone; its parent stays open."""
    group = streams.Group()
    child = group.create_subgroup()
    await within(child.async_close())
    assert child.is_closed and group.is_open
    await within(group.async_close())


@pytest_twisted.ensureDeferred
async def test_reset_raises_connection_reset_error() -> None:
    """After the peer resets the connection, reads raise ConnectionResetError."""
    server, client, peer = await connected_pair()
    pending = task(client.read())
    await sleep(0.02)
    dup = socket.socket(fileno=os.dup(peer.connection.fileno()))
    dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    dup.close()
    peer.connection.abort()
    with pytest.raises(ConnectionResetError):
        await within(pending)
    await within(client.wait_closed())
    with pytest.raises(ConnectionResetError):
        await within(client.read())
    await within(server.async_close())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest_twisted.ensureDeferred
async def test_cancelled_listen_leaves_nothing_listening(host: str, fd_baseline: int) -> None:
    """Cancelling listen before it listens closes the server it started."""
    attempt = task(streams.listen(lambda c: None, streams.Address(host, 0)))
    attempt.cancel()
    with pytest.raises(CancelledError):
        await attempt
    await sleep(0.1)
    assert await fds_back_to(fd_baseline) <= fd_baseline


@pytest_twisted.ensureDeferred
async def test_cancelled_connect_closes_the_connection(fd_baseline: int) -> None:
    """Cancelling connect while it is under way leaves no connection behind."""
    accepted: list[streams.Connection] = []
    server = await within(streams.listen(accepted.append, LOCAL))
    attempt = task(streams.connect(server.addresses[0]))
    attempt.cancel()
    with pytest.raises(CancelledError):
        await attempt
    await wait_for(lambda: all(peer.is_closed for peer in accepted))
    await within(server.async_close())
    assert await fds_back_to(fd_baseline) <= fd_baseline
