"""
Security defaults: TLS clients verify the server at every layer unless told
not to (and then a warning is logged); TLS below 1.2 is refused both ways;
the services listen on loopback by default; --max-connections,
--idle-timeout and the per-connection buffer bound hold against many
connections, clients that send without reading, and clients that never
send; a PROXY header is trusted only on a C{haproxy:} endpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, connect, listening, sleep, wait_for
from _layers import EXPECTED, LAYERS, TLS_LAYERS, serve_echo_once
from _rel import MiB, fd_count, fds_settle, record, status_kib
from _twistd import start
from test_faults import tls_server
from twisted.internet.endpoints import HostnameEndpoint, serverFromString, wrapClientTLS
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from zope.interface import provider

import txtcp
from txtcp.core import ErrorKind, client_options
from txtcp.services import echo, proxy

LOOPBACK = "tcp:0:interface=127.0.0.1"


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the text of the log events at warn level or above."""
    seen: list[str] = []

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if level is not None and level >= LogLevel.warn:
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observe)


# -- TLS clients verify by default ----------------------------------------------------


@pytest.mark.parametrize("layer", TLS_LAYERS)
@pytest_twisted.ensureDeferred
async def test_tls_clients_verify_by_default(layer: str, certs: Any) -> None:
    """With no trust root given, a server signed by an unknown CA is refused at every layer."""
    server = await tls_server(certs.server_path)
    try:
        outcome = await LAYERS[layer]("127.0.0.1", server.port or 0, tls=True)
        assert outcome.failure == EXPECTED[layer][ErrorKind.TLS]
        assert outcome.data == b""
    finally:
        server.close()


@pytest_twisted.ensureDeferred
async def test_not_verifying_must_be_explicit_and_logs_a_warning(certs: Any) -> None:
    """client_options(verify=False) is the one way not to verify, and it logs a warning."""
    server = await tls_server(certs.server_path)
    try:
        with captured_warnings() as warnings:
            options = client_options("localhost", verify=False)
        assert any("without certificate verification" in w for w in warnings), warnings
        from _helpers import reactor

        assert server.port is not None
        endpoint = wrapClientTLS(options, HostnameEndpoint(reactor, "127.0.0.1", server.port))
        client = txtcp.TcpClient()
        conns: list[txtcp.TcpConnection] = []
        client.once("connect", conns.append)
        client.connect_endpoint(endpoint)
        await wait_for(lambda: conns)
        got = Collector(conns[0])
        await wait_for(lambda: got.data == b"hello")
        conns[0].close()
        await got.wait_closed()
    finally:
        server.close()


@pytest_twisted.ensureDeferred
async def test_ssl_endpoint_strings_log_that_the_server_is_not_verified(certs: Any) -> None:
    """An ssl: client string (no host name check in Twisted) logs a warning naming tls:."""
    server = await tls_server(certs.server_path)
    try:
        with captured_warnings() as warnings:
            client = txtcp.TcpClient()
            conns: list[txtcp.TcpConnection] = []
            client.once("connect", conns.append)
            client.connect_endpoint(f"ssl:host=localhost:port={server.port}")
        assert any("without host name verification" in w and "tls:" in w for w in warnings)
        await wait_for(lambda: conns)
        conns[0].abort()
        with captured_warnings() as warnings:
            txtcp.TcpClient().connect_endpoint(f"tls:host=localhost:port={server.port}")
        assert warnings == []
    finally:
        server.close()


# -- TLS below 1.2 ----------------------------------------------------------------------


