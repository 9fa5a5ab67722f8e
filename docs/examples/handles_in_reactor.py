"""
txtcp.handles inside a running reactor (a twistd service, a Twisted app):
no Loop.run() is needed, the reactor already turns.  Here task.react runs
the reactor and a Deferred ends it when the client is closed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from txtcp.handles import TCP, Loop


async def main(reactor: Any) -> None:
    loop = Loop(reactor)
    done: Deferred[bytes] = Deferred()
    received: list[bytes] = []

    def on_connection(server: TCP, error: int | None) -> None:
        conn = TCP(loop)
        server.accept(conn)
        conn.write(b"hello from the server", lambda h, e: h.close())
        server.close()

    def on_read(client: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:
            client.close(lambda h: done.callback(b"".join(received)))
        else:
            received.append(data)

    server = TCP(loop)
    server.bind(("127.0.0.1", 0))
    server.listen(on_connection)
    client = TCP(loop)
    client.connect(server.getsockname(), lambda h, e: h.start_read(on_read))
    print((await done).decode())


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
