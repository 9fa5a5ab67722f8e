"""
Driving a TcpSocket from a worker thread with the *_async methods, while the
reactor runs in the main thread.

Usage: python tcpsocket_threads.py HOST PORT
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from txtcp.core import run, stop
from txtcp.tcpsocket import TcpSocket


def worker(sock: TcpSocket, host: str, port: int) -> None:
    # Callbacks run on the reactor thread; hand their results over.
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()

    def done(s: TcpSocket, result: Any, error: Any) -> None:
        results.put((result, error))

    connected = threading.Event()
    readable = threading.Event()
    closed = threading.Event()
    sock.connected_handler = lambda s: connected.set()
    sock.ready_read_handler = lambda s: readable.set()
    sock.disconnected_handler = lambda s: closed.set()
    sock.error_handler = lambda s, error: print(f"error {error}: {s.error_string}")

    sock.connect_async(host, port, done)
    print(f"connect started: {results.get(timeout=10)[0]}")
    if not connected.wait(10):
        raise SystemExit("no connection")
    sock.write_async(b"hello\n", done)
    print(f"wrote {results.get(timeout=10)[0]} bytes")
    if not readable.wait(10):
        raise SystemExit("no reply")
    sock.read_async(None, done)
    print(f"read {results.get(timeout=10)[0]!r}")
    sock.disconnect_async(done)
    results.get(timeout=10)
    if closed.wait(10):
        print("disconnected")


def main(host: str, port: int) -> None:
    sock = TcpSocket()

    def work() -> None:
        try:
            worker(sock, host, port)
        finally:
            stop()  # safe from any thread

    threading.Thread(target=work).start()
    run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
