"""
The contenders of the direct workloads and the proxies of the proxy
workload: names, labels, how to tell whether each can run here, versions.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_HINT = 'install the bench extra: pip install -e ".[bench]"'


@dataclasses.dataclass(frozen=True)
class Contender:
    """One library under test on the direct workloads."""

    name: str
    label: str
    module: str
    #: Modules that must import for the contender to run.
    needs: tuple[str, ...]
    hint: str
    #: Distribution whose version is reported.
    dist: str | None


CONTENDERS: tuple[Contender, ...] = (
    Contender("txtcp", "txtcp core", "c_txtcp", ("txtcp.core",), "", "txtcp"),
    Contender(
        "streams",
        "txtcp.streams",
        "c_streams",
        ("txtcp.streams",),
        "txtcp.streams must be importable (it is part of txtcp)",
        "txtcp",
    ),
    Contender(
        "handles",
        "txtcp.handles",
        "c_handles",
        ("txtcp.handles",),
        "txtcp.handles must be importable (it is part of txtcp)",
        "txtcp",
    ),
    Contender("twisted", "raw Twisted protocols", "c_twisted", ("twisted",), "", "Twisted"),
    Contender("thor", "thor", "c_thor", ("thor",), BENCH_HINT, "thor"),
    Contender(
        "hat",
        "hat-drivers (hat.drivers.tcp)",
        "c_hat",
        ("hat.drivers.tcp",),
        BENCH_HINT,
        "hat-drivers",
    ),
    Contender("asyncio", "asyncio streams", "c_asyncio", ("asyncio",), "", None),
    Contender("uvloop", "uvloop streams", "c_asyncio", ("uvloop",), BENCH_HINT, "uvloop"),
)

#: The contender every other one is compared with, round by round.
BASELINE = "twisted"


@dataclasses.dataclass(frozen=True)
class Proxy:
    """One way of relaying the proxy workload (or none: direct)."""

    name: str
    label: str
    hint: str


PROXIES: tuple[Proxy, ...] = (
    Proxy("direct", "direct (no proxy)", ""),
    Proxy("tcp-proxy", "twistd -n tcp-proxy (txtcp)", "txtcp.services.proxy must be importable"),
    Proxy("portforward", "twistd -n portforward", "Twisted's portforward plugin must be present"),
    Proxy("socat", "socat -b 262144", "install socat: apt-get install -y socat"),
    Proxy(
        "haproxy", "haproxy (mode tcp, nbthread 1)", "install haproxy: apt-get install -y haproxy"
    ),
)

#: The proxy every other one is compared with, round by round.
PROXY_BASELINE = "direct"


def twistd_path() -> Path:
    """The C{twistd} script beside this interpreter."""
    return Path(sys.executable).parent / "twistd"


def contender_problem(c: Contender) -> str | None:
    """Why C{c} cannot run here (with the fix), or C{None} when it can."""
    for name in (*c.needs, f"bench.{c.module}"):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a layer being written may fail in any way
            why = f"cannot import {name} ({type(exc).__name__}: {exc})"
            return f"{why}; {c.hint}" if c.hint else why
    return None


def proxy_problem(p: Proxy) -> str | None:
    """Why C{p} cannot run here (with the fix), or C{None} when it can."""
    if p.name == "direct":
        return None
    if p.name in ("tcp-proxy", "portforward"):
        if not twistd_path().exists():
            return f"no twistd beside {sys.executable}; install Twisted"
        module = "txtcp.services.proxy" if p.name == "tcp-proxy" else "twisted.tap.portforward"
        try:
            importlib.import_module(module)
        except Exception as exc:
            return f"cannot import {module} ({type(exc).__name__}: {exc}); {p.hint}"
        return None
    if shutil.which(p.name) is None:
        return f"{p.name} is not installed; {p.hint}"
    return None


def version(dist: str) -> str:
    """The installed version of distribution C{dist}, or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
