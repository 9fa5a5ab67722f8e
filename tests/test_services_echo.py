"""
The tcp-echo service: options, the dropin, and real C{twistd -n tcp-echo}
processes talked to over loopback.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from _helpers import (
    Collector,
    accept_queue_room,
    connect,
    logged,
    port_in_use,
    queued_connects,
    sleep,
    wait_for,
)
from _twistd import ROOT, Twistd, run_twistd, start
from twisted.application.service import IServiceMaker, MultiService
from twisted.logger import LogEvent, LogLevel, formatEvent
from twisted.plugin import IPlugin, getPlugins
from twisted.python.usage import UsageError
from zope.interface.verify import verifyObject

import txtcp
from txtcp.services import echo

EXAMPLES = ROOT / "docs" / "examples"


def test_plugins_provide_both_services() -> None:
    """The dropin holds exactly two service makers, tcp-echo and tcp-proxy."""
    import twisted.plugins.txtcp_plugins as dropin

    makers = [dropin.tcp_echo, dropin.tcp_proxy]
    for maker in makers:
        assert verifyObject(IPlugin, maker)
        assert verifyObject(IServiceMaker, maker)
    assert [m.tapname for m in makers] == ["tcp-echo", "tcp-proxy"]
    assert [m.module for m in makers] == ["txtcp.services.echo", "txtcp.services.proxy"]
    found = {m.tapname for m in getPlugins(IServiceMaker)}
    assert {"tcp-echo", "tcp-proxy"} <= found
    assert dropin.tcp_echo.options is echo.Options
    assert dropin.tcp_echo.makeService is echo.makeService


def test_twistd_help_lists_both_services() -> None:
    """C{twistd --help} lists tcp-echo and tcp-proxy among its commands."""
    result = run_twistd("--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:1] == ["tcp-echo"] for line in lines), result.stdout
    assert any(line.split()[:1] == ["tcp-proxy"] for line in lines), result.stdout


def test_options_default_to_loopback() -> None:
    """Without --listen, tcp-echo listens on 127.0.0.1:8007 only."""
    options = echo.Options()
    options.parseOptions([])
    assert options["listen"] == ["tcp:8007:interface=127.0.0.1"]


def test_options_listen_repeats() -> None:
    """--listen may be given several times; each endpoint is kept in order."""
    options = echo.Options()
    options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--listen", "unix:/tmp/x"])
    assert options["listen"] == ["tcp:0:interface=127.0.0.1", "unix:/tmp/x"]


def test_options_bad_listen_is_a_usage_error() -> None:
    """An unparsable --listen raises UsageError naming the value."""
    with pytest.raises(UsageError, match="nonsense:foo"):
        echo.Options().parseOptions(["--listen", "nonsense:foo"])
    with pytest.raises(UsageError, match="tcp:notaport"):
        echo.Options().parseOptions(["--listen", "tcp:notaport"])


def test_builder_rejects_bad_arguments() -> None:
    """echo_service raises TypeError/ValueError at the call for bad arguments."""
    with pytest.raises(TypeError, match="sequence of endpoint strings"):
        echo.echo_service("tcp:0")
    with pytest.raises(TypeError, match="endpoint strings"):
        echo.echo_service([8007])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        echo.echo_service([])
    with pytest.raises(ValueError, match="nonsense"):
        echo.echo_service(["nonsense:1"])


def test_make_service_builds_one_listener_per_endpoint() -> None:
    """makeService gives a MultiService with one listener per --listen."""
    options = echo.Options()
    options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0"])
    service = echo.makeService(options)
    assert isinstance(service, MultiService)
    assert [child.description for child in service.listeners] == [
        "tcp:0:interface=127.0.0.1",
        "tcp:0",
    ]
    assert not service.running


def test_bad_option_exits_with_usage_and_no_traceback() -> None:
    """twistd tcp-echo with a bad --listen prints usage, exits non-zero, no traceback."""
    result = run_twistd("--pidfile=", "-n", "tcp-echo", "--listen", "nonsense:foo")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Usage:" in out
    assert "nonsense:foo" in out
    assert "Traceback" not in out


@pytest_twisted.ensureDeferred
async def test_in_application_round_trip() -> None:
    """echo_service, started in-process, echoes bytes and stops cleanly."""
    service = echo.echo_service(["tcp:0:interface=127.0.0.1"])
    service.startService()
    host, port = await service.listeners[0].when_listening()
    conn = await connect(host, port)
    got = Collector(conn)
    conn.write(b"ping")
    await wait_for(lambda: got.data == b"ping")
    await service.stopService()
    await got.wait_closed()
    assert got.events == ["data", "end", "close"]
    assert service.open_connections == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's backlog accounting")
@pytest_twisted.ensureDeferred
async def test_burst_of_connects_is_queued() -> None:
    """
    A real twistd tcp-echo that is not accepting (stopped) still has 100
    connects queued by the kernel: it listens with a backlog of 511, not
    Twisted's 50.
    """
    proc = await start("tcp-echo", "--listen", "tcp:0:interface=127.0.0.1")
    try:
        proc.proc.send_signal(signal.SIGSTOP)
        try:
            assert queued_connects(proc.port, 100) == min(100, accept_queue_room(511))
        finally:
            proc.proc.send_signal(signal.SIGCONT)
        # Each is served once the process runs again: the client has closed it.
        await wait_for(lambda: proc.output.count(" ended: ") >= min(100, accept_queue_room(511)))
    finally:
        proc.kill()


@pytest_twisted.ensureDeferred
async def test_round_trip() -> None:
    """A real twistd tcp-echo echoes a small message and 4 MiB, checked by hash."""
    proc = await start("tcp-echo", "--listen", "tcp:0:interface=127.0.0.1")
    try:
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn)
        conn.write(b"hello")
        await wait_for(lambda: got.data == b"hello")
        blob = os.urandom(4 * 1024 * 1024)
        conn.write(blob)
        await wait_for(lambda: got.size == len(blob) + 5)
        assert hashlib.sha256(got.data[5:]).hexdigest() == hashlib.sha256(blob).hexdigest()
        conn.close()
        await got.wait_closed()
        await proc.wait_output(r"tcp-echo connection from 127\.0\.0\.1:\d+ ended: 4194309 bytes")
    finally:
        proc.kill()


@pytest_twisted.ensureDeferred
async def test_half_close_echoes_the_rest_then_closes() -> None:
    """After the client's write shutdown, the rest is echoed, then the server closes."""
    proc = await start("tcp-echo", "--listen", "tcp:0:interface=127.0.0.1")
    try:
        conn = await connect("127.0.0.1", proc.port)
        conn.allow_half_open = True
        got = Collector(conn)
        blob = os.urandom(1024 * 1024)
        conn.write(blob)
        conn.shutdown()
        await got.wait_closed()
        assert got.events == ["data", "end", "close"]
        assert hashlib.sha256(got.data).digest() == hashlib.sha256(blob).digest()
    finally:
        proc.kill()