def _old_tls_context(server: bool) -> ssl.SSLContext:
    """A stdlib context that speaks TLS 1.0 and 1.1 only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


@pytest_twisted.ensureDeferred
async def test_old_tls_is_possible_on_this_machine(certs: Any) -> None:
    """The stdlib TLS 1.1 client and server of these tests do reach TLS 1.1 together."""
    ctx = _old_tls_context(True)
    ctx.load_cert_chain(certs.server_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        served = deferToThread(_serve_once, listener, ctx)
        client = await deferToThread(_handshake, listener.getsockname()[1], _old_tls_context(False))
        server = await served
    assert (client, server) == ("version TLSv1.1", "version TLSv1.1")


def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    """Connect to C{port} with C{ctx}; return the version, or the error."""
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return f"version {tls.version()}"
        except (ssl.SSLError, OSError) as exc:
            return f"failed {exc}"


@pytest_twisted.ensureDeferred
async def test_tls_server_refuses_below_1_2(certs: Any) -> None:
    """A stdlib client limited to TLS 1.1 fails its handshake with a TlsServer; 1.2 works."""
    server = await tls_server(certs.server_path)
    try:
        old = await deferToThread(_handshake, server.port or 0, _old_tls_context(False))
        assert old.startswith("failed"), old
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ok = await deferToThread(_handshake, server.port or 0, ctx)
        assert ok == "version TLSv1.2"
    finally:
        server.close()


def _serve_once(listener: socket.socket, ctx: ssl.SSLContext) -> str:
    """Accept one connection on C{listener} and try a handshake with C{ctx}."""
    listener.settimeout(10)
    conn, _ = listener.accept()
    with conn:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"old")
                return f"version {tls.version()}"
        except (ssl.SSLError, OSError) as exc:
            return f"failed {exc}"


@pytest_twisted.ensureDeferred
async def test_tls_client_refuses_below_1_2(certs: Any) -> None:
    """A TlsClient fails against a stdlib server limited to TLS 1.1."""
    ctx = _old_tls_context(True)
    ctx.load_cert_chain(certs.server_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        served = deferToThread(_serve_once, listener, ctx)
        outcome = await LAYERS["core"](
            "127.0.0.1", listener.getsockname()[1], trust_root=certs.ca_path
        )
        assert outcome.failure is ErrorKind.TLS
        assert outcome.data == b""
        assert (await served).startswith("failed")


# -- loopback by default -------------------------------------------------------------------


def test_services_default_to_loopback() -> None:
    """Without --listen both services listen on 127.0.0.1 only."""
    from _helpers import reactor

    options = echo.Options()
    options.parseOptions([])
    proxy_options = proxy.Options()
    proxy_options.parseOptions(["--connect", "tcp:host=127.0.0.1:port=1"])
    for description in (options["listen"][0], proxy_options["listen"][0]):
        endpoint = serverFromString(reactor, description)
        assert endpoint._interface == "127.0.0.1", description


@pytest_twisted.ensureDeferred
async def test_twistd_tcp_echo_without_listen_binds_loopback() -> None:
    """twistd tcp-echo with no --listen listens on 127.0.0.1:8007 and nowhere else."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", 8007))
        except OSError:
            pytest.skip("port 8007 is in use on this machine")
    proc = await start("tcp-echo")
    try:
        assert re.search(r"tcp-echo listening on 127\.0\.0\.1:8007\b", proc.output)
        with socket.socket() as probe:
            probe.settimeout(2)
            # Another local address of the machine does not reach it.
            addresses = {str(a[4][0]) for a in socket.getaddrinfo(socket.gethostname(), None)}
            others = [a for a in addresses if not a.startswith("127.") and ":" not in a]
            for address in others:
                assert probe.connect_ex((address, 8007)) != 0
    finally:
        proc.kill()


# -- limits against many, greedy and silent clients -------------------------------------


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_max_connections_holds_against_a_flood() -> None:
    """With --max-connections 5, 200 clients at once get 5 served pairs; the rest are closed."""
    up = await listening(txtcp.TcpServer("127.0.0.1", 0))
    upstream_conns: list[txtcp.TcpConnection] = []
    up.on("connect", upstream_conns.append)
    await serve_echo_once(up)
    proc = await start(
        "tcp-proxy",
        "--listen",
        LOOPBACK,
        "--connect",
        f"tcp:host=127.0.0.1:port={up.port}",
        "--max-connections",
        "5",
    )
    try:
        baseline = fd_count(proc.proc.pid)
        conns = [await connect("127.0.0.1", proc.port) for _ in range(200)]
        collectors = [Collector(c) for c in conns]
        await wait_for(lambda: sum(c.conn.closed for c in collectors) >= 195, 20)
        await sleep(0.3)
        assert sum(not c.conn.closed for c in collectors) == 5
        assert len(upstream_conns) == 5
        assert fd_count(proc.proc.pid) <= baseline + 2 * 5 + 2
        assert proc.output.count("refused: 5 connections open (max connections)") == 195
        for c in conns:
            c.close()
        assert await fds_settle(proc.proc.pid, baseline) <= baseline
    finally:
        proc.kill()
        up.close()
        for conn in upstream_conns:
            conn.abort()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_idle_timeout_holds_against_slowloris() -> None:
    """With --idle-timeout 1, 300 clients that never send are all closed within seconds."""
    up = await listening(txtcp.TcpServer("127.0.0.1", 0))
    held: list[txtcp.TcpConnection] = []
    up.on("connect", held.append)
    proc = await start(
        "tcp-proxy",
        "--listen",
        LOOPBACK,
        "--connect",
        f"tcp:host=127.0.0.1:port={up.port}",
        "--idle-timeout",
        "1",
    )
    try:
        baseline = fd_count(proc.proc.pid)
        collectors = [Collector(await connect("127.0.0.1", proc.port)) for _ in range(300)]
        await wait_for(lambda: all(c.conn.closed for c in collectors), 10)
        assert all(c.events == ["end", "close"] for c in collectors)
        await wait_for(lambda: proc.output.count("idle timeout (1 s)") >= 300)
        assert proc.output.count("idle timeout (1 s)") == 300
        assert await fds_settle(proc.proc.pid, baseline) <= baseline
    finally:
        proc.kill()
        up.close()
        for conn in held:
            conn.abort()


