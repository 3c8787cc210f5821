"""Events only the orchestrator records (segment entries, survey answers, provider reports,
SMS replies) never come from a client: the API refuses them by name, and the router acts
on them only when they are ours (`events.origin = internal`), so rows stored before the
API refused them start, wake, end or convert no journey either. The engagement events a
storefront or app documentedly sends (`Email Opened`, `Email Link Clicked`, `Push
Opened`, `Push Notification Tapped`) are still taken, for the message's own contact."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from harness import Bench, tiny_templates, write_journey
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.store.db import session_scope
from orchestrator.store.tables import ORIGIN_CLIENT, ORIGIN_INTERNAL, Coupon, Event

KEY = "origin-write-key"
# What docs/ingestion.md tells storefronts and apps to send about our messages.
CLIENT_SENT = ("Email Link Clicked", "Email Opened", "Push Notification Tapped", "Push Opened")
# What the reviewer sent with the public write key, and what it won.
FORGED = [
    ("Segment Entered", {"segment": "big_spenders"}),  # a VIP code
    ("Segment Exited", {"segment": "regulars"}),  # a win-back offer
    ("Survey Answered", {"journey_id": "quick_nps", "score": 0}),  # an apology code
    ("SMS Received", {"number": 0}),
    ("SMS Opted Out", {}),
    ("Email Delivered", {"message_id": "m-1"}),
    ("Email Bounced", {"message_id": "m-1"}),
    ("Unsubscribed", {"message_id": "m-1"}),
    ("$identify", {"email": "x@example.com"}),  # what the router calls an identify call
]


def basic(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest_asyncio.fixture
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine, [KEY]))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def stored(engine: Engine) -> list[tuple[str | None, str]]:
    with session_scope(engine) as session:
        return [(e.name, e.origin) for e in session.exec(select(Event).order_by(Event.id))]


async def test_the_api_refuses_our_own_event_names_from_clients(api, engine) -> None:  # type: ignore[no-untyped-def]
    for name, properties in FORGED:
        call = {"userId": "att9", "event": name, "properties": properties}
        r = await api.post("/v1/track", headers=basic(), json=call)
        assert (r.status_code, r.json().get("field")) == (400, "event"), (name, r.text)
        said = r.json()["error"]
        assert f"{name!r} is an event the orchestrator records itself" in said, said
        assert "events.yaml" in said, said
    batch = [
        {"type": "track", "userId": "att9", "event": "Product Viewed"},
        {"type": "track", "userId": "att9", "event": "Segment Entered"},
    ]
    r = await api.post("/v1/batch", headers=basic(), json={"batch": batch})
    assert (r.status_code, r.json()["field"]) == (400, "batch.1.event"), r.text
    assert stored(engine) == []
    # What a storefront or app sends about our messages is still taken.
    for name in CLIENT_SENT:
        call = {"userId": "ann", "event": name, "properties": {"message_id": "m-1"}}
        r = await api.post("/v1/track", headers=basic(), json=call)
        assert r.status_code == 200, (name, r.text)
    assert stored(engine) == [(n, ORIGIN_CLIENT) for n in CLIENT_SENT]


def test_every_name_we_record_is_reserved_unless_clients_are_meant_to_send_it() -> None:
    """The reserved list is derived, not kept by hand: a name added to what the
    orchestrator records (`OWN_EVENTS`) is refused from clients unless listed as one
    they send."""
    from orchestrator.deployment.event_names import OWN_EVENTS
    from orchestrator.feedback.own_events import CLIENT_ENGAGEMENT, INTERNAL_ONLY

    assert set(CLIENT_SENT) == CLIENT_ENGAGEMENT
    assert (OWN_EVENTS - CLIENT_ENGAGEMENT) | {"$identify"} == INTERNAL_ONLY
    assert {n for n, _ in FORGED} <= INTERNAL_ONLY
    assert not CLIENT_ENGAGEMENT & INTERNAL_ONLY


VIP = """
id: vip
name: VIP offer
trigger:
  event: Segment Entered
  where: event.properties.segment == "big_spenders"
steps:
  - id: vip_code
    action:
      { type: issue_coupon, campaign: big_spenders, prefix: VIP, discount: 500, currency: RUB }
"""
QUICK_NPS = """
id: quick_nps
name: Quick NPS
trigger: { event: Checkout Started }
steps:
  - wait_for:
      event: Survey Answered
      where: event.properties.journey_id == "quick_nps"
      timeout: 5d
      save_as: answer
    on_timeout:
      - exit: no answer
  - branch:
      - if: journey.answer.properties.score <= 6
        then:
          - id: apology_code
            action: { type: issue_coupon, campaign: nps_apology, prefix: SORRY, discount: 15% }
"""


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", tiny_templates(tmp_path / "t", ()))
    write_journey(bench.journeys_dir, "vip", VIP)
    write_journey(bench.journeys_dir, "quick_nps", QUICK_NPS)
    bench.deploy()
    yield bench


def add_event(engine: Engine, origin: str, contact: str, name: str, props: dict[str, Any]) -> None:
    """An event row as stored: by a client before the API refused such names, or by us."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        session.add(
            Event(
                message_id=f"{origin}-{uuid.uuid4()}",
                origin=origin,
                type="track",
                name=name,
                contact_id=contact,
                properties=props,
                timestamp=now,
                received_at=now,
            )
        )


def answer(score: int) -> dict[str, Any]:
    return {"journey_id": "quick_nps", "score": score}


def coupons(engine: Engine) -> list[tuple[str, str]]:
    with session_scope(engine) as session:
        rows = session.exec(select(Coupon).order_by(Coupon.issued_at))
        return [(c.code.split("-")[0], c.contact_id) for c in rows]


async def test_a_client_event_named_like_ours_starts_and_wakes_no_journey(bench: Bench) -> None:
    """The reviewer's VIP code and detractor apology, from rows a client stored: nothing.
    The same events recorded by us work as before."""
    async with bench.worker():
        for user in ("att9", "nps1", "vip9"):
            await bench.identify(user, email=f"{user}@example.com")
        await bench.track("nps1", "Checkout Started")  # waits for its survey answer
        vip = {"segment": "big_spenders"}
        add_event(bench.engine, ORIGIN_CLIENT, "att9", "Segment Entered", vip)
        add_event(bench.engine, ORIGIN_CLIENT, "nps1", "Survey Answered", answer(0))
        await bench.route_all()
        add_event(bench.engine, ORIGIN_INTERNAL, "nps1", "Survey Answered", answer(10))
        add_event(bench.engine, ORIGIN_INTERNAL, "vip9", "Segment Entered", vip)
        await bench.route_all()
        assert await asyncio.wait_for(bench.result("quick_nps", "nps1"), 30) == "completed"
        await asyncio.wait_for(bench.result("vip", "vip9"), 30)
    assert coupons(bench.engine) == [("VIP", "vip9")]
    [run] = [r for r in bench.runs("nps1") if r.journey_id == "quick_nps"]
    assert run.data["answer"]["properties"]["score"] == 10
    assert bench.router.reserved_ignored == 2
