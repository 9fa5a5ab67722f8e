"""TLS: TlsClient / TlsServer with a test CA, verification failures, start_tls."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _helpers import Collector, listening, pair, wait_event, wait_for
from conftest import Certs
from OpenSSL.SSL import Error as OpenSSLError
from service_identity.exceptions import VerificationError

import txtcp
from txtcp import ErrorKind, UnsupportedOperationError, error_info


async def tls_pair(
    certs: Certs, host: str = "127.0.0.1", **client_kw: Any
) -> tuple[txtcp.TlsServer, txtcp.TcpConnection, txtcp.TcpConnection]:
    server = await listening(txtcp.TlsServer(host, 0, certificate=certs.server_path))
    accepted = wait_event(server, "connect")
    client = txtcp.TlsClient(trust_root=client_kw.pop("trust_root", certs.ca_path))
    connected = wait_event(client, "connect")
    client.connect(client_kw.pop("connect_host", host), server.port or 0)
    (c,) = await connected
    (s,) = await accepted
    return server, c, s


@pytest_twisted.ensureDeferred
async def test_tls_round_trip(certs: Certs) -> None:
    """A verified TLS connection carries 4 MiB both ways; tls fires on both ends."""
    server, c, s = await tls_pair(certs, connect_host="localhost")
    c_tls, s_tls = wait_event(c, "tls"), wait_event(s, "tls")
    s.on("data", s.write)
    got = Collector(c)
    Collector(s)
    payload = os.urandom(4 << 20)
    c.write(payload)
    await c_tls
    await s_tls
    assert c.tls and s.tls
    await wait_for(lambda: got.size == len(payload))
    assert hashlib.sha256(got.data).digest() == hashlib.sha256(payload).digest()
    c.close()
    await got.wait_closed()
    assert got.events == ["data", "close"]
    server.close()


@pytest_twisted.ensureDeferred
async def test_tls_ipv6(certs: Certs) -> None:
    """TLS over ::1 verifies the IP address in the certificate."""
    server, c, s = await tls_pair(certs, host="::1")
    s.on("data", s.write)
    Collector(s)
    got = Collector(c)
    c.write(b"v6")
    await wait_for(lambda: got.data == b"v6")
    c.close()
    server.close()


@pytest.mark.parametrize(
    ("case", "kw"),
    [
        ("untrusted", {"trust_root": "other"}),
        ("hostname mismatch", {"connect_host": "localhost.", "hostname": "example.com"}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_verification_failures(certs: Certs, case: str, kw: dict[str, Any]) -> None:
    """An untrusted CA or a wrong host name: error then close, no tls, nothing sent."""
    server = await listening(txtcp.TlsServer("127.0.0.1", 0, certificate=certs.server_path))
    accepted = wait_event(server, "connect")
    trust = certs.other_ca_path if kw.get("trust_root") == "other" else certs.ca_path
    client = txtcp.TlsClient(trust_root=trust)
    connected = wait_event(client, "connect")
    if "hostname" in kw:
        client.connect_endpoint(f"tcp:host=127.0.0.1:port={server.port}", hostname=kw["hostname"])
    else:
        client.connect("127.0.0.1", server.port or 0)
    (c,) = await connected
    (s,) = await accepted
    srv = Collector(s)
    got = Collector(c)
    c.on("tls", lambda: got.events.append("tls"))
    c.write(b"secret")
    await got.wait_closed()
    await srv.wait_closed()
    assert got.events == ["error", "close"]
    assert isinstance(got.error, (VerificationError, OpenSSLError))
    assert error_info(got.error).kind is ErrorKind.TLS
    assert error_info(got.error).qt_code == 13
    assert srv.data == b""
    server.close()


@pytest_twisted.ensureDeferred
async def test_client_certificate_required(certs: Certs) -> None:
    """A server that requires a client certificate rejects a client without one."""
    server = await listening(
        txtcp.TlsServer(
            "127.0.0.1",
            0,
            certificate=certs.cert_path,
            private_key=certs.key_path,
            trust_root=certs.ca_path,
            require_client_certificate=True,
        )
    )
    accepted = wait_event(server, "connect")
    client = txtcp.TlsClient(trust_root=certs.ca_path)
    connected = wait_event(client, "connect")
    client.connect("127.0.0.1", server.port or 0)
    (c,) = await connected
    (s,) = await accepted
    srv, got = Collector(s), Collector(c)
    c.write(b"hello")
    await srv.wait_closed()
    await got.wait_closed()
    assert srv.events[-2:] == ["error", "close"]
    assert error_info(srv.error or Exception()).kind is ErrorKind.TLS
    assert srv.data == b""
    server.close()


@pytest_twisted.ensureDeferred
async def test_start_tls_both_sides(certs: Certs) -> None:
    """A plain connection upgraded with start_tls on both ends (STARTTLS)."""
    server, c, s = await pair(connect_host="localhost")
    srv, cli = Collector(s), Collector(c)
    steps: list[str] = []

    def server_data(data: bytes) -> None:
        if data == b"STARTTLS\r\n":
            s.write(b"GO\r\n")
            s.start_tls(server=True, certificate=certs.server_path)
            s.on("tls", lambda: steps.append("server tls"))
        else:
            s.write(b"secure echo: " + data)

    s.on("data", server_data)

    def client_data(data: bytes) -> None:
        if data == b"GO\r\n":
            c.start_tls(trust_root=certs.ca_path)
            c.on("tls", lambda: steps.append("client tls"))
            c.write(b"over tls")

    c.on("data", client_data)
    c.write(b"STARTTLS\r\n")
    await wait_for(lambda: cli.data.endswith(b"secure echo: over tls"))
    assert sorted(steps) == ["client tls", "server tls"]
    assert c.tls and s.tls
    with pytest.raises(txtcp.TxtcpError, match="already"):
        c.start_tls()
    with pytest.raises(UnsupportedOperationError):
        c.shutdown()
    c.close()
    await cli.wait_closed()
    await srv.wait_closed()
    server.close()


@pytest_twisted.ensureDeferred
async def test_start_tls_wrong_host(certs: Certs) -> None:
    """start_tls verifies the host the client connected to by default."""
    server, c, s = await pair()
    srv, cli = Collector(s), Collector(c)
    s.start_tls(server=True, certificate=certs.server_path)
    c.start_tls(trust_root=certs.ca_path, hostname="wrong.example")
    await cli.wait_closed()
    assert cli.events == ["error", "close"]
    assert isinstance(cli.error, VerificationError)
    await srv.wait_closed()
    server.close()


@pytest_twisted.ensureDeferred
async def test_start_tls_bad_arguments(certs: Certs) -> None:
    """start_tls without its required settings raises before changing anything."""
    server, c, s = await pair()
    with pytest.raises(ValueError, match="certificate"):
        s.start_tls(server=True)
    with pytest.raises(ValueError, match="hostname"):
        s.start_tls()
    with pytest.raises(TypeError):
        c.start_tls(trust_root=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.start_tls(hostname=b"x")  # type: ignore[arg-type]
    assert not c.tls and not s.tls
    cli, srv = Collector(c), Collector(s)
    c.write(b"still plain")
    await wait_for(lambda: srv.data == b"still plain")
    c.close()
    await cli.wait_closed()
    server.close()


def test_bad_tls_settings(certs: Certs, tmp_path: Any) -> None:
    """Bad certificates and trust roots raise at construction."""
    with pytest.raises(TypeError):
        txtcp.TlsClient(trust_root=42)  # type: ignore[arg-type]
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here")
    with pytest.raises(ValueError, match="no PEM certificate"):
        txtcp.TlsClient(trust_root=str(empty))
    with pytest.raises(FileNotFoundError):
        txtcp.TlsClient(trust_root=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="could not load"):
        txtcp.TlsServer("127.0.0.1", 0, certificate=certs.ca_path)
    with pytest.raises(TypeError):
        txtcp.TlsServer("127.0.0.1", 0, certificate=42)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_tls_endpoint_string(certs: Certs, tmp_path: Any) -> None:
    """A TlsServer from an endpoint string, and a client through a tls: endpoint string."""
    server = await listening(
        txtcp.TlsServer.from_endpoint("tcp:0:interface=127.0.0.1", certificate=certs.server_path)
    )
    client = txtcp.TcpClient()
    connected = wait_event(client, "connect")
    ca_dir = tmp_path / "roots"
    ca_dir.mkdir()
    (ca_dir / "ca.pem").write_bytes(Path(certs.ca_path).read_bytes())
    client.connect_endpoint(f"tls:localhost:{server.port}:trustRoots={ca_dir}")
    (c,) = await connected
    tls = wait_event(c, "tls")
    got = Collector(c)
    await tls
    assert c.tls
    c.close()
    await got.wait_closed()
    server.close()


@pytest_twisted.ensureDeferred
async def test_tls_pause_queues_decrypted_records(certs: Certs) -> None:
    """A reader that pauses in every data event gets no data while paused, over
    TLS too (records already decrypted are queued), and every byte in order."""
    from _helpers import reactor

    server, c, s = await tls_pair(certs)
    payload = os.urandom(8 << 20)
    state = {"paused": False, "while_paused": 0}
    received = hashlib.sha256()
    size = [0]

    def on_data(data: bytes) -> None:
        if state["paused"]:
            state["while_paused"] += 1
        received.update(data)
        size[0] += len(data)
        state["paused"] = True
        s.pause(True)

        def resume() -> None:
            state["paused"] = False
            s.pause(False)

        reactor.callLater(0, resume)

    s.on("data", on_data)
    closed = wait_event(s, "close", timeout=60)
    s.pause(False)
    c.write(payload)
    c.close()
    await closed
    assert size[0] == len(payload)
    assert received.digest() == hashlib.sha256(payload).digest()
    assert state["while_paused"] == 0
    server.close()
