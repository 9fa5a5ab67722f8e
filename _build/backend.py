"""
Build backend: setuptools, plus a path entry that lets an editable install find
the C{twisted/plugins} dropin kept at the repository root.

Twisted discovers plugins by listing C{twisted/plugins} folders on
C{sys.path}; setuptools' editable finder maps packages through an import hook
that such a listing cannot see.  The editable wheel therefore also carries a
C{.pth} file naming the repository root.  Regular wheels are unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PTH = "txtcp_dropin_path.pth"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"{name},sha256={digest.decode()},{len(data)}\n"


def build_editable(  # type: ignore[no-redef]
    wheel_directory: str,
    config_settings: dict[str, object] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Build the editable wheel, then add the dropin path entry to it."""
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    path = os.path.join(wheel_directory, name)
    pth = (_ROOT + "\n").encode()
    tmp = path + ".tmp"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                text = data.decode()
                lines = text.splitlines(keepends=True)
                lines.insert(0, _record_line(_PTH, pth))
                data = "".join(lines).encode()
            dst.writestr(item, data)
        dst.writestr(_PTH, pth)
    os.replace(tmp, path)
    return name
