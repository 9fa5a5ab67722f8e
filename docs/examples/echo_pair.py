"""
An echo server and a client in one process, on 127.0.0.1: the client sends
three lines, half-closes, prints what comes back, and the program stops.

    python docs/examples/echo_pair.py
"""

from __future__ import annotations

import sys

import txtcp

server = txtcp.TcpServer("127.0.0.1", 0)


def serve(conn: txtcp.TcpConnection) -> None:
    conn.on("data", conn.write)  # echo; the core flushes before it closes
    conn.pause(False)


def start() -> None:
    client = txtcp.TcpClient()
    client.on("connect", talk)
    client.on("connect_error", failed)
    client.connect("127.0.0.1", server.port or 0)


def failed(errtype: type[Exception], err: int) -> None:
    print(errtype, err, file=sys.stderr)
    txtcp.stop()


def talk(conn: txtcp.TcpConnection) -> None:
    conn.on("data", sys.stdout.buffer.write)
    conn.on("close", txtcp.stop)
    conn.allow_half_open = True  # keep reading after our own shutdown
    conn.write(b"one\ntwo\nthree\n")
    conn.shutdown()  # the server echoes the rest, then closes
    conn.pause(False)


server.on("connect", serve)
server.on("start", start)
txtcp.run()
