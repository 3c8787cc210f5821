"""Export and erasure of a contact (GDPR access and erasure), as an operator uses them:
admin-key HTTP API and `journeys contacts`, a real store on SQLite and PostgreSQL, runs
on the Temporal time-skipping server.

Canary values (an email, a phone number, a name) are planted everywhere a contact's
data can land; after erasure, a dump of every table must not hold one of them, and
neither may the workflow histories of the contact's runs. A second contact keeps its
canaries: that is the control showing the dump would see a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner
from harness import (
    Bench,
    end_open_runs,
    own_time_skipping_server,
    tiny_templates,
    write_journey,
)
from sqlalchemy import Engine, func, inspect, text
from sqlmodel import SQLModel, col, select
from temporalio.client import Client, WorkflowExecutionStatus

from channels.base import Channel, OutgoingMessage, Receipt
from channels.console import ConsoleChannel
from channels.errors import PermanentChannelError
from orchestrator.analytics import trail
from orchestrator.api import create_app
from orchestrator.api.ingest import store_call
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.cli import main
from orchestrator.services.links import MessageLinks
from orchestrator.settings import Settings
from orchestrator.store.db import session_scope
from orchestrator.store.keys import create_key, revoke_key
from orchestrator.store.suppressions import suppress, suppressed_addresses, unsuppress
from orchestrator.store.tables import (
    Contact,
    Coupon,
    Event,
    JourneyCount,
    JourneyRun,
    JourneyVersion,
    Message,
    Suppression,
)
from orchestrator.workflows.journey import workflow_id

WRITE_KEY = "write-key"
EMAIL, PHONE, NAME = "Zeb.Canary@Example.com", "+1 (555) 019-9999", "Zebulon Canaryfield"
# The forms in which the canaries could be stored: as given, normalized, digits only.
CANARIES = (EMAIL.lower(), "+15550199999", "5550199999", "019-9999", NAME.lower(), "canaryfield")
CONTROL_EMAIL = "control.person@example.com"
# Journeys live for one contact in the erasure-at-scale test; the RELIABILITY figure is 100.
JOURNEYS = int(os.environ.get("JOURNEYS_ERASURE_JOURNEYS", "100"))
if JOURNEYS < 1:
    pytest.skip("JOURNEYS_ERASURE_JOURNEYS must be at least 1", allow_module_level=True)


def leaks(dump: str) -> list[str]:
    low = dump.lower()
    return [c for c in CANARIES if c in low]


def dump_tables(engine: Engine) -> str:
    """Every row of every table, as text (what `pg_dump --data-only` or `.dump` would show)."""
    lines = []
    with engine.connect() as connection:
        for table in sorted(inspect(engine).get_table_names()):
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                lines.append(f"{table}: {tuple(row)!r}")
    return "\n".join(lines)


def without_keys(dump: str) -> list[str]:
    """The dump but API keys, whose `last_used_at` moves with every call."""
    return [line for line in dump.splitlines() if not line.startswith("api_keys:")]


def sqlite_files(engine: Engine) -> bytes:
    """The database file and its write-ahead log, byte for byte (free pages included)."""
    path = Path(engine.url.database or "")
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def api(
    engine: Engine, client: Client | None, python_journeys: Sequence[str] = ()
) -> httpx.AsyncClient:
    app = create_app(
        engine,
        [WRITE_KEY],
        client=client,
        links=MessageLinks("https://crm.shop.example", "erasure-test-secret"),
        settings=Settings(),
        python_journeys=python_journeys,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def identify(engine: Engine, user: str, anonymous: str | None = None, **traits: Any) -> None:
    call = {"userId": user, "traits": traits, "messageId": str(uuid.uuid4())}
    if anonymous:
        call["anonymousId"] = anonymous
    call["context"] = {"ip": "203.0.113.9", "timezone": "Europe/Belgrade"}
    store_call(engine, IdentifyCall.model_validate(call))


def track(engine: Engine, user: str, event: str, **properties: Any) -> None:
    call = {"userId": user, "event": event, "properties": properties}
    store_call(engine, TrackCall.model_validate({**call, "messageId": str(uuid.uuid4())}))


def plant(engine: Engine, user: str, email: str, phone: str, name: str) -> None:
    """A contact with data in every table: alias, events, a message, a run, suppressions."""
    identify(engine, user, anonymous=f"anon-{user}", email=email, phone=phone, name=name)
    track(engine, user, "Order Completed", order_id="o1", email=email, shipping_name=name)
    wid = workflow_id("promo", user)
    with session_scope(engine) as session:
        run = JourneyRun(
            workflow_id=wid,
            entry_seq=1,
            journey_id="promo",
            version=1,
            contact_id=user,
            current_step="wait",
            data={"gift_card_for": name},
        )
        session.add(run)
        session.flush()
        # The run's trail: its rows name the contact (ids, key) and the order it converted.
        at = datetime(2026, 6, 1, 10, tzinfo=UTC)
        trail.record(session, run, trail.ENTERED, at, outcome="entry 1")
        trail.record(session, run, trail.SEND, at, "offer", "failed", f"rejected: {email} refused")
        trail.record(
            session,
            run,
            trail.GOAL,
            at,
            outcome=f"o1-{name}",
            detail={"event_id": 1, "order_id": f"o1 for {email}", "revenue": 10.0},
        )
        session.add(
            Message(
                id=str(uuid.uuid4()),
                idempotency_key=f"{wid}:offer:1",
                workflow_id=wid,
                entry_seq=1,
                step_id="offer",
                journey_id="promo",
                contact_id=user,
                channel="email",
                adapter="smtp",
                template="promo",
                category="marketing",
                recipient=email,
                content={"subject": f"{name}, your offer", "text": f"Hi {name}"},
                locale="sr",
                status="failed",
                provider_message_id="<provider-1@shop.example>",
                error=f"rejected: recipient {email} refused: 550",
                timeline=[
                    {"status": "pending", "at": "2026-06-01T10:00:00+00:00"},
                    {"status": "failed", "at": "2026-06-01T10:00:01+00:00", "detail": email},
                ],
            )
        )
        suppress(session, "email", email, "bounced", "smtp", f"550 {email}: no such user")
        suppress(session, "sms", phone, "unsubscribed", "twilio", f"STOP from {phone}")


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            t: connection.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one()
            for t in inspect(engine).get_table_names()
        }


# --- access control and export --------------------------------------------------------


async def test_contact_endpoints_need_a_live_admin_key(engine: Engine) -> None:
    plant(engine, "ann", "ann@example.com", "+15550100001", "Ann")
    admin = create_key(engine, "ops", "admin")
    revoked = create_key(engine, "ops-old", "admin")
    revoke_key(engine, "ops-old")
    stored_write = create_key(engine, "storefront", "write")
    before = row_counts(engine)
    async with api(engine, None) as http:
        for method in ("GET", "DELETE"):
            assert (await http.request(method, "/v1/contacts/ann")).status_code == 401
            for key in (WRITE_KEY, stored_write):
                refused = await http.request(method, "/v1/contacts/ann", headers=bearer(key))
                assert refused.status_code == 403
                assert "needs an admin key" in refused.json()["error"]
            gone = await http.request(method, "/v1/contacts/ann", headers=bearer(revoked))
            assert gone.status_code == 401
        assert (await http.get("/v1/contacts/ann", headers=bearer(admin))).status_code == 200
    assert row_counts(engine) == before  # nothing erased by the refused calls


async def test_an_admin_key_is_taken_only_from_the_authorization_header(engine: Engine) -> None:
    """Admin keys go as a Bearer token or the HTTP Basic username (docs/privacy.md,
    docs/loyalty-and-coupons.md), never in a JSON body or X-Write-Key, where proxies and
    request logs keep them."""
    plant(engine, "ann", "ann@example.com", "+15550100001", "Ann")
    admin = create_key(engine, "ops", "admin")
    before = row_counts(engine)
    misplaced = "an admin key is accepted only in the Authorization header"
    async with api(engine, None) as http:
        for headers in ({"x-write-key": admin}, {}):
            body = {"writeKey": admin, "points": 5, "order_id": "o-9"}
            for method, path in (
                ("GET", "/v1/contacts/ann"),
                ("GET", "/v1/contacts/ann/points"),
                ("POST", "/v1/contacts/ann/points/redeem"),
                ("DELETE", "/v1/contacts/ann"),
            ):
                refused = await http.request(method, path, headers=headers, json=body)
                assert refused.status_code == 401, (method, path, headers, refused.text)
                if headers or method == "POST":  # offered somewhere: say where it goes
                    assert misplaced in refused.json()["error"], refused.text
        # Where a write key is enough, an admin key works too, but also only as a header.
        call = {"userId": "ann", "event": "Came Back"}
        for refused in (
            await http.post("/v1/track", json={**call, "writeKey": admin}),
            await http.post("/v1/track", json=call, headers={"x-write-key": admin}),
        ):
            assert refused.status_code == 401 and misplaced in refused.json()["error"]
        assert row_counts(engine) == before
        basic = httpx.BasicAuth(admin, "")
        assert (await http.get("/v1/contacts/ann", auth=basic)).status_code == 200
        assert (await http.get("/v1/contacts/ann/points", headers=bearer(admin))).status_code == 200
        assert (await http.post("/v1/track", json=call, headers=bearer(admin))).status_code == 200


async def test_a_misplaced_admin_key_is_refused_even_next_to_a_valid_write_key(
    engine: Engine,
) -> None:
    """Every key a call offers is looked at: an admin key in the body or X-Write-Key is
    refused also when a valid write key comes first (the Basic username)."""
    admin = create_key(engine, "ops", "admin")
    before = row_counts(engine)
    misplaced = "an admin key is accepted only in the Authorization header"
    basic = httpx.BasicAuth(WRITE_KEY, "")
    call = {"userId": "ann", "event": "Came Back"}
    async with api(engine, None) as http:
        for refused in (
            await http.post("/v1/track", json={**call, "writeKey": admin}, auth=basic),
            await http.post("/v1/track", json=call, headers={"x-write-key": admin}, auth=basic),
            await http.post(
                "/v1/batch",
                json={"batch": [{"type": "track", **call}], "writeKey": admin},
                auth=basic,
            ),
            await http.post(
                "/v1/identify", json={"userId": "ann", "writeKey": admin}, headers=bearer(WRITE_KEY)
            ),
        ):
            assert refused.status_code == 401, refused.text
            assert misplaced in refused.json()["error"], refused.text
        assert row_counts(engine) == before
        # A write key offered twice, or an admin key in its place next to a write key, pass.
        for accepted in (
            await http.post("/v1/track", json={**call, "writeKey": WRITE_KEY}, auth=basic),
            await http.post(
                "/v1/track", json={**call, "writeKey": WRITE_KEY}, headers=bearer(admin)
            ),
        ):
            assert accepted.status_code == 200, accepted.text


async def test_export_returns_everything_stored_about_the_contact_through_any_id(
    engine: Engine,
) -> None:
    plant(engine, "ann", "ann@example.com", "+15550100001", "Ann Example")
    plant(engine, "bob", "bob@example.com", "+15550100002", "Bob Other")
    admin = create_key(engine, "ops", "admin")
    async with api(engine, None) as http:
        answer = await http.get("/v1/contacts/anon-ann", headers=bearer(admin))  # an alias
        assert answer.status_code == 200
        found = answer.json()
        missing = await http.get("/v1/contacts/nobody", headers=bearer(admin))
    assert missing.status_code == 404
    assert missing.json() == {
        "success": False,
        "error": "no contact with id 'nobody' (or it was erased)",
        "code": "not_found",
        "message": "no contact with id 'nobody' (or it was erased)",
    }
    contact = found["contact"]
    assert (contact["id"], contact["email"], contact["phone"]) == (
        "ann",
        "ann@example.com",
        "+15550100001",
    )
    assert contact["traits"]["name"] == "Ann Example"
    assert found["aliases"] == ["anon-ann"]
    assert [e["type"] for e in found["events"]] == ["identify", "track"]
    assert found["events"][1]["properties"]["order_id"] == "o1"
    [message] = found["messages"]
    assert message["recipient"] == "ann@example.com"
    assert [step["status"] for step in message["timeline"]] == ["pending", "failed"]
    [run] = found["journey_runs"]
    assert (run["journey_id"], run["status"], run["data"]) == (
        "promo",
        "active",
        {"gift_card_for": "Ann Example"},
    )
    assert {(s["channel"], s["reason"]) for s in found["suppressions"]} == {
        ("email", "bounced"),
        ("sms", "unsubscribed"),
    }
    assert "bob" not in json.dumps(found).lower()  # nobody else's data


async def test_an_id_with_a_slash_stored_before_it_was_refused_is_still_exported_and_erased(
    engine: Engine, ts_env: Any
) -> None:
    """Ingest now refuses contact ids with '/', which no URL path can carry; ids stored
    before that stay reachable through `?id=` and the command line."""
    legacy, other = "shop/1042", "shop/2077"
    with session_scope(engine) as session:  # as the store kept them before the refusal
        for n, contact_id in enumerate((legacy, other)):
            session.add(Contact(id=contact_id, email=f"legacy{n}@example.com"))
            session.add(
                Event(
                    message_id=f"old-{n}",
                    type="track",
                    name="Order Completed",
                    contact_id=contact_id,
                    timestamp=datetime.now(UTC),
                )
            )
    admin = create_key(engine, "ops", "admin")
    environment = {
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "TEMPORAL_ADDRESS": ts_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": ts_env.client.namespace,
    }

    def journeys(*args: str) -> Any:
        return asyncio.to_thread(CliRunner().invoke, main, list(args), env=environment)

    async with api(engine, ts_env.client) as http:
        assert (
            await http.get("/v1/contacts/shop%2F1042", headers=bearer(admin))
        ).status_code == 404
        found = await http.get("/v1/contacts", params={"id": legacy}, headers=bearer(admin))
        assert found.status_code == 200, found.text
        assert found.json()["contact"]["email"] == "legacy0@example.com"
        assert [e["message_id"] for e in found.json()["events"]] == ["old-0"]
        exported = await journeys("contacts", "export", legacy)
        assert exported.exit_code == 0, exported.output
        assert json.loads(exported.output)["contact"]["id"] == legacy
        by_cli = await journeys("contacts", "erase", other, "--yes")
        assert by_cli.exit_code == 0 and f"contact {other!r} erased" in by_cli.output
        erased = await http.delete("/v1/contacts", params={"id": legacy}, headers=bearer(admin))
        assert erased.status_code == 200, erased.text
        assert erased.json()["found"] is True and erased.json()["erased"]["events"] == 1
        missing = await http.get("/v1/contacts", params={"id": legacy}, headers=bearer(admin))
        assert missing.status_code == 404
        nameless = await http.get("/v1/contacts", headers=bearer(admin))
        assert nameless.status_code == 400 and nameless.json()["field"] == "id"
        assert (await http.delete("/v1/contacts", params={"id": legacy})).status_code == 401
    dump = dump_tables(engine)
    assert legacy not in dump and other not in dump


# --- erasure in the store ---------------------------------------------------------------


async def test_erasure_leaves_no_canary_in_any_table_and_keeps_honouring_suppressions(
    engine: Engine, ts_env: Any
) -> None:
    # The storefront used the email as userId: the id itself is personal data.
    user = EMAIL.lower()
    plant(engine, user, EMAIL, PHONE, NAME)
    plant(engine, "control", CONTROL_EMAIL, "+15550100003", "Carla Control")
    admin = create_key(engine, "ops", "admin")
    assert leaks(dump_tables(engine))  # the canaries are there to be found
    async with api(engine, ts_env.client) as http:
        erased = await http.delete(f"/v1/contacts/anon-{user}", headers=bearer(admin))
        assert erased.status_code == 200, erased.text
        summary = erased.json()
        again = await http.delete(f"/v1/contacts/{user}", headers=bearer(admin))
        export = await http.get(f"/v1/contacts/{user}", headers=bearer(admin))
    assert summary["found"] is True
    assert summary["erased"] == {
        "contacts": 1,
        "aliases": 1,
        "events": 2,
        "messages": 1,
        "journey_runs": 1,
        "run_trail": 3,
        "suppressions": 2,
        "orders": 1,
        "loyalty_entries": 0,
        "coupons": 0,
        "segment_memberships": 0,
    }
    assert (again.status_code, again.json()["found"]) == (200, False)  # idempotent
    assert export.status_code == 404
    with session_scope(engine) as session:  # the journey's numbers: one run ended, erased
        counted = {c.metric: c.count for c in session.exec(select(JourneyCount))}
    assert counted == {"finished:exited": 1, "exit:erased": 1}

    dump = dump_tables(engine)
    assert leaks(dump) == []
    assert CONTROL_EMAIL in dump  # the control: a dump does show a contact's data
    if engine.dialect.name == "sqlite":  # not even in free pages or the write-ahead log
        raw = sqlite_files(engine).lower()
        assert [c for c in CANARIES if c.encode() in raw] == []
        assert CONTROL_EMAIL.encode() in raw

    with session_scope(engine) as session:
        erased_rows = col(Message.contact_id).like("erased-%")
        message = session.exec(select(Message).where(erased_rows)).one()
        run = session.exec(
            select(JourneyRun).where(col(JourneyRun.contact_id).like("erased-%"))
        ).one()
        # The ledger row stays, for counts and idempotency, without who or what.
        assert message.contact_id.startswith("erased-")
        assert message.idempotency_key == f"journey:promo:{message.contact_id}:offer:1"
        assert (message.status, message.provider_message_id) == (
            "failed",
            "<provider-1@shop.example>",
        )
        assert (message.recipient, message.content, message.error) == (None, {}, None)
        assert run is not None
        assert (run.status, run.exit_reason, run.data) == ("exited", "erased", {})
        assert run.workflow_id == f"journey:promo:{run.contact_id}"
        # A bounce or STOP keeps working, without the plaintext address.
        assert suppressed_addresses(session, "email", [EMAIL]) == {EMAIL: "bounced"}
        assert suppressed_addresses(session, "sms", ["+15550199999"]) == {
            "+15550199999": "unsubscribed"
        }
        suppress(session, "email", EMAIL.upper(), "complained", "sendgrid")  # already listed
    assert leaks(dump_tables(engine)) == []
    with session_scope(engine) as session:
        assert unsuppress(session, "sms", PHONE) is True  # a START reply still lifts it
        hashed = session.exec(select(Suppression.address)).all()
        assert sum(a.startswith("sha256:") for a in hashed) == 1


async def test_addresses_the_contact_had_before_are_digested_too(
    engine: Engine, ts_env: Any
) -> None:
    # Zed changed email and phone: the old ones bounced / said STOP before the change.
    old_email, old_phone = "Old.Zed@Example.com", "+15550188888"
    identify(engine, "zed", email=old_email, phone=old_phone)
    with session_scope(engine) as session:
        suppress(session, "email", old_email, "bounced", "sendgrid")
        suppress(session, "sms", old_phone, "unsubscribed", "twilio")
    identify(engine, "zed", email="new.zed@example.com", phone="+15550177777")
    admin = create_key(engine, "ops", "admin")
    async with api(engine, ts_env.client) as http:
        r = await http.delete("/v1/contacts/zed", headers=bearer(admin))
    assert r.json()["erased"]["suppressions"] == 2, r.text
    dump = dump_tables(engine).lower()
    assert old_email.lower() not in dump and old_phone not in dump
    with session_scope(engine) as session:
        assert suppressed_addresses(session, "email", [old_email]) == {old_email: "bounced"}


async def test_erasure_answers_503_and_erases_nothing_while_temporal_is_unreachable(
    sqlite_engine: Engine,
) -> None:
    plant(sqlite_engine, "ann", "ann@example.com", "+15550100001", "Ann")
    admin = create_key(sqlite_engine, "ops", "admin")
    before = without_keys(dump_tables(sqlite_engine))
    unreachable = await Client.connect("127.0.0.1:1", lazy=True)  # nothing listens there
    async with api(sqlite_engine, unreachable) as http:
        answer = await http.delete("/v1/contacts/ann", headers=bearer(admin))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "30"
    assert "nothing was erased" in answer.json()["error"]
    assert without_keys(dump_tables(sqlite_engine)) == before


# --- every workflow id shape ------------------------------------------------------------

# A distinctive id (an email, as some storefronts send) and the anonymous id it signed in
# from: neither may be left anywhere once erased, in whichever column or shape it went.
SHAPE_USER = "Quillon.Erasure-Canary7731@Example.org"
SHAPE_ANON = "anon-quillon-7731-canary"
SHAPE_IDS = (SHAPE_USER.lower(), SHAPE_ANON)
SHAPE_SEGMENTS = """\
buyers:
  description: Ordered at least once
  refresh: { every: 6h }
  orders: { at_least: 1 }
