"""Planning events: how contacts known before a date-triggered journey get their watch.

A deploy that makes a date-triggered journey current stores one internal event per
contact whose trait holds a date, chosen by SQL (`INSERT ... SELECT`, no contact is
loaded into Python), keyed `date-plan:{journey}:{version}{activation}:{contact}` (cut at
the column's 255 characters) so a repeated deploy adds none. A version made current
again (a retired journey deployed again, a rollback) is a new `activation`: the watches
that ended while it was not current, and contacts identified meanwhile, are planned.
The router delivers them like any event, in batches, across routers and restarts (the
events table is the outbox): each starts the contact's `DateTriggerWorkflow`, which
plans from the store. Contacts identified later get theirs from their identify.
"""

from __future__ import annotations

from sqlalchemy import JSON, and_, exists, literal, not_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from ..segments.query import holds_iso_date
from .bulk_events import cut_key, insert_selected
from .tables import ORIGIN_INTERNAL, Contact, Event, utcnow

DATE_PLAN_EVENT = "date_plan"  # events.type; `name` is the journey


def plan_dates(
    session: Session, journey_id: str, version: int, trait: str, activation: str = ""
) -> int:
    """Store a planning event for every contact whose `trait` holds a date; how many."""
    now = utcnow()
    prefix = f"date-plan:{journey_id}:{version}{activation}:"
    planned = select(Event.id).where(
        Event.origin == ORIGIN_INTERNAL, col(Event.message_id).startswith(prefix, autoescape=True)
    )
    if session.execute(planned.limit(1)).first() is not None:
        return 0  # this version's contacts were planned by an earlier deploy
    stamp = Event.__table__.c.timestamp.type  # type: ignore[attr-defined]
    earlier = aliased(Event)
    key = cut_key(literal(prefix) + col(Contact.id))
    chosen = select(
        key,
        literal(ORIGIN_INTERNAL),
        literal(DATE_PLAN_EVENT),
        literal(journey_id),
        col(Contact.id),
        literal({}, JSON),
        literal({}, JSON),
        literal(now, stamp),
        literal(now, stamp),
    ).where(
        holds_iso_date(trait),
        not_(exists().where(and_(earlier.origin == ORIGIN_INTERNAL, earlier.message_id == key))),
    )
    return insert_selected(session, chosen)
