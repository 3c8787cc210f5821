"""Events stored by one `INSERT ... SELECT`: planning events of date triggers, audience copies.

The rows are chosen by SQL and never pass through Python, so a deploy or a catalogue
event reaching 100,000 contacts is one statement, and one transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col

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


def insert_selected(session: Session, chosen: Any) -> int:
    """Store the events `chosen` selects (its columns as `COLUMNS`); how many."""
    statement = insert(Event).from_select(list(COLUMNS), chosen)
    # Counted from RETURNING: rowcount is -1 for INSERT ... SELECT on PostgreSQL.
    return len(session.execute(statement.returning(col(Event.id))).all())
