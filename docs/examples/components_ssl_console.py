"""
Kamaelia's SSL TCPClient example, on txtcp: lines typed on the console go to
the server over TLS, started by a message on ``makessl``; what the server
sends is echoed.  Only the imports and the address differ from Kamaelia's
(``python components_ssl_console.py HOST PORT``).  The server's certificate
is verified against the platform's trust store (``SSL_CERT_FILE`` names
another CA file).  Stop it with Ctrl-C.
"""

import sys

from txtcp.components import ConsoleEchoer, ConsoleReader, Graphline, OneShot, TCPClient

# Kamaelia: "kamaelia.svn.sourceforge.net", 443
host, port = sys.argv[1], int(sys.argv[2])

Graphline(
    MAKESSL=OneShot(" make ssl "),
    CONSOLE=ConsoleReader(),
    ECHO=ConsoleEchoer(),
    CONNECTION=TCPClient(host, port),
    linkages={
        ("MAKESSL", "outbox"): ("CONNECTION", "makessl"),
        ("CONSOLE", "outbox"): ("CONNECTION", "inbox"),
        ("CONNECTION", "outbox"): ("ECHO", "inbox"),
    },
).run()
