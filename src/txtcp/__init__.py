"""
txtcp: TCP clients, servers and twistd services on Twisted.

The core is thor's event-emitter API (L{TcpClient}, L{TcpServer},
L{TcpConnection}); L{txtcp.streams}, L{txtcp.handles}, L{txtcp.tcpsocket}
and L{txtcp.components} give other API styles over it.  Importing txtcp
installs no reactor.
"""

from __future__ import annotations

from .core import (
    ConnectionClosedError,
    ErrorKind,
    EventEmitter,
    HostNotFoundError,
    TcpClient,
    TcpConnection,
    TcpServer,
    TlsClient,
    TlsError,
    TlsServer,
    TxtcpError,
    UnsupportedOperationError,
    error_info,
    run,
    schedule,
    stop,
)
from .tcpsocket import TcpSocket

__version__ = "0.1.0"

__all__ = [
    "ConnectionClosedError",
    "ErrorKind",
    "EventEmitter",
    "HostNotFoundError",
    "TcpClient",
    "TcpConnection",
    "TcpServer",
    "TcpSocket",
    "TlsClient",
    "TlsError",
    "TlsServer",
    "TxtcpError",
    "UnsupportedOperationError",
    "__version__",
    "error_info",
    "run",
    "schedule",
    "stop",
]
