"""
The tcp-proxy service: options, and real C{twistd -n tcp-proxy} processes
between a client and an upstream server in this process, over loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, connect, listening, sleep, wait_event, wait_for
from _twistd import ROOT, Twistd, run_twistd, start
from twisted.internet.defer import Deferred

import txtcp
from txtcp.services import proxy

EXAMPLES = ROOT / "docs" / "examples"
LOOPBACK = "tcp:0:interface=127.0.0.1"
MiB = 1024 * 1024


class Upstream:
    """An upstream server in this process that records what it accepts."""

    def __init__(self, server: txtcp.TcpServer) -> None:
        self.server = server
        self.accepted: list[txtcp.TcpConnection] = []
        server.on("connect", self.accepted.append)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def connect_arg(self, host: str = "127.0.0.1") -> str:
        escaped = host.replace(":", "\\:")
        return f"tcp:host={escaped}:port={self.port}"

    async def next_connection(self, count: int = 1) -> txtcp.TcpConnection:
        """Wait for the C{count}-th accepted connection and return it."""
        await wait_for(lambda: len(self.accepted) >= count)
        return self.accepted[count - 1]


def serve_echo(conn: txtcp.TcpConnection) -> None:
    """Echo on C{conn} with flow control and half-close."""
    conn.allow_half_open = True
    conn.on("data", conn.write)
    conn.on("pause", lambda paused: conn.pause(paused, reason="echo"))
    conn.on("end", conn.close)
    conn.pause(False)


async def upstream(host: str = "127.0.0.1", *, echo: bool = False) -> Upstream:
    """A listening upstream on C{host}, port 0; echoing if C{echo}."""
    server = await listening(txtcp.TcpServer(host, 0))
    up = Upstream(server)
    if echo:
        server.on("connect", serve_echo)
    return up


async def start_proxy(up: Upstream | str, *args: str, listen: int = 1) -> Twistd:
    """A real twistd tcp-proxy to C{up}, listening on 127.0.0.1 port 0 by default."""
    target = up if isinstance(up, str) else up.connect_arg()
    if "--listen" not in args:
        args = ("--listen", LOOPBACK, *args)
    return await start("tcp-proxy", "--connect", target, *args, listen=listen)


async def steady_queue(conn: txtcp.TcpConnection, timeout: float = 10.0) -> int:
    """Wait until C{conn}'s write queue stops shrinking; return its size."""
    previous = -1
    waited = 0.0
    while waited < timeout:
        await sleep(0.1)
        waited += 0.1
        now = conn.write_queue_size
        if now == previous:
            return now
        previous = now
    return conn.write_queue_size


@contextlib.asynccontextmanager
async def proxied(
    *args: str,
    serve: Callable[[txtcp.TcpConnection], None] | None = None,
    host: str = "127.0.0.1",
    listen: int = 1,
) -> AsyncIterator[tuple[Upstream, Twistd]]:
    """
    An upstream on C{host} in this process (calling C{serve} on each
    connection it accepts) and a real twistd tcp-proxy to it, started with
    C{args} and listening on C{listen} endpoints; both are stopped on leaving.
    """
    up = await upstream(host)
    try:
        if serve is not None:
            up.server.on("connect", serve)
        proc = await start_proxy(up.connect_arg(host), *args, listen=listen)
        try:
            yield up, proc
        finally:
            proc.kill()
    finally:
        up.server.close()


async def echoed(
    port: int, data: bytes, host: str = "127.0.0.1"
) -> tuple[txtcp.TcpConnection, Collector]:
    """Connect to C{host}:C{port}, send C{data} and wait until it comes back."""
    conn = await connect(host, port)
    got = Collector(conn)
    conn.write(data)
    await wait_for(lambda: got.data == data)
    return conn, got


async def sent_then_shut(
    port: int, data: bytes, host: str = "127.0.0.1"
) -> tuple[txtcp.TcpConnection, Collector]:
    """Connect to C{host}:C{port} (half-open allowed), send C{data}, then shut down writing."""
    conn = await connect(host, port)
    conn.allow_half_open = True
    got = Collector(conn)
    conn.write(data)
    conn.shutdown()
    return conn, got


async def write_while_unread(proc: Twistd, writer: txtcp.TcpConnection) -> bytes:
    """
    Write 48 MiB on C{writer}, whose far end does not read: assert that more
    than 24 MiB stays queued in this process and that the proxy's memory
    grows by less than 16 MiB meanwhile.  Return what was written.
    """
    await sleep(0.3)
    baseline = proc.rss_kib()
    blob = os.urandom(48 * MiB)
    writer.write(blob)
    held = await steady_queue(writer)
    assert held > 24 * MiB, held
    grown = proc.rss_kib() - baseline
    assert grown < 16 * 1024, f"proxy grew by {grown} KiB"
    return blob


