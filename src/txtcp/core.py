"""
The public face of txtcp's core: the names the API layers and services build
on.  Every other txtcp module imports the core from here.
"""

from __future__ import annotations

from ._client import ConnectAttempt, TcpClient, TlsClient
from ._connection import Address, TcpConnection, as_bytes
from ._emitter import EventEmitter, Listener
from ._endpoints import (
    DEFAULT_CONNECT_TIMEOUT,
    check_host,
    check_port,
    check_timeout,
    client_endpoint,
    server_endpoint,
)
from ._errors import (
    ConnectionClosedError,
    ErrorInfo,
    ErrorKind,
    HostNotFoundError,
    TlsError,
    TxtcpError,
    UnsupportedOperationError,
    error_info,
)
from ._loop import ScheduledCall, run, schedule, stop
from ._reactor import _default_reactor as default_reactor
from ._relay import Relay, relay
from ._server import TcpServer, TlsServer, adopt_connection
from ._tls import CertificateSource, KeySource, TrustRoot, client_options, load_trust_root

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "Address",
    "CertificateSource",
    "ConnectAttempt",
    "ConnectionClosedError",
    "ErrorInfo",
    "ErrorKind",
    "EventEmitter",
    "HostNotFoundError",
    "KeySource",
    "Listener",
    "Relay",
    "ScheduledCall",
    "TcpClient",
    "TcpConnection",
    "TcpServer",
    "TlsClient",
    "TlsError",
    "TlsServer",
    "TrustRoot",
    "TxtcpError",
    "UnsupportedOperationError",
    "adopt_connection",
    "as_bytes",
    "check_host",
    "check_port",
    "check_timeout",
    "client_endpoint",
    "client_options",
    "default_reactor",
    "error_info",
    "load_trust_root",
    "relay",
    "run",
    "schedule",
    "server_endpoint",
    "stop",
]
