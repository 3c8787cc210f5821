"""Transactional messages: `POST /v1/messages` and `GET /v1/messages/{id}`.

The API half runs in-process against both databases; the sends run end to end on the
time-skipping server: API commit, router, `TransactionalMessageWorkflow`, prepare on the
journeys queue, deliver on the channel queue, the status URL telling the outcome.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.analytics.story import contact_story
from orchestrator.api import create_app
from orchestrator.cli.main import main
from orchestrator.services.privacy import erase_contact
from orchestrator.settings import Settings
from orchestrator.store.db import session_scope
from orchestrator.store.keys import create_key
from orchestrator.store.suppressions import suppress
from orchestrator.store.tables import Contact, Event, Message
from tests.harness import ROOT, Bench

WRITE = "test-write-key"
HISTORIES = Path(__file__).parent / "histories" / "messages"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def add_contact(engine: Engine, cid: str, **fields: Any) -> None:
    with session_scope(engine) as session:
        session.add(Contact(id=cid, **fields))


@pytest.fixture
def server_key(engine: Engine) -> str:
    return create_key(engine, "backend", "server")


@pytest_asyncio.fixture
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    woken: list[int] = []
    settings = Settings(templates_dir=ROOT / "templates")
    app = create_app(
        engine, [WRITE], client=None, on_stored=lambda: woken.append(1), settings=settings
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        client.woken = woken  # type: ignore[attr-defined]
        yield client


RU_SUBJECT = "Сброс пароля в Fernwood Home"  # noqa: RUF001 - Russian, as the template

RESET = {
    "template": "password_reset",
    "userId": "ann",
    "properties": {"reset_url": "https://shop.example/reset?t=1", "expires_in_minutes": 15},
}


# --- keys ---------------------------------------------------------------------


async def test_a_message_needs_a_server_or_admin_key_in_the_authorization_header(  # type: ignore[no-untyped-def]
    api, engine, server_key
) -> None:
    add_contact(engine, "ann", email="ann@example.com")
    r = await api.post("/v1/messages", json=RESET)
    assert r.status_code == 401
    assert r.json()["error"] == (
        "missing server or admin key: send it as a Bearer token or the HTTP Basic username"
    )
    r = await api.post("/v1/messages", json=RESET, headers=basic(WRITE))
    assert r.status_code == 403
    assert r.json()["error"] == "this is a write key; this endpoint needs a server or admin key"
    r = await api.post("/v1/messages", json=RESET, headers=bearer("sk_not-a-key"))
    assert (r.status_code, r.json()["error"]) == (401, "invalid or revoked server or admin key")
    # A server key is a secret: in the body (where request logs keep it) it refuses the call.
    r = await api.post("/v1/messages", json={**RESET, "writeKey": server_key})
    assert r.status_code == 401
    assert r.json()["error"].startswith("a server key is accepted only in the Authorization")
    r = await api.post("/v1/messages", json=RESET, headers=bearer(server_key))
    assert r.status_code == 202, r.text
    admin = create_key(engine, "ops", "admin")
    r = await api.post(
        "/v1/messages", json={**RESET, "idempotencyKey": "k-admin"}, headers=bearer(admin)
    )
    assert r.status_code == 202
    # A server key tracks like a write key, but cannot read reports or export contacts.
    r = await api.post(
        "/v1/track", json={"userId": "ann", "event": "Shipped"}, headers=basic(server_key)
    )
    assert r.status_code == 200
    r = await api.get("/v1/journeys", headers=bearer(server_key))
    assert (r.status_code, r.json()["error"]) == (
        403,
        "this is a server key; this endpoint needs an admin key",
    )


# --- what is stored -------------------------------------------------------------


async def test_an_accepted_message_is_committed_with_its_request_and_wakes_the_router(  # type: ignore[no-untyped-def]
    api, engine, server_key
) -> None:
    add_contact(engine, "ann", email="ann@example.com")
    r = await api.post("/v1/messages", json=RESET, headers=bearer(server_key))
    assert r.status_code == 202
    body = r.json()
    assert body["success"] is True and body["status"] == "pending" and not body["duplicate"]
    assert body["status_url"] == f"/v1/messages/{body['id']}" == r.headers["location"]
    assert api.woken == [1]
    with session_scope(engine) as session:
        row = session.get(Message, body["id"])
        assert row is not None
        assert (row.category, row.template, row.contact_id, row.status, row.journey_id) == (
            "transactional",
            "password_reset",
            "ann",
            "pending",
            "",
        )
        event = session.exec(select(Event).where(Event.type == "message")).one()
        assert (event.name, event.contact_id, event.routed_at) == ("password_reset", "ann", None)
        assert event.properties == RESET["properties"]
    r = await api.get(body["status_url"], headers=bearer(server_key))
    assert r.status_code == 200
    status = r.json()["message"]
    assert (status["id"], status["status"], status["category"], status["journey"]) == (
        body["id"],
        "pending",
        "transactional",
        None,
    )
    assert "content" not in status and "recipient" not in status  # no personal data


async def test_an_alias_sends_to_its_contact(api, engine, server_key) -> None:  # type: ignore[no-untyped-def]
    from orchestrator.store.tables import ContactAlias

    add_contact(engine, "ann", email="ann@example.com")
    with session_scope(engine) as session:
        session.add(ContactAlias(alias_id="anon-7", contact_id="ann"))
    request = {**RESET, "anonymousId": "anon-7"}
    del request["userId"]
    r = await api.post("/v1/messages", json=request, headers=bearer(server_key))
    assert r.status_code == 202
    with session_scope(engine) as session:
        assert session.get(Message, r.json()["id"]).contact_id == "ann"  # type: ignore[union-attr]


async def test_the_same_idempotency_key_gives_the_first_message_and_no_second(  # type: ignore[no-untyped-def]
    api, engine, server_key
) -> None:
    add_contact(engine, "ann", email="ann@example.com")
    request = {**RESET, "idempotencyKey": "reset-ann-0001"}
    first = await api.post("/v1/messages", json=request, headers=bearer(server_key))
    again = await api.post("/v1/messages", json=request, headers=bearer(server_key))
    header = await api.post(
        "/v1/messages",
        json=RESET,
        headers={**bearer(server_key), "Idempotency-Key": "reset-ann-0001"},
    )
    assert first.status_code == 202 and again.status_code == 200 and header.status_code == 200
    assert first.json()["id"] == again.json()["id"] == header.json()["id"]
    assert again.json()["duplicate"] is True
    assert api.woken == [1]  # the repeats store nothing
    changed = {**request, "properties": {"reset_url": "https://shop.example/reset?t=2"}}
    r = await api.post("/v1/messages", json=changed, headers=bearer(server_key))
    assert r.status_code == 409
    assert r.json() == {
        "success": False,
        "error": f"this idempotency key was used for message {first.json()['id']} with "
        "another properties: use a new key for a different message",
        "code": "conflict",
        "message": r.json()["error"],
        "field": "idempotencyKey",
    }
    with session_scope(engine) as session:
        assert len(session.exec(select(Message)).all()) == 1
        assert len(session.exec(select(Event).where(Event.type == "message")).all()) == 1


BAD_REQUESTS = [
    (
        {"to": "ann@example.com", "channel": ["email", "sms"]},
        400,
        "to needs channel email or sms (one channel: the address is for it)",
        "to",
    ),
    (
        {"to": "ann@example.com", "channel": "push"},
        400,
        ("to needs channel email or sms (one channel: the address is for it)"),
        "to",
    ),
    (
        {"to": "ann@example.com\r\nBcc: x@evil.example"},
        400,
        (
            "to is not one email address: it contains a line break (CR/LF), which could add "
            "mail headers"
        ),
        "to",
    ),
    (
        {"to": "0601234567", "channel": "sms"},
        400,
        ("to is not a phone number in E.164 form (like +381601234567): '0601234567'"),
        "to",
    ),
    (
        {"template": None},
        400,
        ("template is required: the name of a folder under templates/"),
        "template",
    ),
    (
        {"template": "../_layouts"},
        400,
        (
            "template '../_layouts' is no message name: letters, digits, "
            "_ and -, as the folder under templates/ is named"
        ),
        "template",
    ),
    (
        {"template": "pasword_reset"},
        400,
        ("unknown template 'pasword_reset'; did you mean 'password_reset'?"),
        "template",
    ),
    (
        {"template": "_partials"},
        400,
        ("unknown template '_partials'"),
        "template",
    ),
    (
        {"channel": "push"},
        400,
        ("template 'password_reset' has no push version (it has: email, sms)"),
        "channel",
    ),
    (
        {"channel": "emial"},
        400,
        ("unknown channel 'emial': did you mean 'email'?"),
        "channel",
    ),
    (
        {"channel": ["sms", "preferred"]},
        400,
        (
            "preferred cannot be in a list: send channel preferred alone, "
            "or list the channels to try in order"
        ),
        "channel",
    ),
    (
        {"channel": "fax"},
        400,
        ("unknown channel 'fax': expected email, push, sms, preferred"),
        "channel",
    ),
    (
        {"channel": ["sms", "sms"]},
        400,
        ("channel lists a channel twice"),
        "channel",
    ),
    (
        {"userId": None},
        400,
        ("name the contact with userId (or anonymousId), exactly one of them"),
        "userId",
    ),
    (
        {"anonymousId": "a-1"},
        400,
        ("name the contact with userId (or anonymousId), exactly one of them"),
        "userId",
    ),
    (
        {"userId": ["ann"]},
        400,
        ("userId must be text of 1 to 255 characters"),
        "userId",
    ),
    (
        {"userId": "bob"},
        404,
        (
            "no contact with userId 'bob': send an identify with their "
            "email or phone first (POST /v1/identify), then the message"
        ),
        "userId",
    ),
    (
        {"properties": [1]},
        400,
        ("properties must be an object: the template reads event.properties"),
        "properties",
    ),
    (
        {"propertes": {}},
        400,
        ("unknown field 'propertes'; did you mean 'properties'?"),
        "propertes",
    ),
    (
        {"idempotencyKey": "has space"},
        400,
        (
            "idempotencyKey must be 1 to 255 printable ASCII characters "
            "without spaces, e.g. order-1042-confirmation"
        ),
        "idempotencyKey",
    ),
    (
        {"idempotencyKey": 7},
        400,
        ("idempotencyKey must be text"),
        "idempotencyKey",
    ),
]


@pytest.mark.parametrize(("change", "status", "error", "field"), BAD_REQUESTS)
async def test_bad_requests_say_what_and_where_and_store_nothing(  # type: ignore[no-untyped-def]
    api, engine, server_key, change, status, error, field
) -> None:
    add_contact(engine, "ann", email="ann@example.com")
    request = {k: v for k, v in {**RESET, **change}.items() if v is not None}
    r = await api.post("/v1/messages", json=request, headers=bearer(server_key))
    assert (r.status_code, r.json()["error"], r.json()["field"]) == (status, error, field)
    with session_scope(engine) as session:
        assert session.exec(select(Message)).all() == []
        assert session.exec(select(Event)).all() == []
    assert api.woken == []


async def test_header_and_body_keys_must_agree(api, engine, server_key) -> None:  # type: ignore[no-untyped-def]
    add_contact(engine, "ann", email="ann@example.com")
    r = await api.post(
        "/v1/messages",
        json={**RESET, "idempotencyKey": "a"},
        headers={**bearer(server_key), "Idempotency-Key": "b"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == (
        "the Idempotency-Key header and idempotencyKey in the body differ: send one"
    )


async def test_status_of_an_unknown_message_is_404(api, server_key) -> None:  # type: ignore[no-untyped-def]
    r = await api.get(
        "/v1/messages/00000000-0000-0000-0000-000000000000", headers=bearer(server_key)
    )
    assert r.status_code == 404
    assert r.json()["error"] == (
        "no message '00000000-0000-0000-0000-000000000000' (erased, or never sent)"
    )
    r = await api.get("/v1/messages/" + "x" * 200, headers=bearer(server_key))
    assert r.status_code == 404


def test_keys_create_server(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["keys", "create", "backend", "--server", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("sk_")
    assert "server key 'backend' created" in result.stderr
    listed = runner.invoke(main, ["keys", "list", "--data-dir", str(tmp_path)])
    assert "backend" in listed.output and "server" in listed.output
    both = runner.invoke(
        main, ["keys", "create", "x", "--server", "--admin", "--data-dir", str(tmp_path)]
    )
    assert both.exit_code != 0
    assert "a key is either --admin or --server" in both.output


# --- end to end on the time-skipping server ---------------------------------------


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    (tmp_path / "journeys").mkdir()
    yield Bench(ts_env, sqlite_engine, tmp_path / "journeys")


async def post(bench: Bench, request: dict[str, Any]) -> httpx.Response:
    key = create_key(bench.engine, f"backend-{len(bench.finished)}", "server")
    app = create_app(bench.engine, [], settings=bench.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        response = await client.post("/v1/messages", json=request, headers=bearer(key))
        bench.finished.append(key)
        return response


async def outcome(bench: Bench, message_id: str) -> dict[str, Any]:
    """Route the request, wait for the message's workflow, read its status URL."""
    await bench.route_all()
    with session_scope(bench.engine) as session:
        workflow = session.get(Message, message_id).workflow_id  # type: ignore[union-attr]
    handle = bench.client.get_workflow_handle(workflow)
    await handle.result()
    await record_history(bench, handle.id)
    key = create_key(bench.engine, f"reader-{message_id}", "server")
    app = create_app(bench.engine, [], settings=bench.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        r = await client.get(f"/v1/messages/{message_id}", headers=bearer(key))
        assert r.status_code == 200
        return dict(r.json()["message"])


async def record_history(bench: Bench, workflow_id: str) -> None:
    """With JOURNEYS_RECORD_HISTORIES=<dir>, keep the message's history for the replay test."""
    target = os.environ.get("JOURNEYS_RECORD_HISTORIES")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        history = await bench.client.get_workflow_handle(workflow_id).fetch_history()
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
        name = f"{test}__{workflow_id.replace(':', '__')[:20]}"
        (Path(target) / f"{name}.json").write_text(history.to_json())


async def test_a_password_reset_is_rendered_sent_and_tracked(bench: Bench) -> None:  # type: ignore[no-untyped-def]
    await bench.identify(
        "ann", email="ann@example.com", first_name="Аня", context={"locale": "ru-RU"}
    )
    async with bench.worker():
        r = await post(bench, {**RESET, "idempotencyKey": "reset-1"})
        assert r.status_code == 202
        status = await outcome(bench, r.json()["id"])
        assert (status["status"], status["channel"], status["locale"]) == ("sent", "email", "ru")
        statuses = [e["status"] for e in status["timeline"]]
        assert [s for i, s in enumerate(statuses) if statuses[i - 1 : i] != [s]] == [
            "pending",
            "queued",
            "sending",
            "sent",
        ]
        checks = {e["check"]: e["result"] for e in status["timeline"] if "check" in e}
        assert checks["channel"] == "pass" and "frequency_cap" not in checks  # not marketing
        # A client retrying after a timeout gets the same message and no second email.
        again = await post(bench, {**RESET, "idempotencyKey": "reset-1"})
        assert (again.status_code, again.json()["id"]) == (200, r.json()["id"])
        assert again.json()["status"] == "sent"
        await bench.route_all()
    with session_scope(bench.engine) as session:
        row = session.get(Message, r.json()["id"])
        assert row is not None
        assert row.content["subject"] == RU_SUBJECT
        assert "https://shop.example/reset?t=1" in row.content["text"]
        assert "15 мин" in row.content["text"]
    assert bench.console.getvalue().count(RU_SUBJECT) == 1
    with session_scope(bench.engine) as session:  # `journeys explain ann` tells it
        told = [m.text for m in contact_story(session, "ann").moments]
    assert "transactional message password_reset asked for" in told
    assert "message send (email, password_reset): sent" in told


async def test_a_redelivered_request_starts_no_second_send(bench: Bench) -> None:  # type: ignore[no-untyped-def]
    await bench.identify("ann", email="ann@example.com")
    async with bench.worker():
        r = await post(bench, RESET)
        await outcome(bench, r.json()["id"])
        # A router that died after starting the workflow, before marking the event routed.
        with session_scope(bench.engine) as session:
            event = session.exec(select(Event).where(Event.type == "message")).one()
            session.expunge(event)
        await bench.router.route(event)
    assert bench.console.getvalue().count("Reset your Fernwood Home password") == 1
    assert len(bench.messages("ann")) == 1


async def test_consent_for_transactional_mail(bench: Bench) -> None:  # type: ignore[no-untyped-def]
    """A marketing unsubscribe does not stop a receipt; a channel opt-out and a suppressed
    address do, and the status URL says why."""
    await bench.identify("mark", email="mark@example.com")
    await bench.identify("opt", email="opt@example.com")
    await bench.identify("bounced", email="bounced@example.com")
    with session_scope(bench.engine) as session:
        session.get(Contact, "mark").consent = {"email": {"marketing": False}}  # type: ignore[union-attr]
        session.get(Contact, "opt").consent = {"email": False}  # type: ignore[union-attr]
        suppress(session, "email", "bounced@example.com", "bounce", "sendgrid")
    async with bench.worker():
        found = {}
        for user in ("mark", "opt", "bounced"):
            r = await post(bench, {**RESET, "userId": user})
            found[user] = await outcome(bench, r.json()["id"])
    assert found["mark"]["status"] == "sent"
    assert (found["opt"]["status"], found["opt"]["error"]) == (
        "suppressed",
        "contact opted out of email",
    )
    assert found["bounced"]["status"] == "suppressed"
    assert found["bounced"]["error"] == "email address on the suppression list (bounce)"


async def test_the_first_channel_the_contact_can_get(bench: Bench) -> None:  # type: ignore[no-untyped-def]
    await bench.identify("sam", phone="+381601234567")
    async with bench.worker():
        r = await post(bench, {**RESET, "userId": "sam", "channel": ["email", "sms"]})
        status = await outcome(bench, r.json()["id"])
    assert (status["status"], status["channel"]) == ("sent", "sms")
    assert "https://shop.example/reset?t=1" in bench.console.getvalue()


async def test_a_template_that_fails_to_render_is_a_failed_message(
    bench: Bench, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    templates = tmp_path / "templates"
    (templates / "receipt").mkdir(parents=True)
    (templates / "receipt" / "email.subject").write_text("Order {{ event.properties.order_id }}")
    (templates / "receipt" / "email.text").write_text("{{ 1 / event.properties.count }}")
    (templates / "_brand.yaml").write_text((ROOT / "templates" / "_brand.yaml").read_text())
    own = Bench(bench.env, bench.engine, bench.journeys_dir, templates_dir=templates)
    await own.identify("ann", email="ann@example.com")
    async with own.worker():
        r = await post(
            own,
            {"template": "receipt", "userId": "ann", "properties": {"order_id": "A-1", "count": 0}},
        )
        assert r.status_code == 202
        status = await outcome(own, r.json()["id"])
    assert status["status"] == "failed"
    assert status["error"].startswith("template receipt: ")
    assert "division by zero" in status["error"]


def test_recorded_message_histories_replay() -> None:
    """The message workflow's recorded histories replay with today's code."""
    import asyncio

    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from orchestrator.workflows.transactional import TransactionalMessageWorkflow

    paths = sorted(HISTORIES.glob("*.json"))
    assert paths, "record them: JOURNEYS_RECORD_HISTORIES=tests/histories/messages pytest ..."
    for path in paths:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        asyncio.run(Replayer(workflows=[TransactionalMessageWorkflow]).replay_workflow(history))
    assert json.loads(paths[0].read_text())["events"][0]["eventType"] in (
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        "WorkflowExecutionStarted",
    )


# --- found in review ----------------------------------------------------------------


def review_client(bench: Bench) -> httpx.AsyncClient:
    app = create_app(bench.engine, [WRITE], settings=bench.settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_erasure_before_the_send_leaves_no_row_naming_the_contact(bench: Bench) -> None:
    """A contact erased after the router started the message's workflow, before the
    worker prepared it. Erasure rewrites every occurrence of the contact's id inside the
    ledger row's workflow id and idempotency key, also inside the uuid / key hash of a
    `message:` workflow id, which holds no contact id at all. A numeric userId such as
    "4" always occurs in a uuid4 (its version digit): the worker's prepare then no longer
    finds the row by its key and writes a new one, naming the erased contact again."""
    await bench.identify("4", email="four@example.com")
    key = create_key(bench.engine, "backend", "server")
    async with review_client(bench) as api:
        r = await api.post(
            "/v1/messages",
            json={**RESET, "userId": "4"},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    await bench.route_all()  # the workflow is started; no worker has run it yet
    with session_scope(bench.engine) as session:
        workflow = session.get(Message, message_id).workflow_id  # type: ignore[union-attr]
    erased = await erase_contact(bench.engine, bench.client, "4")
    assert erased.found
    async with bench.worker():
        await bench.client.get_workflow_handle(workflow).result()
    with session_scope(bench.engine) as session:
        rows = session.exec(select(Message)).all()
        assert [m.contact_id for m in rows if m.contact_id == "4"] == []
        assert len(rows) == 1
        assert rows[0].status == "failed"
    assert "four@example.com" not in bench.console.getvalue()


async def test_a_write_key_cannot_redirect_a_password_reset_sent_with_to(bench: Bench) -> None:
    """The storefront's write key is public. With it anyone may send `identify {userId:
    ann, traits: {email: theirs}}`; a reset sent to the address on file would then reach
    the attacker (account takeover). With `to`, the back end's own record of the address,
    it goes there whatever the store holds; without, it follows the store (documented)."""
    await bench.identify("ann", email="ann@example.com")
    key = create_key(bench.engine, "backend", "server")
    async with review_client(bench) as api:
        hijack = await api.post(
            "/v1/identify",
            json={"userId": "ann", "traits": {"email": "attacker@evil.example"}},
            headers={"X-Write-Key": WRITE},
        )
        assert hijack.status_code == 200, hijack.text
        r = await api.post(
            "/v1/messages",
            json={**RESET, "to": "ann@example.com"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 202, r.text
    async with bench.worker():
        await bench.route_all()
        with session_scope(bench.engine) as session:
            workflow = session.get(Message, r.json()["id"]).workflow_id  # type: ignore[union-attr]
        await bench.client.get_workflow_handle(workflow).result()
    sent = bench.console.getvalue()
    assert "https://shop.example/reset?t=1" in sent
    assert "attacker@evil.example" not in sent
    with session_scope(bench.engine) as session:
        row = session.get(Message, r.json()["id"])
        assert row is not None and (row.status, row.recipient) == ("sent", "ann@example.com")


async def test_null_optional_fields_are_absent_as_for_the_other_fields(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    """`idempotencyKey: null` and `anonymousId: null` count as not sent, but `channel: null`
    and `properties: null` (what many back-end serializers write for an unset optional
    field) were refused with 400, though both fields are documented as optional."""
    with session_scope(sqlite_engine) as session:
        session.add(Contact(id="ann", email="ann@example.com"))
    key = create_key(sqlite_engine, "backend", "server")
    app = create_app(sqlite_engine, [WRITE], settings=Settings(templates_dir=ROOT / "templates"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as api:
        r = await api.post(
            "/v1/messages",
            json={
                **RESET,
                "anonymousId": None,
                "channel": None,
                "properties": None,
                "idempotencyKey": None,
            },
            headers={"Authorization": f"Bearer {key}"},
        )
    assert r.status_code == 202, r.text
