"""Entries per day: the journeys list's sparklines, from the counters (never the runs).

A day is the UTC day runs entered, as everywhere in the counters (`counts.py`).
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from ..store.tables import JourneyCount
from .counts import JOURNEY


def entries_by_day(session: Session, first: date, last: date) -> dict[str, list[int]]:
    """{journey: [entered on `first`, the day after, ..., on `last`]}, zeros included,
    for every journey with a counter in the period (one grouped query)."""
    if last < first:
        return {}
    c = JourneyCount
    rows = session.exec(
        select(c.journey_id, c.day, func.sum(c.count))
        .where(
            c.step_id == JOURNEY,
            c.metric == "entered",
            col(c.day) >= first.isoformat(),
            col(c.day) <= last.isoformat(),
        )
        .group_by(col(c.journey_id), col(c.day))
    )
    days = (last - first).days + 1
    found: dict[str, list[int]] = {}
    for journey_id, day, count in rows:
        series = found.setdefault(journey_id, [0] * days)
        index = (date.fromisoformat(day) - first).days
        if 0 <= index < days:
            series[index] += int(count or 0)
    return found


def period_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def latest_entry_day(session: Session) -> date | None:
    """The newest day any run entered (a simulation's store lies in the future)."""
    c = JourneyCount
    day = session.exec(
        select(func.max(c.day)).where(c.step_id == JOURNEY, c.metric == "entered")
    ).one()
    return date.fromisoformat(day) if day else None
