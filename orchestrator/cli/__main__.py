"""`python -m orchestrator.cli`: the `journeys` command without its console script."""

from __future__ import annotations

from .main import main

main()
