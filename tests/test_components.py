"""Tests for L{txtcp.components}: Kamaelia's component style on the reactor."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _helpers import TIMEOUT, Collector, listening, reactor, sha256, sleep, wait_event, wait_for
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.threads import deferToThread

import txtcp
from txtcp.components import (
    Component,
    ConsoleEchoer,
    Graphline,
    NoSpaceInBoxError,
    OneShot,
    Pipeline,
    RateControlledFileReader,
    ServerCore,
    SimpleServer,
    TCPClient,
    errorInformation,
    producerFinished,
    shutdownMicroprocess,
    socketError,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


# -- helper components ---------------------------------------------------------


class Source(Component):
    """Sends its chunks on outbox as fast as room allows, then producerFinished."""

    def __init__(self, chunks: list[Any], *, finish: bool = True) -> None:
        super().__init__()
        self.chunks = chunks
        self.sent = 0
        self.finish = finish

    async def main(self) -> None:
        for chunk in self.chunks:
            await self.wait_room("outbox")
            self.send(chunk, "outbox")
            self.sent += 1
        if self.finish:
            self.send(producerFinished(self), "signal")


class Recorder(Component):
    """Records what arrives on inbox and control, in order, until told to finish."""

    def __init__(self, *, size: int | None = None, delay: float = 0) -> None:
        super().__init__()
        self.items: list[tuple[str, Any]] = []
        self.delay = delay
        self.max_queued = 0
        if size is not None:
            self.set_inbox_size("inbox", size)

    @property
    def data(self) -> bytes:
        return b"".join(m for box, m in self.items if box == "inbox")

    @property
    def control(self) -> list[Any]:
        return [m for box, m in self.items if box == "control"]

    async def main(self) -> None:
        while True:
            if self.data_ready("inbox"):
                self.max_queued = max(self.max_queued, self.queued("inbox"))
                self.items.append(("inbox", await self.recv("inbox")))
                if self.delay:
                    await sleep(self.delay)
                continue
            if self.data_ready("control"):
                message = await self.recv("control")
                self.items.append(("control", message))
                if isinstance(message, (producerFinished, shutdownMicroprocess)):
                    return
                continue
            await self.pause()


def signals_of(component: Component) -> Component:
    """A bare component whose inbox gets C{component}'s signal."""
    sink = Component()
    sink.link((component, "signal"), (sink, "inbox"))
    return sink


async def next_message(sink: Component, inbox: str = "inbox") -> Any:
    """The next message on C{sink}'s inbox, within the timeout."""
    d = sink.recv(inbox)
    d.addTimeout(TIMEOUT, reactor)
    return await d


async def finished(component: Component) -> None:
    """Wait (with a timeout) until C{component} has finished."""
    d = component.when_finished()
    d.addTimeout(TIMEOUT, reactor)
    await d


def types(messages: list[Any]) -> list[str]:
    """The type names of C{messages}."""
    return [type(m).__name__ for m in messages]


# -- the component machinery ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_recv_is_a_deferred_in_order() -> None:
    """recv() gives queued messages at once, pending ones in call order; cancel drops a place."""
    a, b = Component(), Component()
    a.link((a, "outbox"), (b, "inbox"))
    a.send(1)
    assert b.data_ready() and b.queued("inbox") == 1
    assert await b.recv() == 1
    first, second, third = b.recv(), b.recv(), b.recv()
    second.cancel()
    a.send(2)
    a.send(3)
    assert (first.called, third.called) == (True, True)
    assert (await first, await third) == (2, 3)
    with pytest.raises(CancelledError):
        await second
    assert not b.data_ready()


@pytest_twisted.ensureDeferred
async def test_unlinked_outbox_holds_until_linked() -> None:
    """Messages sent on an unlinked outbox are delivered, in order, when it is linked."""
    a, b = Component(), Component()
    a.send("x")
    a.send("y")
    a.link((a, "outbox"), (b, "inbox"))
    assert [await b.recv(), await b.recv()] == ["x", "y"]
    with pytest.raises(ValueError, match="already linked"):
        a.link((a, "outbox"), (b, "control"))
    with pytest.raises(ValueError, match="no outbox 'nope'"):
        a.send(1, "nope")
    with pytest.raises(ValueError, match="no inbox"):
        a.link((a, "signal"), (b, "nope"))


