"""
An echo server and a client on txtcp.handles, written as for pyuv.

Run it as a script: it prints what the client got back, then runs a
second exchange on the same loop to show that Loop.run() can be called
again.
"""

from __future__ import annotations

import sys

from txtcp.handles import TCP, Loop, errno

loop = Loop.default_loop()


def serve_once(message: bytes) -> bytes:
    """Start an echo server, send it C{message}, return the reply."""
    server = TCP(loop)
    server.bind(("127.0.0.1", 0))
    replies: list[bytes] = []

    def on_connection(server: TCP, error: int | None) -> None:
        conn = TCP(loop)
        server.accept(conn)
        conn.start_read(on_server_read)

    def on_server_read(conn: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:  # the client shut its side down: we are done
            conn.close()
            server.close()
            return
        conn.write(data)

    def on_connect(client: TCP, error: int | None) -> None:
        if error is not None:
            print("connect failed:", errno.strerror(error), file=sys.stderr)
            client.close()
            server.close()
            return
        client.start_read(on_client_read)
        client.write(message)
        client.shutdown()

    def on_client_read(client: TCP, data: bytes | None, error: int | None) -> None:
        if data is None:  # UV_EOF: the server closed
            client.close()
            return
        replies.append(data)

    server.listen(on_connection)
    client = TCP(loop)
    client.connect(server.getsockname(), on_connect)
    loop.run()  # returns when every handle is closed
    return b"".join(replies)


if __name__ == "__main__":
    print(serve_once(b"hello, pyuv").decode())
    print(serve_once(b"and again").decode())
