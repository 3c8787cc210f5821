"""Cron lines as marketers write them: segment refreshes and recurring campaigns.

Checked here, field by field, so a mistake is reported where it was written; Temporal
runs the line.
"""

from __future__ import annotations

import re

_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_CRON_RANGES = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12))
_CRON_RANGES += (("weekday", 0, 7),)


def check_cron(text: str) -> None:
    """Raise ValueError unless `text` is five cron fields of numbers, ranges, lists and steps."""
    fields = text.split()
    example = 'such as "0 * * * *" (hourly) or "30 6 * * 1" (Mondays 06:30 UTC)'
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron line {text!r}: expected 5 fields (minute hour day month weekday), "
            f"{example}"
        )
    for field, (name, low, high) in zip(fields, _CRON_RANGES, strict=True):
        if not _CRON_FIELD.match(field):
            raise ValueError(
                f"invalid {name} {field!r} in cron line {text!r}: expected *, a number, "
                f"a range a-b, a step */n, or a comma list of them, {example}"
            )
        for number in re.findall(r"(?<![/\d])\d+", field):
            if not low <= int(number) <= high:
                raise ValueError(
                    f"invalid {name} {number} in cron line {text!r}: expected {low} to {high}"
                )
        for step in re.findall(r"/(\d+)", field):
            if int(step) == 0:
                raise ValueError(
                    f"invalid {name} step /0 in cron line {text!r}: expected /1 or more"
                )
        for start, end in re.findall(r"(\d+)-(\d+)", field):
            if int(start) > int(end):
                raise ValueError(
                    f"invalid {name} range {start}-{end} in cron line {text!r}: "
                    "the start must not be after the end"
                )
