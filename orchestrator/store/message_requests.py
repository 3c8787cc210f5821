"""Transactional messages asked for over the API: the ledger row and its request, one commit.

`POST /v1/messages` stores two rows together: the `messages` row (the outbox and send
ledger journey messages use too: status `pending`, category `transactional`) and an
event of type `message` that holds the request's `properties`, which the template reads
as `event.properties`, exactly like a journey's trigger. The router turns that event into
the message's own workflow as it turns a track call into a journey run: the call is
acknowledged after the commit, delivered to Temporal afterwards, retried while Temporal
is down, and behind the contact's earlier events (an identify sent just before counts).

A client's idempotency key names the workflow (`message:<hash of the key>`), so the
ledger's unique key refuses a second message for it, however the retries race.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ..observability import tracing
from .db import session_scope
from .identity import canonical_id
from .tables import ORIGIN_INTERNAL, Contact, Event, Message, utcnow

WORKFLOW_PREFIX = "message:"
STEP = "send"  # the one step of a transactional message: its ledger key ends `send:0`
EVENT_TYPE = "message"  # the stored request; routed to the message's workflow, no journey


@dataclass(frozen=True)
class MessageRequest:
    contact_id: str  # a userId or anonymousId, or an alias of either
    template: str
    channel: str | list[str]  # email | sms | push | preferred, or the channels to try in order
    properties: dict[str, Any]
    key: str | None = None  # the client's idempotency key
    to: str | None = None  # the address to use instead of the contact's (email or sms)


@dataclass(frozen=True)
class Accepted:
    message_id: str
    status: str
    created: bool  # False: the key was used before, this is that request's message


class UnknownContact(LookupError):
    """No contact has that id: nothing to send to."""


class KeyReused(ValueError):
    """The idempotency key came before with a different message."""


def message_workflow_id(message_id: str, key: str | None) -> str:
    """The workflow (and ledger key prefix) of a message: the client's key when given."""
    if key is None:
        return f"{WORKFLOW_PREFIX}{message_id}"
    return f"{WORKFLOW_PREFIX}k-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def request_message(
    engine: Engine, request: MessageRequest, now: datetime | None = None
) -> Accepted:
    """Store the message and its request, or find the one an earlier call with the same
    key stored. Raises UnknownContact or KeyReused."""
    try:
        return _request(engine, request, now or utcnow())
    except IntegrityError:  # a concurrent call with the same key committed first
        return _request(engine, request, now or utcnow())


def _request(engine: Engine, request: MessageRequest, now: datetime) -> Accepted:
    with session_scope(engine) as session:
        contact_id = canonical_id(session, request.contact_id)
        # Locked, as ingestion does: an erasure running now either finishes first (and
        # the contact is gone) or waits for this request to commit and erases it too.
        if session.get(Contact, contact_id, with_for_update=True) is None:
            raise UnknownContact(request.contact_id)
        message_id = str(uuid.uuid4())
        workflow = message_workflow_id(message_id, request.key)
        ledger_key = f"{workflow}:{STEP}:0"
        if request.key is not None:
            earlier = session.exec(
                select(Message).where(Message.idempotency_key == ledger_key)
            ).first()
            if earlier is not None:
                _check_same(session, earlier, request, contact_id)
                return Accepted(earlier.id, earlier.status, created=False)
        channel = request.channel
        first = channel[0] if isinstance(channel, list) else channel
        session.add(
            Message(
                id=message_id,
                idempotency_key=ledger_key,
                workflow_id=workflow,
                entry_seq=0,
                step_id=STEP,
                journey_id="",
                contact_id=contact_id,
                channel=first if first != "preferred" else "email",
                adapter="",
                template=request.template,
                category="transactional",
                timeline=[{"status": "pending", "at": now.isoformat(), "detail": "requested"}],
            )
        )
        session.add(
            Event(
                message_id=message_id,
                origin=ORIGIN_INTERNAL,
                type=EVENT_TYPE,
                name=request.template,
                contact_id=contact_id,
                properties=request.properties,
                context={
                    "message": {
                        "id": message_id,
                        "channel": channel,
                        "workflow": workflow,
                        **({"to": request.to} if request.to else {}),
                    },
                    **tracing.trace_context(),  # the router delivers it in the request's trace
                },
                timestamp=now,
                received_at=now,
            )
        )
        session.flush()
        return Accepted(message_id, "pending", created=True)


def _check_same(
    session: Session, earlier: Message, request: MessageRequest, contact_id: str
) -> None:
    """An idempotency key stands for one message: the same key with another template,
    contact, channel or properties is a client bug, refused rather than answered with
    the first message's id."""
    stored = session.exec(
        select(Event).where(
            Event.origin == ORIGIN_INTERNAL,
            Event.message_id == earlier.id,
            Event.type == EVENT_TYPE,
        )
    ).first()
    asked = {
        "template": request.template,
        "contact": contact_id,
        "channel": request.channel,
        "address": request.to,
        "properties": request.properties,
    }
    context = ((stored.context or {}).get("message") or {}) if stored else {}
    had = {
        "template": earlier.template,
        "contact": earlier.contact_id,
        "channel": context.get("channel"),
        "address": context.get("to"),
        "properties": (stored.properties if stored else None),
    }
    if stored is None:  # erased since: the contact and what was sent are gone
        for name in ("channel", "address", "properties"):
            had[name] = asked[name]
    differs = [name for name in asked if asked[name] != had[name]]
    if differs:
        raise KeyReused(
            f"this idempotency key was used for message {earlier.id} with another "
            f"{' and '.join(differs)}: use a new key for a different message"
        )


@dataclass(frozen=True)
class Requested:
    """What a stored request event tells the router: which workflow to start, with what."""

    message_id: str
    workflow_id: str
    channel: str | list[str]
    to: str | None = None


def requested(event: Event) -> Requested:
    found = (event.context or {}).get("message") or {}
    message_id = str(found.get("id") or event.message_id)
    workflow = found.get("workflow") or message_workflow_id(message_id, None)
    return Requested(message_id, str(workflow), found.get("channel") or "email", found.get("to"))
