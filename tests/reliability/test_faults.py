"""
Faults, at every API layer (core, streams, handles, tcpsocket, components):
a peer that resets mid-stream (C{SO_LINGER} 0), a refused connection, a
connection that is never made (connect timeout), a name that does not
resolve, and TLS failures (untrusted CA, wrong host name, expired
certificate, client certificate required but missing).  Each gives the
layer's documented code; the process keeps serving other clients; the open
descriptor count returns to its baseline.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _helpers import (
    Collector,
    connect,
    fds_back_to,
    listening,
    open_fds,
    reactor,
    sleep,
    wait_for,
)
from _layers import EXPECTED, LAYERS, NAME_LAYERS, TLS_LAYERS, Outcome, serve_echo_once
from _rel import blackhole, fd_count, fds_settle, refused_port, reset_socket
from _twistd import start

import txtcp
from txtcp.core import ErrorKind
from txtcp.handles import _tcp as handles_tcp

ALL_LAYERS = list(LAYERS)


@pytest.fixture
def short_handle_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the handles layer's documented connect timeout (30 s) one second."""
    monkeypatch.setattr(handles_tcp, "CONNECT_TIMEOUT", 1.0)


@asynccontextmanager
async def bystander() -> AsyncIterator[txtcp.TcpServer]:
    """An echo server in this process that must keep serving while faults happen."""
    server = txtcp.TcpServer("127.0.0.1", 0)
    await serve_echo_once(server)
    try:
        yield server
    finally:
        server.close()


async def still_serving(server: txtcp.TcpServer) -> None:
    """A round trip through C{server} works."""
    conn = await connect("127.0.0.1", server.port or 0)
    got = Collector(conn)
    conn.write(b"still here")
    await wait_for(lambda: got.data == b"still here")
    conn.close()
    await got.wait_closed()


async def check(layer: str, kind: ErrorKind | None, outcome: Outcome, connected: bool) -> None:
    """C{outcome} is what C{layer} documents for C{kind}."""
    assert outcome.connected is connected, outcome
    expected = EXPECTED[layer][kind] if kind is not None else None
    assert outcome.failure == expected, (layer, kind, outcome.failure)


async def run_fault(
    layer: str, host: str, port: int, kind: ErrorKind, *, connected: bool, **kwargs: Any
) -> Outcome:
    """Run C{layer}'s client into a fault; check the code, the bystander, the fds."""
    async with bystander() as other:
        await still_serving(other)
        baseline = open_fds()
        outcome = await LAYERS[layer](host, port, **kwargs)
        await check(layer, kind, outcome, connected)
        await still_serving(other)
        assert await fds_back_to(baseline) <= baseline
    return outcome


# -- plain TCP faults --------------------------------------------------------------


@pytest.mark.parametrize("layer", ALL_LAYERS)
@pytest_twisted.ensureDeferred
async def test_refused(layer: str) -> None:
    """A refused connection gives the layer's 'refused' code."""
    with refused_port() as port:
        await run_fault(layer, "127.0.0.1", port, ErrorKind.REFUSED, connected=False)


@pytest.mark.parametrize("layer", ALL_LAYERS)
@pytest_twisted.ensureDeferred
async def test_connect_timeout(layer: str, short_handle_timeout: None) -> None:
    """A connection the peer never completes gives the layer's 'timed out' code."""
    with blackhole() as port:
        await run_fault(layer, "127.0.0.1", port, ErrorKind.TIMEOUT, connected=False, timeout=1.0)


@pytest.mark.parametrize("layer", NAME_LAYERS)
@pytest_twisted.ensureDeferred
async def test_name_does_not_resolve(layer: str) -> None:
    """A *.invalid name gives the layer's 'host not found' code."""
    await run_fault(layer, "nothing.invalid", 80, ErrorKind.HOST_NOT_FOUND, connected=False)


