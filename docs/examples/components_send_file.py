"""
Kamaelia's first TCPClient example, on txtcp: send the contents of a file to
a server.  Only the imports and the addresses differ from Kamaelia's
(``python components_send_file.py FILE HOST PORT``).
"""

import sys

from txtcp.components import Pipeline, RateControlledFileReader, TCPClient, run

# Kamaelia: "myfile", "1.2.3.4", 1000
myfile, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

Pipeline(
    RateControlledFileReader(myfile, rate=100000),
    TCPClient(host, port),
).activate()

# Kamaelia: scheduler.run.runThreads() -- run until every component is done.
run()
