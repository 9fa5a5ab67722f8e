# The client example from thor's documentation, with only its import line
# changed (and its Python 2 slips mended: sys.argv[1:3], sys.stdout.buffer).
import sys
import txtcp as thor

test_host, test_port = sys.argv[1:3]


def handle_connect(conn):
    conn.on("data", sys.stdout.buffer.write)
    conn.on("close", thor.stop)
    conn.write(b"GET /\n\n")
    conn.pause(False)


def handle_err(err_type, err):
    sys.stderr.write(str(err_type))
    thor.stop()


c = thor.TcpClient()
c.on("connect", handle_connect)
c.on("connect_error", handle_err)
c.connect(test_host, test_port)
thor.run()
