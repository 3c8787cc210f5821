"""Catalogue events (server or admin key): news about a product, not about a person.

`POST /v1/catalog/track` `{"event": "Price Dropped", "properties": {"product_id": ...},
"messageId", "timestamp"}` stores an event with no contact. A journey that starts on it
with an `audience:` reaches each contact the audience selects (`store/audiences.py`); a
retry with the same `messageId` stores nothing more.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from ..feedback.own_events import reserved_name_problem
from ..observability import tracing
from ..store.audiences import CATALOG_CONTACT, CATALOG_EVENT, ORIGIN_CATALOG
from ..store.db import session_scope
from ..store.tables import Event, utcnow
from .body import parse_object, read_body
from .context import api_context, authenticate
from .errors import ApiError
from .segment import plausible

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])

MAX_BODY = 32 * 1024
FIELDS = ("event", "properties", "messageId", "timestamp", "writeKey")


@router.post("/track")
async def catalog_track(request: Request) -> dict[str, Any]:
    """A product event (price dropped, back in stock): journeys with an audience take it."""
    ctx = api_context(request)
    payload = parse_object(await read_body(request, MAX_BODY))
    await authenticate(request, ctx, payload, kind="server")
    unknown = [k for k in payload if k not in FIELDS]
    if unknown:
        raise ApiError(
            400,
            f"unknown field {unknown[0]!r}: a catalogue event has event, properties, "
            "messageId and timestamp (no userId: it is about a product, not a person)",
            unknown[0],
        )
    name = payload.get("event")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise ApiError(400, "event is required: the event's name, like 'Price Dropped'", "event")
    if problem := reserved_name_problem(name):
        raise ApiError(400, problem, "event")
    properties = payload.get("properties") or {}
    if not isinstance(properties, dict):
        raise ApiError(400, 'properties must be an object, like {"product_id": "p1"}', "properties")
    message_id = payload.get("messageId")
    if message_id is not None and (
        not isinstance(message_id, str) or not 1 <= len(message_id) <= 200
    ):
        raise ApiError(400, "messageId must be text of 1 to 200 characters", "messageId")
    at = _timestamp(payload.get("timestamp"))
    new = await ctx.db(_store, ctx.engine, name.strip(), properties, message_id, at)
    if new:
        ctx.stored()
    return {"success": True}


def _timestamp(value: Any) -> datetime:
    now = utcnow()
    if value is None:
        return now
    try:
        found = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "timestamp must be ISO 8601, like 2027-01-15T10:00:00Z", "timestamp"
        ) from None
    if found.tzinfo is None:
        raise ApiError(400, "timestamp needs a timezone (Z or +02:00)", "timestamp")
    # Not before 1900, as for Segment calls: a zero time ("0001-01-01T00:00:00Z", Go's
    # unset time.Time) would be stored, then overflow the audience's window in the
    # router, holding every later catalogue event back until it is a dead letter.
    moment = plausible(found)
    if moment is not None:
        return min(moment, now)  # a clock ahead of ours must not widen the audience's window
    if found.replace(tzinfo=None) > datetime(2000, 1, 1):
        return now  # after 2200: taken as now, as any time ahead of ours
    raise ApiError(
        400,
        "timestamp is before 1900: send when the product changed, or leave it out for now",
        "timestamp",
    )


def _store(
    engine: Engine, name: str, properties: dict[str, Any], message_id: str | None, at: datetime
) -> bool:
    key = message_id or f"srv-{uuid.uuid4()}"
    try:
        with session_scope(engine) as session:
            # Its own origin: a write key (public, in the browser) sending a track with
            # the catalogue's messageId first must not make the shop's event a "retry".
            known = select(Event.id).where(Event.origin == ORIGIN_CATALOG, Event.message_id == key)
            if session.exec(known).first() is not None:
                return False  # a retry
            session.add(
                Event(
                    message_id=key,
                    origin=ORIGIN_CATALOG,
                    type=CATALOG_EVENT,
                    name=name,
                    contact_id=CATALOG_CONTACT,
                    properties=properties,
                    context=tracing.trace_context(),  # routed in the request's trace
                    timestamp=at,
                )
            )
        return True
    except IntegrityError:  # a concurrent retry stored it first
        return False
