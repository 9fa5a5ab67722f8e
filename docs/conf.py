"""Sphinx configuration for txtcp's docs."""

from __future__ import annotations

project = "txtcp"
author = "The txtcp developers"
copyright = "2026, the txtcp developers"
extensions: list[str] = []
templates_path: list[str] = []
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
html_static_path = ["_static"]

# The API reference is built by pydoctor (see ./dev docs) into _build/html/api.
