"""Group commit: requests in flight together share a transaction, and lose nothing by it.

Each request is still acknowledged only after its own calls are committed; a refused
request (403) or a retry (a `messageId` already stored) in a group changes nothing for
the others. Runs on SQLite and PostgreSQL (the `engine` fixture).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import func, select

from orchestrator.api import create_app
from orchestrator.settings import Settings
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Event

KEY = "group-commit-key"
HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


def app_client(engine: Engine, group_commit: bool) -> httpx.AsyncClient:
    app = create_app(engine, [KEY], settings=Settings(group_commit=group_commit))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


@pytest_asyncio.fixture
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(engine, group_commit=True) as client:
        yield client


def stored(engine: Engine, name: str | None = None) -> int:
    with session_scope(engine) as session:
        query = select(func.count()).select_from(Event)
        if name:
            query = query.where(Event.name == name)
        return int(session.exec(query).one())


def track(user: str, event: str = "Product Added", message_id: str | None = None) -> dict[str, Any]:
    return {
        "userId": user,
        "event": event,
        "properties": {"sku": "S-1"},
        "messageId": message_id or str(uuid.uuid4()),
    }


async def test_concurrent_requests_share_transactions_and_all_are_stored(
    api: httpx.AsyncClient, engine: Engine
) -> None:
    ctx = api._transport.app.state.ctx  # type: ignore[attr-defined]
    answers = await asyncio.gather(
        *(api.post("/v1/track", headers=HEADERS, json=track(f"u{i}")) for i in range(60))
    )
    assert [r.status_code for r in answers] == [200] * 60
    assert stored(engine, "Product Added") == 60
    assert ctx.group is not None
    assert ctx.group.transactions < 60  # grouped: fewer commits than requests


async def test_a_refused_request_fails_alone_and_its_neighbours_are_stored(
    api: httpx.AsyncClient, engine: Engine
) -> None:
    for user in ("vic", "att"):
        identify = {"userId": user, "traits": {"email": f"{user}@example.com"}}
        assert (await api.post("/v1/identify", headers=HEADERS, json=identify)).status_code == 200
    before = stored(engine)
    refused_alias = {"previousId": "vic", "userId": "att"}  # a write key may not merge them
    requests = [api.post("/v1/track", headers=HEADERS, json=track(f"n{i}")) for i in range(20)]
    requests.insert(10, api.post("/v1/alias", headers=HEADERS, json=refused_alias))
    answers = await asyncio.gather(*requests)
    codes = [r.status_code for r in answers]
    assert codes.count(403) == 1 and codes[10] == 403, codes
    assert answers[10].json()["field"] == "previousId"
    assert codes.count(200) == 20
    assert stored(engine) == before + 20


async def test_a_retry_in_the_same_group_is_acknowledged_and_stored_once(
    api: httpx.AsyncClient, engine: Engine
) -> None:
    same = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(
            api.post("/v1/track", headers=HEADERS, json=track("r1", "Checkout Started", same))
            for _ in range(5)
        ),
        *(api.post("/v1/track", headers=HEADERS, json=track(f"o{i}")) for i in range(10)),
    )
    assert [r.status_code for r in answers] == [200] * 15
    assert stored(engine, "Checkout Started") == 1
    assert stored(engine, "Product Added") == 10


async def test_off_stores_each_request_in_its_own_transaction(engine: Engine) -> None:
    async with app_client(engine, group_commit=False) as api:
        ctx = api._transport.app.state.ctx  # type: ignore[attr-defined]
        assert ctx.group is None
        answers = await asyncio.gather(
            *(api.post("/v1/track", headers=HEADERS, json=track(f"s{i}")) for i in range(10))
        )
    assert [r.status_code for r in answers] == [200] * 10
    assert stored(engine, "Product Added") == 10
