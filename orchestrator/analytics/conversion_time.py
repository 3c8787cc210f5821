"""How long runs took to convert, kept as a histogram of fixed buckets.

A counter per bucket (`converted:after:<bucket>`) is bumped when a run converts, so
the median and the spread come from a handful of counter rows however many runs
converted, and read the same in `journeys stats`, the API and a simulation report.
"""

from __future__ import annotations

# (label, upper bound in seconds); the last is open-ended.
BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1h", 3600),
    ("1-4h", 4 * 3600),
    ("4-12h", 12 * 3600),
    ("12-24h", 86400),
    ("1-2d", 2 * 86400),
    ("2-3d", 3 * 86400),
    ("3-7d", 7 * 86400),
    ("7-14d", 14 * 86400),
    ("14-30d", 30 * 86400),
    ("30d+", float("inf")),
)
PREFIX = "converted:after:"


def bucket_of(seconds: float) -> str:
    for label, bound in BUCKETS:
        if seconds < bound:
            return label
    return BUCKETS[-1][0]


def median_bucket(counts: dict[str, int]) -> str | None:
    """The bucket holding the median conversion; None when none converted."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for label, _ in BUCKETS:
        seen += counts.get(label, 0)
        if seen * 2 >= total:
            return label
    return None


def ordered(counts: dict[str, int]) -> dict[str, int]:
    """The buckets in time order, empty ones left out."""
    return {label: counts[label] for label, _ in BUCKETS if counts.get(label)}
