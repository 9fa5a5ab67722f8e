"""
Run txtcp's echo service inside your own program, then talk to it.

The same service that ``twistd -n tcp-echo`` runs, built with
``echo_service`` and started like any Twisted service.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from txtcp.core import TcpClient, TcpConnection
from txtcp.services.echo import echo_service


async def main(reactor: Any) -> None:
    service = echo_service(["tcp:0:interface=127.0.0.1"], loop=reactor)
    service.startService()
    host, port = await service.listeners[0].when_listening()
    print(f"echo service listening on {host}:{port}")

    connected: defer.Deferred[TcpConnection] = defer.Deferred()
    client = TcpClient(reactor)
    client.once("connect", connected.callback)
    client.connect(host, port)
    conn = await connected

    reply = bytearray()
    closed: defer.Deferred[None] = defer.Deferred()
    conn.allow_half_open = True
    conn.on("data", reply.extend)
    conn.on("close", lambda: closed.callback(None))
    conn.pause(False)
    conn.write(b"hello, echo\n")
    conn.shutdown()  # end of our stream: the service echoes the rest, then closes
    await closed
    print(f"echoed: {bytes(reply)!r}")

    await service.stopService()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
