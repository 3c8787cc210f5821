"""The "did you mean" behind every suggestion `journeys validate` and preview make.

One rule for events, condition keys, message folders, part files and timezones: the
known name written another way (`key` folds case, separators...) wins, else the
closest spelling of that form above `cutoff`, else nothing (a wild guess misleads).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


def closest_name(
    name: str,
    known: Iterable[str],
    *,
    key: Callable[[str], str] = str.casefold,
    cutoff: float = 0.75,
) -> str | None:
    """The known name `name` probably meant, as the known list writes it, or None."""
    by_key = {key(candidate): candidate for candidate in known}
    wanted = key(name)
    if wanted in by_key:
        return by_key[wanted]
    close = difflib.get_close_matches(wanted, list(by_key), n=1, cutoff=cutoff)
    return by_key[close[0]] if close else None
