"""
One client per API layer, each run to the end against a host and port and
reduced to the same shape (TLS is used when a C{trust_root} is given, or
C{tls=True}): whether it connected, the bytes it read, and the
failure in the layer's own terms (an L{ErrorKind} for the core and the
components, an exception type for streams, a libuv code for handles, a
L{SocketError} for tcpsocket; C{None} for a clean end).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _helpers import Collector, reactor, sleep, wait_event
from twisted.internet.defer import Deferred

import txtcp
from txtcp import components, handles, streams, tcpsocket
from txtcp.core import ErrorKind, error_info


@dataclass
class Outcome:
    """How one client run ended."""

    connected: bool
    data: bytes
    failure: object


Runner = Callable[..., Awaitable[Outcome]]


def _timed(d: Deferred[Any], timeout: float) -> Deferred[Any]:
    d.addTimeout(timeout, reactor)
    return d


def _wants_tls(trust_root: str | None, tls: bool | None) -> bool:
    """C{tls} if given, else whether a C{trust_root} is."""
    return trust_root is not None if tls is None else tls


async def core(
    host: str,
    port: int,
    *,
    trust_root: str | None = None,
    timeout: float | None = None,
    tls: bool | None = None,
) -> Outcome:
    """The core: C{TcpClient} (or C{TlsClient} with C{trust_root} or C{tls}) and its connection."""
    client = (
        txtcp.TlsClient(trust_root=trust_root) if _wants_tls(trust_root, tls) else txtcp.TcpClient()
    )
    d: Deferred[Any] = Deferred()
    client.once("connect", lambda c: d.callback(c))
    client.once("connect_failure", lambda info: d.callback(info))
    client.connect(host, port, timeout)
    result = await _timed(d, 30)
    if not isinstance(result, txtcp.TcpConnection):
        return Outcome(False, b"", result.kind)
    got = Collector(result)
    await got.wait_closed(30)
    failure = error_info(got.error).kind if got.error is not None else None
    return Outcome(True, got.data, failure)


async def stream(
    host: str,
    port: int,
    *,
    trust_root: str | None = None,
    timeout: float | None = None,
    tls: bool | None = None,
) -> Outcome:
    """Streams: C{streams.connect}, then C{read} until it raises."""
    try:
        conn = await _timed(
            Deferred.fromCoroutine(
                streams.connect(
                    streams.Address(host, port),
                    tls=_wants_tls(trust_root, tls),
                    trust_root=trust_root,
                    timeout=timeout,
                )
            ),
            30,
        )
    except OSError as exc:  # ConnectionError, or TimeoutError
        return Outcome(False, b"", type(exc))
    data = bytearray()
    failure: object = None
    while True:
        try:
            data += await _timed(Deferred.fromCoroutine(conn.read()), 30)
        except ConnectionError as exc:
            failure = type(exc)
            break
    await _timed(Deferred.fromCoroutine(conn.async_close()), 30)
    return Outcome(True, bytes(data), failure)


async def _close_handle(tcp: handles.TCP) -> None:
    """Close C{tcp} and wait for its close callback."""
    closed: Deferred[None] = Deferred()
    tcp.close(lambda h: closed.callback(None))
    await _timed(closed, 10)


async def handle(host: str, port: int, **_: Any) -> Outcome:
    """Handles: C{TCP.connect}, then C{start_read} until the read callback ends."""
    tcp = handles.TCP(handles.Loop())
    connected: Deferred[int | None] = Deferred()
    tcp.connect((host, port), lambda h, error: connected.callback(error))
    error = await _timed(connected, 60)
    if error is not None:
        await _close_handle(tcp)
        return Outcome(False, b"", error)
    data = bytearray()
    ended: Deferred[int | None] = Deferred()

    def on_read(h: handles.TCP, chunk: bytes | None, err: int | None) -> None:
        if chunk is not None:
            data.extend(chunk)
        else:
            ended.callback(err)

    tcp.start_read(on_read)
    code = await _timed(ended, 30)
    await _close_handle(tcp)
    return Outcome(True, bytes(data), None if code == handles.errno.UV_EOF else code)


async def socket_(
    host: str,
    port: int,
    *,
    trust_root: str | None = None,
    timeout: float | None = None,
    tls: bool | None = None,
) -> Outcome:
    """tcpsocket: C{TcpSocket.connect}, read in C{ready_read}, until UNCONNECTED."""
    sock = tcpsocket.TcpSocket()
    data = bytearray()
    errors: list[tcpsocket.SocketError] = []
    connected: list[bool] = []
    done: Deferred[None] = Deferred()
    sock.connected_handler = lambda s: connected.append(True)
    sock.ready_read_handler = lambda s: data.extend(s.read_all())
    sock.error_handler = lambda s, e: errors.append(e)

    def state(s: tcpsocket.TcpSocket, st: tcpsocket.SocketState) -> None:
        if st is tcpsocket.SocketState.UNCONNECTED and not done.called:
            reactor.callLater(0, done.callback, None)

    sock.state_changed_handler = state
    sock.connect(
        host, port, tls=_wants_tls(trust_root, tls), trust_root=trust_root, timeout=timeout
    )
    await _timed(done, 60)
    data += sock.read_all()
    # As in Qt, a clean remote close is reported as REMOTE_HOST_CLOSED too.
    failure: object = errors[0] if errors else None
    return Outcome(bool(connected), bytes(data), failure)


async def component(
    host: str,
    port: int,
    *,
    trust_root: str | None = None,
    timeout: float | None = None,
    tls: bool | None = None,
) -> Outcome:
    """Components: a C{TCPClient} (C{makessl} first with C{trust_root}) and its signal."""
    client = components.TCPClient(
        host, port, connect_timeout=timeout if timeout is not None else 60, trust_root=trust_root
    )
    sink = components.Component()
    client.link((client, "outbox"), (sink, "inbox"))
    client.link((client, "signal"), (sink, "control"))
    if _wants_tls(trust_root, tls):
        client.inboxes["makessl"].put(True)
    client.activate()
    await _timed(client.when_finished(), 60)
    await sleep(0)  # the signal goes out right after the component has finished
    data = bytearray()
    while sink.data_ready("inbox"):
        data += await sink.recv("inbox")
    signals = []
    while sink.data_ready("control"):
        signals.append(await sink.recv("control"))
    failure: object = None
    errors = [m for m in signals if isinstance(m, components.socketError)]
    if errors:
        failure = errors[0].kind
        assert isinstance(signals[-1], components.shutdownMicroprocess), signals
    else:
        assert isinstance(signals[-1], components.producerFinished), signals
    return Outcome(client.connection is not None, bytes(data), failure)


LAYERS: dict[str, Runner] = {
    "core": core,
    "streams": stream,
    "handles": handle,
    "tcpsocket": socket_,
    "components": component,
}

#: What each layer reports for each kind of failure (the documented codes).
EXPECTED: dict[str, dict[ErrorKind, object]] = {
    "core": {k: k for k in ErrorKind},
    "components": {k: k for k in ErrorKind},
    "streams": {
        ErrorKind.REFUSED: ConnectionRefusedError,
        ErrorKind.TIMEOUT: TimeoutError,
        ErrorKind.HOST_NOT_FOUND: txtcp.HostNotFoundError,
        ErrorKind.RESET: ConnectionResetError,
        ErrorKind.TLS: txtcp.TlsError,
    },
    "handles": {
        ErrorKind.REFUSED: handles.errno.UV_ECONNREFUSED,
        ErrorKind.TIMEOUT: handles.errno.UV_ETIMEDOUT,
        ErrorKind.RESET: handles.errno.UV_ECONNRESET,
    },
    "tcpsocket": {
        ErrorKind.REFUSED: tcpsocket.SocketError.CONNECTION_REFUSED,
        ErrorKind.TIMEOUT: tcpsocket.SocketError.SOCKET_TIMEOUT,
        ErrorKind.HOST_NOT_FOUND: tcpsocket.SocketError.HOST_NOT_FOUND,
        ErrorKind.RESET: tcpsocket.SocketError.REMOTE_HOST_CLOSED,
        ErrorKind.TLS: tcpsocket.SocketError.SSL_HANDSHAKE_FAILED,
    },
}

#: The layers that take a TLS trust root (handles has no TLS) and host names.
TLS_LAYERS = ["core", "streams", "tcpsocket", "components"]
NAME_LAYERS = ["core", "streams", "tcpsocket", "components"]


async def serve_echo_once(server: txtcp.TcpServer) -> None:
    """Make C{server} echo on every connection it accepts (flow control, half-close)."""

    def on_connect(conn: txtcp.TcpConnection) -> None:
        conn.allow_half_open = True
        conn.on("data", conn.write)
        conn.on("end", conn.close)
        conn.pause(False)

    server.on("connect", on_connect)
    if not server.listening:
        await wait_event(server, "start")
