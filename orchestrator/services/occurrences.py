"""When a date trigger is due: a contact's date, moved by whole days, at a local time.

`every: year` is the date's anniversary (a 29 February is due on 28 February of a year
without one), `every: once` the date itself. Either is moved by `offset` days (`-3d`:
three days before) and set at `at` in the contact's own zone, so Auckland and Lisbon both
get it at 10:00 their time. A local time that does not exist that day (a spring-forward
gap) is taken as the wall clock reads it after the change.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from ..dsl.conditions import Clock


@dataclass(frozen=True)
class Occurrence:
    at: datetime  # UTC
    day: date  # the contact's local day it is due on (after the offset)
    date: date  # the date it is about (this year's birthday, the trial's end)


def date_value(value: Any, zone_names: tuple[str | None, ...]) -> date | None:
    """The date a trait holds (ISO date, or a timestamp read in the first zone of
    `zone_names` that exists), else None, as conditions read dates."""
    found = Clock(datetime.now(UTC), zone_names).date_of(value)
    if found is None or found.year < 2 or found.year > 9998:
        return None
    return found


def next_occurrence(
    value: date, every: str, at: str, offset_days: int, zone: tzinfo, after: datetime
) -> Occurrence | None:
    """The first moment strictly after `after` when the trigger is due; None if never."""
    hour, minute = (int(part) for part in at.split(":"))
    if every == "once":
        found = _moment(value, offset_days, hour, minute, zone)
        return found if found is not None and found.at > after else None
    local_year = after.astimezone(zone).year
    for year in range(local_year - 1, local_year + 3):
        found = _moment(_anniversary(value, year), offset_days, hour, minute, zone)
        if found is not None and found.at > after:
            return found
    return None


def _anniversary(born: date, year: int) -> date:
    if (born.month, born.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, born.month, born.day)


def _moment(day: date, offset_days: int, hour: int, minute: int, zone: tzinfo) -> Occurrence | None:
    try:
        due = day + timedelta(days=offset_days)
        local = datetime.combine(due, time(hour, minute), tzinfo=zone)
    except OverflowError:
        return None
    # Round trip through UTC: a wall time in a spring-forward gap becomes a real moment.
    return Occurrence(local.astimezone(UTC), due, day)
