"""Storing Segment calls: contacts updated, events inserted, all committed before the ack.

A batch is one transaction: every call in it is stored, or none. A `messageId`
already stored is skipped (the client's retry), so retries are acknowledged
and ignored. An alias the key may not make (`MergeRefused`: a customer folded into
another with a write key) refuses the whole batch, naming its call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..store.db import session_scope
from ..store.identity import MergeRefused, canonical_id, merge_contacts
from ..store.orders import record_order_event
from ..store.tables import ORIGIN_CLIENT, Contact, Event, utcnow
from .segment import AliasCall, IdentifyCall, SegmentCall

CONTACT_COLUMNS = ("email", "phone")
MAX_PUSH_TOKENS = 20  # per contact: the oldest go first


class CallRefused(Exception):
    """A call of `calls` (at `index`) the key may not make: nothing was stored."""

    def __init__(self, index: int, refused: MergeRefused) -> None:
        super().__init__(refused.message)
        self.index, self.field, self.message = index, refused.field, refused.message


def store_calls(engine: Engine, calls: Sequence[SegmentCall], admin: bool = False) -> int:
    """Commit the calls in one transaction; returns how many were new (not retries).

    `admin`: they came with an admin key, which may also alias identified contacts.
    """
    received_at = utcnow()
    for attempt in range(3):
        try:
            with session_scope(engine) as session:
                return store_in(session, calls, received_at, admin)
        except IntegrityError:
            # Two first calls raced on a contact or a messageId: the retry sees their rows.
            if attempt == 2:
                raise
    return 0


def store_call(engine: Engine, call: SegmentCall, admin: bool = False) -> bool:
    """Commit one call; False when its messageId was already stored (a retry)."""
    return store_calls(engine, [call], admin) == 1


def store_in(
    session: Session, calls: Sequence[SegmentCall], received_at: datetime, admin: bool
) -> int:
    """Add the calls to the session's transaction (the caller commits); how many were new."""
    ids = [c.message_id for c in calls if c.message_id]
    # The client's own namespace: our internal keys (`survey:…`) are no retry of theirs.
    query = select(Event.message_id).where(
        Event.origin == ORIGIN_CLIENT, col(Event.message_id).in_(ids)
    )
    seen = set(session.exec(query))
    new = 0
    for index, call in enumerate(calls):
        if call.message_id and call.message_id in seen:
            continue
        if call.message_id:
            seen.add(call.message_id)
        try:
            contact_id = _apply_to_contact(session, call, admin)
        except MergeRefused as refused:
            raise CallRefused(index, refused) from None
        event = Event(
            message_id=call.message_id or f"srv-{uuid.uuid4()}",
            origin=ORIGIN_CLIENT,
            type=_kind(call),
            name=call.name,
            contact_id=contact_id,
            properties=call.payload,
            context=call.context,
            timestamp=call.event_time(received_at),
            received_at=received_at,
        )
        session.add(event)
        session.flush()
        # Orders, refunds and coupon use are written with their event, or not at all.
        record_order_event(session, event)
        new += 1
    return new


def _kind(call: SegmentCall) -> str:
    from .segment import CALLS

    return next(k for k, model in CALLS.items() if type(call) is model)


def _apply_to_contact(session: Session, call: SegmentCall, admin: bool) -> str:
    """Merge ids the call links, update the contact; returns the contact's id."""
    if isinstance(call, AliasCall):
        contact_id = merge_contacts(
            session, call.previous_id, call.user_id or "", identified_ok=admin
        )
    elif call.user_id and call.anonymous_id and call.user_id != call.anonymous_id:
        contact_id = merge_contacts(session, call.anonymous_id, call.user_id, implicit=True)
    else:
        contact_id = canonical_id(session, call.contact_id)
    contact = session.get(Contact, contact_id, with_for_update=True)
    if contact is None:
        # Created from an anonymousId alone: an anonymous visitor until identified.
        contact = Contact(id=contact_id, anonymous=not call.user_id)
        session.add(contact)
        session.flush()
    elif call.user_id:
        contact.anonymous = False
    context = call.context or {}
    if isinstance(context.get("timezone"), str):
        contact.timezone = context["timezone"][:64]
    if isinstance(context.get("locale"), str):
        contact.locale = context["locale"][:35]
    device = context.get("device")
    token = device.get("token") if isinstance(device, dict) else None
    if isinstance(token, str) and token and token not in contact.push_tokens:
        contact.push_tokens = [*contact.push_tokens, token[:4096]][-MAX_PUSH_TOKENS:]
    if isinstance(call, IdentifyCall) and call.traits:
        traits = dict(call.traits)
        consent = traits.pop("consent", None)
        if consent is not None:
            contact.consent = merged_consent(contact.consent or {}, consent)
        for column in CONTACT_COLUMNS:
            if isinstance(traits.get(column), str):
                setattr(contact, column, traits[column].strip()[:320] or None)
                if getattr(contact, column):
                    contact.anonymous = False  # an address to reach: a customer for good
        contact.traits = {**(contact.traits or {}), **traits}
    contact.updated_at = utcnow()
    return contact_id


def merged_consent(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    consent = dict(current)
    for channel, entry in update.items():
        if isinstance(entry, bool):
            consent[channel] = {"marketing": entry, "transactional": entry}
        else:
            old = consent.get(channel)
            flags = dict(old) if isinstance(old, dict) else {}
            if old is False:
                flags = {"marketing": False, "transactional": False}
            consent[channel] = {**flags, **entry}
    return consent
