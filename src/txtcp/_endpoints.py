# -*- test-case-name: tests.test_endpoints -*-
"""
Endpoints from arguments and description strings.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import Logger

_log = Logger()

#: Per-attempt connect timeout when none is given, in seconds (Twisted's).
DEFAULT_CONNECT_TIMEOUT = 30.0


def check_host(host: object, name: str = "host") -> str:
    """Return C{host} (str or ASCII bytes) as a str, or raise TypeError/ValueError."""
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{name} must be ASCII when given as bytes, not {host!r}") from None
    if not isinstance(host, str):
        raise TypeError(f"{name} must be a str or bytes, not {host!r}")
    if "\x00" in host:
        raise ValueError(f"{name} must not contain NUL: {host!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def check_port(port: object, name: str = "port") -> int:
    """Return C{port} (an int, or a str of digits) as an int in 0..65535."""
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port.strip())
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{name} must be an int or a string of digits, not {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"{name} must be in 0..65535, not {port!r}")
    return port


def check_timeout(timeout: object, name: str = "timeout") -> float | None:
    """Return C{timeout} (None or a non-negative number of seconds) as a float."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {timeout!r}")
    if not timeout >= 0 or timeout == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, not {timeout!r}")
    return float(timeout)


def is_ip_literal(host: str) -> bool:
    """Whether C{host} is an IPv4 or IPv6 address literal."""
    return isIPAddress(host) or isIPv6Address(host)


def ip_family(host: str) -> socket.AddressFamily:
    """The address family of an IP literal."""
    return socket.AF_INET6 if isIPv6Address(host) else socket.AF_INET


#: The listen backlog of a server, unless told otherwise (nginx's and
#: Redis's; Twisted's endpoints default to 50).
DEFAULT_BACKLOG = 511

# Endpoint strings that take a backlog= keyword.
_WITH_BACKLOG = ("tcp", "tcp6", "ssl", "unix")


def tcp_server_endpoint(reactor: Any, host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> Any:
    """A server endpoint on the IP literal C{host} (C{""}: all IPv4 interfaces)."""
    if host and isIPv6Address(host):
        return TCP6ServerEndpoint(reactor, port, backlog=backlog, interface=host)
    return TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=host)


def _split(description: str) -> tuple[list[str], dict[str, str]]:
    """Split an endpoint description as Twisted does: C{:} separates
    arguments, C{\\} escapes, C{key=value} makes a keyword."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq:
            kwargs[key] = value
        else:
            args.append(part)
    return [parts[0], *args], kwargs


def client_endpoint(reactor: Any, description: object) -> tuple[Any, str | None]:
    """
    A client endpoint from an C{IStreamClientEndpoint} or a description
    string.  C{tcp:} strings give a C{HostnameEndpoint} (IPv4 and IPv6,
    names resolved without blocking); other strings go to Twisted's
    C{clientFromString} (C{tls:} verifies the server; C{unix:}; plugins).
    An C{ssl:} string does not verify the server's host name: a warning
    is logged when one is parsed.

    @return: the endpoint, and the host name it connects to when the
        description string names one.
    @raise ValueError: the string cannot be parsed.
    @raise TypeError: C{description} is neither.
    """
    if IStreamClientEndpoint.providedBy(description):
        return description, None
    if not isinstance(description, str):
        raise TypeError(
            f"endpoint must be an IStreamClientEndpoint or a description string, "
            f"not {description!r}"
        )
    args, kwargs = _split(description)
    if args[0] == "tcp":
        positional = args[1:]
        host = kwargs.pop("host", None) or (positional.pop(0) if positional else None)
        port = kwargs.pop("port", None) or (positional.pop(0) if positional else None)
        timeout = kwargs.pop("timeout", None)
        bind = kwargs.pop("bindAddress", None)
        if not host or port is None or positional or kwargs:
            raise ValueError(
                f"cannot parse client endpoint {description!r}: expected "
                "tcp:host=HOST:port=PORT[:timeout=SECONDS][:bindAddress=HOST]"
            )
        try:
            port_n = check_port(port)
            timeout_n = check_timeout(float(timeout)) if timeout is not None else None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot parse client endpoint {description!r}: {exc}") from exc
        endpoint = HostnameEndpoint(
            reactor,
            host,
            port_n,
            timeout=timeout_n or DEFAULT_CONNECT_TIMEOUT,
            bindAddress=(bind, 0) if bind else None,
        )
        return endpoint, host
    host = kwargs.get("host") or (args[1] if len(args) > 1 else None)
    try:
        endpoint = clientFromString(reactor, description)
    except Exception as exc:
        raise ValueError(f"cannot parse client endpoint {description!r}: {exc}") from exc
    if args[0] == "ssl":
        # Twisted's ssl: client endpoint never checks the host name, and
        # without caCertsDir it checks no certificate at all.
        _log.warn(
            "TLS to {host} without host name verification ({description!r}): the server "
            "is not authenticated; use tls:host=HOST:port=PORT to verify it",
            host=host,
            description=description,
        )
    return endpoint, host


def server_endpoint(reactor: Any, description: object, *, backlog: int | None = None) -> Any:
    """
    A server endpoint from an C{IStreamServerEndpoint} or a description string
    (C{tcp:}, C{tcp6:}, C{ssl:}, C{unix:}, C{haproxy:}, C{systemd:}, ...).
    A C{tcp:}, C{tcp6:}, C{ssl:} or C{unix:} string (also behind
    C{haproxy:}) without C{backlog=} listens with C{backlog} when given.

    @raise ValueError: the string cannot be parsed, or its port (C{tcp:},
        C{tcp6:}, C{ssl:}, also behind C{haproxy:}) is outside 0..65535.
    @raise TypeError: C{description} is neither.
    """
    if IStreamServerEndpoint.providedBy(description):
        return description
    if not isinstance(description, str):
        raise TypeError(
            f"endpoint must be an IStreamServerEndpoint or a description string, "
            f"not {description!r}"
        )
    inner = description[len("haproxy:") :] if description.startswith("haproxy:") else description
    args, kwargs = _split(inner)
    with_backlog = description
    if (
        backlog is not None
        and args[0] in _WITH_BACKLOG
        and "backlog" not in kwargs
        and not description.endswith("\\")
    ):
        with_backlog = f"{description}:backlog={backlog}"
    try:
        endpoint = serverFromString(reactor, with_backlog)
    except Exception as exc:
        raise ValueError(f"cannot parse server endpoint {description!r}: {exc}") from exc
    # Twisted takes any integer as a port; listening would fail only later.
    if args[0] in ("tcp", "tcp6", "ssl"):
        port = kwargs.get("port") or (args[1] if len(args) > 1 else None)
        try:
            check_port(port)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot parse server endpoint {description!r}: {exc}") from exc
    return endpoint
