"""
The processes the benchmark starts: a contender's server or client, or the
idle-connection client.

  - C{python -m bench.worker serve CONTENDER KIND TOTAL}: listen on
    127.0.0.1, write C{PORT <n>} on stdout, serve until killed.
  - C{python -m bench.worker client CONTENDER WORKLOAD PORT TOTAL SECONDS}:
    run one measurement, write C{RESULT <value>} on stdout.  With PORT
    C{-}, the port is read from a line on stdin, after the imports.
  - C{python -m bench.worker idle PORT COUNT SERVER_PID}: open COUNT idle
    connections, write C{READY <n>}, hold them until stdin ends.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from ._common import ClientJob, raise_fd_limit, report_port
from ._contenders import CONTENDERS


def _module(contender: str) -> tuple[Any, dict[str, Any]]:
    for c in CONTENDERS:
        if c.name == contender:
            extra = {"uvloop": True} if c.name == "uvloop" else {}
            return importlib.import_module(f"bench.{c.module}"), extra
    if contender == "socket":
        return importlib.import_module("bench.c_socket"), {}
    raise SystemExit(f"unknown contender {contender!r}")


def main(argv: list[str]) -> None:
    """Run the role named by C{argv[0]}."""
    raise_fd_limit()
    role, *args = argv
    if role == "serve":
        contender, kind, total = args
        module, extra = _module(contender)
        module.serve(kind, int(total), report_port, **extra)
    elif role == "client":
        contender, workload, port, total, seconds = args
        module, extra = _module(contender)
        if port == "-":  # started before the server: the port comes on stdin
            port = sys.stdin.readline().strip()
        job = ClientJob(workload, int(port), int(total), float(seconds))
        value = module.client(job, **extra)
        sys.stdout.write(f"RESULT {value!r}\n")
        sys.stdout.flush()
    elif role == "idle":
        from .c_socket import idle_client

        idle_port, count, pid = map(int, args)
        idle_client(idle_port, count, pid)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