@pytest.mark.parametrize("layer", ALL_LAYERS)
@pytest_twisted.ensureDeferred
async def test_peer_resets_mid_stream(layer: str) -> None:
    """A peer that sends, then resets (SO_LINGER 0), gives the layer's 'reset' code."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    sent = b"x" * 65536

    def on_connect(conn: txtcp.TcpConnection) -> None:
        conn.write(sent)

        def reset() -> None:
            if not conn.closed:
                reset_socket(conn.fileno())
                conn.abort()

        reactor.callLater(0.3, reset)

    server.on("connect", on_connect)
    try:
        outcome = await run_fault(
            layer, "127.0.0.1", server.port or 0, ErrorKind.RESET, connected=True
        )
        assert sent.startswith(outcome.data)
    finally:
        server.close()


# -- TLS faults ----------------------------------------------------------------------


@contextmanager
def leaf(certs: Any, tmp_path: Path, name: str, *identities: str, **kw: Any) -> Iterator[str]:
    """A key-and-chain PEM file for C{identities}, issued by the test CA."""
    cert = certs.ca.issue_cert(*identities, **kw)
    path = tmp_path / f"{name}.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(path))
    yield str(path)


async def tls_server(certificate: str, **kwargs: Any) -> txtcp.TlsServer:
    """A TLS server on 127.0.0.1 that greets each client."""
    server = txtcp.TlsServer("127.0.0.1", 0, certificate=certificate, **kwargs)

    def on_connect(conn: txtcp.TcpConnection) -> None:
        conn.on("error", lambda exc: None)
        conn.write(b"hello")
        conn.pause(False)

    server.on("connect", on_connect)
    return await listening(server)


def _tls_case(certs: Any, tmp_path: Path, case: str) -> tuple[str, str, dict[str, Any]]:
    """The server certificate, the client's trust root, and server options for C{case}."""
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    if case == "untrusted CA":
        return certs.server_path, certs.other_ca_path, {}
    if case == "wrong host name":
        with leaf(certs, tmp_path, "wrong", "wrong.example") as path:
            return path, certs.ca_path, {}
    if case == "expired certificate":
        with leaf(
            certs,
            tmp_path,
            "expired",
            "localhost",
            "127.0.0.1",
            not_before=past - datetime.timedelta(days=30),
            not_after=past,
        ) as path:
            return path, certs.ca_path, {}
    assert case == "client certificate missing"
    return (
        certs.server_path,
        certs.ca_path,
        {"require_client_certificate": True, "trust_root": certs.ca_path},
    )


TLS_CASES = ["untrusted CA", "wrong host name", "expired certificate", "client certificate missing"]


@pytest.mark.parametrize("case", TLS_CASES)
@pytest.mark.parametrize("layer", TLS_LAYERS)
@pytest_twisted.ensureDeferred
async def test_tls_failure(layer: str, case: str, certs: Any, tmp_path: Path) -> None:
    """Each TLS failure gives the layer's 'TLS failed' code, and no byte of the server's."""
    certificate, trust_root, options = _tls_case(certs, tmp_path, case)
    server = await tls_server(certificate, **options)
    try:
        outcome = await run_fault(
            layer,
            "127.0.0.1",
            server.port or 0,
            ErrorKind.TLS,
            connected=outcome_connected(layer, case),
            trust_root=trust_root,
        )
        assert outcome.data == b""
    finally:
        server.close()


def outcome_connected(layer: str, case: str) -> bool:
    """Whether C{layer} reports a connection before the TLS failure in C{case}."""
    if layer == "core":
        # TcpClient's connect comes with the TCP connection; TLS follows.
        return True
    if layer == "components":
        # TCPClient connects in plain TCP, then makessl upgrades it.
        return True
    # TLS 1.3: the client finishes its handshake before the server checks
    # for a certificate; the server's alert comes after.
    return case == "client certificate missing"


# -- the services: real twistd processes ---------------------------------------------

LOOPBACK = "tcp:0:interface=127.0.0.1"


async def ends_within(conn: txtcp.TcpConnection, timeout: float) -> Collector:
    """Collect C{conn} until it closes (within C{timeout})."""
    got = Collector(conn)
    await got.wait_closed(timeout)
    return got


@pytest_twisted.ensureDeferred
async def test_echo_survives_a_reset_mid_stream() -> None:
    """tcp-echo logs a client's reset, keeps serving, and its fd count returns to baseline."""
    echo = await start("tcp-echo", "--listen", LOOPBACK)
    try:
        await echo_round_trip(echo.port)
        baseline = fd_count(echo.proc.pid)
        conn = await connect("127.0.0.1", echo.port)
        got = Collector(conn)
        conn.write(b"y" * 300_000)
        await wait_for(lambda: got.size > 0)
        reset_socket(conn.fileno())
        conn.abort()
        await got.wait_closed()
        await echo.wait_output(r"ended: \d+ bytes echoed, [0-9.]+ s, error: connection reset")
        await echo_round_trip(echo.port)
        assert await fds_settle(echo.proc.pid, baseline) <= baseline
        assert "Traceback" not in echo.output
    finally:
        echo.kill()


async def echo_round_trip(port: int) -> None:
    """A round trip through an echo at C{port} (directly or through a proxy)."""
    conn = await connect("127.0.0.1", port)
    got = Collector(conn)
    conn.write(b"ping")
    await wait_for(lambda: got.data == b"ping")
    conn.close()
    await got.wait_closed()


