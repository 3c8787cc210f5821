"""Coupons on SQLite and PostgreSQL: unique codes, checks, single-use redemption (in the
store, from `Order Completed`, and over HTTP), conversion credit, merges and erasure;
and the points endpoints."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.api.ingest import store_call
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.services.privacy import erase_rows, export_contact, plan_erasure
from orchestrator.settings import Settings
from orchestrator.store import loyalty
from orchestrator.store.coupons import (
    CouponRejected,
    check_coupon,
    issue_coupon,
    redeem_coupon,
)
from orchestrator.store.db import session_scope
from orchestrator.store.keys import create_key
from orchestrator.store.tables import Coupon, JourneyRun, Order

KEY = "commerce-write-key"
CODE = re.compile(r"^WELCOME-[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{8}$")
NOW = datetime.now(UTC)


def issue(engine: Engine, contact: str = "ann", key: str = "", **kw: Any) -> Coupon:
    options: dict[str, Any] = {"campaign": "welcome", "prefix": "welcome", "kind": "percent"}
    options |= {"value": 10, "now": NOW, **kw}
    with session_scope(engine) as session:
        return issue_coupon(
            session, contact, idempotency_key=key or f"test:{uuid.uuid4()}", **options
        )


def reason(engine: Engine, code: str, **kw: Any) -> str | None:
    with session_scope(engine) as session:
        return check_coupon(session, code, now=kw.pop("now", NOW), **kw).reason


def run_row(engine: Engine, workflow_id: str, converted: bool = False) -> None:
    with session_scope(engine) as session:
        session.add(
            JourneyRun(
                workflow_id=workflow_id,
                entry_seq=1,
                journey_id="welcome",
                version=1,
                contact_id="ann",
                converted_at=NOW - timedelta(days=1) if converted else None,
                revenue=1.0 if converted else None,
            )
        )


def the_run(engine: Engine, workflow_id: str) -> JourneyRun:
    with session_scope(engine) as session:
        return session.exec(select(JourneyRun).where(JourneyRun.workflow_id == workflow_id)).one()


def the_coupon(engine: Engine, code: str) -> Coupon:
    with session_scope(engine) as session:
        found = session.get(Coupon, code)
        assert found is not None
        return found


def order_completed(user: str, **props: Any) -> TrackCall:
    return TrackCall.model_validate(
        {"userId": user, "event": "Order Completed", "properties": props}
    )


# --- issuing -----------------------------------------------------------------------------


def test_codes_are_unique_unambiguous_and_issued_once_per_key(engine: Engine) -> None:
    codes = {issue(engine, f"c{n}").code for n in range(300)}
    assert len(codes) == 300
    assert all(CODE.match(code) for code in codes), sorted(codes)[:5]
    first = issue(engine, key="journey:welcome:ann:coupon:1")
    again = issue(engine, key="journey:welcome:ann:coupon:1", value=50)  # the retry
    assert again.code == first.code and again.value == 10


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": "spring sale"}, "prefix 'SPRING SALE' must be 1 to 20 letters or digits"),
        ({"value": 120}, "out of range"),
        ({"value": 0, "kind": "amount"}, "out of range"),
        ({"kind": "gift"}, "must be 'percent' or 'amount'"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "is not after now"),
        ({"campaign": ""}, "campaign must be 1 to 63 characters"),
    ],
)
def test_issuing_refuses_a_coupon_that_makes_no_sense(
    sqlite_engine: Engine, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        issue(sqlite_engine, **options)


# --- checking and redeeming in the store ------------------------------------------------------


def test_a_check_says_why_a_code_cannot_be_used(engine: Engine) -> None:
    coupon = issue(engine, minimum_order=50, expires_at=NOW + timedelta(days=7))
    code = coupon.code
    assert reason(engine, code.lower(), contact_id="ann", order_total=50) is None
    assert reason(engine, "WELCOME-NOPE2345") == "unknown"
    assert reason(engine, code, now=NOW + timedelta(days=7)) == "expired"
    assert reason(engine, code, contact_id="bob") == "other_contact"
    assert reason(engine, code, order_total=49.99) == "below_minimum"
    with session_scope(engine) as session:
        redeem_coupon(session, code, order_id="o-1", now=NOW)
    assert reason(engine, code) == "redeemed"


def test_a_coupon_is_used_once_and_the_same_order_may_ask_again(engine: Engine) -> None:
    code = issue(engine).code
    with session_scope(engine) as session:
        first = redeem_coupon(session, code.lower(), order_id="o-1", now=NOW, revenue=90)
    with session_scope(engine) as session:
        again = redeem_coupon(session, code, order_id="o-1", now=NOW + timedelta(hours=1))
    assert (again.redeemed_at, again.redeemed_order_id) == (first.redeemed_at, "o-1")
    with session_scope(engine) as session, pytest.raises(CouponRejected) as refused:
        redeem_coupon(session, code, order_id="o-2", now=NOW)
    assert refused.value.reason == "redeemed"
    assert "already used on order o-1" in str(refused.value)


def test_an_order_using_the_coupon_redeems_it_and_credits_the_journey_run(
    engine: Engine,
) -> None:
    wid = "journey:welcome:ann"
    run_row(engine, wid)
    code = issue(engine, workflow_id=wid, entry_seq=1, journey_id="welcome").code
    store_call(engine, order_completed("ann", order_id="o-1", revenue=80, coupon=code.lower()))
    coupon = the_coupon(engine, code)
    assert (coupon.redeemed_order_id, coupon.redeemed_revenue) == ("o-1", 80.0)
    run = the_run(engine, wid)
    assert run.converted_at is not None and run.revenue == 80.0
    # A second order with the same code is kept, and changes neither coupon nor credit.
    store_call(engine, order_completed("ann", order_id="o-2", revenue=500, coupon=code))
    assert the_coupon(engine, code).redeemed_order_id == "o-1"
    assert the_run(engine, wid).revenue == 80.0
    with session_scope(engine) as session:
        assert len(session.exec(select(Order)).all()) == 2


def test_a_run_that_already_converted_keeps_its_first_conversion(engine: Engine) -> None:
    run_row(engine, "journey:welcome:ann", converted=True)
    code = issue(engine, workflow_id="journey:welcome:ann", entry_seq=1).code
    store_call(engine, order_completed("ann", order_id="o-1", revenue=80, coupon=code))
    assert the_run(engine, "journey:welcome:ann").revenue == 1.0


def test_codes_we_did_not_issue_or_that_are_not_valid_never_block_an_order(
    engine: Engine,
) -> None:
    """Every order is stored. An expired code stays unused; another contact's code,
    accepted by the shop on this order (a guest checkout under an id not merged yet),
    is used up: it must not stay reusable."""
    expired = issue(engine, expires_at=NOW + timedelta(seconds=1)).code
    bobs = issue(engine, "bob").code
    later = (NOW + timedelta(days=1)).isoformat()
    for coupon in ("SHOP-OWN-CODE", expired, bobs):
        call = order_completed("ann", order_id=f"o-{coupon}", total=10, coupon=coupon)
        assert store_call(
            engine, call.model_copy(update={"timestamp": datetime.fromisoformat(later)})
        )
    with session_scope(engine) as session:
        assert len(session.exec(select(Order)).all()) == 3
    assert the_coupon(engine, expired).redeemed_at is None
    assert the_coupon(engine, bobs).redeemed_order_id == f"o-{bobs}"


def test_coupons_follow_a_merge_and_an_erasure_retires_them(engine: Engine) -> None:
    wid = "journey:welcome:anon-3"
    code = issue(engine, "anon-3", key=f"{wid}:coupon:1", workflow_id=wid, entry_seq=1).code
    used = issue(engine, "anon-3").code
    store_call(
        engine,
        IdentifyCall.model_validate(
            {"userId": "ann", "anonymousId": "anon-3", "messageId": str(uuid.uuid4())}
        ),
    )
    assert reason(engine, code, contact_id="ann") is None
    assert reason(engine, code, contact_id="anon-3") is None  # the alias is the same person
    store_call(engine, order_completed("ann", order_id="o-1", total=10, coupon=used))
    exported = export_contact(engine, "ann")
    assert exported is not None
    assert {c["code"] for c in exported["coupons"]} == {code, used}
    erased = erase_rows(engine, plan_erasure(engine, "ann"))
    assert erased["coupons"] == 2
    retired = the_coupon(engine, code)
    assert retired.contact_id.startswith("erased-")
    assert retired.workflow_id and retired.workflow_id.startswith("journey:welcome:erased-")
    assert retired.idempotency_key == f"{retired.workflow_id}:coupon:1"
    assert reason(engine, code, now=datetime.now(UTC)) == "expired"  # nobody can use it now
    assert the_coupon(engine, used).redeemed_order_id == "o-1"


# --- over HTTP ------------------------------------------------------------------------


def basic(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest_asyncio.fixture
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, [KEY], client=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_the_shop_checks_a_code_before_accepting_it(api, engine) -> None:  # type: ignore[no-untyped-def]
    code = issue(engine, kind="amount", value=5, currency="eur", minimum_order=30).code
    r = await api.get(f"/v1/coupons/{code.lower()}", headers=basic())
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "code": code,
        "valid": True,
        "reason": None,
        "campaign": "welcome",
        "kind": "amount",
        "value": 5.0,
        "currency": "EUR",
        "minimum_order": 30.0,
        "expires_at": None,
    }
    r = await api.get(
        f"/v1/coupons/{code}", params={"contact_id": "ann", "order_total": "29.5"}, headers=basic()
    )
    assert (r.json()["valid"], r.json()["reason"]) == (False, "below_minimum")
    r = await api.get(f"/v1/coupons/{code}", params={"contact_id": "bob"}, headers=basic())
    assert r.json()["reason"] == "other_contact"
    r = await api.get("/v1/coupons/NOPE-22222222", headers=basic())
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await api.get(f"/v1/coupons/{code}", params={"order_total": "lots"}, headers=basic())
    assert (r.status_code, r.json()["field"]) == (400, "order_total")
    r = await api.get(f"/v1/coupons/{code}")
    assert r.status_code == 401


async def test_redeeming_over_http_is_single_use_and_idempotent(api, engine) -> None:  # type: ignore[no-untyped-def]
    code = issue(engine, minimum_order=20, expires_at=NOW + timedelta(days=1)).code
    url = f"/v1/coupons/{code}/redeem"
    r = await api.post(url, json={"order_id": "", "userId": "ann"}, headers=basic())
    assert (r.status_code, r.json()["field"]) == (400, "order_id")
    assert "order_id: String should have at least 1 character" in r.json()["error"]
    r = await api.post(url, json={"order_id": "o-1", "revenue": 10}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (422, "below_minimum")
    r = await api.post(url, json={"order_id": "o-1", "contact_id": "bob"}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (403, "other_contact")
    first = await api.post(
        url, json={"order_id": 1001, "userId": "ann", "revenue": 25}, headers=basic()
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["code"], body["order_id"]) == (code, "1001") and body["redeemed_at"]
    again = await api.post(url, json={"order_id": "1001"}, headers=basic())
    assert (again.status_code, again.json()) == (200, body)
    other = await api.post(url, json={"order_id": "1002"}, headers=basic())
    assert other.status_code == 409
    assert other.json()["reason"] == "redeemed"
    assert "already used on order 1001" in other.json()["error"]
    r = await api.post("/v1/coupons/NOPE-22222222/redeem", json={"order_id": "o"}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (404, "unknown")
    expired = issue(engine, expires_at=NOW + timedelta(milliseconds=1)).code
    r = await api.post(f"/v1/coupons/{expired}/redeem", json={"order_id": "o-9"}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (410, "expired")


async def test_points_over_http(api, engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        loyalty.earn(session, "ann", 100, idempotency_key="welcome:ann", now=NOW, note="welcome")
    # A write key may be public (apps ship it): points need the shop server's admin key.
    public = await api.get("/v1/contacts/ann/points", headers=basic())
    spend = await api.post(
        "/v1/contacts/ann/points/redeem", json={"points": 1, "order_id": "x"}, headers=basic()
    )
    assert (public.status_code, spend.status_code) == (403, 403)
    admin = create_key(engine, "shop-server", kind="admin")
    r = await api.get("/v1/contacts/ann/points", headers=basic(admin))
    assert r.status_code == 200, r.text
    assert r.json()["balance"] == 100
    assert [(e["kind"], e["points"], e["note"]) for e in r.json()["entries"]] == [
        ("earn", 100, "welcome")
    ]
    url = "/v1/contacts/ann/points/redeem"
    spent = await api.post(url, json={"points": 30, "order_id": "o-1"}, headers=basic(admin))
    assert spent.status_code == 200, spent.text
    assert spent.json()["balance"] == 70
    again = await api.post(url, json={"points": 30, "order_id": "o-1"}, headers=basic(admin))
    assert (again.status_code, again.json()) == (200, spent.json())
    changed = await api.post(url, json={"points": 40, "order_id": "o-1"}, headers=basic(admin))
    assert (changed.status_code, changed.json()["reason"]) == (409, "order_already_redeemed")
    short = await api.post(url, json={"points": 71, "order_id": "o-2"}, headers=basic(admin))
    assert short.status_code == 409
    assert (short.json()["reason"], short.json()["balance"]) == ("insufficient_points", 70)
    for bad in ({"points": 0, "order_id": "o-3"}, {"points": "5", "order_id": "o-3"}, {}):
        r = await api.post(url, json=bad, headers=basic(admin))
        assert r.status_code == 400 and r.json()["field"] in ("points", "order_id"), r.text
    r = await api.get("/v1/contacts/nobody/points", headers=basic(admin))
    assert r.json() == {"success": True, "balance": 0, "entries": []}
    r = await api.get("/v1/contacts/ann/points", params={"limit": "0"}, headers=basic(admin))
    assert (r.status_code, r.json()["field"]) == (400, "limit")


async def test_guessing_codes_is_slowed_by_the_write_keys_rate_limit(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    app = create_app(sqlite_engine, [KEY], settings=Settings(ingest_rate_limit=1))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answers = [
            (await client.get(f"/v1/coupons/WELCOME-2222222{n}", headers=basic())).status_code
            for n in range(2, 6)
        ]
    assert answers[:2] == [404, 404]
    assert 429 in answers[2:]
