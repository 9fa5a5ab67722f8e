"""The built wheel: dropin, py.typed, no twisted/__init__.py, and twistd finds the
services from a normal (non-editable) install."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (path,) = out.glob("txtcp-*.whl")
    return path


def test_wheel_contents(wheel: Path) -> None:
    """The wheel holds the dropin, py.typed and the packages, and no twisted/__init__.py."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/txtcp_plugins.py" in names
    assert "txtcp/py.typed" in names
    assert "txtcp/services/echo.py" in names
    assert "txtcp/services/proxy.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not any(n.endswith("dropin.cache") for n in names)
    for module in ("streams", "tcpsocket", "components"):
        assert any(n.startswith(f"txtcp/{module}") for n in names), module
    assert any(n.startswith("txtcp/handles") for n in names)


def test_installed_wheel_finds_services(wheel: Path, tmp_path: Path) -> None:
    """From a plain install of the wheel, getPlugins finds tcp-echo and tcp-proxy."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    # Twisted and its dependencies come from this interpreter's site-packages.
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import txtcp, twisted.plugin as p\n"
        "from twisted.application.service import IServiceMaker\n"
        "assert 'site-packages' in txtcp.__file__, txtcp.__file__\n"
        "print(sorted(m.tapname for m in p.getPlugins(IServiceMaker)"
        " if m.tapname.startswith('tcp-')))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['tcp-echo', 'tcp-proxy']"