@pytest_twisted.ensureDeferred
async def test_bounded_inbox_raises_and_wait_room() -> None:
    """A full inbox makes send() raise NoSpaceInBoxError; wait_room fires once one is taken."""
    a, b = Component(), Component()
    b.set_inbox_size("inbox", 2)
    a.link((a, "outbox"), (b, "inbox"))
    a.send(1)
    a.send(2)
    assert not a.has_room()
    with pytest.raises(NoSpaceInBoxError) as info:
        a.send(3)
    assert info.value.box == (b, "inbox")
    room = a.wait_room()
    assert not room.called
    assert await b.recv() == 1
    assert room.called
    with pytest.raises(ValueError):
        b.set_inbox_size("inbox", 0)


@pytest_twisted.ensureDeferred
async def test_pause_wakes_on_any_inbox() -> None:
    """pause() fires on the next delivery to any inbox, not for messages already waiting."""
    a, b = Component(), Component()
    a.link((a, "signal"), (b, "control"))
    b.inboxes["inbox"].put("waiting")
    woke = b.pause()
    assert not woke.called
    a.send("stop", "signal")
    assert woke.called


@pytest_twisted.ensureDeferred
async def test_graphline_passthrough_and_finish() -> None:
    """Graphline links by name, passes its inbox through and finishes when its children have."""
    rec = Recorder()
    outer = Component()
    g = Graphline(
        REC=rec, linkages={("", "inbox"): ("REC", "inbox"), ("", "control"): ("REC", "control")}
    )
    outer.link((outer, "outbox"), (g, "inbox"))
    outer.link((outer, "signal"), (g, "control"))
    g.activate()
    outer.send(b"a")
    outer.send(producerFinished(), "signal")
    await finished(g)
    assert rec.data == b"a" and types(rec.control) == ["producerFinished"]
    with pytest.raises(ValueError, match="not one of"):
        Graphline(A=Component(), linkages={("B", "outbox"): ("A", "inbox")})
    with pytest.raises(TypeError):
        Graphline(A=object())


@pytest_twisted.ensureDeferred
async def test_graphline_control_stops_children() -> None:
    """An unlinked Graphline control passes producerFinished to every child's control."""
    a, b = Recorder(), Recorder()
    g = Graphline(A=a, B=b, linkages={}).activate()
    g.inboxes["control"].put(producerFinished())
    await finished(g)
    assert types(a.control) == types(b.control) == ["producerFinished"]


