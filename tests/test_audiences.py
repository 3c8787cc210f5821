"""Audiences from product events: `POST /v1/catalog/track` and the SQL fan-out.

Both databases. The fan-out is checked against an audience worked out by hand: who
viewed or carted the product within the window, who did not order since, who got this
product's alert lately; and that repeating it (a router that died and redelivers) adds
no one twice and skips no one.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.dsl.models import Journey
from orchestrator.store.audiences import AUDIENCE_OF, CATALOG_EVENT, fan_out
from orchestrator.store.db import session_scope
from orchestrator.store.keys import create_key
from orchestrator.store.tables import ORIGIN_INTERNAL, Event, utcnow

WRITE = "test-write-key"
PRICE_DROP = Journey.model_validate(
    {
        "id": "price_drop",
        "name": "Price drop",
        "trigger": {
            "event": "Price Dropped",
            "audience": {
                "did": ["Product Viewed", "Product Added"],
                "where": "event.properties.product_id == trigger.properties.product_id",
                "within": "14d",
                "not_did": "Order Completed",
            },
        },
        "steps": [{"send": {"channel": "email", "template": "price_drop"}}],
    }
)


def add(engine: Engine, contact: str, name: str, days_ago: float, **props: Any) -> None:
    at = utcnow() - timedelta(days=days_ago)
    with session_scope(engine) as session:
        session.add(
            Event(
                message_id=f"m-{contact}-{name}-{days_ago}-{props}",
                type="track",
                name=name,
                contact_id=contact,
                properties=props,
                timestamp=at,
            )
        )


def catalog_event(engine: Engine, product: Any, key: str = "c1") -> Event:
    with session_scope(engine) as session:
        event = Event(
            message_id=key,
            type=CATALOG_EVENT,
            name="Price Dropped",
            contact_id="",
            properties={"product_id": product, "price": 69},
            timestamp=utcnow(),
        )
        session.add(event)
        session.flush()
        session.expunge(event)
        return event


def copies(engine: Engine) -> dict[str, dict[str, Any]]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Event).where(Event.origin == ORIGIN_INTERNAL, Event.name == "Price Dropped")
        ).all()
        return {e.contact_id: {"props": e.properties, "context": e.context} for e in rows}


def test_the_audience_is_who_looked_lately_and_did_not_buy(engine: Engine) -> None:
    add(engine, "viewer", "Product Viewed", 3, product_id="p1")
    add(engine, "carter", "Product Added", 13, product_id="p1")
    add(engine, "numeric", "Product Viewed", 1, product_id=101)  # sent as a number
    add(engine, "other", "Product Viewed", 1, product_id="p2")
    add(engine, "stale", "Product Viewed", 15, product_id="p1")  # outside 14 days
    add(engine, "buyer", "Product Viewed", 5, product_id="p1")
    add(engine, "buyer", "Order Completed", 2, order_id="o1")
    add(engine, "user_1", "Product Viewed", 2, product_id="p1")  # `_`: no LIKE wildcard
    add(engine, "userX1", "Product Viewed", 2, product_id="p1")
    event = catalog_event(engine, "p1")
    with session_scope(engine) as session:
        assert fan_out(session, PRICE_DROP, event) == 4
    found = copies(engine)
    assert sorted(found) == sorted(["carter", "user_1", "userX1", "viewer"])
    assert found["viewer"]["props"] == {"product_id": "p1", "price": 69}  # the product
    assert found["viewer"]["context"] == {AUDIENCE_OF: "price_drop", "catalog_event": event.id}
    with session_scope(engine) as session:  # redelivered after a crash: no one twice
        assert fan_out(session, PRICE_DROP, event) == 0
    # The same product dropping again within the window: no second alert.
    again = catalog_event(engine, "p1", key="c2")
    with session_scope(engine) as session:
        assert fan_out(session, PRICE_DROP, again) == 0
    # A number in the catalogue matches the same id sent as text, and the other way round.
    numeric = catalog_event(engine, "101", key="c3")
    with session_scope(engine) as session:
        assert fan_out(session, PRICE_DROP, numeric) == 1
    assert "numeric" in copies(engine)


# --- the endpoint -------------------------------------------------------------------


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, [WRITE], client=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


DROP = {"event": "Price Dropped", "properties": {"product_id": "p1", "price": 69}}


async def test_catalogue_events_need_a_server_key_and_are_stored_once(api, engine) -> None:  # type: ignore[no-untyped-def]
    basic = {"Authorization": "Basic " + base64.b64encode(f"{WRITE}:".encode()).decode()}
    r = await api.post("/v1/catalog/track", json=DROP, headers=basic)
    assert (r.status_code, r.json()["error"]) == (
        403,
        "this is a write key; this endpoint needs a server or admin key",
    )
    key = create_key(engine, "catalogue", "server")
    for _ in range(2):  # a retry with the same messageId
        r = await api.post(
            "/v1/catalog/track", json={**DROP, "messageId": "drop-1"}, headers=bearer(key)
        )
        assert r.status_code == 200 and r.json() == {"success": True}
    with session_scope(engine) as session:
        [event] = session.exec(select(Event)).all()
        assert (event.type, event.name, event.contact_id, event.properties) == (
            "catalog",
            "Price Dropped",
            "",
            {"product_id": "p1", "price": 69},
        )


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ({**DROP, "userId": "ann"}, "unknown field 'userId': a catalogue event has event, "
         "properties, messageId and timestamp (no userId: it is about a product, not a "
         "person)", "userId"),
        ({"properties": {}}, "event is required: the event's name, like 'Price Dropped'", "event"),
        ({**DROP, "properties": [1]}, 'properties must be an object, like {"product_id": "p1"}',
         "properties"),
        ({**DROP, "timestamp": "yesterday"}, "timestamp must be ISO 8601, like "
         "2027-01-15T10:00:00Z", "timestamp"),
        ({**DROP, "timestamp": "2027-01-15T10:00:00"}, "timestamp needs a timezone (Z or "
         "+02:00)", "timestamp"),
        # A zero time (Go's unset time.Time) was stored, then overflowed the audience's
        # window in the router, holding every later catalogue event back; with an offset
        # east of UTC it was a 500.
        ({**DROP, "timestamp": "0001-01-01T00:00:00Z"}, "timestamp is before 1900: send "
         "when the product changed, or leave it out for now", "timestamp"),
        ({**DROP, "timestamp": "0001-01-01T00:00:00+05:00"}, "timestamp is before 1900: "
         "send when the product changed, or leave it out for now", "timestamp"),
    ],
)  # fmt: skip
async def test_bad_catalogue_events_say_what_and_where(api, engine, body, error, field) -> None:  # type: ignore[no-untyped-def]
    key = create_key(engine, "catalogue", "server")
    r = await api.post("/v1/catalog/track", json=body, headers=bearer(key))
    assert (r.status_code, r.json()["error"], r.json()["field"]) == (400, error, field)
    with session_scope(engine) as session:
        assert session.exec(select(Event)).all() == []


async def test_a_reserved_name_is_refused(api, engine) -> None:  # type: ignore[no-untyped-def]
    key = create_key(engine, "catalogue", "server")
    r = await api.post(
        "/v1/catalog/track", json={**DROP, "event": "Date Reached"}, headers=bearer(key)
    )
    assert r.status_code == 400 and r.json()["field"] == "event"


AUDIENCE_JOURNEY = """\
id: price_drop
name: Price drop
trigger:
  event: Price Dropped
  audience:
    did: Product Viewed
    where: event.properties.product_id == trigger.properties.product_id
    within: 14d
