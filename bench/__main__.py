"""
C{python -m bench}: run every workload on every contender in interleaved
rounds, print the tables and write them (Markdown, reStructuredText, JSON)
and the chart.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import _report
from ._common import CHUNK, MSG, raise_fd_limit
from ._contenders import (
    BASELINE,
    CONTENDERS,
    PROXIES,
    PROXY_BASELINE,
    ROOT,
    contender_problem,
    proxy_problem,
    version,
)
from ._run import Layout, MeasurementError, Sizes, measure, measure_proxy, rotated

MIB = 1024 * 1024
ALL_WORKLOADS = ("bulk", "pingpong", "connrate", "idle", "proxy")


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark txtcp against raw Twisted, thor, hat-drivers, asyncio and "
        "uvloop streams, and its tcp-proxy against other proxies, on 127.0.0.1.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one round: a smoke test that finishes in seconds "
        "(writes files only with --out)",
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds [3; quick: 1]")
    p.add_argument("--bulk-mib", type=int, help="MiB per bulk transfer [256; quick: 1]")
    p.add_argument(
        "--seconds",
        type=float,
        help="length of each ping-pong and connection-rate run [2; quick: 0.1]",
    )
    p.add_argument("--idle", type=int, help="idle connections to hold open [10000; quick: 200]")
    p.add_argument(
        "--only",
        default=",".join(ALL_WORKLOADS),
        help=f"comma-separated workloads to run, of {','.join(ALL_WORKLOADS)} [all]",
    )
    p.add_argument(
        "--contenders",
        default=",".join(c.name for c in CONTENDERS),
        help="comma-separated contenders to run [all]; raw Twisted is always run, as the baseline",
    )
    p.add_argument(
        "--layout",
        choices=("one-cpu", "free"),
        help="one-cpu: pin every process to one CPU, so figures are the CPU cost of "
        "all ends and the scheduler's placement does not swamp them; free: let the "
        "kernel place them; with one-cpu the proxy workloads are run unpinned too, "
        "as the placement of three processes is part of a proxy's latency "
        "[one-cpu; quick: free]",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="directory for benchmarks.md, benchmarks-results.inc, benchmarks.json and "
        "_static/benchmarks.png [docs/ of the repository; with --quick, none]",
    )
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: write the report again from a benchmarks.json of an earlier run",
    )
    args = p.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.bulk_mib = args.bulk_mib or (1 if quick else 256)
    args.seconds = args.seconds or (0.1 if quick else 2.0)
    args.idle = args.idle or (200 if quick else 10_000)
    args.layout = args.layout or ("free" if quick else "one-cpu")
    if args.out is None and not quick:
        args.out = ROOT / "docs"
    args.only = [w for w in args.only.split(",") if w]
    for w in args.only:
        if w not in ALL_WORKLOADS:
            p.error(f"--only: unknown workload {w!r}; choose among {', '.join(ALL_WORKLOADS)}")
    names = [c.name for c in CONTENDERS]
    args.contenders = [c for c in args.contenders.split(",") if c]
    for c in args.contenders:
        if c not in names:
            p.error(f"--contenders: unknown contender {c!r}; choose among {', '.join(names)}")
    if BASELINE not in args.contenders:
        args.contenders.append(BASELINE)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def machine() -> str:
    """One line describing this machine."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    cpus = os.cpu_count()
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpus} CPUs ({model}){mem}"
    )


def versions() -> str:
    """The versions of Python and of every library under test."""
    parts = [f"Python {platform.python_version()}"]
    for dist in ("txtcp", "Twisted", "thor", "hat-drivers", "uvloop"):
        parts.append(f"{dist} {version(dist)}")
    for tool in ("socat", "haproxy"):
        parts.append(f"{tool} {_tool_version(tool)}")
    return ", ".join(parts)


def _tool_version(tool: str) -> str:
    import re
    import shutil
    import subprocess

    if shutil.which(tool) is None:
        return "not installed"
    flag = "-V" if tool == "socat" else "-v"
    try:
        out = subprocess.run([tool, flag], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"version (\S+)", out.stdout.decode("utf-8", "replace"))
    return match.group(1) if match else "unknown"


