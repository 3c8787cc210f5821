"""A journey's versions as its owners read them: when each was deployed, whether new
entries start on it, how many runs are on it, and what changed since the one before.

`journeys versions JOURNEY` prints it and the dashboard's journey page shows it: one
reading of the store for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from ..dsl import models as m
from ..store.tables import JourneyRun, JourneyVersion
from .changes import compare, sends
from .template_pins import describe_pin_changes


@dataclass(frozen=True)
class VersionSummary:
    version: int
    deployed_at: datetime
    active: bool  # new entries start on it
    retired_at: datetime | None
    runs_active: int  # waiting or working on this version now
    runs_total: int
    changes: tuple[str, ...]  # since the version before it, in a marketer's words
    source_path: str | None
    rolled_back: bool = False  # made current by `journeys deploy --rollback`


def version_history(session: Session, journey_id: str) -> list[VersionSummary]:
    """Every version of `journey_id`, newest first; empty for a journey never deployed."""
    rows = session.exec(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id)
        .order_by(col(JourneyVersion.version))
    ).all()
    active = func.sum(case((col(JourneyRun.status) == "active", 1), else_=0))
    counts = {
        version: (int(running or 0), int(total))
        for version, running, total in session.exec(
            select(JourneyRun.version, active, func.count())
            .where(JourneyRun.journey_id == journey_id)
            .group_by(col(JourneyRun.version))
        ).all()
    }
    found = []
    previous: m.Journey | None = None
    previous_pins: dict[str, str] = {}
    for row in rows:
        model = m.Journey.model_validate(row.spec)
        changes = [c.text for c in compare(previous, model)] if previous is not None else []
        pins = dict(row.templates or {})
        if previous is not None and previous_pins and pins:
            names = set(sends(previous)) | set(sends(model))
            changes += [text for _, text in describe_pin_changes(previous_pins, pins, names)]
        elif previous is not None and pins and not previous_pins:
            changes.append("template files pinned from this version on")
        running, total = counts.get(row.version, (0, 0))
        found.append(
            VersionSummary(
                version=row.version,
                deployed_at=row.deployed_at,
                active=row.active,
                retired_at=row.retired_at,
                runs_active=running,
                runs_total=total,
                changes=tuple(changes),
                source_path=row.source_path,
                rolled_back=row.rolled_back_at is not None,
            )
        )
        previous, previous_pins = model, pins
    return list(reversed(found))
