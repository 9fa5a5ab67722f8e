"""
Run txtcp's proxy in front of an echo service, both inside one program.

``proxy_service`` builds what ``twistd -n tcp-proxy`` runs; here it relays
to an echo service on another port, and a client talks through it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from txtcp.core import TcpClient, TcpConnection
from txtcp.services.echo import echo_service
from txtcp.services.proxy import proxy_service


async def main(reactor: Any) -> None:
    upstream = echo_service(["tcp:0:interface=127.0.0.1"], loop=reactor)
    upstream.startService()
    host, port = await upstream.listeners[0].when_listening()

    proxy = proxy_service(
        ["tcp:0:interface=127.0.0.1"],
        f"tcp:host={host}:port={port}",
        connect_timeout=5,
        idle_timeout=60,
        loop=reactor,
    )
    proxy.startService()
    proxy_host, proxy_port = await proxy.listeners[0].when_listening()
    print(f"proxy on {proxy_host}:{proxy_port} -> echo on {host}:{port}")

    connected: defer.Deferred[TcpConnection] = defer.Deferred()
    client = TcpClient(reactor)
    client.once("connect", connected.callback)
    client.connect(proxy_host, proxy_port)
    conn = await connected

    reply = bytearray()
    closed: defer.Deferred[None] = defer.Deferred()
    conn.allow_half_open = True
    conn.on("data", reply.extend)
    conn.on("close", lambda: closed.callback(None))
    conn.pause(False)
    conn.write(b"hello through the proxy\n")
    conn.shutdown()  # half-close: the whole reply still comes back
    await closed
    print(f"reply: {bytes(reply)!r}")

    await proxy.stopService()
    await upstream.stopService()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
