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


# The most days each month can have (29 February comes in leap years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def expand(field: str, low: int, high: int) -> set[int]:
    """The values a checked cron field matches (`*/10`, `1-5`, `1,15`)."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            start, end = low, high
        else:
            first, _, last = span.partition("-")
            start = int(first)
            end = int(last) if last else (high if step else start)
        values.update(range(start, end + 1, int(step or 1)))
    return values


def never_due(text: str) -> str | None:
    """Why a checked cron line never comes due (`0 10 31 2 *`: no 31 February), or None."""
    _, _, day, month, _ = text.split()
    days, months = expand(day, 1, 31), expand(month, 1, 12)
    if any(d <= _MONTH_DAYS[m - 1] for m in months for d in days):
        return None
    return f"no month of {month!r} has day {', '.join(str(d) for d in sorted(days))}"


def day_and_weekday(text: str) -> bool:
    """Whether a checked cron line names both a day of the month and a weekday: Temporal
    runs it on the days that match both, where crontab runs it on either."""
    _, _, day, _, weekday = text.split()
    return day != "*" and weekday != "*"