async def pinged_in_process(service: proxy.ProxyService) -> tuple[int, Collector]:
    """Start C{service} in this process and see a ping echoed through its first
    listener; return that listener's port and the client's collector."""
    service.startService()
    host, port = await service.listeners[0].when_listening()
    _, got = await echoed(port, b"ping", host)
    return port, got


async def stop_in_process(service: proxy.ProxyService, got: Collector) -> None:
    """Stop C{service}; wait until it has stopped and closed the client of C{got}."""
    stopped: Deferred[None] = service.stopService()
    await got.wait_closed()
    await stopped


async def close_upstream(up: Upstream) -> None:
    """Close C{up}'s server and wait for its C{stop}."""
    closed = wait_event(up.server, "stop")
    up.server.close()
    await closed


# -- options and builder ---------------------------------------------------


def test_options_defaults() -> None:
    """Only --connect is needed; listen defaults to loopback 8080, no limits."""
    options = proxy.Options()
    options.parseOptions(["--connect", "tcp:host=example.org:port=80"])
    assert options["listen"] == ["tcp:8080:interface=127.0.0.1"]
    assert options["connect-timeout"] == 30.0
    assert options["idle-timeout"] is None
    assert options["max-connections"] is None
    assert options["send-proxy-header"] is False


def test_options_values_are_converted() -> None:
    """Numbers and the flag are converted and checked when parsed."""
    options = proxy.Options()
    options.parseOptions(
        [
            "--listen=tcp6:0",
            "--connect=tls:host=localhost:port=443",
            "--connect-timeout=2.5",
            "--idle-timeout=60",
            "--max-connections=10",
            "--send-proxy-header",
        ]
    )
    assert options["listen"] == ["tcp6:0"]
    assert options["connect-timeout"] == 2.5
    assert options["idle-timeout"] == 60.0
    assert options["max-connections"] == 10
    assert options["send-proxy-header"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--connect ENDPOINT is required"),
        (["--connect", "nonsense:x"], "--connect 'nonsense:x'"),
        (["--connect", "tcp:host=h"], "tcp:host=HOST:port=PORT"),
        (["--connect", "tcp:host=h:port=1", "--connect-timeout", "-1"], "--connect-timeout"),
        (["--connect", "tcp:host=h:port=1", "--connect-timeout", "0"], "> 0"),
        (["--connect", "tcp:host=h:port=1", "--idle-timeout", "-5"], "--idle-timeout"),
        (["--connect", "tcp:host=h:port=1", "--idle-timeout", "soon"], "number of seconds"),
        (["--connect", "tcp:host=h:port=1", "--max-connections", "-1"], "--max-connections"),
        (["--connect", "tcp:host=h:port=1", "--max-connections", "2.5"], "whole number"),
        (["--connect", "tcp:host=h:port=1", "--listen", "tcp:x"], "--listen 'tcp:x'"),
    ],
)
def test_bad_options_are_usage_errors(argv: list[str], message: str) -> None:
    """Each bad command line raises UsageError with a message naming the option."""
    from twisted.python.usage import UsageError

    with pytest.raises(UsageError) as caught:
        proxy.Options().parseOptions(argv)
    assert message in str(caught.value)