async def proxy_fault(connect_to: str, *args: str, cause: str, timeout: float = 10.0) -> None:
    """
    A tcp-proxy to C{connect_to} closes a client whose upstream fails, logs
    C{cause}, does the same for the next client, and returns to its fd baseline.
    """
    proxy = await start("tcp-proxy", "--listen", LOOPBACK, "--connect", connect_to, *args)
    try:
        baseline = fd_count(proxy.proc.pid)
        for attempt in range(1, 3):
            conn = await connect("127.0.0.1", proxy.port)
            conn.write(b"hello?")
            got = await ends_within(conn, timeout)
            assert got.data == b""
            # The proxy closes it with "hello?" unread: an end, or a reset.
            assert got.events[-1] == "close"
            ended = proxy.output.count(cause)
            await wait_for(lambda n=attempt: proxy.output.count(cause) >= n)
            assert ended <= attempt
        assert await fds_settle(proxy.proc.pid, baseline) <= baseline
        assert "Traceback" not in proxy.output
    finally:
        proxy.kill()


@pytest_twisted.ensureDeferred
async def test_proxy_upstream_refused() -> None:
    """An upstream that refuses: the client is closed and the cause logged, every time."""
    with refused_port() as port:
        await proxy_fault(
            f"tcp:host=127.0.0.1:port={port}", cause="upstream connect failed: ECONNREFUSED"
        )


@pytest_twisted.ensureDeferred
async def test_proxy_upstream_connect_timeout() -> None:
    """An upstream that never completes the connection: closed after --connect-timeout."""
    with blackhole() as port:
        await proxy_fault(
            f"tcp:host=127.0.0.1:port={port}",
            "--connect-timeout",
            "1",
            cause="upstream connect failed: ETIMEDOUT",
        )


@pytest_twisted.ensureDeferred
async def test_proxy_upstream_name_does_not_resolve() -> None:
    """An upstream name that does not resolve: closed, 'host not found' logged."""
    await proxy_fault(
        "tcp:host=nothing.invalid:port=80", cause="upstream connect failed: host not found"
    )


@pytest_twisted.ensureDeferred
async def test_proxy_upstream_tls_untrusted(certs: Any, tmp_path: Path) -> None:
    """A TLS upstream whose certificate is not trusted: closed, TLS failure logged."""
    server = await tls_server(certs.server_path)
    (tmp_path / "other-ca.pem").write_bytes(Path(certs.other_ca_path).read_bytes())
    try:
        await proxy_fault(
            f"tls:host=localhost:port={server.port}:trustRoots={tmp_path}",
            cause="upstream error: TLS failure",
        )
    finally:
        server.close()


@pytest_twisted.ensureDeferred
async def test_proxy_idle_timeouts_silent_upstream_and_vanished_client() -> None:
    """An upstream that never answers and a client that goes silent are closed by --idle-timeout;
    an active client meanwhile is served."""
    silent = await listening(txtcp.TcpServer("127.0.0.1", 0))
    held: list[txtcp.TcpConnection] = []
    silent.on("connect", held.append)
    echo = await start("tcp-echo", "--listen", LOOPBACK)
    quiet = await start(
        "tcp-proxy",
        "--listen",
        LOOPBACK,
        "--connect",
        f"tcp:host=127.0.0.1:port={silent.port}",
        "--idle-timeout",
        "1",
    )
    busy = await start(
        "tcp-proxy",
        "--listen",
        LOOPBACK,
        "--connect",
        f"tcp:host=127.0.0.1:port={echo.port}",
        "--idle-timeout",
        "1",
    )
    try:
        base_quiet = fd_count(quiet.proc.pid)
        base_busy = fd_count(busy.proc.pid)
        # An upstream that accepts and never answers.
        asker = await connect("127.0.0.1", quiet.port)
        asker.write(b"anyone there?")
        # A client that sends once, then vanishes (stays silent, never closes).
        vanished = await connect("127.0.0.1", busy.port)
        vanished.write(b"bye")
        # A client that keeps talking for longer than the timeout.
        active = await connect("127.0.0.1", busy.port)
        active_got = Collector(active)
        vanished_got = Collector(vanished)
        asker_got = Collector(asker)
        for i in range(12):
            active.write(b"%d" % i)
            await wait_for(lambda i=i: active_got.data.endswith(b"%d" % i))
            await sleep(0.2)
        assert active_got.events == ["data"]
        await asker_got.wait_closed(5)
        await vanished_got.wait_closed(5)
        assert vanished_got.data == b"bye"
        assert asker_got.data == b""
        await quiet.wait_output(
            r"ended: 13 bytes up, 0 bytes down, [0-9.]+ s, idle timeout \(1 s\)"
        )
        await busy.wait_output(r"ended: 3 bytes up, 3 bytes down, [0-9.]+ s, idle timeout \(1 s\)")
        active.close()
        await active_got.wait_closed()
        assert await fds_settle(quiet.proc.pid, base_quiet) <= base_quiet
        assert await fds_settle(busy.proc.pid, base_busy) <= base_busy
    finally:
        for proc in (quiet, busy, echo):
            proc.kill()
        silent.close()
        for conn in held:
            conn.abort()
