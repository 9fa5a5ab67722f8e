"""
thor's C{thor.tcp} module name: L{TcpConnection} lives here too.
"""

from __future__ import annotations

from .core import TcpConnection

__all__ = ["TcpConnection"]