"""


def shape_journeys(bench: Bench) -> None:
    """One journey per workflow id shape the product makes, each issuing a coupon (a row
    with the workflow id), sending (a ledger row with the idempotency key) and waiting."""
    per_order = """\
        id: per_order
        name: One run per order
        trigger: { event: Order Completed }
        entry: { one_run_per: order_id }
        steps:
          - id: points
            action: { type: award_points, per: 1, of: revenue }
          - id: code
            action: { type: issue_coupon, campaign: thanks, prefix: THX, discount: 10% }
          - send: { id: thanks, channel: email, template: promo }
          - id: hold
            wait: 30d
        """
    per_contact = """\
        id: {name}
        name: One run per contact
        trigger: {{ event: {event} }}
        steps:
          - id: code
            action: {{ type: issue_coupon, campaign: {name}, prefix: HI, discount: 5% }}
          - send: {{ id: hello, channel: email, template: promo }}
          - id: hold
            wait: 30d
        """
    # Keyed by a property that is personal data itself: the email of each identify.
    per_email = """\
        id: per_email
        name: One run per email address
        trigger: { identify: true, where: event.properties.email != null }
        entry: { one_run_per: email }
        steps:
          - id: code
            action: { type: issue_coupon, campaign: hello, prefix: EM, discount: 5% }
          - send: { id: hello, channel: email, template: promo }
          - id: hold
            wait: 30d
        """
    write_journey(bench.journeys_dir, "per_order", textwrap.dedent(per_order))
    write_journey(bench.journeys_dir, "per_email", textwrap.dedent(per_email))
    for name, event in (("welcome", "Signed Up"), ("nudge", "Came Back")):
        body = textwrap.dedent(per_contact.format(name=name, event=event))
        write_journey(bench.journeys_dir, name, body)
    (bench.journeys_dir / "segments.yaml").write_text(SHAPE_SEGMENTS)
    bench.deploy()


async def holding(bench: Bench, count: int) -> list[JourneyRun]:
    """Every run once it has sent its message and waits in `hold`."""
    give_up = asyncio.get_running_loop().time() + 120
    while asyncio.get_running_loop().time() < give_up:
        runs = bench.runs()
        if len(runs) >= count and all(r.current_step == "hold" for r in runs):
            return runs
        await asyncio.sleep(0.1)
    raise AssertionError(f"runs did not all reach their wait: {[r.current_step for r in runs]}")


def id_leaks(text_or_bytes: str | bytes) -> list[str]:
    low = text_or_bytes.lower()
    if isinstance(low, bytes):
        return [c for c in (*SHAPE_IDS, *CANARIES) if c.encode() in low]
    return [c for c in (*SHAPE_IDS, *CANARIES) if c in low]


async def test_erasure_leaves_no_trace_of_the_id_in_any_workflow_id_shape(
    engine: Engine, ts_env: Any, tmp_path: Path
) -> None:
    bench = Bench(
        ts_env,
        engine,
        tmp_path / "journeys",
        tiny_templates(tmp_path / "templates", ("promo",)),
        overrides={"marketing_cap": "none", "message_cap": "none"},
    )
    shape_journeys(bench)
    admin = create_key(engine, "ops", "admin")
    async with bench.worker():
        # journey:welcome:<anonymous id>: a run started before sign-in, kept under that id.
        await bench.track_anonymous(SHAPE_ANON, "Signed Up")
        await bench.identify(SHAPE_USER, anonymousId=SHAPE_ANON, email=EMAIL, phone=PHONE)
        await bench.track(SHAPE_USER, "Came Back")  # journey:nudge:<id>
        # journey:per_order:<id>:<order>, :event-<n> (no order id), :h<hash> (a long id).
        await bench.track(SHAPE_USER, "Order Completed", order_id="o-1001", revenue=120)
        await bench.track(SHAPE_USER, "Order Completed", revenue=80)
        await bench.track(SHAPE_USER, "Order Completed", order_id="x:" + "7" * 120, revenue=5)
        await bench.identify("control", email=CONTROL_EMAIL)
        await bench.track("control", "Order Completed", order_id="c-1", revenue=10)
        runs = await holding(bench, 8)
        shapes = sorted(
            re.sub(r":event-\d+$", ":event-<n>", r.workflow_id.replace(SHAPE_USER, "<id>"))
            for r in runs
        )
        assert shapes == [
            "journey:nudge:<id>",
            f"journey:per_email:<id>:{EMAIL}",  # journey:per_email:<id>:<email>
            f"journey:per_email:control:{CONTROL_EMAIL}",
            "journey:per_order:<id>:event-<n>",
            workflow_id("per_order", "<id>", "x:" + "7" * 120),  # :h<hash of the long key>
            "journey:per_order:<id>:o-1001",
            "journey:per_order:control:c-1",
            f"journey:welcome:{SHAPE_ANON}",
        ]
        before = dump_tables(engine)
        # The ids are where the issue found them: keyed runs, their ledger rows and coupons.
        for table in ("journey_runs", "messages", "coupons", "events", "segment_members"):
            assert id_leaks("\n".join(r for r in before.splitlines() if r.startswith(table)))

        async with api(engine, ts_env.client) as http:
            erased = await http.delete(f"/v1/contacts/{SHAPE_USER}", headers=bearer(admin))
        assert erased.status_code == 200, erased.text
        assert erased.json()["runs_stopped"] == 6
        for run in runs:
            if run.contact_id == "control":
                await bench.client.get_workflow_handle(run.workflow_id).terminate("test over")

    # Every table the store defines is in the dump, every column of every row.
    dumped = set(inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= dumped
    dump = dump_tables(engine)
    assert [line for line in dump.splitlines() if id_leaks(line)] == []
    assert "control" in dump and CONTROL_EMAIL in dump  # the dump does show what is kept
    if engine.dialect.name == "sqlite":  # not in free pages or the write-ahead log either
        assert id_leaks(sqlite_files(engine)) == []
    with session_scope(engine) as session:
        kept = session.exec(select(Message).where(col(Message.contact_id).like("erased-%"))).all()
        coupons = session.exec(select(Coupon).where(col(Coupon.contact_id).like("erased-%"))).all()
    # The ledger rows stay, each keyed by its run's rewritten workflow id.
    assert len(kept) == 6 and len(coupons) == 6
    for row in (*kept, *coupons):
        assert row.workflow_id and row.workflow_id.startswith(f"journey:{row.journey_id}:erased-")
        assert row.idempotency_key.startswith(row.workflow_id + ":")


async def test_erasure_stops_a_run_per_order_that_has_not_recorded_its_entry_yet(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """The router has started `journey:per_order:<id>:<order>` (and the identify's
    `journey:per_email:<id>:<email>`), no worker has run its first step: there is no row
    naming them, and they must still be stopped (they would write one).

    On a time-skipping server of its own: a run started where no worker polls holds that
    server's clock back for good, even once terminated, and later tests' timers with it.
    """
    async with own_time_skipping_server() as env:
        bench = Bench(
            env,
            sqlite_engine,
            tmp_path / "journeys",
            tiny_templates(tmp_path / "templates", ("promo",)),
        )
        shape_journeys(bench)
        admin = create_key(sqlite_engine, "ops", "admin")
        await bench.identify(SHAPE_USER, email=EMAIL)
        await bench.track(SHAPE_USER, "Order Completed", order_id="o-2002", revenue=20)
        await bench.track(SHAPE_USER, "Order Completed", revenue=30)  # keyed by its event
        started = [
            bench.client.get_workflow_handle(workflow_id("per_order", SHAPE_USER, key))
            for key in ("o-2002", f"event-{max(e.id or 0 for e in bench_events(bench))}")
        ]
        started.append(
            bench.client.get_workflow_handle(workflow_id("per_email", SHAPE_USER, EMAIL))
        )
        for handle in started:
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert bench.runs() == []  # no worker: nothing recorded
        with session_scope(sqlite_engine) as session:  # a version an older release stored
            old = {"id": "legacy", "steps": [{"sleep": "1d"}]}
            session.add(JourneyVersion(journey_id="legacy", version=1, spec_hash="x", spec=old))
        async with api(sqlite_engine, env.client) as http:
            erased = await http.delete(f"/v1/contacts/{SHAPE_USER}", headers=bearer(admin))
        assert erased.status_code == 200, erased.text
        assert erased.json()["runs_stopped"] == 3
        for handle in started:
            assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


def bench_events(bench: Bench) -> list[Event]:
    with session_scope(bench.engine) as session:
        return list(session.exec(select(Event)))


async def status(bench: Bench, wid: str) -> WorkflowExecutionStatus | None:
    return (await bench.client.get_workflow_handle(wid).describe()).status


@contextlib.asynccontextmanager
async def running(bench: Bench) -> AsyncIterator[None]:
    """The bench's worker; on the way out, a failure's too, every run the store knows of
    is terminated: the next test reusing an id must not find it (and signal it)."""
    try:
        async with bench.worker():
            yield
    finally:
        await end_open_runs(bench)


def shape_bench(env: Any, engine: Engine, tmp_path: Path, journeys: bool = True) -> Bench:
    """A bench without frequency caps, with the `shape_journeys` deployed (or none)."""
    bench = Bench(
        env,
        engine,
        tmp_path / "journeys",
        tiny_templates(tmp_path / "templates", ("promo",)),
        overrides={"marketing_cap": "none", "message_cap": "none"},
    )
    if journeys:
        shape_journeys(bench)
    return bench


async def test_erasing_an_id_with_a_colon_leaves_the_keyed_run_it_looks_like_alone(
    engine: Engine, ts_env: Any, tmp_path: Path
) -> None:
    """`bob:o1` is a contact of its own (docs suggest ids like `shop:1042`), and also what
    Bob's run for order o1 is named after: `journey:per_order:bob:o1`. Erasing `bob:o1`
    must not stop Bob's run."""
    bench = shape_bench(ts_env, engine, tmp_path)
    admin = create_key(engine, "ops", "admin")
    async with running(bench):
        await bench.track("bob", "Order Completed", order_id="o1", revenue=50)
        await bench.identify("bob:o1", first_name="X")
        [run] = await holding(bench, 1)
        assert (run.workflow_id, run.contact_id) == ("journey:per_order:bob:o1", "bob")
        async with api(engine, ts_env.client) as http:
            erased = await http.delete("/v1/contacts/bob:o1", headers=bearer(admin))
            assert erased.status_code == 200, erased.text
            assert erased.json()["found"] is True
            assert erased.json()["runs_stopped"] == 0
            assert await status(bench, run.workflow_id) == WorkflowExecutionStatus.RUNNING
            assert [(r.contact_id, r.status) for r in bench.runs()] == [("bob", "active")]
            # Bob's own erasure does stop it.
            erased = await http.delete("/v1/contacts/bob", headers=bearer(admin))
        assert erased.json()["runs_stopped"] == 1, erased.text
        assert await status(bench, run.workflow_id) == WorkflowExecutionStatus.TERMINATED