def test_builder_rejects_bad_arguments() -> None:
    """proxy_service raises TypeError/ValueError at the call for bad arguments."""
    good = "tcp:host=127.0.0.1:port=1"
    with pytest.raises(ValueError, match="cannot parse client endpoint"):
        proxy.proxy_service([LOOPBACK], "tcp:port=1")
    with pytest.raises(TypeError, match="endpoint"):
        proxy.proxy_service([LOOPBACK], 80)
    with pytest.raises(ValueError, match="connect_timeout"):
        proxy.proxy_service([LOOPBACK], good, connect_timeout=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        proxy.proxy_service([LOOPBACK], good, idle_timeout=-1)
    with pytest.raises(ValueError, match="max_connections"):
        proxy.proxy_service([LOOPBACK], good, max_connections=0)
    with pytest.raises(TypeError, match="send_proxy_header"):
        proxy.proxy_service([LOOPBACK], good, send_proxy_header=1)  # type: ignore[arg-type]
    service = proxy.proxy_service([LOOPBACK], good, idle_timeout=3, max_connections=5)
    assert (service.idle_timeout, service.max_connections) == (3.0, 5)
    assert not service.running


def test_proxy_header_v1_lines() -> None:
    """The PROXY v1 line names family, addresses and ports, or says UNKNOWN."""
    v4 = proxy.proxy_header_v1(("192.0.2.1", 5555), ("198.51.100.2", 80))
    assert v4 == b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\n"
    v6 = proxy.proxy_header_v1(("::1", 5555), ("2001:db8::2", 443))
    assert v6 == b"PROXY TCP6 ::1 2001:db8::2 5555 443\r\n"
    assert proxy.proxy_header_v1(("::1", 1), ("127.0.0.1", 2)) == b"PROXY UNKNOWN\r\n"
    assert proxy.proxy_header_v1(("/tmp/sock", 0), ("/tmp/sock", 0)) == b"PROXY UNKNOWN\r\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--connect ENDPOINT is required"),
        (["--connect", "nonsense:x"], "nonsense:x"),
        (["--connect", "tcp:host=h:port=1", "--idle-timeout", "-1"], "--idle-timeout"),
    ],
)
def test_bad_option_exits_with_usage_and_no_traceback(args: list[str], message: str) -> None:
    """twistd tcp-proxy with a bad option prints usage, exits non-zero, no traceback."""
    result = run_twistd("--pidfile=", "-n", "tcp-proxy", *args)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Usage:" in out
    assert message in out
    assert "Traceback" not in out


# -- real twistd processes ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_64_mib_through_the_proxy_by_hash() -> None:
    """64 MiB written at once (before upstream is up) goes through and back intact."""
    async with proxied(serve=serve_echo) as (up, proc):
        blob = os.urandom(64 * MiB)
        _, got = await sent_then_shut(proc.port, blob)
        await got.wait_closed(timeout=60)
        assert got.events == ["data", "end", "close"]
        assert got.size == len(blob)
        assert hashlib.sha256(got.data).digest() == hashlib.sha256(blob).digest()
        local_port = up.accepted[0].remote_address[1]
        match = await proc.wait_output(
            r"tcp-proxy connection from 127\.0\.0\.1:(\d+) to 127\.0\.0\.1:(\d+) ended: "
            r"(\d+) bytes up, (\d+) bytes down, ([0-9.]+) s, (.+)"
        )
        assert int(match.group(2)) == up.port
        assert int(match.group(3)) == int(match.group(4)) == 64 * MiB
        assert float(match.group(5)) > 0
        assert match.group(6).strip() in ("client closed", "upstream closed")
        assert local_port > 0


@pytest_twisted.ensureDeferred
async def test_request_then_write_shutdown_gets_the_whole_reply() -> None:
    """A request, then the client's SHUT_WR: the upstream sees the end; the whole reply arrives."""
    reply = os.urandom(3 * MiB)
    seen: list[str] = []

    def serve(conn: txtcp.TcpConnection) -> None:
        request = bytearray()
        conn.allow_half_open = True
        conn.on("data", request.extend)

        def ended() -> None:
            seen.append(bytes(request).decode())
            conn.write(reply)
            conn.close()

        conn.on("end", ended)
        conn.pause(False)

    async with proxied(serve=serve) as (_, proc):
        _, got = await sent_then_shut(proc.port, b"GET / HTTP/1.0\r\n\r\n")
        await got.wait_closed()
        assert seen == ["GET / HTTP/1.0\r\n\r\n"]
        assert got.events == ["data", "end", "close"]
        assert hashlib.sha256(got.data).digest() == hashlib.sha256(reply).digest()


@pytest_twisted.ensureDeferred
async def test_slow_upstream_reader_holds_the_client_back() -> None:
    """An upstream that does not read stops the proxy reading; its memory stays bounded."""
    async with proxied() as (up, proc):
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn)
        conn.write(b"hi")
        server_side = await up.next_connection()
        server_got = Collector(server_side, unpause=False)
        blob = await write_while_unread(proc, conn)
        server_side.pause(False)
        await wait_for(lambda: server_got.size == len(blob) + 2, timeout=30)
        assert hashlib.sha256(server_got.data).digest() == hashlib.sha256(b"hi" + blob).digest()
        conn.close()
        await got.wait_closed()
        await server_got.wait_closed()


