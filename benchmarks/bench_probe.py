"""Shared between the benchmark and its workflow's sandbox (imported passed-through).

The baseline workflows call `hit` from a workflow task (the first one, or the one that
handled a signal); the benchmark reads when the last of N distinct runs got there.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_seen: dict[str, float] = {}


def hit(workflow_id: str) -> None:
    """Record the first time the worker got to this point (`workflow_id`, or a key
    made of it such as `handled:<workflow id>`)."""
    now = time.monotonic()
    with _lock:
        _seen.setdefault(workflow_id, now)


def count(prefix: str) -> tuple[int, float]:
    """How many runs with ids starting with `prefix` got there, and when the last did."""
    with _lock:
        times = [t for wid, t in _seen.items() if wid.startswith(prefix)]
    return len(times), max(times, default=0.0)
