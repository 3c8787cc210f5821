"""Review of date triggers and audiences: defects found, each pinned by a test.

- Keys of the internal events (planning events, `Date Reached`, audience copies) hold
  the contact's id, which may be 255 characters: on PostgreSQL (`message_id` is
  VARCHAR(255)) the whole statement failed, so one contact with a long id failed a
  deploy, kept its date watch retrying for ever, and made every catalogue event fail
  to route (they all share the contact "": each later one waited behind it).
- A date journey retired and deployed again (or rolled back to a version it had
  before) planned no one: the planning events were keyed by version only, so contacts
  identified while it was retired, and those whose watch ended on the retired journey,
  never got a date watch.
- The fan-out's "this product lately" check scanned every internal event for each
  member (minutes for a few thousand members), past the router's lease.
- Two products dropping in price at once for one contact: the second copy reached the
  contact's open run as a mere signal and was lost, and the audience's "once per
  product" then kept that product's alert from being sent for the whole window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import Bench, end_open_runs, shipped_journeys, tiny_templates, write_journey
from sqlalchemy import Engine, update
from sqlmodel import select

from orchestrator.activities.date_triggers import DateTriggerActivities
from orchestrator.dsl.models import DATE_REACHED, Journey
from orchestrator.store.audiences import CATALOG_EVENT, fan_out
from orchestrator.store.date_plans import DATE_PLAN_EVENT, plan_dates
from orchestrator.store.db import session_scope
from orchestrator.store.tables import ORIGIN_INTERNAL, Contact, Event, utcnow
from orchestrator.store.versions import deploy_journey
from orchestrator.workflows import types as t

LONG = "u" * 250  # a userId the API takes (up to 255 characters)

PRICE_DROP = Journey.model_validate(
    {
        "id": "price_drop",
        "name": "Price drop",
        "trigger": {
            "event": "Price Dropped",
            "audience": {
                "did": ["Product Viewed"],
                "where": "event.properties.product_id == trigger.properties.product_id",
                "within": "14d",
            },
        },
        "entry": {"re_entry": "always"},
        "steps": [{"send": {"channel": "email", "template": "price_drop"}}],
    }
)

BIRTHDAY_SPEC = {
    "id": "birthday",
    "name": "Birthday",
    "trigger": {"date": "contact.traits.birthday", "at": "10:00"},
    "steps": [{"send": {"channel": "email", "template": "hello"}}],
}


def viewed(engine: Engine, contact: str, product: str) -> None:
    with session_scope(engine) as session:
        session.add(
            Event(
                message_id=f"v-{contact[:20]}-{product}-{len(contact)}",
                type="track",
                name="Product Viewed",
                contact_id=contact,
                properties={"product_id": product},
                timestamp=utcnow() - timedelta(days=1),
            )
        )


def catalog(engine: Engine, product: str, key: str) -> Event:
    with session_scope(engine) as session:
        event = Event(
            message_id=key,
            type=CATALOG_EVENT,
            name="Price Dropped",
            contact_id="",
            properties={"product_id": product},
            timestamp=utcnow(),
        )
        session.add(event)
        session.flush()
        session.expunge(event)
        return event


def test_an_audience_member_with_a_long_id_gets_a_copy(engine: Engine) -> None:
    viewed(engine, "ann", "p1")
    viewed(engine, LONG, "p1")
    event = catalog(engine, "p1", "c1")
    with session_scope(engine) as session:  # PostgreSQL: value too long for VARCHAR(255)
        assert fan_out(session, PRICE_DROP, event) == 2
    with session_scope(engine) as session:
        rows = session.exec(
            select(Event.contact_id).where(
                Event.origin == ORIGIN_INTERNAL, Event.name == "Price Dropped"
            )
        ).all()
    assert sorted(rows) == sorted(["ann", LONG])
    # Redelivered (a router that died after the statement): no one twice.
    with session_scope(engine) as session:
        assert fan_out(session, PRICE_DROP, event) == 0
    # The same product again within the window: no second alert, long id or not.
    again = catalog(engine, "p1", "c2")
    with session_scope(engine) as session:
        assert fan_out(session, PRICE_DROP, again) == 0
    # Another product: a copy again.
    viewed(engine, LONG, "p2")
    other = catalog(engine, "p2", "c3")
    with session_scope(engine) as session:
        assert fan_out(session, PRICE_DROP, other) == 1


def test_the_fan_out_does_not_scan_every_internal_event_for_each_member(
    engine: Engine,
) -> None:
    """The "this product lately" check read every internal event for each member: 4,000
    viewers and 40,000 segment events took 140 s (PostgreSQL) and 174 s (SQLite), well
    past a router's 30 s lease (another router then ran it again). By contact: < 1 s."""
    import time

    from sqlalchemy import insert

    now = utcnow()
    rows = [
        {"message_id": f"v{i}", "origin": "client", "type": "track", "name": "Product Viewed",
         "contact_id": f"c{i}", "properties": {"product_id": "p1"}, "context": {},
         "timestamp": now - timedelta(days=1), "received_at": now}
        for i in range(2000)
    ] + [
        {"message_id": f"segment:s:c{i}:entered:{i}", "origin": ORIGIN_INTERNAL,
         "type": "track", "name": "Segment Entered", "contact_id": f"c{i % 2000}",
         "properties": {}, "context": {}, "timestamp": now, "received_at": now}
        for i in range(20000)
    ]  # fmt: skip
    with session_scope(engine) as session:
        session.execute(insert(Event), rows)
    event = catalog(engine, "p1", "c1")
    started = time.monotonic()
    with session_scope(engine) as session:
        assert fan_out(session, PRICE_DROP, event) == 2000
    assert time.monotonic() - started < 10


