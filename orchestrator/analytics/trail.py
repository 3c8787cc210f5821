"""Each run's trail: what happened to it and why, written once per fact.

Activities write it inside their own transactions (entry, each step reached with
the decisions taken since the last one, the exit, the conversion). A row's `key`
names the fact (run, step, kind), so an activity retried after its commit writes
nothing new and bumps no counter twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from ..store.db import dialect_insert
from ..store.tables import JourneyRun, TrailEntry
from .counts import JOURNEY, Cohort, bump

# Decision kinds and the counter each outcome goes to (at the decision's step).
ENTERED = "entered"
REFUSED = "refused"
STEP = "step"
BRANCH = "branch"
SPLIT = "split"
WAIT = "wait"
SEND = "send"
GOAL = "goal"
EXIT = "exit"


def record(
    session: Session,
    run: JourneyRun,
    kind: str,
    at: datetime,
    step_id: str | None = None,
    outcome: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    key: str | None = None,
    counters: Iterable[tuple[str, str]] = (),
    amount: float = 0.0,
) -> bool:
    """Write one trail row and bump its `counters` ((step, metric) pairs); False when
    the row was already there (nothing bumped)."""
    key = key or f"{run.workflow_id}:{run.entry_seq}:{step_id or ''}:{kind}"
    inserted = _insert(
        session,
        {
            "key": key[:700],
            "workflow_id": run.workflow_id,
            "entry_seq": run.entry_seq,
            "journey_id": run.journey_id,
            "version": run.version,
            "contact_id": run.contact_id,
            "step_id": step_id,
            "kind": kind,
            "outcome": (outcome or None) and outcome[:200],
            "reason": (reason or None) and reason[:500],
            "detail": detail or {},
            "at": at,
        },
    )
    if inserted:
        cohort = Cohort.of(run)
        for step, metric in counters:
            bump(session, cohort, metric, step, amount=amount)
    return inserted


def record_decision(
    session: Session,
    run: JourneyRun,
    kind: str,
    step_id: str,
    outcome: str,
    reason: str | None,
    detail: dict[str, Any],
    at: datetime,
) -> bool:
    """A branch case, split variant, wait outcome or send result, counted at its step."""
    counters = [(step_id, decision_metric(kind, outcome))]
    return record(session, run, kind, at, step_id, outcome, reason, detail, counters=counters)


def decision_metric(kind: str, outcome: str) -> str:
    """`branch:case 1`, `split:B`, `wait:timeout`, `send:suppressed`…"""
    return f"{kind}:{outcome}"


def record_refusal(
    session: Session,
    workflow_id: str,
    trigger_event_id: int | None,
    journey_id: str,
    version: int,
    contact_id: str,
    code: str,
    reason: str,
    at: datetime,
) -> bool:
    """An entry that was not allowed: counted on the day it was refused."""
    run = JourneyRun(
        workflow_id=workflow_id,
        entry_seq=0,
        journey_id=journey_id,
        version=version,
        contact_id=contact_id,
        entered_at=at,
    )
    key = f"{workflow_id}:e{trigger_event_id}:refused"
    return record(
        session,
        run,
        REFUSED,
        at,
        outcome=code,
        reason=reason,
        detail={"trigger_event_id": trigger_event_id},
        key=key,
        counters=[(JOURNEY, f"refused:{code}")],
    )


def split_variants(session: Session, run: JourneyRun) -> list[tuple[str, str]]:
    """(split step, variant) for each split the run went through."""
    rows = session.exec(
        select(TrailEntry.step_id, TrailEntry.outcome).where(
            TrailEntry.workflow_id == run.workflow_id,
            TrailEntry.entry_seq == run.entry_seq,
            TrailEntry.kind == SPLIT,
        )
    )
    return [(step, outcome) for step, outcome in rows if step and outcome]


def trail_of(
    session: Session,
    contact_ids: list[str],
    journey_id: str | None = None,
    newest: int | None = None,
) -> list[TrailEntry]:
    """The contacts' trail in time order; `newest`: only that many of the latest rows."""
    query = select(TrailEntry).where(col(TrailEntry.contact_id).in_(contact_ids))
    if journey_id is not None:
        query = query.where(TrailEntry.journey_id == journey_id)
    if newest is not None:
        latest = query.order_by(col(TrailEntry.at).desc(), col(TrailEntry.id).desc())
        return list(reversed(session.exec(latest.limit(newest)).all()))
    return list(session.exec(query.order_by(col(TrailEntry.at), col(TrailEntry.id))))


def _insert(session: Session, values: dict[str, Any]) -> bool:
    table: Any = TrailEntry.__table__  # type: ignore[attr-defined]
    statement = (
        dialect_insert(session)(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
    ).returning(table.c.id)
    return session.execute(statement).first() is not None