def _push_until_blocked(sockets: list[socket.socket], rounds: int) -> list[int]:
    """Send on every socket until the kernel takes no more, C{rounds} times; never read."""
    import time

    block = os.urandom(256 * 1024)
    pushed = [0] * len(sockets)
    for _ in range(rounds):
        for i, s in enumerate(sockets):
            while True:
                try:
                    pushed[i] += s.send(block)
                except BlockingIOError:
                    break
        time.sleep(0.2)
    return pushed


@pytest.mark.slow
@pytest.mark.parametrize("service", ["tcp-echo", "tcp-proxy"])
@pytest_twisted.ensureDeferred
async def test_clients_that_send_without_reading_leave_memory_bounded(service: str) -> None:
    """100 clients that send as much as they can and never read grow the service by < 64 MiB."""
    echo_proc = await start("tcp-echo", "--listen", LOOPBACK)
    procs = [echo_proc]
    try:
        target = echo_proc
        if service == "tcp-proxy":
            target = await start(
                "tcp-proxy",
                "--listen",
                LOOPBACK,
                "--connect",
                f"tcp:host=127.0.0.1:port={echo_proc.port}",
            )
            procs.append(target)
        base = {p.proc.pid: status_kib(p.proc.pid, "VmRSS") for p in procs}
        sockets = [socket.create_connection(("127.0.0.1", target.port)) for _ in range(100)]
        try:
            for s in sockets:
                s.setblocking(False)
            pushed = await deferToThread(_push_until_blocked, sockets, 8)
            growth = {pid: status_kib(pid, "VmHWM") - kib for pid, kib in base.items()}
            for pid, kib in growth.items():
                assert kib < 64 * 1024, f"{service} process {pid} grew by {kib} KiB"
            # Every client was held back: it got only as far as the buffers allow.
            assert max(pushed) < 64 * MiB
            record(
                f"send_without_reading_{service}",
                clients=len(sockets),
                pushed_mib_max=round(max(pushed) / MiB, 1),
                rss_growth_kib=list(growth.values()),
            )
        finally:
            for s in sockets:
                s.close()
        for proc in procs:
            out = proc.output
            assert "Traceback" not in out, out[out.find("Traceback") - 1500 :][:5000]
    finally:
        for proc in procs:
            proc.kill()


# -- PROXY headers ----------------------------------------------------------------------------

HEADER = b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\n"


@pytest_twisted.ensureDeferred
async def test_proxy_header_on_plain_tcp_is_just_data() -> None:
    """tcp-echo on a tcp: endpoint echoes a PROXY line as data and logs the real client."""
    proc = await start("tcp-echo", "--listen", LOOPBACK)
    try:
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn)
        conn.write(HEADER + b"data")
        await wait_for(lambda: got.data == HEADER + b"data")
        conn.close()
        await got.wait_closed()
        await proc.wait_output(r"tcp-echo connection from 127\.0\.0\.1:\d+ ended")
        assert "203.0.113.7" not in proc.output
    finally:
        proc.kill()


@pytest_twisted.ensureDeferred
async def test_proxy_header_on_haproxy_endpoint_is_trusted() -> None:
    """On a haproxy: endpoint the header is consumed and names the client, in and out of twistd."""
    proc = await start("tcp-echo", "--listen", "haproxy:" + LOOPBACK)
    server = txtcp.TcpServer.from_endpoint("haproxy:" + LOOPBACK)
    accepted: list[txtcp.TcpConnection] = []
    server.on("connect", accepted.append)
    await listening(server)
    try:
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn)
        conn.write(HEADER + b"data")
        await wait_for(lambda: got.data == b"data")
        conn.close()
        await got.wait_closed()
        await proc.wait_output(r"tcp-echo connection from 203\.0\.113\.7:4242 ended: 4 bytes")
        conn = await connect("127.0.0.1", server.port or 0)
        conn.write(HEADER + b"x")
        await wait_for(lambda: accepted)
        # A new connection is paused: the header is read once it is unpaused,
        # and names the client from the first data event on.
        inside = Collector(accepted[0])
        await wait_for(lambda: inside.data == b"x")
        assert accepted[0].remote_address == ("203.0.113.7", 4242)
        conn.close()
        await inside.wait_closed()
    finally:
        proc.kill()
        server.close()


@pytest_twisted.ensureDeferred
async def test_haproxy_endpoint_rejects_a_connection_without_header() -> None:
    """On a haproxy: endpoint a client that sends no valid header is closed, never echoed."""
    proc = await start("tcp-echo", "--listen", "haproxy:" + LOOPBACK)
    try:
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn)
        conn.write(b"GET / HTTP/1.0\r\n\r\n")
        await got.wait_closed()
        assert got.data == b""
        await echo_still_works(proc.port)
    finally:
        proc.kill()


async def echo_still_works(port: int) -> None:
    """A client with a valid header is still echoed on C{port}."""
    conn = await connect("127.0.0.1", port)
    got = Collector(conn)
    conn.write(HEADER + b"ok")
    await wait_for(lambda: got.data == b"ok")
    conn.close()
    await got.wait_closed()