@pytest_twisted.ensureDeferred
async def test_client_that_does_not_read_is_not_buffered_without_bound() -> None:
    """A client that sends 48 MiB but does not read leaves the server's memory bounded."""
    proc = await start("tcp-echo", "--listen", "tcp:0:interface=127.0.0.1")
    try:
        conn = await connect("127.0.0.1", proc.port)
        got = Collector(conn, unpause=False)
        await sleep(0.2)
        baseline = proc.rss_kib()
        blob = os.urandom(48 * 1024 * 1024)
        conn.write(blob)
        # The server stops reading once its echo cannot be sent: most of the
        # data stays in this process's write buffer.
        previous = -1
        for _ in range(50):
            await sleep(0.1)
            now = conn.write_queue_size
            if now == previous:
                break
            previous = now
        assert conn.write_queue_size > 24 * 1024 * 1024
        grown = proc.rss_kib() - baseline
        assert grown < 16 * 1024, f"server grew by {grown} KiB"
        conn.pause(False)
        await wait_for(lambda: got.size == len(blob), timeout=30)
        assert hashlib.sha256(got.data).digest() == hashlib.sha256(blob).digest()
        conn.close()
        await got.wait_closed()
    finally:
        proc.kill()


@pytest_twisted.ensureDeferred
async def test_sigterm_stops_listening_and_closes_connections() -> None:
    """SIGTERM closes open connections on every listener, logs it, and ends as twistd does."""
    proc = await start(
        "tcp-echo",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        r"tcp6:0:interface=\:\:1",
        listen=2,
    )
    try:
        assert len(proc.ports) == 2
        collectors = []
        for i in range(10):
            host, port = ("127.0.0.1", proc.ports[0]) if i % 2 else ("::1", proc.ports[1])
            conn = await connect(host, port)
            got = Collector(conn)
            conn.write(b"x")
            await wait_for(lambda got=got: got.data == b"x")
            collectors.append(got)
        proc.proc.send_signal(signal.SIGTERM)
        for got in collectors:
            await got.wait_closed(timeout=5)
            assert got.events == ["data", "end", "close"]
        status = await proc.wait_exit(timeout=5)
        assert status == -signal.SIGTERM
        out = proc.output
        assert "closing 10 open connections" in out
        assert "tcp-echo stopped" in out
        assert "Main loop terminated." in out
        assert "Traceback" not in out
        client = txtcp.TcpClient()
        errors = []
        client.on("connect_error", lambda t, e: errors.append(e))
        client.connect("127.0.0.1", proc.ports[0])
        await wait_for(lambda: errors)
    finally:
        proc.kill()


