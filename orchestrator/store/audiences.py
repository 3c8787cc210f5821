"""Audiences: a catalogue event (a product's price dropped) reaches the contacts it is for.

`POST /v1/catalog/track` stores the event with no contact (`type = catalog`). For each
journey starting on it with an `audience:`, the router copies it to every member, one
`INSERT ... SELECT` chosen by SQL over the events table (no contact is loaded into
Python): contacts with one of the `did` events within `within` whose properties match
the trigger's (`where`), without a `not_did` event in that time. Each copy is that
contact's own track event (its properties are the catalogue event's: the run reads the
product in `trigger`), marked for that journey, keyed
`audience:{journey}:{match}:{catalogue event}:{contact}` (cut at the column's 255
characters: a contact id may be that long):

- the statement is one transaction and skips keys already stored, so a router that dies
  after it and redelivers the catalogue event adds no one twice and skips no one;
- a contact who got this journey's copy for the same product (`match`: the values the
  `where` compares) within `within` is left out: one price-drop email per product, not
  one per drop;
- the copies are then routed like any event, in batches: the fan-out to Temporal is
  bounded by the router, whatever the audience's size.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, cast, exists, func, literal, not_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from ..dsl.models import Journey
from .bulk_events import cut_key, insert_selected
from .tables import ORIGIN_INTERNAL, Event

CATALOG_EVENT = "catalog"  # events.type of an event about products, not a person
CATALOG_CONTACT = ""  # its contact_id
ORIGIN_CATALOG = "catalog"  # its origin: messageIds of their own, apart from clients'
AUDIENCE_OF = "audience_of"  # context key of a copy: the journey it is for


def match_key(journey: Journey, properties: dict[str, Any]) -> str:
    """What makes two catalogue events the same for a contact: the compared values."""
    audience = journey.trigger.audience
    assert audience is not None
    values = [properties.get(trigger) for _, trigger in audience.matches]
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fan_out(session: Session, journey: Journey, event: Event) -> int:
    """Store the catalogue event's copy for each member of `journey`'s audience; how many."""
    audience = journey.trigger.audience
    assert audience is not None and event.id is not None
    properties = dict(event.properties or {})
    since = event.timestamp - timedelta(seconds=audience.within)
    did = aliased(Event)
    members = (
        select(did.contact_id)
        .where(
            did.type == "track",
            col(did.name).in_(audience.did),
            did.timestamp >= since,
            did.timestamp <= event.timestamp,
            did.contact_id != CATALOG_CONTACT,
            *(
                _property_equals(did, name, properties.get(trigger))
                for name, trigger in audience.matches
            ),
        )
        .distinct()
        .subquery()
    )
    contact = members.c.contact_id
    match = match_key(journey, properties)
    # The contact last, cut to the column's width: a long id must not fail the statement
    # for everyone (all catalogue events wait behind one that fails).
    same_product = f"audience:{journey.id}:{match}:"
    key = cut_key(literal(f"{same_product}{event.id}:") + contact)
    earlier = aliased(Event)
    refused = aliased(Event)
    stamp = Event.__table__.c.timestamp.type  # type: ignore[attr-defined]
    chosen = select(
        key,
        literal(ORIGIN_INTERNAL),
        literal("track"),
        literal(event.name, String()),
        contact,
        literal(properties, JSON),
        literal({AUDIENCE_OF: journey.id, "catalog_event": event.id}, JSON),
        literal(event.timestamp, stamp),
        literal(_now(), stamp),
    ).where(
        not_(
            exists().where(  # this journey's copy for this product, lately (or this one)
                # The contact's own events first (ix_events_contact_name): not a scan of
                # every internal event for each member.
                earlier.contact_id == contact,
                earlier.name == event.name,
                earlier.origin == ORIGIN_INTERNAL,
                # An exact prefix: LIKE would read `_` in a journey id as any character.
                func.substr(earlier.message_id, 1, len(same_product)) == same_product,
                earlier.timestamp >= since,
            )
        ),
        *(
            [
                not_(
                    exists().where(
                        refused.contact_id == contact,
                        refused.type == "track",
                        col(refused.name).in_(audience.not_did),
                        refused.timestamp >= since,
                        refused.timestamp <= event.timestamp,
                    )
                )
            ]
            if audience.not_did
            else []
        ),
    )
    return insert_selected(session, chosen)


def _property_equals(event: Any, name: str, value: Any) -> Any:
    """`event.properties[name] == value` in SQL, compared as text: `123` and `"123"` are
    the same product id (stores send either), and no cast can fail on a value."""
    if value is None or isinstance(value, bool | dict | list):
        return literal(False)  # nothing to match a product by
    element = cast(col(event.properties)[name].as_string(), String)
    return element == str(value)


def _now() -> datetime:
    from .tables import utcnow

    return utcnow()
