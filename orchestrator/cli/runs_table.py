"""`journeys runs`: journey runs from the store, as a plain-text table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import select

from ..store.db import session_scope
from ..store.tables import JourneyRun

COLUMNS = ("journey", "version", "contact", "status", "step", "converted", "entered", "updated")


def list_runs(
    engine: Engine,
    journey: str | None = None,
    contact: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[JourneyRun]:
    query = select(JourneyRun)
    if journey:
        query = query.where(JourneyRun.journey_id == journey)
    if contact:
        query = query.where(JourneyRun.contact_id == contact)
    if status:
        query = query.where(JourneyRun.status == status)
    query = query.order_by(JourneyRun.entered_at.desc(), JourneyRun.id.desc()).limit(limit)  # type: ignore[attr-defined,union-attr]
    with session_scope(engine) as session:
        rows = list(session.exec(query))
        for row in rows:
            session.expunge(row)
        return rows


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def render_runs(rows: list[JourneyRun]) -> str:
    if not rows:
        return "no journey runs"
    table = [COLUMNS] + [
        (
            r.journey_id,
            f"v{r.version}",
            r.contact_id,
            r.status,
            r.current_step or "-",
            "yes" if r.converted_at else "no",
            _time(r.entered_at),
            _time(r.updated_at),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