@pytest_twisted.ensureDeferred
async def test_slow_client_reader_holds_the_upstream_back() -> None:
    """A client that does not read stops the proxy reading upstream; its memory stays bounded."""
    async with proxied() as (up, proc):
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn, unpause=False)
        conn.write(b"hi")
        server_side = await up.next_connection()
        server_got = Collector(server_side)
        await wait_for(lambda: server_got.data == b"hi")
        blob = await write_while_unread(proc, server_side)
        conn.pause(False)
        await wait_for(lambda: got.size == len(blob), timeout=30)
        assert hashlib.sha256(got.data).digest() == hashlib.sha256(blob).digest()
        server_side.close()
        await got.wait_closed()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest_twisted.ensureDeferred
async def test_upstream_refused_closes_the_client_and_logs_the_cause() -> None:
    """When the upstream refuses, the client is closed at once and the cause logged."""
    dead = _free_port()
    proc = await start_proxy(f"tcp:host=127.0.0.1:port={dead}")
    try:
        conn = await connect("127.0.0.1", proc.port)
        port = conn.local_address[1]
        got = Collector(conn)
        await got.wait_closed(timeout=3)
        assert got.events == ["end", "close"]
        await proc.wait_output(
            rf"connection from 127\.0\.0\.1:{port} to tcp:host=127\.0\.0\.1:port={dead} "
            r"ended: 0 bytes up, 0 bytes down, [0-9.]+ s, "
            r"upstream connect failed: ECONNREFUSED \(Connection refused\)"
        )
        # Data the proxy never read may turn the close into a reset; either
        # way the client is closed promptly and nothing was relayed.
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn)
        conn.write(b"anyone there?")
        await got.wait_closed(timeout=3)
        assert got.data == b""
        assert got.events[-1] == "close"
        assert proc.proc.poll() is None
    finally:
        proc.kill()


@pytest_twisted.ensureDeferred
async def test_idle_timeout_closes_quiet_connections_only() -> None:
    """Traffic keeps a pair open past --idle-timeout; silence closes both sides."""
    async with proxied("--idle-timeout", "0.6", serve=serve_echo) as (up, proc):
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn)
        for i in range(8):
            conn.write(b"%d" % i)
            await wait_for(lambda i=i: got.data.endswith(b"%d" % i))
            await sleep(0.2)
        assert not conn.closed
        quiet_since = up.accepted[0]
        await got.wait_closed(timeout=3)
        assert got.events == ["data", "end", "close"]
        await wait_for(lambda: quiet_since.closed)
        await proc.wait_output(
            r"ended: 8 bytes up, 8 bytes down, [0-9.]+ s, idle timeout \(0.6 s\)"
        )


@pytest_twisted.ensureDeferred
async def test_max_connections_refuses_extra_clients() -> None:
    """Beyond --max-connections, clients are accepted and closed at once; a freed slot is reused."""
    async with proxied("--max-connections", "2", serve=serve_echo) as (_, proc):
        open_ = [await echoed(proc.port, b"ok") for _ in range(2)]
        extra = await connect("127.0.0.1", proc.port)
        extra_got = Collector(extra)
        await extra_got.wait_closed(timeout=3)
        assert extra_got.events == ["end", "close"]
        await proc.wait_output(r"refused: 2 connections open \(max connections\)")
        first, first_got = open_[0]
        first.close()
        await first_got.wait_closed()
        await proc.wait_output(r"ended: 2 bytes up, 2 bytes down")
        again, again_got = await echoed(proc.port, b"back")
        again.close()
        open_[1][0].close()
        await again_got.wait_closed()


@pytest_twisted.ensureDeferred
async def test_proxy_header_reaches_the_upstream() -> None:
    """With --send-proxy-header the upstream reads a PROXY v1 line, over IPv4 and IPv6."""
    async with proxied(
        "--send-proxy-header",
        "--listen",
        LOOPBACK,
        "--listen",
        r"tcp6:0:interface=\:\:1",
        listen=2,
    ) as (up, proc):
        for count, (host, port, family) in enumerate(
            [("127.0.0.1", proc.ports[0], "TCP4"), ("::1", proc.ports[1], "TCP6")], start=1
        ):
            conn, got = await sent_then_shut(port, b"payload", host)
            server_side = await up.next_connection(count)
            server_got = Collector(server_side)
            await server_got.wait_closed()
            client_port = conn.local_address[1]
            expected = f"PROXY {family} {host} {host} {client_port} {port}\r\n".encode()
            assert server_got.data == expected + b"payload"
            await got.wait_closed()