def add_contact(engine: Engine, contact: str, **traits: Any) -> None:
    with session_scope(engine) as session:
        session.add(Contact(id=contact, anonymous=False, traits=traits))


def test_a_deploy_plans_a_contact_with_a_long_id(engine: Engine) -> None:
    add_contact(engine, "ann", birthday="1990-05-10")
    add_contact(engine, LONG, birthday="1990-05-10")
    with session_scope(engine) as session:  # PostgreSQL: the deploy failed
        assert plan_dates(session, "birthday", 1, "birthday") == 2
    with session_scope(engine) as session:
        planned = session.exec(select(Event.contact_id).where(Event.type == DATE_PLAN_EVENT)).all()
    assert sorted(planned) == sorted(["ann", LONG])


def test_a_date_fires_for_a_contact_with_a_long_id(engine: Engine) -> None:
    journey = Journey.model_validate(BIRTHDAY_SPEC)
    with session_scope(engine) as session:
        deploy_journey(
            session, "birthday", journey.model_dump(mode="json", by_alias=True), "h1", None
        )
    add_contact(engine, LONG, birthday="1990-05-10")
    dates = DateTriggerActivities(engine)
    plan = dates.plan_date(
        t.DatePlanRequest("birthday", LONG, datetime(2027, 1, 1, tzinfo=UTC).isoformat())
    )
    assert plan.at == datetime(2027, 5, 10, 10, tzinfo=UTC).isoformat()
    # PostgreSQL: value too long, the activity failed (and was retried for ever).
    dates.fire_date(t.DateFireRequest("birthday", LONG, plan.at, plan.day or ""))
    dates.fire_date(t.DateFireRequest("birthday", LONG, plan.at, plan.day or ""))  # again
    with session_scope(engine) as session:
        reached = session.exec(select(Event.contact_id).where(Event.name == DATE_REACHED)).all()
    assert reached == [LONG]


BIRTHDAY_YAML = """
id: birthday
name: Birthday
trigger: { date: contact.traits.birthday, every: year, at: "10:00" }
steps:
  - send: { id: wish, channel: email, template: hello }
"""
OTHER_YAML = """
id: other
name: Other
trigger: { event: Signed Up }
steps:
  - send: { id: hi, channel: email, template: hello }
"""


def plan_events(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Event.contact_id).where(Event.type == DATE_PLAN_EVENT, col_routed_is_none())
        ).all()
    return sorted(rows)


def col_routed_is_none() -> Any:
    from sqlmodel import col

    return col(Event.routed_at).is_(None)


