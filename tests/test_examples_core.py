"""The core's documented examples, run as real programs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest_twisted
from _helpers import listening, wait_event

import txtcp

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def run_example(name: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_echo_pair() -> None:
    """The getting-started example prints its three lines back and exits 0."""
    result = run_example("echo_pair.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"one\ntwo\nthree\n"


@pytest_twisted.ensureDeferred
async def test_thor_seed_client() -> None:
    """thor's client example, import line changed, talks to a server on 127.0.0.1."""
    server = await listening(txtcp.TcpServer("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve(conn: txtcp.TcpConnection) -> None:
        def on_data(data: bytes) -> None:
            requests.append(data)
            conn.write(b"HTTP/1.0 200 OK\r\n\r\nhello from txtcp\n")
            conn.close()

        conn.on("data", on_data)
        conn.pause(False)

    server.on("connect", serve)
    from twisted.internet import threads

    result = await threads.deferToThread(
        run_example, "thor_client.py", "127.0.0.1", str(server.port)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"HTTP/1.0 200 OK\r\n\r\nhello from txtcp\n"
    assert requests == [b"GET /\n\n"]
    stopped = wait_event(server, "stop")
    server.close()
    await stopped


def test_thor_seed_client_refused() -> None:
    """The example reports a refused connection through connect_error and exits."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_example("thor_client.py", "127.0.0.1", str(port))
    assert result.returncode == 0
    assert result.stderr == b"<class 'OSError'>"