@pytest_twisted.ensureDeferred
async def test_ipv6_upstream_by_literal() -> None:
    """--connect tcp:host=\\:\\:1 reaches an upstream listening on IPv6 only."""
    async with proxied(serve=serve_echo, host="::1") as (_, proc):
        conn, got = await echoed(proc.port, b"six")
        conn.close()
        await got.wait_closed()
        await proc.wait_output(r"to \[::1\]:\d+ ended: 3 bytes up, 3 bytes down")


def _trust_dir(directory: Path, ca_path: str) -> str:
    """A directory holding only C{ca_path}, for the tls: endpoint's trustRoots."""
    directory.mkdir()
    shutil.copy(ca_path, directory / "ca.pem")
    return str(directory)


@pytest_twisted.ensureDeferred
async def test_tls_origination_verifies_the_upstream(tmp_path: Path, certs: Any) -> None:
    """--connect tls:... to a local TLS server: verified with the test CA, refused with another."""
    server = await listening(txtcp.TlsServer("127.0.0.1", 0, certificate=certs.server_path))
    handshakes: list[txtcp.TcpConnection] = []

    def accepted(conn: txtcp.TcpConnection) -> None:
        conn.on("tls", lambda: handshakes.append(conn))
        serve_echo(conn)

    server.on("connect", accepted)
    good_dir = _trust_dir(tmp_path / "good", certs.ca_path)
    bad_dir = _trust_dir(tmp_path / "bad", certs.other_ca_path)
    target = f"tls:host=localhost:port={server.port}:trustRoots="
    good = await start_proxy(target + good_dir)
    bad = await start_proxy(target + bad_dir)
    try:
        conn, got = await echoed(good.port, b"secret")
        assert len(handshakes) == 1
        conn.close()
        await got.wait_closed()
        await good.wait_output(r"to 127\.0\.0\.1:\d+ ended: 6 bytes up, 6 bytes down")

        conn = await connect("127.0.0.1", bad.port)
        got = Collector(conn)
        conn.write(b"secret")
        await got.wait_closed(timeout=5)
        assert got.data == b""
        await bad.wait_output(
            r"ended: 6 bytes up, 0 bytes down, [0-9.]+ s, upstream error: TLS failure"
        )
    finally:
        good.kill()
        bad.kill()
        server.close()


@pytest_twisted.ensureDeferred
async def test_sigterm_with_many_connections_stops_promptly() -> None:
    """SIGTERM with 40 open pairs: listening stops, all close within seconds, twistd's exit."""
    async with proxied(serve=serve_echo) as (up, proc):
        clients = []
        for _ in range(40):
            conn = await connect("127.0.0.1", proc.port)
            got = Collector(conn)
            conn.write(b"x")
            clients.append(got)
        await wait_for(lambda: all(c.data == b"x" for c in clients))
        proc.proc.send_signal(signal.SIGTERM)
        status = await proc.wait_exit(timeout=5)
        assert status == -signal.SIGTERM
        for got in clients:
            await got.wait_closed(timeout=2)
        await wait_for(lambda: all(c.closed for c in up.accepted))
        out = proc.output
        assert "tcp-proxy stopping: no longer listening, closing 40 open connections" in out
        assert out.count("service stopped") == 40
        assert "tcp-proxy stopped" in out
        assert "Main loop terminated." in out
        assert "Traceback" not in out


@pytest_twisted.ensureDeferred
async def test_in_application_round_trip() -> None:
    """proxy_service, started in-process, relays to an upstream and stops cleanly."""
    up = await upstream(echo=True)
    service = proxy.proxy_service([LOOPBACK], up.connect_arg())
    _, got = await pinged_in_process(service)
    assert service.open_connections == 1
    await stop_in_process(service, got)
    assert service.open_connections == 0
    await close_upstream(up)


async def test_proxy_turns_nagle_off_on_both_sides() -> None:
    """The proxy's sockets to the client and to the upstream have TCP_NODELAY set."""
    up = await upstream(echo=True)
    service = proxy.proxy_service([LOOPBACK], up.connect_arg())
    port, got = await pinged_in_process(service)
    nodelay: dict[str, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket
        with sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                local, peer = sock.getsockname(), sock.getpeername()
            except OSError:
                continue  # listening
            option = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            if local[1] == port:
                nodelay["client side"] = option
            elif peer[1] == up.port:
                nodelay["upstream side"] = option
    assert nodelay == {"client side": 1, "upstream side": 1}
    await stop_in_process(service, got)
    await close_upstream(up)


def test_example_runs() -> None:
    """docs/examples/services_proxy.py runs and prints the reply through the proxy."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "services_proxy.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "reply: b'hello through the proxy\\n'" in result.stdout
