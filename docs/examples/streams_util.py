"""
The one helper of C{hat.util} that the hat.drivers.tcp example uses, so the
example runs with only its imports changed.
"""

from __future__ import annotations

import socket


def get_unused_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (another process may take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
