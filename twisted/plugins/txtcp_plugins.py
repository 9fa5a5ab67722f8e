"""
twistd dropin for txtcp's services: C{tcp-echo} and C{tcp-proxy}.

The service modules are imported only when a service is used, so
C{twistd --help} stays cheap.
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

tcp_echo = ServiceMaker(
    "txtcp tcp-echo",
    "txtcp.services.echo",
    "Echo every byte back, with flow control and half-close (txtcp).",
    "tcp-echo",
)
tcp_proxy = ServiceMaker(
    "txtcp tcp-proxy",
    "txtcp.services.proxy",
    "Relay TCP connections to an upstream, with flow control and half-close (txtcp).",
    "tcp-proxy",
)
