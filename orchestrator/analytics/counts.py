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
    table: Any = JourneyCount.__table__  # type: ignore[attr-defined]
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
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["journey_id", "version", "day", "step_id", "metric", "channel", "shard"],
        set_={
            "count": table.c.count + statement.excluded.count,
            "amount": table.c.amount + statement.excluded.amount,
            "amount_sq": table.c.amount_sq + statement.excluded.amount_sq,
        },
    )
    session.execute(statement)
