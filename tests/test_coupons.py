"""Coupons on SQLite and PostgreSQL: unique codes, checks, single-use redemption (in the
store, from `Order Completed`, and over HTTP), conversion credit, merges and erasure;
and the points endpoints."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import select
from starlette.requests import Request
from temporalio.testing import ActivityEnvironment

from orchestrator.activities.actions import ActionActivities
from orchestrator.api import create_app, ratelimit
from orchestrator.api.coupon_limits import client_address
from orchestrator.api.ingest import store_call
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.dsl import JourneyError, load_journey
from orchestrator.dsl.models import Journey
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
from orchestrator.store.tables import Contact, Coupon, JourneyRun, Order
from orchestrator.workflows import types as t

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
        redeem_coupon(session, code, order_id="o-1", now=NOW, contact_id="ann")
    assert reason(engine, code) == "redeemed"


def test_a_coupon_is_used_once_and_the_same_order_may_ask_again(engine: Engine) -> None:
    code = issue(engine).code
    with session_scope(engine) as session:
        first = redeem_coupon(
            session, code.lower(), order_id="o-1", now=NOW, contact_id="ann", revenue=90
        )
    with session_scope(engine) as session:
        later = NOW + timedelta(hours=1)
        again = redeem_coupon(session, code, order_id="o-1", now=later, contact_id="ann")
    assert (again.redeemed_at, again.redeemed_order_id) == (first.redeemed_at, "o-1")
    with session_scope(engine) as session, pytest.raises(CouponRejected) as refused:
        redeem_coupon(session, code, order_id="o-2", now=NOW, contact_id="ann")
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
    """Every order is stored. An expired code stays unused; so does another contact's
    code: an order event may come from anyone holding the public write key, and must
    not use up (or take the journey credit of) a code that is not the buyer's."""
    expired = issue(engine, now=NOW - timedelta(days=2), expires_at=NOW - timedelta(days=1)).code
    wid = "journey:welcome:bob"
    run_row(engine, wid)
    bobs = issue(engine, "bob", workflow_id=wid, entry_seq=1).code
    for coupon in ("SHOP-OWN-CODE", expired, bobs):
        call = order_completed("ann", order_id=f"o-{coupon}", total=10, coupon=coupon)
        assert store_call(engine, call)
    with session_scope(engine) as session:
        assert len(session.exec(select(Order)).all()) == 3
    assert the_coupon(engine, expired).redeemed_at is None
    assert the_coupon(engine, bobs).redeemed_at is None
    assert the_run(engine, wid).converted_at is None
    # Bob's code is still his to use.
    store_call(engine, order_completed("bob", order_id="o-bob", total=10, coupon=bobs))
    assert the_coupon(engine, bobs).redeemed_order_id == "o-bob"
    assert the_run(engine, wid).converted_at is not None


def test_a_backdated_order_cannot_use_an_expired_code(engine: Engine) -> None:
    """The event's `timestamp` is the client's word: an `Order Completed` dated before the
    code expired must not redeem one that has expired by the time it arrives. The
    redemption (and the run's conversion) happens at the server's receive time."""
    wid = "journey:welcome:ann"
    run_row(engine, wid)
    issued = NOW - timedelta(days=3)
    code = issue(
        engine, now=issued, expires_at=NOW - timedelta(days=1), workflow_id=wid, entry_seq=1
    ).code
    backdated = order_completed("ann", order_id="o-old", total=10, coupon=code)
    assert store_call(engine, backdated.model_copy(update={"timestamp": NOW - timedelta(days=2)}))
    assert the_coupon(engine, code).redeemed_at is None
    assert the_run(engine, wid).converted_at is None
    with session_scope(engine) as session:
        [order] = session.exec(select(Order)).all()
    assert order.placed_at == NOW - timedelta(days=2)  # when the shop says it happened
    # A live code used by an order dated in the past is redeemed now, not back then.
    live = issue(engine, expires_at=datetime.now(UTC) + timedelta(days=1)).code
    before = datetime.now(UTC)
    call = order_completed("ann", order_id="o-live", total=10, coupon=live)
    store_call(engine, call.model_copy(update={"timestamp": NOW - timedelta(days=30)}))
    redeemed_at = the_coupon(engine, live).redeemed_at
    assert redeemed_at is not None and redeemed_at >= before - timedelta(seconds=1)


