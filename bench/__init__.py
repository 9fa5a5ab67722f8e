"""
txtcp's benchmark suite: txtcp's API layers against raw Twisted, thor,
hat-drivers, asyncio and uvloop streams, and the tcp-proxy service against
other proxies, all on 127.0.0.1 with client and server in separate
processes.

Run it from the repository root with C{python -m bench} (C{./dev bench});
C{python -m bench --help} lists the options.  See docs/benchmarks.rst.
"""