@pytest_twisted.ensureDeferred
async def test_listen_failure_is_logged_and_stops_twistd() -> None:
    """A --listen on a port in use: the cause is logged at critical level, twistd exits with
    status 1 before its reactor runs, and the other endpoint is not left listening."""
    with port_in_use() as port:
        proc = Twistd(
            [
                "tcp-echo",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ]
        )
        try:
            assert await proc.wait_exit(timeout=10) == 1
            out = proc.output
            expected = f"tcp-echo cannot listen on tcp:{port}:interface=127.0.0.1: address in use"
            assert f"#critical] {expected}" in out
            assert f"ListenError: {expected}" in out
            assert "Main loop terminated." not in out
        finally:
            proc.kill()


def test_listen_failure_in_daemon_mode(tmp_path: Path) -> None:
    """Daemonized, a --listen on a port in use makes twistd's parent exit with status 1 and
    say why; the log file has the cause and the PID file is removed."""
    pidfile, logfile = tmp_path / "twistd.pid", tmp_path / "twistd.log"
    with port_in_use() as port:
        result = run_twistd(
            f"--pidfile={pidfile}",
            f"--logfile={logfile}",
            "tcp-echo",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
        )
    expected = f"tcp-echo cannot listen on tcp:{port}:interface=127.0.0.1: address in use"
    assert result.returncode == 1, result.stderr
    # twistd's parent shows the first 100 bytes of what its child reported.
    assert "An error has occurred: b'txtcp.services.ListenError: tcp-echo cannot" in result.stderr
    assert f"#critical] {expected}" in logfile.read_text()
    assert not pidfile.exists()


@pytest_twisted.ensureDeferred
async def test_listen_failure_in_an_application() -> None:
    """Inside an application the service raises nothing: listen_error tells the cause at
    once, the failure is logged, and the other endpoint listens on."""
    with port_in_use() as port, logged() as seen:
        service = echo.echo_service(
            ["tcp:0:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"]
        )
        try:
            service.privilegedStartService()
            service.startService()
            good, bad = service.listeners
            assert good.listen_error is None
            assert bad.listen_error is not None
            assert txtcp.error_info(bad.listen_error).kind is txtcp.ErrorKind.ADDRESS_IN_USE
            await good.when_listening()
            await wait_for(lambda: _critical(seen))
            assert _critical(seen) == [
                f"tcp-echo cannot listen on tcp:{port}:interface=127.0.0.1: address in use: "
                f"Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."
            ]
        finally:
            await service.stopService()


@pytest_twisted.ensureDeferred
async def test_listen_failure_raises_for_twistd() -> None:
    """With stop_reactor_on_listen_error (what twistd uses), privilegedStartService logs the
    cause once, raises ListenError naming the endpoint and cause, and closes the endpoints
    that did listen."""
    from txtcp.services import ListenError

    with logged() as seen:
        with port_in_use() as port:
            listen = ["tcp:0:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"]
            service = echo.echo_service(listen)
            service.stop_reactor_on_listen_error = True
            good = service.listeners[0]
            with pytest.raises(ListenError, match=f"cannot listen on tcp:{port}:.*address in use"):
                service.privilegedStartService()
        assert good.server is None
        assert not service.running
        await sleep(0.05)  # the server's own error event has come and gone
    (line,) = _critical(seen)
    assert line.startswith(f"tcp-echo cannot listen on tcp:{port}:")


def _critical(events: list[LogEvent]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_level") is LogLevel.critical]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest_twisted.ensureDeferred
async def test_listens_before_dropping_privileges(tmp_path: Path) -> None:
    """With --uid, the service listens while twistd is still root: a socket in a directory
    only root may write to is bound, then served as the other user."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    path = private / "echo.sock"
    proc = Twistd(["--uid=65534", "--gid=65534", "tcp-echo", "--listen", f"unix:{path}"])
    try:
        await proc.wait_output(r"tcp-echo listening on ")
        out = proc.output
        assert out.index("starting on") < out.index("set uid/gid 65534/65534")
        payload = os.urandom(4096)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            echoed = b""
            while chunk := sock.recv(65536):
                echoed += chunk
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        assert await proc.terminate() == -signal.SIGTERM  # as twistd ends on SIGTERM
    finally:
        proc.kill()


def test_example_runs() -> None:
    """docs/examples/services_echo.py runs and prints the echo."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "services_echo.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "echoed: b'hello, echo\\n'" in result.stdout
