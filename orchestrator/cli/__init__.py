"""The `journeys` command line: one click group, its commands and their tables."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
