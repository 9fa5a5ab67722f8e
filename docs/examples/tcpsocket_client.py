"""
A TcpSocket client: connect, send a line, print the reply, disconnect.

Usage: python tcpsocket_client.py HOST PORT
"""

from __future__ import annotations

import sys

from txtcp.core import run, stop
from txtcp.tcpsocket import SocketState, TcpSocket


def main(host: str, port: int) -> None:
    sock = TcpSocket.new()

    def on_state(s: TcpSocket, state: SocketState) -> None:
        print(f"state: {state.name}")

    def on_host_found(s: TcpSocket) -> None:
        print("host found")

    def on_connected(s: TcpSocket) -> None:
        print(f"connected to {s.remote_address}")
        s.write(b"hello, qt\n")

    received = bytearray()

    def on_ready_read(s: TcpSocket) -> None:
        # The reply may come in pieces: collect until a whole line is there.
        received.extend(s.read_all())
        if received.endswith(b"\n"):
            print(f"got: {received.decode().strip()}")
            s.disconnect()

    def on_error(s: TcpSocket, error: int) -> None:
        print(f"error {error}: {s.error_string}")
        stop()

    def on_disconnected(s: TcpSocket) -> None:
        print("disconnected")
        stop()

    sock.state_changed_handler = on_state
    sock.host_found_handler = on_host_found
    sock.connected_handler = on_connected
    sock.ready_read_handler = on_ready_read
    sock.error_handler = on_error
    sock.disconnected_handler = on_disconnected
    sock.connect(host, port)
    run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
