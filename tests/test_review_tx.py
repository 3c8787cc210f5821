"""Review of transactional messages (`POST /v1/messages`): defects found, as tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.services.privacy import erase_contact
from orchestrator.store.db import session_scope
from orchestrator.store.keys import create_key
from orchestrator.store.tables import Message
from tests.harness import Bench

WRITE = "review-write-key"
RESET = {
    "template": "password_reset",
    "userId": "ann",
    "properties": {"reset_url": "https://shop.example/reset?t=secret-token"},
}


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    (tmp_path / "journeys").mkdir()
    yield Bench(ts_env, sqlite_engine, tmp_path / "journeys")


def client(bench: Bench) -> httpx.AsyncClient:
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
    async with client(bench) as api:
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


@pytest.mark.xfail(
    strict=True,
    reason="design defect, not fixed: the address of a transactional message is the "
    "contact's, which any holder of the public write key may overwrite with an identify",
)
async def test_a_write_key_cannot_redirect_a_password_reset(bench: Bench) -> None:
    """The storefront's write key is public (docs/journeys.md). With it anyone may send
    `identify {userId: ann, traits: {email: theirs}}`; the shop's back end then asks for
    ann's password reset, and the reset link goes to the attacker: account takeover."""
    await bench.identify("ann", email="ann@example.com")
    key = create_key(bench.engine, "backend", "server")
    async with client(bench) as api:
        hijack = await api.post(
            "/v1/identify",
            json={"userId": "ann", "traits": {"email": "attacker@evil.example"}},
            headers={"X-Write-Key": WRITE},
        )
        assert hijack.status_code == 200, hijack.text
        r = await api.post("/v1/messages", json=RESET, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 202, r.text
    async with bench.worker():
        await bench.route_all()
        with session_scope(bench.engine) as session:
            workflow = session.get(Message, r.json()["id"]).workflow_id  # type: ignore[union-attr]
        await bench.client.get_workflow_handle(workflow).result()
    sent = bench.console.getvalue()
    assert "secret-token" in sent
    assert "attacker@evil.example" not in sent


async def test_null_optional_fields_are_absent_as_for_the_other_fields(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    """`idempotencyKey: null` and `anonymousId: null` count as not sent, but `channel: null`
    and `properties: null` (what many back-end serializers write for an unset optional
    field) were refused with 400, though both fields are documented as optional."""
    from orchestrator.settings import Settings
    from orchestrator.store.tables import Contact
    from tests.harness import ROOT

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
