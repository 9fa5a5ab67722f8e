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
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, connect, listening, sleep, wait_for
from _layers import EXPECTED, LAYERS, TLS_LAYERS, serve_echo_once
from _rel import MiB, fd_count, fds_settle, record, status_kib
from _twistd import Twistd, start
from test_faults import tls_server
from twisted.internet.defer import Deferred
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


@contextlib.asynccontextmanager
async def greeting_tls_server(certs: Any) -> AsyncIterator[int]:
    """A TLS server with the test CA's certificate that greets each client;
    yields its port, and closes it on leaving."""
    server = await tls_server(certs.server_path)
    try:
        assert server.port is not None
        yield server.port
    finally:
        server.close()


def connecting(endpoint: Any) -> list[txtcp.TcpConnection]:
    """Start a TcpClient connecting to C{endpoint}; return the list its connection will join."""
    client = txtcp.TcpClient()
    conns: list[txtcp.TcpConnection] = []
    client.once("connect", conns.append)
    client.connect_endpoint(endpoint)
    return conns


# -- TLS clients verify by default ----------------------------------------------------


@pytest.mark.parametrize("layer", TLS_LAYERS)
@pytest_twisted.ensureDeferred
async def test_tls_clients_verify_by_default(layer: str, certs: Any) -> None:
    """With no trust root given, a server signed by an unknown CA is refused at every layer."""
    async with greeting_tls_server(certs) as port:
        outcome = await LAYERS[layer]("127.0.0.1", port, tls=True)
        assert outcome.failure == EXPECTED[layer][ErrorKind.TLS]
        assert outcome.data == b""


@pytest_twisted.ensureDeferred
async def test_not_verifying_must_be_explicit_and_logs_a_warning(certs: Any) -> None:
    """client_options(verify=False) is the one way not to verify, and it logs a warning."""
    async with greeting_tls_server(certs) as port:
        with captured_warnings() as warnings:
            options = client_options("localhost", verify=False)
        assert any("without certificate verification" in w for w in warnings), warnings
        from _helpers import reactor

        conns = connecting(wrapClientTLS(options, HostnameEndpoint(reactor, "127.0.0.1", port)))
        await wait_for(lambda: conns)
        got = Collector(conns[0])
        await wait_for(lambda: got.data == b"hello")
        conns[0].close()
        await got.wait_closed()


@pytest_twisted.ensureDeferred
async def test_ssl_endpoint_strings_log_that_the_server_is_not_verified(certs: Any) -> None:
    """An ssl: client string (no host name check in Twisted) logs a warning naming tls:."""
    async with greeting_tls_server(certs) as port:
        with captured_warnings() as warnings:
            conns = connecting(f"ssl:host=localhost:port={port}")
        assert any("without host name verification" in w and "tls:" in w for w in warnings)
        await wait_for(lambda: conns)
        conns[0].abort()
        with captured_warnings() as warnings:
            txtcp.TcpClient().connect_endpoint(f"tls:host=localhost:port={port}")
        assert warnings == []


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


@contextlib.contextmanager
def old_tls_listener(certs: Any) -> Iterator[tuple[int, Deferred[str]]]:
    """
    A listener on 127.0.0.1 whose one connection is served, in a thread, by
    a stdlib TLS server limited to TLS 1.1 (see L{_serve_once}); yields its
    port and a Deferred of that server's result.
    """
    ctx = _old_tls_context(True)
    ctx.load_cert_chain(certs.server_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        served: Deferred[str] = deferToThread(_serve_once, listener, ctx)
        yield listener.getsockname()[1], served


@pytest_twisted.ensureDeferred
async def test_old_tls_is_possible_on_this_machine(certs: Any) -> None:
    """The stdlib TLS 1.1 client and server of these tests do reach TLS 1.1 together."""
    with old_tls_listener(certs) as (port, served):
        client = await deferToThread(_handshake, port, _old_tls_context(False))
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
    async with greeting_tls_server(certs) as port:
        old = await deferToThread(_handshake, port, _old_tls_context(False))
        assert old.startswith("failed"), old
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ok = await deferToThread(_handshake, port, ctx)
        assert ok == "version TLSv1.2"


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
    with old_tls_listener(certs) as (port, served):
        outcome = await LAYERS["core"]("127.0.0.1", port, trust_root=certs.ca_path)
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


async def start_proxy_to(port: int, *args: str) -> Twistd:
    """A real twistd tcp-proxy on 127.0.0.1 port 0 to 127.0.0.1:C{port}, with C{args}."""
    return await start(
        "tcp-proxy", "--listen", LOOPBACK, "--connect", f"tcp:host=127.0.0.1:port={port}", *args
    )


@contextlib.asynccontextmanager
async def proxy_to_upstream(
    *args: str, echo: bool = False
) -> AsyncIterator[tuple[Twistd, list[txtcp.TcpConnection]]]:
    """
    An upstream server in this process (echoing if C{echo}) and a real
    twistd tcp-proxy to it started with C{args}; yields the proxy and the
    upstream's accepted connections, in order.  On leaving, the proxy is
    killed, the upstream closed and its connections aborted.
    """
    up = await listening(txtcp.TcpServer("127.0.0.1", 0))
    accepted: list[txtcp.TcpConnection] = []
    up.on("connect", accepted.append)
    try:
        if echo:
            await serve_echo_once(up)
        proc = await start_proxy_to(up.port or 0, *args)
        try:
            yield proc, accepted
        finally:
            proc.kill()
    finally:
        up.close()
        for conn in accepted:
            conn.abort()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_max_connections_holds_against_a_flood() -> None:
    """With --max-connections 5, 200 clients at once get 5 served pairs; the rest are closed."""
    async with proxy_to_upstream("--max-connections", "5", echo=True) as (proc, upstream_conns):
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


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_idle_timeout_holds_against_slowloris() -> None:
    """With --idle-timeout 1, 300 clients that never send are all closed within seconds."""
    async with proxy_to_upstream("--idle-timeout", "1") as (proc, _):
        baseline = fd_count(proc.proc.pid)
        collectors = [Collector(await connect("127.0.0.1", proc.port)) for _ in range(300)]
        await wait_for(lambda: all(c.conn.closed for c in collectors), 10)
        assert all(c.events == ["end", "close"] for c in collectors)
        await wait_for(lambda: proc.output.count("idle timeout (1 s)") >= 300)
        assert proc.output.count("idle timeout (1 s)") == 300
        assert await fds_settle(proc.proc.pid, baseline) <= baseline


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
            target = await start_proxy_to(echo_proc.port)
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
        await echoes(proc.port, HEADER + b"data", HEADER + b"data")
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
        await echoes(proc.port, HEADER + b"data", b"data")
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
        # A client with a valid header is still echoed.
        await echoes(proc.port, HEADER + b"ok", b"ok")
    finally:
        proc.kill()


async def echoes(port: int, sent: bytes, expected: bytes) -> None:
    """Send C{sent} to 127.0.0.1:C{port}, wait to read back C{expected}, then close."""
    conn = await connect("127.0.0.1", port)
    got = Collector(conn)
    conn.write(sent)
    await wait_for(lambda: got.data == expected)
    conn.close()
    await got.wait_closed()
