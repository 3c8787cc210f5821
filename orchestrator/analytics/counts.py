"""Counters kept on write: `journey_counts`, one row per (journey, version, day, step,
metric, channel), bumped in the same transaction as the change it counts.

The day is the UTC day the run *entered*: every number of a period is about the same
cohort of entrants, so a funnel never shows more opens than sends because the opens
of last month's sends fell into this month. A bump happens only where the change
it counts happens for the first time (a trail row inserted, a status reached), so
retries never count twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from ..store.tables import JourneyCount, JourneyRun

# Journey-level metrics have no step.
JOURNEY = ""
# Rows one counter is spread over: concurrent bumps rarely wait for each other's lock.
SHARDS = 8


@dataclass(frozen=True)
class Cohort:
    """Where a run's numbers go: its journey, version and entry day."""

    journey_id: str
    version: int
    day: str

    @classmethod
    def of(cls, run: JourneyRun) -> Cohort:
        return cls(run.journey_id, run.version, day_of(run.entered_at))


def day_of(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).date().isoformat()


def cohort_of_run(session: Session, workflow_id: str, entry_seq: int) -> Cohort | None:
    run = session.exec(
        select(JourneyRun).where(
            JourneyRun.workflow_id == workflow_id, JourneyRun.entry_seq == entry_seq
        )
    ).first()
    return Cohort.of(run) if run is not None else None


def bump(
    session: Session,
    cohort: Cohort,
    metric: str,
    step_id: str = JOURNEY,
    channel: str = "",
    count: int = 1,
    amount: float = 0.0,
) -> None:
    """Add `count` (and `amount`, with its square) to one counter: an upsert, so two
    processes bumping the same counter both count."""
    values = {
        "journey_id": cohort.journey_id,
        "version": cohort.version,
        "day": cohort.day,
        "step_id": step_id[:200],
        "metric": metric[:250],
        "channel": channel[:32],
        "shard": random.randrange(SHARDS),
        "count": count,
        "amount": amount,
        "amount_sq": amount * amount,
    }
    _add(session, values)


# Days older than this many are folded into one shard: their counters change rarely
# (a late open, a late order), and the reads of a long-lived journey stay small.
FOLD_AFTER_DAYS = 2


def fold_shards(session: Session, before: str, limit: int = 5000) -> int:
    """Move the counts of days before `before` (YYYY-MM-DD) from shards 1..N into shard 0;
    returns how many rows were folded (call again while it returns `limit`).

    DELETE ... RETURNING takes each row once: a concurrent bump of a deleted row inserts
    a fresh row (folded next time), so nothing is lost, and two routers folding at once
    fold different rows.
    """
    table: Any = JourneyCount.__table__  # type: ignore[attr-defined]
    keys = KEYS
    picked = (
        select(*(table.c[k] for k in keys))
        .where(table.c.day < before, table.c.shard != 0)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    chosen = tuple(table.c[k] for k in keys)
    rows = session.execute(
        delete(table)
        .where(tuple_(*chosen).in_(picked))
        .returning(
            *(table.c[k] for k in keys[:-1]), table.c.count, table.c.amount, table.c.amount_sq
        )
    ).all()
    sums: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        total = sums.setdefault(tuple(row[:6]), [0, 0.0, 0.0])
        total[0] += row.count
        total[1] += row.amount
        total[2] += row.amount_sq
    for key, (count, amount, squares) in sums.items():
        values = dict(zip(KEYS[:-1], key, strict=True))
        _add(
            session,
            {**values, "shard": 0, "count": int(count), "amount": amount, "amount_sq": squares},
        )
    return len(rows)


# A counter's key: its row is (key, count, amount, amount_sq).
KEYS = ("journey_id", "version", "day", "step_id", "metric", "channel", "shard")


def _add(session: Session, values: dict[str, Any]) -> None:
    """Add a row's count, amount and amount_sq to the counter with its key (an upsert)."""
    session.execute(_upsert(session.get_bind().dialect.name), values)


_UPSERTS: dict[str, Any] = {}


def _upsert(dialect: str) -> Any:
    """The counter upsert of a database, built once: the values come as parameters, so
    SQLAlchemy compiles it once too (building it per bump was a fifth of the router's
    time on engagement events, benchmarks/engagement_signals.py)."""
    if dialect not in _UPSERTS:
        table: Any = JourneyCount.__table__  # type: ignore[attr-defined]
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(table)
        _UPSERTS[dialect] = statement.on_conflict_do_update(
            index_elements=list(KEYS),
            set_={
                column: table.c[column] + statement.excluded[column]
                for column in ("count", "amount", "amount_sq")
            },
        )
    return _UPSERTS[dialect]
