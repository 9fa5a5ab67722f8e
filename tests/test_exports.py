"""The public face: __all__ names, their homes, and no reactor on import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import txtcp
import txtcp.core
from txtcp import tcp


def test_all_names_exist_and_are_the_core_objects() -> None:
    """Every name in txtcp.__all__ exists and is the very object in its home module."""
    for name in txtcp.__all__:
        obj = getattr(txtcp, name)
        if name == "__version__":
            continue
        home = getattr(txtcp.core, name, None)
        if home is None:
            module = getattr(obj, "__module__", "")
            home = getattr(sys.modules[module], name)
        assert obj is home, name
    for name in txtcp.core.__all__:
        assert hasattr(txtcp.core, name), name
    assert tcp.TcpConnection is txtcp.TcpConnection


def test_import_installs_no_reactor() -> None:
    """Importing txtcp and its modules leaves the reactor choice to the application."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import txtcp
        for info in pkgutil.walk_packages(txtcp.__path__, "txtcp."):
            importlib.import_module(info.name)
        assert "twisted.internet.reactor" not in sys.modules, "reactor imported"
        from twisted.internet import asyncioreactor
        asyncioreactor.install()
        from twisted.internet import reactor
        print(type(reactor).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "AsyncioSelectorReactor"