def test_an_order_the_checkout_redeemed_the_code_for_keeps_it(engine: Engine) -> None:
    """A guest checkout under an id not merged yet: the shop redeemed the code for the
    order at checkout (naming its owner), so the order's event changes nothing."""
    code = issue(engine).code
    with session_scope(engine) as session:
        redeem_coupon(session, code, order_id="o-7", now=NOW, contact_id="ann")
    assert store_call(engine, order_completed("guest-9", order_id="o-7", total=10, coupon=code))
    assert the_coupon(engine, code).redeemed_order_id == "o-7"


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
    ann = {"userId": "ann"}
    r = await api.post(url, json={"order_id": "o-1", "revenue": 10, **ann}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (422, "below_minimum")
    r = await api.post(url, json={"order_id": "o-1", "contact_id": "bob"}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (403, "other_contact")
    first = await api.post(url, json={"order_id": 1001, "revenue": 25, **ann}, headers=basic())
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["code"], body["order_id"]) == (code, "1001") and body["redeemed_at"]
    again = await api.post(url, json={"order_id": "1001", **ann}, headers=basic())
    assert (again.status_code, again.json()) == (200, body)
    other = await api.post(url, json={"order_id": "1002", **ann}, headers=basic())
    assert other.status_code == 409
    assert other.json()["reason"] == "redeemed"
    assert "already used on order 1001" in other.json()["error"]
    r = await api.post(
        "/v1/coupons/NOPE-22222222/redeem", json={"order_id": "o", **ann}, headers=basic()
    )
    assert (r.status_code, r.json()["reason"]) == (404, "unknown")
    expired = issue(engine, expires_at=NOW + timedelta(milliseconds=1)).code
    r = await api.post(
        f"/v1/coupons/{expired}/redeem", json={"order_id": "o-9", **ann}, headers=basic()
    )
    assert (r.status_code, r.json()["reason"]) == (410, "expired")


async def test_a_code_is_redeemed_only_for_its_owner_or_their_aliases(api, engine) -> None:  # type: ignore[no-untyped-def]
    code = issue(engine).code
    url = f"/v1/coupons/{code}/redeem"
    # Without saying whose order it is, nothing is redeemed.
    r = await api.post(url, json={"order_id": "o-1"}, headers=basic())
    assert (r.status_code, r.json()["field"]) == (400, "userId")
    assert "userId or anonymousId is required" in r.json()["error"]
    r = await api.post(url, json={"order_id": "o-1", "anonymousId": "anon-bob"}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (403, "other_contact")
    assert the_coupon(engine, code).redeemed_at is None
    # Ann's anonymous id before she signed in is Ann; so is a userId with her unmerged
    # anonymousId (the checkout may know both).
    store_call(
        engine,
        IdentifyCall.model_validate(
            {"userId": "ann", "anonymousId": "anon-ann", "messageId": str(uuid.uuid4())}
        ),
    )
    r = await api.post(url, json={"order_id": "o-1", "anonymousId": "anon-ann"}, headers=basic())
    assert r.status_code == 200, r.text
    second = issue(engine).code
    r = await api.post(
        f"/v1/coupons/{second}/redeem",
        json={"order_id": "o-2", "userId": "ann-new-login", "anonymousId": "ann"},
        headers=basic(),
    )
    assert r.status_code == 200, r.text


async def test_a_shareable_code_may_be_used_by_anyone_once(
    api, engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # Declared in the journey, issued by its action, redeemed by a friend.
    monkeypatch.chdir(tmp_path)
    Path("refer.yaml").write_text(
        "id: refer\nname: Refer a friend\ntrigger: {event: A}\nsteps:\n"
        "  - action: {type: issue_coupon, campaign: friend, prefix: FRIEND, discount: 10%,\n"
        "             shareable: true}\n"
    )
    action = load_journey(Path("refer.yaml")).journey.model_dump(mode="json", by_alias=True)
    with session_scope(engine) as session:
        session.add(Contact(id="ann"))
    request = t.ActionRequest("wf", 1, "give", "refer", "ann", None, action["steps"][0]["action"])
    ActivityEnvironment().run(ActionActivities(engine).run_action, request)
    with session_scope(engine) as session:
        [coupon] = session.exec(select(Coupon)).all()
        code = coupon.code
    url = f"/v1/coupons/{code}/redeem"
    r = await api.post(url, json={"order_id": "o-1", "userId": "bob"}, headers=basic())
    assert r.status_code == 200, r.text
    r = await api.post(url, json={"order_id": "o-2", "userId": "cy"}, headers=basic())
    assert (r.status_code, r.json()["reason"]) == (409, "redeemed")
    # Without `shareable` (and in journeys deployed before it existed) a code is its owner's.
    plain = {k: v for k, v in action["steps"][0]["action"].items() if k != "shareable"}
    request = t.ActionRequest("wf", 2, "give", "refer", "ann", None, plain)
    ActivityEnvironment().run(ActionActivities(engine).run_action, request)
    with session_scope(engine) as session:
        [own] = session.exec(select(Coupon).where(Coupon.code != code)).all()
    r = await api.post(
        f"/v1/coupons/{own.code}/redeem", json={"order_id": "o-3", "userId": "bob"}, headers=basic()
    )
    assert (r.status_code, r.json()["reason"]) == (403, "other_contact")


def test_journeys_deployed_before_shareable_keep_their_version() -> None:
    """A code's owner rule needs no edit of existing journeys: their frozen spec (and
    so its hash, which makes versions) is what it was before `shareable` existed."""
    root = Path(__file__).resolve().parent.parent / "journeys"
    with_codes = [p for p in root.glob("*.yaml") if "issue_coupon" in p.read_text()]
    assert len(with_codes) >= 4
    for path in with_codes:
        journey = load_journey(path).journey
        spec = journey.model_dump(mode="json", by_alias=True)
        assert '"shareable"' not in json.dumps(spec), path.name
        assert Journey.model_validate(spec) == journey


def test_shareable_is_true_or_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("j.yaml").write_text(
        "id: refer\nname: R\ntrigger: {event: A}\nsteps:\n"
        "  - action: {type: issue_coupon, campaign: c, prefix: C, discount: 5%, shareable: maybe}\n"
    )
    with pytest.raises(JourneyError) as caught:
        load_journey(Path("j.yaml"))
    assert [str(p) for p in caught.value.problems] == [
        "j.yaml:5:83: expected true or false, got a string"
    ]


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


# --- guessing -------------------------------------------------------------------------


@pytest.fixture
def still(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limiter's clock stands still: no bucket refills while a test runs, however
    slow the machine, so the counts below are exact."""
    monkeypatch.setattr(ratelimit, "monotonic", lambda: 1_000.0)


def client(app: Any, address: str = "203.0.113.7") -> httpx.AsyncClient:
    """A client calling from `address` (what the limit counts per client)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api")


async def guess(api: httpx.AsyncClient, n: int, key: str = KEY) -> int:
    return (await api.get(f"/v1/coupons/WELCOME-{n:08d}", headers=basic(key))).status_code


async def test_guessing_from_one_address_is_throttled_by_default(sqlite_engine, still) -> None:  # type: ignore[no-untyped-def]
    """No setting needed: an address holds 40 calls (10/s) and a miss costs 10, so four
    guesses and it waits; its right codes cost 1 each; another address goes on."""
    app = create_app(sqlite_engine, [KEY])
    code = issue(sqlite_engine).code
    async with client(app) as guesser, client(app, "198.51.100.9") as shopper:
        assert [await guess(guesser, n) for n in range(6)] == [404] * 4 + [429] * 2
        refused = await guesser.get("/v1/coupons/WELCOME-99999999", headers=basic())
        assert refused.status_code == 429
        assert "too many coupon checks from this address" in refused.json()["error"]
        assert int(refused.headers["Retry-After"]) >= 1
        redeem = await guesser.post(
            f"/v1/coupons/{code}/redeem", json={"order_id": "o", "userId": "ann"}, headers=basic()
        )
        assert redeem.status_code == 429  # the redeem endpoint counts against the same budget
        hits = [
            (await shopper.get(f"/v1/coupons/{code}", headers=basic())).status_code
            for _ in range(25)
        ]
        assert hits == [200] * 25


async def test_sending_guesses_at_once_does_not_get_more_through(sqlite_engine, still) -> None:  # type: ignore[no-untyped-def]
    """A miss's cost is taken before the answer is known: 20 requests in flight from one
    address get the same four answers as one after the other."""
    app = create_app(sqlite_engine, [KEY])
    async with client(app) as guesser:
        answers = await asyncio.gather(*(guess(guesser, n) for n in range(20)))
    assert sorted(answers) == [404] * 4 + [429] * 16


async def test_asking_about_someone_elses_code_is_a_miss_too(sqlite_engine, still) -> None:  # type: ignore[no-untyped-def]
    app = create_app(sqlite_engine, [KEY])
    code = issue(sqlite_engine).code
    async with client(app) as api:
        bob = {"contact_id": "bob"}
        checks = [await api.get(f"/v1/coupons/{code}", params=bob, headers=basic()) for _ in "ab"]
        assert [r.json()["reason"] for r in checks] == ["other_contact"] * 2
        redeems = [
            await api.post(
                f"/v1/coupons/{code}/redeem",
                json={"order_id": f"o-{n}", "userId": "bob"},
                headers=basic(),
            )
            for n in range(3)
        ]
        assert [r.status_code for r in redeems] == [403, 403, 429]


async def test_guessing_from_many_addresses_meets_the_keys_limit(sqlite_engine, still) -> None:  # type: ignore[no-untyped-def]
    """Rotating addresses does not help: the key holds 80 calls (30/s), eight misses;
    the shop server's own key is not slowed down."""
    app = create_app(sqlite_engine, [KEY])
    server_key = create_key(sqlite_engine, "shop-backend")
    answers = []
    for n in range(10):
        async with client(app, f"192.0.2.{n + 1}") as api:
            answers.append(await guess(api, n))
    assert answers == [404] * 8 + [429] * 2
    async with client(app, "192.0.2.200") as api:
        refused = await api.get("/v1/coupons/WELCOME-77777777", headers=basic())
        assert "too many coupon checks for this key" in refused.json()["error"]
        assert await guess(api, 1, server_key) == 404


async def test_the_coupon_limit_is_configurable_and_can_be_turned_off(sqlite_engine, still) -> None:  # type: ignore[no-untyped-def]
    off = create_app(sqlite_engine, [KEY], settings=Settings(coupon_rate_limit="none"))
    async with client(off) as api:
        assert {await guess(api, n) for n in range(30)} == {404}
    large = create_app(sqlite_engine, [KEY], settings=Settings(coupon_rate_limit="1000,500"))
    async with client(large) as api:
        assert {await guess(api, n) for n in range(30)} == {404}  # 1,010 calls held
    with pytest.raises(ValueError, match="expected two numbers of calls per second"):
        Settings(coupon_rate_limit="fast")


def test_an_ipv6_client_is_counted_by_its_64_block() -> None:
    def address(host: str) -> str:
        return client_address(Request({"type": "http", "client": (host, 1)}))

    assert address("2001:db8:1:2::1") == address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address("::ffff:192.0.2.1") == "192.0.2.1"
    assert address("192.0.2.1") == "192.0.2.1"


def test_clients_that_come_and_go_do_not_grow_memory(still) -> None:  # type: ignore[no-untyped-def]
    limiter = ratelimit.RateLimiter(rate=1, burst=2, max_keys=100)
    for n in range(10_000):
        limiter.charge(f"10.0.{n >> 8}.{n & 255}", 10)  # each one in debt, never refilled
    assert len(limiter._buckets) <= 100
    assert limiter.wait("10.0.39.15", 1) > 0  # the newest are kept