def test_a_date_journey_deployed_again_after_retirement_plans_its_contacts(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    from orchestrator.deployment.deploy import deploy

    engine = sqlite_engine
    templates = tiny_templates(tmp_path / "templates", ("hello",))
    folder = tmp_path / "journeys"
    add_contact(engine, "early", birthday="1990-05-10")
    write_journey(folder, "birthday", BIRTHDAY_YAML)
    write_journey(folder, "other", OTHER_YAML)
    deploy(engine, folder, templates)
    assert plan_events(engine) == ["early"]
    with session_scope(engine) as session:  # the router delivered them
        session.exec(update(Event).values(routed_at=utcnow()))  # type: ignore[call-overload]
    (folder / "birthday.yaml").unlink()
    deploy(engine, folder, templates)  # retired: the watches that wake up now end
    add_contact(engine, "during", birthday="1991-06-11")  # identified while retired
    write_journey(folder, "birthday", BIRTHDAY_YAML)
    deploy(engine, folder, templates)  # the same spec: its version 1 active again
    assert plan_events(engine) == ["during", "early"]
    deploy(engine, folder, templates)  # a deploy that changes nothing plans no one again
    assert plan_events(engine) == ["during", "early"]


# --- two products at once -------------------------------------------------------------


async def test_two_products_dropping_at_once_each_get_their_alert(
    ts_env, engine: Engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from orchestrator.api import create_app
    from orchestrator.store.keys import create_key

    bench = Bench(ts_env, engine, shipped_journeys(tmp_path / "journeys", "price_drop"))
    bench.deploy()
    key = create_key(engine, "catalogue", "server")
    api = TestClient(create_app(engine, [], settings=bench.settings))
    try:
        async with bench.worker():
            now = await ts_env.get_current_time()
            offset = (23 - now.astimezone(UTC).hour + 12) % 24 - 12  # 23:xx there: quiet
            zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"
            await bench.identify("pia", email="pia@example.com", context={"timezone": zone})
            for product in ("p-throw", "p-mug"):
                await bench.track("pia", "Product Viewed", product_id=product, name=product)
            await ts_env.sleep(timedelta(hours=1))
            for product in ("p-throw", "p-mug"):  # the nightly price feed
                r = api.post(
                    "/v1/catalog/track",
                    json={
                        "event": "Price Dropped",
                        "properties": {"product_id": product, "name": product, "price": 9.0},
                    },
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert r.status_code == 200, r.text
            await bench.route_all()
            await ts_env.sleep(timedelta(hours=12))  # past the quiet hours
            await bench.route_all()
            # Each product its own run (the message cap may still hold one email back;
            # before, the second copy was a signal to the first run, and was dropped).
            runs = sorted(r.workflow_id for r in bench.runs("pia"))
            assert runs == ["journey:price_drop:pia:p-mug", "journey:price_drop:pia:p-throw"]
            assert len(bench.messages("pia")) == 2
    finally:
        await end_open_runs(bench)


# --- a write key taking the catalogue's messageId ----------------------------------------


def test_a_client_track_with_the_catalogues_message_id_does_not_swallow_it(
    engine: Engine,
) -> None:
    """Catalogue events shared the `client` messageIds: anyone with the public write key
    could send a track with `drop-p1-2027-01-15` (the documented scheme) first, and the
    shop's price drop was then taken for a retry and dropped."""
    from fastapi.testclient import TestClient

    from orchestrator.api import create_app
    from orchestrator.store.keys import create_key

    with session_scope(engine) as session:  # what /v1/track stored for a visitor
        session.add(
            Event(
                message_id="drop-p1-2027-01-15",
                type="track",
                name="Price Dropped",
                contact_id="mallory",
                properties={"product_id": "p1"},
                timestamp=utcnow(),
            )
        )
    key = create_key(engine, "catalogue", "server")
    api = TestClient(create_app(engine, []))
    body = {
        "event": "Price Dropped",
        "properties": {"product_id": "p1", "price": 69},
        "messageId": "drop-p1-2027-01-15",
    }
    for _ in range(2):  # the shop's own retry is still a retry
        r = api.post("/v1/catalog/track", json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
    with session_scope(engine) as session:
        stored = session.exec(select(Event.contact_id).where(Event.type == CATALOG_EVENT)).all()
    assert stored == [""]
