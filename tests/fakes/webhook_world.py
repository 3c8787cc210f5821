"""The store as webhooks find it: contacts, and messages the send pipeline has sent.

Rows are written the way `orchestrator/activities/sending.py` leaves them after the
provider accepted a message (status `sent`, the provider's id recorded), so webhook
tests need no Temporal run to have something to report on.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import select

from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, Event, Message, Suppression, utcnow


def add_contact(engine: Engine, contact_id: str, **fields: Any) -> None:
    with session_scope(engine) as session:
        session.add(Contact(id=contact_id, **fields))


def add_message(
    engine: Engine,
    contact_id: str,
    channel: str,
    recipient: str,
    provider_message_id: str | None = None,
    status: str = "sent",
    step_id: str = "promo",
) -> str:
    """A sent message of `contact_id`; returns our message id (what SendGrid echoes)."""
    message_id = str(uuid.uuid4())
    with session_scope(engine) as session:
        session.add(
            Message(
                id=message_id,
                idempotency_key=f"journey:test:{contact_id}:{step_id}:{message_id}",
                workflow_id=f"journey:test:{contact_id}",
                entry_seq=1,
                step_id=step_id,
                journey_id="test",
                contact_id=contact_id,
                channel=channel,
                adapter={"email": "sendgrid", "sms": "twilio"}.get(channel, channel),
                template="promo",
                recipient=recipient,
                status=status,
                provider_message_id=provider_message_id,
                sent_at=utcnow(),
                queued_at=utcnow(),
            )
        )
    return message_id


def events(engine: Engine, **where: Any) -> list[Event]:
    with session_scope(engine) as session:
        query = select(Event)
        for column, value in where.items():
            query = query.where(getattr(Event, column) == value)
        rows = list(session.exec(query.order_by(Event.id)))
        for row in rows:
            session.expunge(row)
        return rows


def suppressions(engine: Engine) -> dict[tuple[str, str], str]:
    """{(channel, address): reason}"""
    with session_scope(engine) as session:
        return {(s.channel, s.address): s.reason for s in session.exec(select(Suppression))}


def consent(engine: Engine, contact_id: str) -> dict[str, Any]:
    with session_scope(engine) as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        return dict(contact.consent or {})


def message_row(engine: Engine, message_id: str) -> Message:
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        assert row is not None
        session.expunge(row)
        return row


def row_counts(engine: Engine) -> tuple[int, int]:
    """(events, suppressions): what a rejected request must leave unchanged."""
    with session_scope(engine) as session:
        n_events = session.exec(select(func.count()).select_from(Event)).one()
        n_suppressions = session.exec(select(func.count()).select_from(Suppression)).one()
        return int(n_events), int(n_suppressions)