steps:
  - send: { channel: email, template: hello }
"""


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("product_id == trigger", "product_id = trigger"),
            "j.yaml:7:12: an audience's where compares the contact's event with the trigger, "
            "like event.properties.product_id == trigger.properties.product_id (several "
            "joined by and); got 'event.properties.product_id = trigger.properties.product_id'",
        ),
        (
            ("  event: Price Dropped", "  segment: vip"),
            "j.yaml:3:1: an audience belongs to an event trigger: "
            "`event: Price Dropped, audience: ...`",
        ),
        (
            ("within: 14d", "within: two weeks"),
            "j.yaml:8:13: invalid duration 'two weeks': expected a number with a unit s, m, "
            "h, d or w, such as 30m, 24h, 2d or 1d12h",
        ),
    ],
)
def test_validate_names_audience_mistakes_where_they_are(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    from orchestrator.dsl.loader import load_journeys

    (tmp_path / "j.yaml").write_text(AUDIENCE_JOURNEY.replace(*edit))
    _, problems = load_journeys([tmp_path])
    assert [str(p).replace(f"{tmp_path}/", "") for p in problems] == [message]


async def test_a_catalogue_event_from_the_far_future_is_taken_as_now(api, engine) -> None:  # type: ignore[no-untyped-def]
    key = create_key(engine, "catalogue", "server")
    before = utcnow()
    r = await api.post(
        "/v1/catalog/track",
        json={**DROP, "timestamp": "9999-12-31T23:00:00-05:00"},  # past year 9999 in UTC
        headers=bearer(key),
    )
    assert r.status_code == 200, r.text
    with session_scope(engine) as session:
        [event] = session.exec(select(Event)).all()
        assert before <= event.timestamp <= utcnow()
