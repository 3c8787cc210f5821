"""Storing Segment calls: upsert the contact, insert the event, commit - then ack."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ..store.db import session_scope
from ..store.tables import Contact, Event, utcnow
from .segment import IdentifyCall, SegmentCall, TrackCall

CONTACT_COLUMNS = ("email", "phone")


def store_call(engine: Engine, call: SegmentCall, kind: str) -> bool:
    """Commit the call; False when its messageId was already stored (a retry)."""
    received_at = utcnow()
    for attempt in range(2):
        try:
            with session_scope(engine) as session:
                _upsert_contact(session, call)
                session.add(
                    Event(
                        message_id=call.message_id or f"srv-{uuid.uuid4()}",
                        type=kind,
                        name=call.event if isinstance(call, TrackCall) else None,
                        contact_id=call.contact_id,
                        properties=_properties(call),
                        context=call.context,
                        timestamp=call.event_time(received_at),
                        received_at=received_at,
                    )
                )
            return True
        except IntegrityError:
            # Either the messageId is a retry, or two first calls raced on the contact.
            if call.message_id and _event_exists(engine, call.message_id):
                return False
            if attempt:
                raise
    return False


def _properties(call: SegmentCall) -> dict[str, Any]:
    if isinstance(call, TrackCall):
        return call.properties
    if isinstance(call, IdentifyCall):
        return call.traits
    return {}


def _event_exists(engine: Engine, message_id: str) -> bool:
    with session_scope(engine) as session:
        return (
            session.exec(select(Event.id).where(Event.message_id == message_id)).first() is not None
        )


def _upsert_contact(session: Session, call: SegmentCall) -> None:
    contact = session.get(Contact, call.contact_id, with_for_update=True)
    if contact is None:
        contact = Contact(id=call.contact_id)
        session.add(contact)
        session.flush()
    context = call.context or {}
    if isinstance(context.get("timezone"), str):
        contact.timezone = context["timezone"][:64]
    if isinstance(context.get("locale"), str):
        contact.locale = context["locale"][:35]
    token = (
        (context.get("device") or {}).get("token")
        if isinstance(context.get("device"), dict)
        else None
    )
    if isinstance(token, str) and token and token not in contact.push_tokens:
        contact.push_tokens = [*contact.push_tokens, token]
    if isinstance(call, IdentifyCall) and call.traits:
        traits = dict(call.traits)
        for column in CONTACT_COLUMNS:
            if isinstance(traits.get(column), str):
                setattr(contact, column, traits[column].strip() or None)
        contact.traits = {**(contact.traits or {}), **traits}
    contact.updated_at = utcnow()