def log(message: str) -> None:
    """Progress, on stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    """Run the suite; return the exit status."""
    args = parse(argv)
    if args.from_json is not None:
        return replot(args.from_json, args.out)
    raise_fd_limit()
    started = time.monotonic()
    sizes = Sizes(
        rounds=args.rounds,
        bulk_bytes=args.bulk_mib * MIB,
        seconds=args.seconds,
        idle_connections=args.idle,
        proxy_bulk_bytes=args.bulk_mib * MIB,
        client_timeout=120.0,
    )
    layout = Layout({max(os.sched_getaffinity(0))} if args.layout == "one-cpu" else None)

    direct = _report.Table(
        BASELINE,
        [(c.name, c.label) for c in CONTENDERS if c.name in args.contenders],
        _report.WORKLOADS,
    )
    direct.workloads = [w for w in _report.WORKLOADS if w[0] in args.only]
    pinned = layout.cpus is not None
    proxies = _report.Table(
        PROXY_BASELINE,
        [(p.name, p.label) for p in PROXIES],
        _report.PROXY_WORKLOADS + (_report.PROXY_FREE_WORKLOADS if pinned else ()),
    )
    if "proxy" not in args.only:
        proxies.workloads = []
    for c in CONTENDERS:
        if c.name in args.contenders and (why := contender_problem(c)):
            direct.skipped[c.name] = why
            log(f"skipped {c.label}: {why}")
    for px in PROXIES:
        if why := proxy_problem(px):
            proxies.skipped[px.name] = why
            log(f"skipped {px.label}: {why}")
    runnable = [n for n, _ in direct.rows if n not in direct.skipped]
    runnable_proxies = [n for n, _ in proxies.rows if n not in proxies.skipped]

    for r in range(sizes.rounds):
        for key, title, unit, _ in direct.workloads:
            for name in rotated(runnable, r):
                s = direct.get(name, key)
                try:
                    value: float | None = measure(name, key, sizes, layout)
                    log(f"round {r + 1}/{sizes.rounds} {title:16} {name:10} {value:12.2f} {unit}")
                except MeasurementError as exc:
                    value = None
                    s.errors.append(str(exc))
                    log(f"round {r + 1}/{sizes.rounds} {title:16} {name:10} FAILED: {exc}")
                s.values.append(value)
        for key, title, unit, _ in proxies.workloads:
            for name in rotated(runnable_proxies, r):
                s = proxies.get(name, key)
                try:
                    workload = key.removesuffix("-free")
                    where_to = layout if workload == key else Layout(None)
                    value = measure_proxy(name, workload, sizes, where_to)
                    where = f"round {r + 1}/{sizes.rounds} proxy {title:10} {name:12}"
                    log(f"{where} {value:12.2f} {unit}")
                except MeasurementError as exc:
                    value = None
                    s.errors.append(str(exc))
                    log(f"round {r + 1}/{sizes.rounds} proxy {title:10} {name:12} FAILED: {exc}")
                s.values.append(value)

    elapsed = time.monotonic() - started
    command = "python -m bench" + "".join(f" {a}" for a in argv)
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "command": command,
        "layout": layout.describe()
        + ("; the proxy table's unpinned columns: processes unpinned" if pinned else ""),
        "sizes": (
            f"{sizes.rounds} round(s); bulk {args.bulk_mib} MiB in {CHUNK // 1024} KiB writes; "
            f"ping-pong {MSG}-byte messages and connection rate for {sizes.seconds:g} s each; "
            f"{sizes.idle_connections} idle connections"
        ),
        "elapsed": f"{elapsed:.0f} s",
    }
    write(meta, direct, proxies, args.out)
    return 0


def write(
    meta: dict[str, Any], direct: _report.Table, proxies: _report.Table, out: Path | None
) -> None:
    """Print the Markdown report; with C{out}, write every file there too."""
    md = render_markdown(meta, direct, proxies)
    sys.stdout.write(md)
    sys.stdout.flush()
    if out is not None:
        (out / "_static").mkdir(parents=True, exist_ok=True)
        (out / "benchmarks.md").write_text(md)
        (out / "benchmarks-results.inc").write_text(render_rst(meta, direct, proxies))
        _report.write_json(out / "benchmarks.json", meta, direct, proxies)
        _report.write_chart(out / "_static" / "benchmarks.png", direct, proxies)
        log(f"wrote {out / 'benchmarks.md'} and {out / '_static' / 'benchmarks.png'}")


def replot(path: Path, out: Path | None) -> int:
    """Write the report again from the raw figures of an earlier run."""
    import json

    data = json.loads(path.read_text())
    direct = _report.table_from_json(data["direct"], _report.WORKLOADS)
    proxies = _report.table_from_json(
        data["proxy"], _report.PROXY_WORKLOADS + _report.PROXY_FREE_WORKLOADS
    )
    write(data["meta"], direct, proxies, out)
    return 0


def _about(meta: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Date", meta["date"]),
        ("Machine", meta["machine"]),
        ("Versions", meta["versions"]),
        ("Command", meta["command"]),
        ("Sizes", meta["sizes"]),
        ("Layout", meta["layout"] + "; client and server in separate processes, on 127.0.0.1"),
        ("Run time", meta["elapsed"]),
    ]


def render_markdown(meta: dict[str, Any], direct: _report.Table, proxies: _report.Table) -> str:
    """The whole Markdown report."""
    lines = ["# txtcp benchmarks", ""]
    for name, value in _about(meta):
        shown = f"`{value}`" if name == "Command" else value
        lines.append(f"- {name}: {shown}")
    lines += [
        "",
        "Cells: median of the rounds (min-max).  Ratios are computed round by round, "
        "then summarised the same way.",
        "",
    ]
    if direct.workloads:
        lines += [
            "## Direct: client and server",
            "",
            _report.markdown_table(direct, "contender", "raw Twisted"),
            "",
        ]
    if proxies.workloads:
        lines += [
            "## Proxy: blocking-socket client and server, the proxy between them",
            "",
            _report.markdown_table(proxies, "proxy", "direct"),
            "",
        ]
    return "\n".join(lines)


def render_rst(meta: dict[str, Any], direct: _report.Table, proxies: _report.Table) -> str:
    """The tables and the run's description, for docs/benchmarks.rst to include."""
    lines = [".. This file is written by python -m bench; do not edit it.", ""]
    for name, value in _about(meta):
        shown = f"``{value}``" if name == "Command" else value
        lines.append(f":{name}: {shown}")
    lines.append("")
    if direct.workloads:
        lines += [
            _report.rst_table(
                direct, "contender", "raw Twisted", "Direct: client and server (median, min-max)"
            ),
            "",
        ]
    if proxies.workloads:
        lines += [
            _report.rst_table(
                proxies, "proxy", "direct", "Proxy: blocking-socket ends, the proxy between them"
            ),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