THANKS = """\
id: thanks
name: Thanks for the order
trigger: {{ event: Order Completed }}
{entry}
steps:
  - send: {{ id: hello, channel: email, template: promo }}
  - id: hold
    wait: 30d
"""


async def test_erasure_stops_the_runs_of_every_versions_shape_and_only_the_contacts_own(
    engine: Engine, ts_env: Any, tmp_path: Path
) -> None:
    """A journey that gained `one_run_per` in its second version has runs of both shapes:
    `journey:thanks:dan` (v1) and `journey:thanks:dan:o7` (v2). Erasing Dan stops both;
    erasing `bob:o1`, whose v1-shaped id is Bob's v2 run, stops neither Bob's run nor
    anything else."""
    bench = shape_bench(ts_env, engine, tmp_path, journeys=False)
    write_journey(bench.journeys_dir, "thanks", THANKS.format(entry=""))
    bench.deploy()
    admin = create_key(engine, "ops", "admin")
    async with running(bench):
        await bench.track("dan", "Order Completed", order_id="o5", revenue=10)
        await holding(bench, 1)
        write_journey(
            bench.journeys_dir, "thanks", THANKS.format(entry="entry: { one_run_per: order_id }")
        )
        bench.deploy()
        await bench.track("bob", "Order Completed", order_id="o1", revenue=50)
        await bench.track("dan", "Order Completed", order_id="o7", revenue=70)
        await bench.identify("bob:o1", first_name="X")
        runs = await holding(bench, 3)
        assert sorted((r.workflow_id, r.version) for r in runs) == [
            ("journey:thanks:bob:o1", 2),
            ("journey:thanks:dan", 1),
            ("journey:thanks:dan:o7", 2),
        ]
        async with api(engine, ts_env.client) as http:
            not_bob = await http.delete("/v1/contacts/bob:o1", headers=bearer(admin))
            assert not_bob.json()["runs_stopped"] == 0, not_bob.text
            for run in runs:
                assert await status(bench, run.workflow_id) == WorkflowExecutionStatus.RUNNING
            dan = await http.delete("/v1/contacts/dan", headers=bearer(admin))
        assert dan.json()["runs_stopped"] == 2, dan.text
        for run in runs:
            expected = (
                WorkflowExecutionStatus.TERMINATED
                if run.contact_id == "dan"
                else WorkflowExecutionStatus.RUNNING
            )
            assert await status(bench, run.workflow_id) == expected, run.workflow_id


