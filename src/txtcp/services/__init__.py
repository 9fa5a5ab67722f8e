"""
txtcp's twistd services: L{txtcp.services.echo} (C{twistd tcp-echo}) and
L{txtcp.services.proxy} (C{twistd tcp-proxy}).  Each module has C{Options},
C{makeService} and a typed builder for use inside an application.
"""

from __future__ import annotations

from ._common import ListenError

__all__ = ["ListenError"]
