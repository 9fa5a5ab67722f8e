"""
A reply after a half-close, through C{twistd -n tcp-proxy} and direct:

    python -m bench.halfclose [--mib 512] [--rounds 5]

The client sends a short request, shuts its write side (C{SHUT_WR}), then
reads the reply to its end; the upstream (a thread of this process, plain
blocking sockets) reads to the end of the request and sends C{--mib} MiB.
Prints the reply's MB/s per round, through the proxy and direct, and the
ratio of the medians.  Set C{PYTHONPATH} to measure another checkout's
tcp-proxy.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import threading
from time import perf_counter

from ._contenders import twistd_path

MiB = 1024 * 1024


def _upstream(listener: socket.socket, size: int) -> None:
    block = b"r" * MiB
    while True:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(65536):
                pass
            left = size
            while left > 0:
                left -= conn.send(block[: min(left, MiB)])


def _reply_rate(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET")
        conn.shutdown(socket.SHUT_WR)
        started = perf_counter()
        got = 0
        while chunk := conn.recv(MiB):
            got += len(chunk)
        elapsed = perf_counter() - started
    if got != size:
        raise RuntimeError(f"the reply had {got} bytes, not {size}")
    return size / elapsed / 1e6


def _start_proxy(upstream_port: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            str(twistd_path()),
            "--pidfile=",
            "-n",
            "tcp-proxy",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--connect",
            f"tcp:host=127.0.0.1:port={upstream_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if match:
            # Keep reading its log, so that the proxy never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(match.group(1))
    raise RuntimeError("tcp-proxy exited before listening")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--mib", type=int, default=512, help="MiB per reply [512]")
    parser.add_argument("--rounds", type=int, default=5, help="replies each way [5]")
    args = parser.parse_args()
    size = args.mib * MiB
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    upstream_port = listener.getsockname()[1]
    threading.Thread(target=_upstream, args=(listener, size), daemon=True).start()
    proc, proxy_port = _start_proxy(upstream_port)
    try:
        proxied, direct = [], []
        for _ in range(args.rounds):  # interleaved, for a noisy machine
            proxied.append(_reply_rate(proxy_port, size))
            direct.append(_reply_rate(upstream_port, size))
    finally:
        proc.terminate()
        proc.wait(10)
    print("through tcp-proxy, MB/s:", " ".join(f"{r:,.0f}" for r in sorted(proxied)))
    print("direct, MB/s:           ", " ".join(f"{r:,.0f}" for r in sorted(direct)))
    ratio = statistics.median(proxied) / statistics.median(direct)
    print(f"tcp-proxy x direct (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