@pytest_twisted.ensureDeferred
async def test_oneshot_and_rate_controlled_file_reader(tmp_path: Path) -> None:
    """OneShot sends once; RateControlledFileReader paces the file, then producerFinished."""
    data = os.urandom(30_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    rec = Recorder()
    start = time.monotonic()
    Pipeline(RateControlledFileReader(str(path), rate=100_000, chunksize=5_000), rec).activate()
    await finished(rec)
    elapsed = time.monotonic() - start
    assert sha256(rec.data) == sha256(data)
    assert [len(m) for box, m in rec.items if box == "inbox"] == [5_000] * 6
    assert 0.2 < elapsed < 5
    assert types(rec.control) == ["producerFinished"]
    rec2 = Recorder()
    Pipeline(OneShot(" make ssl "), rec2).activate()
    await finished(rec2)
    assert rec2.items[0] == ("inbox", " make ssl ")
    missing = Recorder()
    Pipeline(RateControlledFileReader(str(tmp_path / "missing")), missing).activate()
    await finished(missing)
    assert types(missing.control) == ["errorInformation", "shutdownMicroprocess"]
    with pytest.raises(ValueError):
        RateControlledFileReader(str(path), readmode="words")


@pytest_twisted.ensureDeferred
async def test_console_echoer(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """ConsoleEchoer writes bytes as they are and str as text, and passes producerFinished on."""
    echo = ConsoleEchoer(forwarder=True)
    rec = Recorder()
    Pipeline(Source([b"raw\n", "text\n"]), echo, rec).activate()
    await finished(rec)
    assert capsysbinary.readouterr().out == b"raw\ntext\n"
    assert rec.items[:2] == [("inbox", b"raw\n"), ("inbox", "text\n")]


# -- TCPClient -------------------------------------------------------------------


async def server_with(handler: Any, *, tls: Any = None) -> txtcp.TcpServer:
    """A listening server on 127.0.0.1 that calls C{handler(conn)} per connection."""
    server = (
        txtcp.TlsServer("127.0.0.1", 0, certificate=tls) if tls else txtcp.TcpServer("127.0.0.1", 0)
    )
    server.on("connect", handler)
    return await listening(server)


@pytest_twisted.ensureDeferred
async def test_pipeline_data_both_ways() -> None:
    """A Pipeline sends 1 MiB through TCPClient and gets 1 MiB back, then producerFinished."""
    up = os.urandom(1 << 20)
    down = os.urandom(1 << 20)
    received: list[Collector] = []

    def handler(conn: txtcp.TcpConnection) -> None:
        got = Collector(conn)
        received.append(got)

        def check(_: bytes) -> None:
            if got.size == len(up):
                conn.write(down)
                conn.close()

        conn.on("data", check)

    server = await server_with(handler)
    chunks = [up[i : i + 50_000] for i in range(0, len(up), 50_000)]
    source = Source(chunks, finish=False)
    client = TCPClient("127.0.0.1", server.port or 0)
    rec = Recorder()
    Pipeline(source, client, rec).activate()
    await finished(rec)
    assert sha256(received[0].data) == sha256(up)
    assert sha256(rec.data) == sha256(down)
    assert types(rec.control) == ["producerFinished"]
    assert client.finished
    server.close()


@pytest_twisted.ensureDeferred
async def test_ipv6_round_trip() -> None:
    """TCPClient works over IPv6 (::1), both ways."""
    server = txtcp.TcpServer("::1", 0)

    def handler(conn: txtcp.TcpConnection) -> None:
        def reply(data: bytes) -> None:
            conn.write(data.upper())
            conn.close()

        conn.on("data", reply)
        conn.pause(False)

    server.on("connect", handler)
    await listening(server)
    client = TCPClient("::1", server.port or 0)
    rec = Recorder()
    pipeline = Pipeline(Source([b"over six"], finish=False), client, rec).activate()
    await finished(pipeline)
    assert rec.data == b"OVER SIX"
    assert types(rec.control) == ["producerFinished"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_producer_finished_flushes_everything() -> None:
    """producerFinished on control sends all 16 MiB queued before it, then closes the connection."""
    payload = os.urandom(16 << 20)
    got: list[Collector] = []

    def handler(conn: txtcp.TcpConnection) -> None:
        # Read nothing for a while, so that the client's output queues up.
        got.append(Collector(conn, unpause=False))
        reactor.callLater(0.5, conn.pause, False)

    server = await server_with(handler)
    client = TCPClient("127.0.0.1", server.port or 0)
    source = Source([payload[i : i + 65536] for i in range(0, len(payload), 65536)])
    sink = signals_of(Pipeline(source, client).activate())
    await wait_for(lambda: bool(got))
    await got[0].wait_closed(30)
    assert got[0].size == len(payload)
    assert sha256(got[0].data) == sha256(payload)
    assert got[0].events == ["data", "end", "close"]
    assert types([await next_message(sink)]) == ["producerFinished"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_shutdown_microprocess_closes_at_once() -> None:
    """shutdownMicroprocess on control aborts the connection; signal says shutdownMicroprocess."""
    got: list[Collector] = []
    server = await server_with(lambda conn: got.append(Collector(conn)))
    client = TCPClient("127.0.0.1", server.port or 0).activate()
    sink = signals_of(client)
    await wait_for(lambda: bool(got))
    client.inboxes["control"].put(shutdownMicroprocess())
    assert types([await next_message(sink)]) == ["shutdownMicroprocess"]
    assert client.finished and not sink.data_ready()
    await got[0].wait_closed()
    server.close()


@pytest_twisted.ensureDeferred
async def test_shutdown_during_delay() -> None:
    """shutdownMicroprocess before the delayed connect cancels it."""
    client = TCPClient("127.0.0.1", 9, delay=30).activate()
    sink = signals_of(client)
    client.inboxes["control"].put(shutdownMicroprocess())
    assert types([await next_message(sink)]) == ["shutdownMicroprocess"]
    assert client.finished


@pytest_twisted.ensureDeferred
async def test_str_on_inbox_is_rejected_not_retried() -> None:
    """A str on inbox gives an errorInformation (TypeError) on signal; bytes after it still go."""
    got: list[Collector] = []
    server = await server_with(lambda conn: got.append(Collector(conn)))
    client = TCPClient("127.0.0.1", server.port or 0)
    source = Source(["text", b"bytes"])
    sink = signals_of(Pipeline(source, client).activate())
    error = await next_message(sink)
    assert isinstance(error, errorInformation) and not isinstance(error, socketError)
    assert isinstance(error.exception, TypeError)
    assert "not str" in error.message and "'text'" in error.message
    await got[0].wait_closed()
    assert got[0].data == b"bytes"
    assert types([await next_message(sink)]) == ["producerFinished"]
    server.close()


async def failure_of(client: TCPClient) -> list[Any]:
    """Activate C{client} and return its two signal messages."""
    sink = signals_of(client)
    client.activate()
    messages = [await next_message(sink), await next_message(sink)]
    await finished(client)
    return messages


@pytest_twisted.ensureDeferred
async def test_signal_refused() -> None:
    """A refused connection gives socketError(REFUSED) then shutdownMicroprocess."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    error, end = await failure_of(TCPClient("127.0.0.1", port))
    assert isinstance(error, socketError) and error.kind is txtcp.ErrorKind.REFUSED
    assert isinstance(end, shutdownMicroprocess)


@pytest_twisted.ensureDeferred
async def test_signal_host_not_found() -> None:
    """A name that does not resolve gives socketError(HOST_NOT_FOUND)."""
    error, end = await failure_of(TCPClient("no-such-host.invalid", 80, connect_timeout=10))
    assert isinstance(error, socketError) and error.kind is txtcp.ErrorKind.HOST_NOT_FOUND
    assert isinstance(end, shutdownMicroprocess)


@pytest_twisted.ensureDeferred
async def test_signal_timeout() -> None:
    """A connect that gets no answer within connect_timeout gives socketError(TIMEOUT)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):  # fill the accept queue: later SYNs are dropped
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(address)
        fillers.append(s)
    try:
        error, end = await failure_of(TCPClient(address[0], address[1], connect_timeout=0.5))
    finally:
        for s in [*fillers, listener]:
            s.close()
    assert isinstance(error, socketError) and error.kind is txtcp.ErrorKind.TIMEOUT
    assert isinstance(end, shutdownMicroprocess)


@pytest_twisted.ensureDeferred
async def test_signal_reset() -> None:
    """A connection reset by the peer gives socketError(RESET), not producerFinished."""

    def handler(conn: txtcp.TcpConnection) -> None:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        conn.abort()

    server = await server_with(handler)
    error, end = await failure_of(TCPClient("127.0.0.1", server.port or 0))
    assert isinstance(error, socketError) and error.kind is txtcp.ErrorKind.RESET
    assert isinstance(end, shutdownMicroprocess)
    server.close()


@pytest_twisted.ensureDeferred
async def test_normal_close_is_producer_finished() -> None:
    """The server closing cleanly gives producerFinished alone on signal, after the data."""

    def handler(conn: txtcp.TcpConnection) -> None:
        conn.write(b"bye")
        conn.close()

    server = await server_with(handler)
    client = TCPClient("127.0.0.1", server.port or 0)
    rec = Recorder()
    Pipeline(client, rec).activate()
    await finished(rec)
    assert rec.items[0] == ("inbox", b"bye")
    assert types(rec.control) == ["producerFinished"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_makessl_mid_connection(certs: Any) -> None:
    """makessl upgrades a live connection to verified TLS: sslready, then data both ways."""
    log: list[Any] = []

    def handler(conn: txtcp.TcpConnection) -> None:
        def data(chunk: bytes) -> None:
            log.append(("data", conn.tls, chunk))
            if chunk == b"STARTTLS\n":
                conn.write(b"GO\n")
                conn.start_tls(server=True, certificate=certs.server_path)
            elif chunk == b"SECRET\n":
                conn.write(b"ECHO SECRET\n")
                conn.close()

        conn.on("data", data)
        conn.on("tls", lambda: log.append("tls"))
        conn.pause(False)

    server = await server_with(handler)
    client = TCPClient("127.0.0.1", server.port or 0, trust_root=certs.ca_path)
    rec = Recorder()
    ready = Component()
    ready.link((client, "sslready"), (ready, "inbox"))
    driver = Component()
    driver.link((driver, "outbox"), (client, "inbox"))
    driver.link((driver, "signal"), (client, "makessl"))
    Pipeline(client, rec).activate()
    driver.send(b"STARTTLS\n")
    await wait_for(lambda: rec.data == b"GO\n")
    driver.send("make ssl", "signal")
    assert await next_message(ready) is True
    assert client.connection is not None and client.connection.tls
    driver.send(b"SECRET\n")
    await finished(rec)
    assert log == [("data", False, b"STARTTLS\n"), "tls", ("data", True, b"SECRET\n")]
    assert rec.data == b"GO\nECHO SECRET\n"
    assert types(rec.control) == ["producerFinished"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_makessl_verification_failure(certs: Any) -> None:
    """An untrusted server certificate gives socketError(TLS) then shutdownMicroprocess."""
    server = await server_with(lambda conn: conn.pause(False), tls=certs.server_path)
    client = TCPClient("127.0.0.1", server.port or 0, trust_root=certs.other_ca_path)
    client.inboxes["makessl"].put(" make ssl ")
    client.inboxes["inbox"].put(b"never sent in clear")
    error, end = await failure_of(client)
    assert isinstance(error, socketError) and error.kind is txtcp.ErrorKind.TLS
    assert isinstance(end, shutdownMicroprocess)
    server.close()


@pytest_twisted.ensureDeferred
async def test_makessl_wrong_host_name(certs: Any) -> None:
    """The host name is checked: a certificate for localhost does not do for 127.0.0.2."""
    server = txtcp.TlsServer("127.0.0.2", 0, certificate=certs.server_path)
    server.on("connect", lambda conn: conn.pause(False))
    await listening(server)
    client = TCPClient("127.0.0.2", server.port or 0, trust_root=certs.ca_path)
    client.inboxes["makessl"].put(True)
    error, _ = await failure_of(client)
    assert isinstance(error, socketError) and error.kind is txtcp.ErrorKind.TLS
    server.close()


@pytest_twisted.ensureDeferred
async def test_backpressure_to_bounded_inbox() -> None:
    """A slow consumer with a 4-message inbox holds back the server's 8 MiB: no unbounded queue."""
    payload = os.urandom(8 << 20)
    pauses: list[bool] = []

    def handler(conn: txtcp.TcpConnection) -> None:
        conn.on("pause", pauses.append)
        conn.write(payload)
        conn.close()

    server = await server_with(handler)
    client = TCPClient("127.0.0.1", server.port or 0)
    rec = Recorder(size=4, delay=0.002)
    Pipeline(client, rec).activate()
    await finished(rec)
    assert sha256(rec.data) == sha256(payload)
    assert rec.max_queued <= 5  # the limit, plus at most the one message in flight
    assert True in pauses  # the hold-back reached the server's write side
    server.close()


@pytest_twisted.ensureDeferred
async def test_backpressure_from_fast_producer() -> None:
    """A TCPClient inbox of 2 holds a fast producer back while the peer does not read."""
    payload = os.urandom(32 << 20)
    got: list[Collector] = []

    def handler(conn: txtcp.TcpConnection) -> None:
        got.append(Collector(conn, unpause=False))

    server = await server_with(handler)
    client = TCPClient("127.0.0.1", server.port or 0)
    client.set_inbox_size("inbox", 2)
    chunks = [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    source = Source(chunks)
    Pipeline(source, client).activate()
    await wait_for(lambda: bool(got))
    await sleep(0.5)
    held = source.sent
    assert held < len(chunks)  # the producer is waiting ...
    assert client.queued("inbox") == 2  # ... on a full inbox, not an unbounded queue
    await sleep(0.2)
    assert source.sent == held
    got[0].conn.pause(False)
    await got[0].wait_closed(30)
    assert sha256(got[0].data) == sha256(payload)
    server.close()


# -- servers ----------------------------------------------------------------------


class Echo(Component):
    """Echoes its inbox; finishes (passing the message on) on producerFinished."""

    def __init__(self, **sock_info: Any) -> None:
        super().__init__()
        self.sock_info = sock_info

    async def main(self) -> None:
        while True:
            while self.data_ready("inbox"):
                self.send(await self.recv("inbox"))
            if self.data_ready("control"):
                message = await self.recv("control")
                self.send(message, "signal")
                return
            await self.pause()


@pytest_twisted.ensureDeferred
async def test_server_core_echo_several_clients() -> None:
    """ServerCore makes an Echo per connection; five clients each get their own bytes back."""
    handlers: list[Echo] = []

    def protocol(**info: Any) -> Echo:
        handlers.append(Echo(**info))
        return handlers[-1]

    core = ServerCore(protocol, 0, host="127.0.0.1").activate()
    sink = signals_of(core)
    port = await core.when_listening()
    assert port == core.port and port > 0
    payloads = [os.urandom(300_000 + i) for i in range(5)]
    collectors = []
    for payload in payloads:
        conn = await connect_to(port)
        collectors.append(Collector(conn))
        conn.write(payload)
    for got, payload in zip(collectors, payloads, strict=True):
        size = len(payload)
        await wait_for(lambda got=got, size=size: got.size >= size)
        assert sha256(got.data) == sha256(payload)
        got.conn.close()
        await got.wait_closed()
    assert len(handlers) == 5
    info = handlers[0].sock_info
    assert info["localport"] == port and info["peer"] == "127.0.0.1"
    assert sorted(info) == ["localip", "localport", "peer", "peerport"]
    await wait_for(lambda: all(h.finished for h in handlers))
    core.inboxes["control"].put(producerFinished())
    assert types([await next_message(sink)]) == ["producerFinished"]
    assert core.finished


async def connect_to(port: int) -> txtcp.TcpConnection:
    """A core connection to 127.0.0.1:C{port}."""
    client = txtcp.TcpClient()
    made: Deferred[tuple[txtcp.TcpConnection]] = wait_event(client, "connect")
    client.connect("127.0.0.1", port)
    (conn,) = await made
    return conn


@pytest_twisted.ensureDeferred
async def test_simple_server_and_listen_failure() -> None:
    """SimpleServer calls protocol() bare; listening on a taken port gives socketError on signal."""
    first = SimpleServer(Echo, 0, host="127.0.0.1").activate()
    port = await first.when_listening()
    conn = await connect_to(port)
    got = Collector(conn)
    conn.write(b"hi")
    await wait_for(lambda: got.data == b"hi")
    second = ServerCore(Echo, port, host="127.0.0.1").activate()
    messages = signals_of(second)
    error = await next_message(messages)
    assert isinstance(error, socketError) and error.kind is txtcp.ErrorKind.ADDRESS_IN_USE
    assert types([await next_message(messages)]) == ["shutdownMicroprocess"]
    first.inboxes["control"].put(shutdownMicroprocess())
    await got.wait_closed()
    await finished(first)


# -- the seed's examples, in subprocesses --------------------------------------------


@pytest_twisted.ensureDeferred
async def test_example_send_file(tmp_path: Path) -> None:
    """Kamaelia's first example sends a whole file (checked by hash) and exits by itself."""
    data = os.urandom(200_000)
    path = tmp_path / "myfile"
    path.write_bytes(data)
    got: list[Collector] = []
    server = await server_with(lambda conn: got.append(Collector(conn)))
    argv = [sys.executable, str(EXAMPLES / "components_send_file.py"), str(path), "127.0.0.1"]
    result = await deferToThread(
        subprocess.run, [*argv, str(server.port)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    await got[0].wait_closed()
    assert sha256(got[0].data) == sha256(data)
    assert got[0].events == ["data", "end", "close"]
    server.close()


def drive_console(
    argv: list[str], env: dict[str, str], line: bytes, expect: bytes
) -> tuple[bytes, bytes, int]:
    """Run C{argv}, type C{line}, read until C{expect} is printed, then Ctrl-C it."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    out = b""
    try:
        proc.stdin.write(line)
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while expect not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out + rest, err, proc.returncode


@pytest_twisted.ensureDeferred
async def test_example_ssl_console(certs: Any) -> None:
    """Kamaelia's SSL example: a typed line goes over verified TLS and the reply is echoed."""
    seen: list[bytes] = []

    def handler(conn: txtcp.TcpConnection) -> None:
        buffer = bytearray()

        def data(chunk: bytes) -> None:
            buffer.extend(chunk)
            if buffer.endswith(b"\n"):
                seen.append(bytes(buffer))
                conn.write(b"TLS REPLY to " + bytes(buffer))

        conn.on("data", data)
        conn.pause(False)

    server = await server_with(handler, tls=certs.server_path)
    env = dict(os.environ, SSL_CERT_FILE=certs.ca_path)
    argv = [
        sys.executable,
        str(EXAMPLES / "components_ssl_console.py"),
        "localhost",
        str(server.port),
    ]
    expect = b"TLS REPLY to GET / HTTP/1.0\n"
    out, err, code = await deferToThread(drive_console, argv, env, b"GET / HTTP/1.0\n", expect)
    assert expect in out, (out, err.decode())
    assert out.startswith(b">>> ")
    assert seen == [b"GET / HTTP/1.0\n"]
    assert code == 0, err.decode()
    server.close()
