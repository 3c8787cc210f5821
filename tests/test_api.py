"""The ingest API over HTTP (in-process ASGI), against a real database."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, Event

KEY = "test-write-key"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest_asyncio.fixture
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    woken: list[int] = []
    app = create_app(engine, [KEY], client=None, on_stored=lambda: woken.append(1))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        client.woken = woken  # type: ignore[attr-defined]
        yield client


def events(engine: Engine) -> list[Event]:
    with session_scope(engine) as session:
        return list(session.exec(select(Event).order_by(Event.id)))


async def test_identify_then_track_store_contact_and_event(api, engine) -> None:  # type: ignore[no-untyped-def]
    r = await api.post(
        "/v1/identify",
        headers=basic(KEY),
        json={
            "userId": 42,
            "traits": {"email": "ann@example.com", "first_name": "Аня", "phone": "+381601234567"},
            "context": {
                "timezone": "Europe/Belgrade",
                "locale": "sr-RS",
                "device": {"token": "t1"},
            },
        },
    )
    assert r.status_code == 200 and r.json() == {"success": True}
    r = await api.post(
        "/v1/track",
        headers={"X-Write-Key": KEY},
        json={"userId": "42", "event": "Product Added", "properties": {"price": 9.5}},
    )
    assert r.status_code == 200
    with session_scope(engine) as session:
        contact = session.get(Contact, "42")
        assert contact is not None
        assert (contact.email, contact.phone, contact.timezone, contact.locale) == (
            "ann@example.com",
            "+381601234567",
            "Europe/Belgrade",
            "sr-RS",
        )
        assert contact.traits["first_name"] == "Аня" and contact.push_tokens == ["t1"]
    assert [(e.type, e.name) for e in events(engine)] == [
        ("identify", None),
        ("track", "Product Added"),
    ]
    assert api.woken == [1, 1]


async def test_retry_with_same_message_id_is_acknowledged_and_stored_once(api, engine) -> None:  # type: ignore[no-untyped-def]
    call = {"userId": "u", "event": "Order Completed", "messageId": "m-1", "writeKey": KEY}
    for _ in range(3):
        r = await api.post("/v1/track", json=call)
        assert r.status_code == 200
    assert len(events(engine)) == 1
    assert api.woken == [1]  # the router is woken for new events only


async def test_clock_skew_is_corrected_from_sent_at(api, engine) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    skewed = now + timedelta(hours=2)  # the device clock is two hours fast
    r = await api.post(
        "/v1/track",
        headers=basic(KEY),
        json={
            "userId": "u",
            "event": "Cart Viewed",
            "timestamp": (skewed - timedelta(minutes=5)).isoformat(),
            "sentAt": skewed.isoformat(),
        },
    )
    assert r.status_code == 200
    [event] = events(engine)
    assert abs(event.timestamp - (now - timedelta(minutes=5))) < timedelta(seconds=30)


async def test_bad_input_gets_clear_errors_and_stores_nothing(api, engine) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ({}, {"userId": "u", "event": "X"}, 401, "missing write key"),
        (basic("nope"), {"userId": "u", "event": "X"}, 401, "invalid or revoked write key"),
        (basic(KEY), {"event": "X"}, 400, "userId or anonymousId is required"),
        (basic(KEY), {"userId": "u"}, 400, "Field required"),
        (basic(KEY), {"userId": "u", "event": ""}, 400, "at least 1 character"),
        (basic(KEY), [1, 2], 400, "must be a JSON object"),
        (basic(KEY), {"userId": "u", "event": "X", "properties": "x" * 40_000}, 413, "32768"),
    ]
    for headers, body, status, text in cases:
        r = await api.post("/v1/track", headers=headers, json=body)
        assert r.status_code == status, (body, r.text)
        assert text in r.json()["error"], r.json()
        assert r.json()["success"] is False
    r = await api.post("/v1/track", headers=basic(KEY), content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = await api.post("/v1/track", headers=basic(KEY), json={"userId": "u"})
    assert r.json()["field"] == "event"
    deep = "[" * 100_000 + "]" * 100_000
    r = await api.post("/v1/track", headers=basic(KEY), content=deep.encode()[:32_000])
    assert r.status_code == 400
    assert events(engine) == []


async def test_health_reports_each_part(api) -> None:  # type: ignore[no-untyped-def]
    r = await api.get("/health")
    body = r.json()
    assert (body["api"], body["database"]) == ("ok", "ok")
    assert body["temporal"] == "not configured"
    assert r.status_code == 503 and body["status"] == "degraded"
    assert json.dumps(body)
