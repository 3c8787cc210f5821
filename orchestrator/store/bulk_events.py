"""Events stored by one `INSERT ... SELECT`: planning events of date triggers, audience copies.

The rows are chosen by SQL and never pass through Python, so a deploy or a catalogue
event reaching 100,000 contacts is one statement, and one transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col

from .db import dialect_insert
from .tables import Event

# What the SELECT gives, in this order.
COLUMNS = (
    "message_id",
    "origin",
    "type",
    "name",
    "contact_id",
    "properties",
    "context",
    "timestamp",
    "received_at",
)


MESSAGE_ID_MAX = 255  # events.message_id


def cut_key(key: Any) -> Any:
    """A key built in SQL, cut to the column's width: a contact id may be 255 characters,
    and one too long must not fail the statement for everyone."""
    return func.substr(key, 1, MESSAGE_ID_MAX)


def insert_selected(session: Session, chosen: Any) -> int:
    """Store the events `chosen` selects (its columns as `COLUMNS`); how many.

    A key already stored is skipped, not an error: keys are cut to the column's 255
    characters, and two contacts with ids alike that far would share one. The second is
    left out (planned by its next identify, not alerted) rather than failing the
    statement for everyone.
    """
    statement = (
        dialect_insert(session)(Event)
        .from_select(list(COLUMNS), chosen)
        .on_conflict_do_nothing()
        # Counted from RETURNING: rowcount is -1 for INSERT ... SELECT on PostgreSQL.
        .returning(col(Event.id))
    )
    return len(session.execute(statement).all())
