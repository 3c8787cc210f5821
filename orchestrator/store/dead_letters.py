"""Dead letters: events that keep failing to route, counted so they stop blocking.

A contact's events are routed in order, so an event whose routing fails every time
(a payload Temporal refuses, a bug) would hold back that contact's later events for
ever. Each failure of the event itself is counted here, in the store, so every router
sees one count whichever of them tried. After `dead_after` attempts the event becomes
a dead letter: claims skip it (`not_dead`), the contact's later events go on, and it
waits for an operator (`journeys events dead-letter list|retry|drop`).

A retry deletes the row: the event is claimable again with its own id, so it is routed
before the contact's later events that are still unrouted (those routed meanwhile are
not routed again). A drop keeps the row (`dropped`, with when) for audit, and the
event is never routed; erasing the contact deletes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from .db import session_scope
from .tables import DEAD, DROPPED, FAILING, DeadLetter, Event, utcnow

__all__ = [
    "DEAD",
    "DROPPED",
    "FAILING",
    "Attempt",
    "DeadLetterError",
    "Letter",
    "count_dead",
    "drop",
    "forget",
    "letters",
    "not_dead",
    "record_failure",
    "retry",
]


class DeadLetterError(ValueError):
    """Ids that name no dead letter: the command changes nothing and says which."""


@dataclass(frozen=True)
class Attempt:
    """A failure as counted: the event's attempts so far and whether it is dead now."""

    attempts: int
    dead: bool


@dataclass(frozen=True)
class Letter:
    """A dead letter as operators see it, with its event's contact and name."""

    event_id: int
    contact_id: str
    event_type: str
    name: str | None
    status: str
    attempts: int
    error: str
    first_failed_at: datetime
    last_failed_at: datetime
    dead_at: datetime | None
    dropped_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "contact_id": self.contact_id,
            "type": self.event_type,
            "name": self.name,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
            "dead_at": self.dead_at.isoformat() if self.dead_at else None,
            "dropped_at": self.dropped_at.isoformat() if self.dropped_at else None,
        }


def not_dead(event_id: Any = None) -> ColumnElement[bool]:
    """A condition on events: not a dead letter (waiting or dropped). Failing events
    are still routed: only giving up on them lets the contact move on."""
    given = col(Event.id) if event_id is None else event_id
    return given.not_in(select(DeadLetter.event_id).where(DeadLetter.status != FAILING))


def record_failure(
    engine: Engine, event_id: int, error: str, dead_after: int, now: datetime | None = None
) -> Attempt:
    """Count one failed attempt of the event (an upsert: routers may race) and make it
    a dead letter once it has failed `dead_after` times (0: never)."""
    now = now or utcnow()
    table: Any = DeadLetter.__table__  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(table).values(
            event_id=event_id,
            status=FAILING,
            attempts=1,
            error=error[:500],
            first_failed_at=now,
            last_failed_at=now,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["event_id"],
            set_={
                "attempts": table.c.attempts + 1,
                "error": statement.excluded.error,
                "last_failed_at": statement.excluded.last_failed_at,
            },
        ).returning(table.c.attempts, table.c.status)
        attempts, status = session.execute(statement).one()
        if status == FAILING and dead_after and attempts >= dead_after:
            session.exec(  # type: ignore[call-overload]
                update(DeadLetter)
                .where(col(DeadLetter.event_id) == event_id)
                .values(status=DEAD, dead_at=now)
            )
            status = DEAD
    return Attempt(int(attempts), status == DEAD)


def forget(session: Session, event_ids: Sequence[int]) -> None:
    """Routed at last: the failures of these events no longer matter."""
    if event_ids:
        session.exec(  # type: ignore[call-overload]
            delete(DeadLetter).where(
                col(DeadLetter.event_id).in_(event_ids), DeadLetter.status == FAILING
            )
        )


def letters(engine: Engine, dropped: bool = False) -> list[Letter]:
    """Dead letters waiting for an operator (with `dropped`, the dropped ones too),
    oldest event first."""
    states = (DEAD, DROPPED) if dropped else (DEAD,)
    with session_scope(engine) as session:
        rows = session.exec(
            select(DeadLetter, Event.contact_id, Event.type, Event.name)
            .join(Event, col(Event.id) == col(DeadLetter.event_id))
            .where(col(DeadLetter.status).in_(states))
            .order_by(col(DeadLetter.event_id))
        )
        return [
            Letter(
                event_id=row.event_id,
                contact_id=contact_id,
                event_type=event_type,
                name=name,
                status=row.status,
                attempts=row.attempts,
                error=row.error,
                first_failed_at=row.first_failed_at,
                last_failed_at=row.last_failed_at,
                dead_at=row.dead_at,
                dropped_at=row.dropped_at,
            )
            for row, contact_id, event_type, name in rows
        ]


def count_dead(session: Session) -> int:
    """Dead letters waiting for an operator (dropped ones are done with)."""
    return int(
        session.exec(select(func.count()).where(DeadLetter.status == DEAD)).one()  # type: ignore[arg-type]
    )


def retry(engine: Engine, event_ids: Sequence[int] | None) -> list[int]:
    """Put dead letters (None: every waiting one) back for routing, attempts reset.

    Named ids may be waiting or dropped; an id that is neither changes nothing and
    raises `DeadLetterError`. Returns the ids put back.
    """
    with session_scope(engine) as session:
        ids = _chosen(session, event_ids, (DEAD, DROPPED))
        if ids:
            session.exec(  # type: ignore[call-overload]
                delete(DeadLetter).where(col(DeadLetter.event_id).in_(ids))
            )
        return ids


def drop(engine: Engine, event_ids: Sequence[int] | None) -> list[int]:
    """Mark waiting dead letters (None: every one) dropped: never routed, row kept.

    An id that is not waiting (unknown, still failing, dropped already) changes nothing
    and raises `DeadLetterError`. Returns the ids dropped.
    """
    with session_scope(engine) as session:
        ids = _chosen(session, event_ids, (DEAD,))
        if ids:
            session.exec(  # type: ignore[call-overload]
                update(DeadLetter)
                .where(col(DeadLetter.event_id).in_(ids))
                .values(status=DROPPED, dropped_at=utcnow())
            )
        return ids


def _chosen(
    session: Session, event_ids: Sequence[int] | None, states: tuple[str, ...]
) -> list[int]:
    """The ids to act on (None: every waiting dead letter), locked for this transaction
    where the database can; named ids must be in one of `states`."""
    query = select(DeadLetter.event_id, DeadLetter.status)
    if event_ids is not None:
        query = query.where(col(DeadLetter.event_id).in_(set(event_ids)))
    else:  # --all: the waiting ones
        query = query.where(DeadLetter.status == DEAD)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    found = dict(session.exec(query).all())
    if event_ids is None:
        return sorted(found)
    problems = []
    for event_id in sorted(set(event_ids)):
        status = found.get(event_id)
        if status in states:
            continue
        if status is None:
            problems.append(f"event {event_id} is not in the dead letter")
        elif status == FAILING:
            problems.append(f"event {event_id} is still being retried, not a dead letter yet")
        else:
            problems.append(f"event {event_id} is {status} already")
    if problems:
        raise DeadLetterError(f"{'; '.join(problems)}: nothing changed")
    return sorted(set(event_ids))
