"""Human durations ("24h", "2d", "1d12h", "90s") as whole seconds.

Journeys are data that travel through Temporal histories, so a duration is
kept as an int of seconds: it serializes the same way everywhere.
"""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SECONDS = 366 * 86400
_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$")


class DurationError(ValueError):
    """A duration that cannot be read or that no journey could honour."""


def parse_duration(text: str | int) -> int:
    """Return the number of seconds in `text`; raise DurationError otherwise."""
    if isinstance(text, bool):
        raise DurationError(f"expected a duration such as 30m, 24h or 2d, got {text!r}")
    if isinstance(text, int):
        seconds = text
    elif isinstance(text, str) and _WHOLE.match(text):
        seconds = sum(int(n) * UNITS[u] for n, u in _PART.findall(text))
    else:
        raise DurationError(
            f"invalid duration {text!r}: expected a number with a unit "
            "s, m, h, d or w, such as 30m, 24h, 2d or 1d12h"
        )
    if seconds <= 0:
        raise DurationError(f"duration {text!r} must be longer than zero")
    if seconds > MAX_SECONDS:
        raise DurationError(f"duration {text!r} is longer than the maximum of 366d")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest human spelling of `seconds` ("1d12h")."""
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, UNITS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