async def test_erasure_stops_a_python_journeys_run_that_has_not_recorded_its_entry_yet(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """A hand-written journey (JOURNEYS_PYTHON_JOURNEYS) has no deployed version: the router
    has started `journey:vip_welcome:<id>`, no worker has recorded it, and it must be stopped."""
    async with own_time_skipping_server() as env:
        bench = Bench(
            env,
            sqlite_engine,
            tmp_path / "journeys",
            tiny_templates(tmp_path / "templates", ("promo",)),
            python_journeys=["examples.python_journey.vip_welcome:VipWelcome"],
        )
        admin = create_key(sqlite_engine, "ops", "admin")
        await bench.identify("vic", email="vic@example.com")
        await bench.track("vic", "VIP Joined")
        handle = bench.handle("vip_welcome", "vic")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert bench.runs() == []  # no worker: nothing recorded
        async with api(sqlite_engine, env.client, python_journeys=["vip_welcome"]) as http:
            erased = await http.delete("/v1/contacts/vic", headers=bearer(admin))
        assert erased.status_code == 200, erased.text
        assert erased.json()["runs_stopped"] == 1
        assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


# --- a busy database ----------------------------------------------------------------------


@contextlib.contextmanager
def locked(engine: Engine, table: str, contact_id: str) -> Iterator[None]:
    """Another connection holds a lock the erasure needs: SQLite's write lock (what any
    writer in the middle of a transaction holds), or on PostgreSQL `table`'s rows of
    `contact_id`."""
    if engine.dialect.name == "sqlite":
        other = sqlite3.connect(engine.url.database or "", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    with engine.connect() as connection:
        query = f'SELECT 1 FROM "{table}" WHERE contact_id = :id FOR UPDATE'
        if table == "contacts":
            query = 'SELECT 1 FROM "contacts" WHERE id = :id FOR UPDATE'
        assert connection.execute(text(query), {"id": contact_id}).first() is not None
        try:
            yield
        finally:
            connection.rollback()


DRIVER_TEXT = ("database is locked", "lock timeout", "LockNotAvailable")


async def test_an_erasure_on_a_busy_database_stops_nothing_and_a_retry_completes_it(
    engine: Engine, ts_env: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bench = shape_bench(ts_env, engine, tmp_path)
    admin = create_key(engine, "ops", "admin")
    async with running(bench), api(engine, ts_env.client) as http:
        await bench.track("lockv2", "Order Completed", order_id="o9901", revenue=10)
        [run] = await holding(bench, 1)
        # The key is touched (last used) at most once a minute: now, not while locked.
        assert (await http.get("/v1/contacts/lockv2", headers=bearer(admin))).status_code == 200
        with caplog.at_level(logging.WARNING), locked(engine, "contacts", "lockv2"):
            delete = http.delete("/v1/contacts/lockv2", headers=bearer(admin))
            busy = await asyncio.wait_for(delete, timeout=40)
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"]
        assert "nothing was stopped or erased" in busy.json()["error"]
        # The driver's words (on PostgreSQL they can name hosts and users) go to the log only.
        assert not any(words in busy.text for words in DRIVER_TEXT), busy.text
        assert any(words in caplog.text for words in DRIVER_TEXT), caplog.text
        # True: the run goes on, its row is as it was.
        assert await status(bench, run.workflow_id) == WorkflowExecutionStatus.RUNNING
        assert [r.status for r in bench.runs("lockv2")] == ["active"]

        retry = await http.delete("/v1/contacts/lockv2", headers=bearer(admin))
        assert retry.status_code == 200, retry.text
        assert (retry.json()["runs_stopped"], retry.json()["erased"]["journey_runs"]) == (1, 1)
    assert await status(bench, run.workflow_id) == WorkflowExecutionStatus.TERMINATED
    [kept] = bench.runs()
    assert (kept.status, kept.exit_reason) == ("exited", "erased")


async def test_an_erasure_that_fails_after_stopping_the_runs_says_so_and_a_retry_completes_it(
    engine: Engine, ts_env: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL a row the erasure rewrites can be locked by another transaction after
    the runs were stopped (on SQLite the erasure holds the write lock from the start)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the erasure takes the write lock before it stops anything")
    bench = shape_bench(ts_env, engine, tmp_path)
    admin = create_key(engine, "ops", "admin")
    async with running(bench), api(engine, ts_env.client) as http:
        await bench.track("lockv3", "Order Completed", order_id="o9902", revenue=10)
        [run] = await holding(bench, 1)
        assert (await http.get("/v1/contacts/lockv3", headers=bearer(admin))).status_code == 200
        with caplog.at_level(logging.WARNING), locked(engine, "journey_runs", "lockv3"):
            delete = http.delete("/v1/contacts/lockv3", headers=bearer(admin))
            busy = await asyncio.wait_for(delete, timeout=40)
        assert busy.status_code == 503, busy.text
        error = busy.json()["error"]
        assert "1 journey(s) of the contact were stopped" in error, error
        assert "not erased yet" in error and "retry" in error, error
        assert not any(words in busy.text for words in DRIVER_TEXT), busy.text
        assert any(words in caplog.text for words in DRIVER_TEXT), caplog.text
        assert await status(bench, run.workflow_id) == WorkflowExecutionStatus.TERMINATED
        assert [r.status for r in bench.runs("lockv3")] == ["active"]  # not erased: true

        retry = await http.delete("/v1/contacts/lockv3", headers=bearer(admin))
        assert retry.status_code == 200, retry.text
        assert retry.json()["found"] is True and retry.json()["erased"]["journey_runs"] == 1
    [kept] = bench.runs()
    assert (kept.status, kept.exit_reason) == ("exited", "erased")
    assert "lockv3" not in dump_tables(engine)


# --- 100 live journeys, then erase ----------------------------------------------------


class RefusingSms(Channel):
    """A provider that refuses every SMS and, like SMTP servers do, quotes the address."""

    name: ClassVar[str] = "refusing"
    serves: ClassVar[tuple[str, ...]] = ("sms",)

    def __init__(self) -> None:
        self.said: list[str] = []

    def send(self, message: OutgoingMessage) -> Receipt:
        error = f"number {message.to} is not reachable"
        self.said.append(error)
        raise PermanentChannelError(error, provider=self.name, reason="invalid_recipient")


def journey_yaml(name: str, trigger: str = "Signed Up", channel: str = "email") -> str:
    """A small journey: one message on entry, then a long wait (the run stays live)."""
    return textwrap.dedent(
        f"""\
        id: {name}
        name: Journey {name}
        trigger: {{ event: {trigger} }}
        steps:
          - send: {{ id: hello, channel: {channel}, template: promo }}
          - wait: 30d
        """
    )


def crowd(env: Any, engine: Engine, folder: Path, journeys: int) -> Bench:
    """A bench with `journeys` journeys on the same trigger."""
    bench = Bench(
        env,
        engine,
        folder / "journeys",
        tiny_templates(folder / "templates", ("promo",)),
        overrides={"marketing_cap": "none", "message_cap": "none"},
    )
    for index in range(journeys):
        name, channel = f"j{index:04d}", "sms" if index == 0 else "email"
        # The first sends an SMS, which the provider refuses quoting the number.
        write_journey(bench.journeys_dir, name, journey_yaml(name, channel=channel))
    # One more journey, on another trigger, for the control contact.
    write_journey(bench.journeys_dir, "control", journey_yaml("control", trigger="Came Back"))
    bench.deploy()
    return bench


@pytest_asyncio.fixture
async def crowded(ts_env, engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    yield crowd(ts_env, engine, tmp_path, JOURNEYS)


async def settled(bench: Bench, user: str, count: int) -> list[JourneyRun]:
    """The user's runs once each has sent (or failed) its message and sits in the wait."""
    waiting = (
        select(func.count())
        .select_from(JourneyRun)
        .where(JourneyRun.contact_id == user, JourneyRun.current_step == "steps.1")
    )
    give_up = asyncio.get_running_loop().time() + 120 + count * 0.5  # a hang, not a speed test
    while asyncio.get_running_loop().time() < give_up:
        with session_scope(bench.engine) as session:
            if session.exec(waiting).one() == count:
                return bench.runs(user)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{user}: {len(bench.runs(user))} runs entered, not all reached the wait")


async def histories(client: Client, workflow_ids: list[str]) -> str:
    found = await asyncio.gather(
        *(client.get_workflow_handle(w).fetch_history() for w in workflow_ids)
    )
    return "\n".join(h.to_json() for h in found)


async def test_erasing_a_contact_with_100_live_journeys_stops_them_and_leaves_no_canary(
    crowded: Bench,
) -> None:
    bench, user = crowded, "cust-8412"
    refusing = RefusingSms()
    console = ConsoleChannel(stream=bench.console)
    admin = create_key(bench.engine, "ops", "admin")
    async with bench.worker({"email": console, "sms": refusing}):
        await bench.identify(user, email=EMAIL, phone=PHONE, first_name=NAME)
        await bench.identify("control", email=CONTROL_EMAIL, phone="+15550100003")
        await bench.track(user, "Signed Up", referrer_email=EMAIL)
        started = datetime.now(UTC)
        runs = await settled(bench, user, JOURNEYS)
        entered = (datetime.now(UTC) - started).total_seconds()
        await bench.track("control", "Came Back")
        await settled(bench, "control", 1)
        mine = sorted({r.workflow_id for r in runs})

        # Workflow inputs and histories carry ids, never the address: the provider's error
        # quoted the number, and the history must not.
        assert any(PHONE in said for said in refusing.said)
        assert leaks(await histories(bench.client, mine)) == []

        async with api(bench.engine, bench.client) as http:
            started = datetime.now(UTC)
            answer = await http.delete(f"/v1/contacts/{user}", headers=bearer(admin))
            erase_seconds = (datetime.now(UTC) - started).total_seconds()
        assert answer.status_code == 200, answer.text
        assert answer.json()["runs_stopped"] == JOURNEYS

        for wid in mine:
            described = await bench.client.get_workflow_handle(wid).describe()
            assert described.status == WorkflowExecutionStatus.TERMINATED
        control = bench.handle("control", "control")
        assert (await control.describe()).status == WorkflowExecutionStatus.RUNNING  # untouched
        assert leaks(await histories(bench.client, mine)) == []  # termination adds no data
        await control.terminate(reason="test over")  # it would wait 30 days

    runs = [r for r in bench.runs() if r.contact_id != "control"]
    assert len(runs) == JOURNEYS
    assert {(r.status, r.exit_reason) for r in runs} == {("exited", "erased")}
    dump = dump_tables(bench.engine)
    assert leaks(dump) == []
    assert CONTROL_EMAIL in dump
    if bench.engine.dialect.name == "sqlite":
        raw = sqlite_files(bench.engine).lower()
        assert [c for c in CANARIES if c.encode() in raw] == []
    print(
        f"\nerasure ({bench.engine.dialect.name}): {JOURNEYS} live journeys entered in "
        f"{entered:.1f} s; "
        f"DELETE took {erase_seconds:.2f} s"
    )


# --- the command line -----------------------------------------------------------------


async def test_journeys_contacts_erase_and_export_on_the_command_line(
    ts_env: Any, sqlite_engine: Engine, tmp_path: Path
) -> None:
    bench = crowd(ts_env, sqlite_engine, tmp_path, 3)
    environment = {
        "DATABASE_URL": str(bench.engine.url),
        "TEMPORAL_ADDRESS": bench.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": bench.client.namespace,
    }

    def journeys(*args: str, **env: str) -> Any:
        # In a thread: the command runs its own event loop, as it does in a terminal.
        return asyncio.to_thread(CliRunner().invoke, main, list(args), env={**environment, **env})

    async with bench.worker():
        await bench.identify("dora", email="dora@example.com", phone="+15550100004")
        await bench.track("dora", "Signed Up")
        await settled(bench, "dora", 3)

        exported = await journeys("contacts", "export", "dora")
        assert exported.exit_code == 0, exported.output
        assert json.loads(exported.output)["contact"]["email"] == "dora@example.com"
        out = tmp_path / "dora.json"
        await journeys("contacts", "export", "dora", "--output", str(out))
        assert out.stat().st_mode & 0o077 == 0  # personal data: readable by its owner only

        down = await journeys("contacts", "erase", "dora", "--yes", TEMPORAL_ADDRESS="127.0.0.1:1")
        assert down.exit_code == 1
        assert "nothing was erased" in down.output
        assert {r.status for r in bench.runs("dora")} == {"active"}

        asked = await journeys("contacts", "erase", "dora")  # no --yes, no answer: aborted
        assert asked.exit_code == 1 and "nothing was erased" in asked.output

        erased = await journeys("contacts", "erase", "dora", "--yes")
        assert erased.exit_code == 0, erased.output
        assert "3 running journey(s) stopped" in erased.output
        described = await bench.handle("j0001", "dora").describe()
        assert described.status == WorkflowExecutionStatus.TERMINATED

        again = await journeys("contacts", "erase", "dora", "--yes")
        assert again.exit_code == 0 and "nothing stored" in again.output
        missing = await journeys("contacts", "export", "dora")
        assert missing.exit_code == 1 and "no contact with id 'dora'" in missing.output
    with session_scope(bench.engine) as session:
        assert session.get(Contact, "dora") is None


async def test_an_erasure_waits_for_a_send_inside_its_provider_call(engine: Engine) -> None:
    """A message whose provider call is under way (`sending`) would reach the provider
    after the erasure answered (the soak saw it once): the erasure waits for the call's
    outcome, then erases, so nothing is sent to the person after the answer."""
    from orchestrator.services.privacy import erase_contact

    with session_scope(engine) as session:
        session.add(Contact(id="dora", email="dora@example.com"))
        session.add(
            Message(
                id="m-dora",
                idempotency_key="journey:promo:dora:offer:1",
                workflow_id="journey:promo:dora",
                entry_seq=1,
                step_id="offer",
                journey_id="promo",
                contact_id="dora",
                channel="email",
                adapter="smtp",
                template="promo",
                category="marketing",
                recipient="dora@example.com",
                status="sending",
            )
        )
    answered: list[str] = []

    async def provider_answers() -> None:
        await asyncio.sleep(1.0)
        answered.append("sent")
        with session_scope(engine) as session:
            row = session.get(Message, "m-dora")
            assert row is not None
            row.status = "sent"

    answering = asyncio.create_task(provider_answers())
    result = await erase_contact(engine, None, "dora")
    assert answered == ["sent"], "the erasure answered while the send was in flight"
    await answering
    assert result.found
    with session_scope(engine) as session:
        row = session.get(Message, "m-dora")
        assert row is not None and row.status == "sent" and row.recipient is None
        assert session.get(Contact, "dora") is None
