"""The shipped playbook journeys end to end, on the time-skipping server with the real
store, router, activities, API pages and the console channel.

Each test deploys only the journey it is about (and the shipped segments), so one
journey's messages never show up in another's assertions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fakes.support_desk import SECRET as DESK_SECRET
from fakes.support_desk import SupportDesk
from fastapi.testclient import TestClient
from harness import Bench, end_open_runs, own_time_skipping_server, save_histories, shipped_journeys
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from orchestrator.api import create_app
from orchestrator.campaigns.schedules import schedule_spec
from orchestrator.dsl.loader import load_journey
from orchestrator.dsl.models import Journey
from orchestrator.feedback.recording import record_inbound_sms
from orchestrator.feedback.twilio_events import InboundSms
from orchestrator.segments.membership import refresh
from orchestrator.services.links import MessageLinks
from orchestrator.store import loyalty
from orchestrator.store.db import session_scope
from orchestrator.store.tables import CampaignDispatch, Contact, Coupon, Message, utcnow
from orchestrator.workflows import types as t
from orchestrator.workflows.campaign import CAMPAIGN_WORKFLOW, campaign_workflow_id


@pytest.fixture(scope="module")
def desk() -> Iterator[SupportDesk]:
    with SupportDesk() as server:
        yield server


@pytest.fixture(autouse=True)
def support_settings(desk: SupportDesk, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator puts in the worker's environment for the NPS journey's webhook."""
    monkeypatch.setenv("SUPPORT_WEBHOOK_URL", desk.url + desk.path)
    monkeypatch.setenv("JOURNEYS_ACTIONS_SECRET", DESK_SECRET)


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own time-skipping server: its journeys wait for weeks."""
    async with own_time_skipping_server() as env:
        yield env


@contextlib.asynccontextmanager
async def make_bench(ts_env, engine, tmp_path: Path, journey: str, request) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = Bench(ts_env, engine, shipped_journeys(tmp_path / "journeys", journey))
    bench.deploy()
    try:
        yield bench
        await save_histories(bench, f"playbook__{request.node.name}")
    finally:
        await end_open_runs(bench)


def sent(bench: Bench, user: str) -> list[tuple[str, str, str]]:
    """(step, channel, status) of each message to `user`, oldest first."""
    return [(m.step_id, m.channel, m.status) for m in bench.messages(user)]


def text_of(message: Message) -> str:
    content = message.content
    return content.get("text") or content.get("body") or ""


def coupons_of(bench: Bench, user: str) -> list[Coupon]:
    with session_scope(bench.engine) as session:
        rows = list(session.exec(select(Coupon).where(Coupon.contact_id == user)))
        for row in rows:
            session.expunge(row)
        return rows


def balance(bench: Bench, user: str) -> int:
    with session_scope(bench.engine) as session:
        return loyalty.balance(session, user, utcnow())


def traits(bench: Bench, user: str) -> dict[str, Any]:
    with session_scope(bench.engine) as session:
        contact = session.get(Contact, user)
        assert contact is not None
        return dict(contact.traits)


async def refresh_segment(bench: Bench, name: str, now: datetime | None = None) -> None:
    """What the segment's schedule does (tests/test_segment_schedules.py runs the schedule)."""
    with session_scope(bench.engine) as session:
        refresh(session, name, now or utcnow())
    await bench.route_all()


@pytest_asyncio.fixture
async def bench(
    ts_env, sqlite_engine, tmp_path, desk: SupportDesk, request
) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    """A bench with only the journey the test's `journey` mark names."""
    desk.requests.clear()
    desk.tickets.clear()
    journey = request.node.get_closest_marker("journey").args[0]
    async with make_bench(ts_env, sqlite_engine, tmp_path, journey, request) as ready:
        yield ready


# --- post_purchase ----------------------------------------------------------------------


@pytest.mark.journey("post_purchase")
async def test_an_order_earns_points_a_code_and_a_thank_you_naming_them(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com", first_name="Ann", tier="gold")
        await bench.track("ann", "Order Completed", order_id="o1", revenue=120.5, currency="USD")
        await ts_env.sleep(timedelta(minutes=5))
        [thanks] = bench.messages("ann")
        [code] = coupons_of(bench, "ann")
        # 1 point per dollar, doubled for gold members: 241.
        assert balance(bench, "ann") == 241
        assert (code.campaign, code.kind, code.value, code.minimum_order) == (
            "thank_you",
            "percent",
            10,
            30,
        )
        assert re.fullmatch(r"THANKS-[A-Z2-9]{8}", code.code)
        text = thanks.content["text"]
        assert "+241 points" in text and "You now have 241 points" in text
        assert code.code in text and "10%" in text
        assert thanks.category == "transactional"
        # A week after delivery of this order, the review request.
        await bench.track("ann", "Order Delivered", order_id="other-order")
        await ts_env.sleep(timedelta(days=2))
        await bench.track("ann", "Order Delivered", order_id="o1")
        await ts_env.sleep(timedelta(days=6, hours=23))
        assert [m.step_id for m in bench.messages("ann")] == ["thank_you"]
        await ts_env.sleep(timedelta(hours=2))
        assert [m.step_id for m in bench.messages("ann")] == ["thank_you", "review"]
        assert await bench.result("post_purchase", "ann:o1") == "completed"
    [run] = bench.runs("ann")
    assert run.data["points_earned"] == 241 and run.data["coupon_code"] == code.code


@pytest.mark.journey("post_purchase")
async def test_each_order_gets_its_own_run_points_and_thank_you(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify("bob", email="bob@example.com", first_name="Bob")
        await bench.track("bob", "Order Completed", order_id="o1", revenue=50)
        await ts_env.sleep(timedelta(hours=1))
        # The first order's run waits for its delivery; the second order is not lost.
        await bench.track("bob", "Order Completed", order_id="o2", revenue=30)
        await ts_env.sleep(timedelta(hours=1))
    assert balance(bench, "bob") == 80
    first, second = bench.messages("bob")
    assert "You now have 50 points" in first.content["text"]
    assert (
        "+30 points" in second.content["text"]
        and "You now have 80 points" in second.content["text"]
    )
    assert len({c.code for c in coupons_of(bench, "bob")}) == 2
    assert sorted(r.workflow_id for r in bench.runs("bob")) == [
        "journey:post_purchase:bob:o1",
        "journey:post_purchase:bob:o2",
    ]


@pytest.mark.journey("post_purchase")
async def test_a_refund_takes_back_the_points_its_order_earned(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify("cy", email="cy@example.com")
        await bench.track("cy", "Order Completed", order_id="o1", revenue=100)
        await bench.track("cy", "Order Completed", order_id="o2", revenue=200)
        await ts_env.sleep(timedelta(minutes=10))
        assert balance(bench, "cy") == 300
        await bench.track("cy", "Order Refunded", order_id="o1")
        assert balance(bench, "cy") == 200
        await bench.track("cy", "Order Refunded", order_id="o2", revenue=50)  # partial
        assert balance(bench, "cy") == 150
        await bench.track("cy", "Order Refunded", order_id="o1")  # sent twice: no change
        assert balance(bench, "cy") == 150


@pytest.mark.journey("post_purchase")
async def test_an_order_refunded_before_its_points_were_given_earns_nothing(
    bench: Bench, ts_env
) -> None:
    await bench.identify("uma", email="uma@example.com")
    # Ordered and cancelled while no worker was running: the refund is stored first.
    await bench.track("uma", "Order Completed", order_id=2001.0, revenue=80)
    await bench.track("uma", "Order Refunded", order_id="2001")
    async with bench.worker():
        await ts_env.sleep(timedelta(minutes=5))
        assert [m.step_id for m in bench.messages("uma")] == ["thank_you"]
    assert balance(bench, "uma") == 0


@pytest.mark.journey("post_purchase")
async def test_orders_without_an_id_still_get_a_run_each(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify("vic", email="vic@example.com")
        await bench.track("vic", "Order Completed", revenue=10)
        await bench.track("vic", "Order Completed", revenue=15)
        await ts_env.sleep(timedelta(minutes=5))
    assert [m.step_id for m in bench.messages("vic")] == ["thank_you", "thank_you"]
    assert balance(bench, "vic") == 25


@pytest.mark.journey("post_purchase")
async def test_the_code_used_on_the_next_order_is_redeemed_once_and_credits_the_journey(
    bench: Bench, ts_env
) -> None:
    api = TestClient(create_app(bench.engine, ["write-key"]))
    async with bench.worker():
        await bench.identify("dee", email="dee@example.com")
        await bench.track("dee", "Order Completed", order_id="o1", revenue=40)
        await ts_env.sleep(timedelta(minutes=5))
        [code] = coupons_of(bench, "dee")
        # The storefront checks the code at checkout, then the order carries it.
        check = api.get(f"/v1/coupons/{code.code.lower()}", auth=("write-key", ""))
        assert check.status_code == 200 and check.json()["valid"] is True
        await bench.track("dee", "Order Completed", order_id="o2", revenue=64.0, coupon=code.code)
        await ts_env.sleep(timedelta(minutes=5))
    [redeemed] = [c for c in coupons_of(bench, "dee") if c.code == code.code]
    assert redeemed.redeemed_order_id == "o2" and redeemed.redeemed_at is not None
    runs = {r.workflow_id: r for r in bench.runs("dee")}
    first = runs["journey:post_purchase:dee:o1"]
    assert first.converted_at is not None and first.revenue == 64.0
    # The storefront's own redeem call, retried, is harmless; another order cannot reuse it.
    redeem = f"/v1/coupons/{code.code}/redeem"
    again = api.post(redeem, json={"order_id": "o2", "userId": "dee"}, auth=("write-key", ""))
    other = api.post(redeem, json={"order_id": "o3", "userId": "dee"}, auth=("write-key", ""))
    assert again.status_code == 200 and again.json()["order_id"] == "o2"
    assert other.status_code == 409


# --- abandoned_cart -------------------------------------------------------------------


@pytest.mark.journey("abandoned_cart")
async def test_a_shopper_without_the_app_gets_a_text_instead_of_a_push(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify("eve", email="eve@example.com", phone="+15005550006", first_name="Eve")
        await bench.track("eve", "Product Added", name="Wool scarf", price=35)
        await ts_env.sleep(timedelta(days=3, hours=2))
    assert sent(bench, "eve") == [("reminder", "email", "sent"), ("reminder_push", "sms", "sent")]
    assert "1 item in your cart" in text_of(bench.messages("eve")[1])


@pytest.mark.journey("abandoned_cart")
async def test_the_cart_email_shows_what_people_who_bought_the_same_also_bought(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        for buyer in ("p1", "p2"):
            await bench.track(
                buyer,
                "Order Completed",
                order_id=f"{buyer}-order",
                revenue=60,
                products=[
                    {"product_id": "scarf", "name": "Wool scarf", "price": 35, "quantity": 1},
                    {"product_id": "gloves", "name": "Leather gloves", "price": 25, "quantity": 1},
                ],
            )
        await bench.identify("fay", email="fay@example.com", first_name="Fay")
        await bench.track("fay", "Product Added", product_id="scarf", name="Wool scarf", price=35)
        await ts_env.sleep(timedelta(hours=25))
    [email] = bench.messages("fay")
    assert "Wool scarf" in email.content["text"]
    assert "Leather gloves" in email.content["text"]  # bought by both people who bought the scarf
    assert "Leather gloves" in email.content["html"]


# --- big_spenders ---------------------------------------------------------------------


@pytest.mark.journey("big_spenders")
async def test_spending_over_5000_in_30_days_brings_a_personal_offer_once(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify(
            "gus", email="gus@example.com", phone="+15005550006", preferred_channel="sms"
        )
        await bench.identify("hal", email="hal@example.com")
        await bench.track("gus", "Order Completed", order_id="g1", revenue=3000, currency="RUB")
        await bench.track("gus", "Order Completed", order_id="g2", revenue=2500, currency="RUB")
        await bench.track("hal", "Order Completed", order_id="h1", revenue=4000, currency="RUB")
        # Two months ago does not count for the last 30 days.
        old = datetime.now(UTC) - timedelta(days=60)
        await bench.track(
            "hal", "Order Completed", order_id="h0", revenue=9000, currency="RUB", at=old
        )
        await refresh_segment(bench, "big_spenders")
        await ts_env.sleep(timedelta(minutes=5))
        assert sent(bench, "gus") == [("offer", "sms", "sent")]
        assert bench.messages("hal") == []
        await refresh_segment(bench, "big_spenders")  # still a member: no second offer
        await ts_env.sleep(timedelta(minutes=5))
    [offer] = bench.messages("gus")
    [code] = coupons_of(bench, "gus")
    assert (code.kind, code.value, code.currency, code.minimum_order) == (
        "amount",
        500,
        "RUB",
        2000,
    )
    assert code.code in offer.content["body"] and "500" in offer.content["body"]
    assert "big_spender" in traits(bench, "gus")["tags"]
    assert len(bench.runs("gus")) == 1


# --- nps_survey -----------------------------------------------------------------------


def answer_by_email(bench: Bench, message: Message, score: int) -> None:
    """The customer clicks a score in the survey email and confirms it on our page."""
    links = MessageLinks.from_settings(bench.settings)
    api = TestClient(create_app(bench.engine, ["write-key"], links=links, settings=bench.settings))
    link = re.search(r"https?://\S+/s/[\w.-]+", message.content["text"])
    assert link is not None, message.content["text"]
    path = link.group(0).split("://", 1)[1].split("/", 1)[1]
    page = api.get(f"/{path}?score={score}")
    assert page.status_code == 200 and f"Submit score {score}" in page.text
    assert api.post(f"/{path}", data={"score": str(score)}).status_code == 200


def reply_by_sms(bench: Bench, phone: str, body: str, sid: str) -> None:
    record_inbound_sms(bench.engine, InboundSms(sid, phone, body, "message", None))


async def delivered_then_asked(bench: Bench, ts_env, user: str, **traits: Any) -> Message:  # type: ignore[no-untyped-def]
    await bench.identify(user, first_name=user.title(), **traits)
    await bench.track(user, "Order Delivered", order_id=f"{user}-1")
    await ts_env.sleep(timedelta(days=3, minutes=5))
    [survey] = bench.messages(user)
    return survey


@pytest.mark.journey("nps_survey")
async def test_a_promoter_is_invited_to_write_a_public_review(bench: Bench, ts_env) -> None:
    async with bench.worker():
        survey = await delivered_then_asked(bench, ts_env, "ida", email="ida@example.com")
        answer_by_email(bench, survey, 9)
        await bench.route_all()
        assert await bench.result("nps_survey", "ida") == "completed"
    assert sent(bench, "ida") == [("survey", "email", "sent"), ("review_invite", "email", "sent")]
    [run] = bench.runs("ida")
    assert run.data["answer"]["properties"]["score"] == 9


@pytest.mark.journey("nps_survey")
async def test_a_passive_gets_no_more_messages(bench: Bench, ts_env) -> None:
    async with bench.worker():
        survey = await delivered_then_asked(bench, ts_env, "jon", email="jon@example.com")
        answer_by_email(bench, survey, 7)
        await bench.route_all()
        assert await bench.result("nps_survey", "jon") == "completed"
    assert sent(bench, "jon") == [("survey", "email", "sent")]


@pytest.mark.journey("nps_survey")
async def test_a_detractor_replying_by_sms_gets_a_ticket_and_an_apology_with_a_code(
    bench: Bench, ts_env, desk: SupportDesk
) -> None:
    async with bench.worker():
        # No email address: the survey goes by SMS and the answer comes back as a reply.
        survey = await delivered_then_asked(bench, ts_env, "kim", phone="+15005550006")
        assert survey.channel == "sms" and "Reply with a number" in survey.content["body"]
        reply_by_sms(bench, "+15005550006", "Hello", "SM-chat")  # not an answer: still waiting
        reply_by_sms(bench, "+15005550006", " 2 ", "SM-answer")
        await bench.route_all()
        assert await bench.result("nps_survey", "kim") == "completed"
    assert sent(bench, "kim") == [("survey", "sms", "replied"), ("apology", "sms", "sent")]
    [ticket] = desk.tickets.values()
    assert (ticket["contact"], ticket["reason"]) == ("kim", "nps_detractor")
    [code] = coupons_of(bench, "kim")
    assert (code.campaign, code.value) == ("nps_apology", 15)
    assert code.code in bench.messages("kim")[1].content["body"]
    [run] = bench.runs("kim")
    assert run.data["ticket"]["ticket_id"] == ticket["ticket_id"]
    assert run.data["answer"]["properties"]["number"] == 2


@pytest.mark.journey("nps_survey")
async def test_a_detractor_still_gets_the_apology_when_the_support_system_refuses(
    bench: Bench, ts_env, desk: SupportDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEYS_ACTIONS_SECRET", "not-the-desks-secret-at-all")
    async with bench.worker():
        survey = await delivered_then_asked(bench, ts_env, "lea", email="lea@example.com")
        answer_by_email(bench, survey, 0)
        await bench.route_all()
        assert await bench.result("nps_survey", "lea") == "completed"
    assert [r.headers.get("idempotency-key") is not None for r in desk.requests] == [True]
    assert desk.tickets == {}  # 401: refused once, not retried
    assert sent(bench, "lea")[-1] == ("apology", "email", "sent")
    assert "ticket" not in bench.runs("lea")[0].data


@pytest.mark.journey("nps_survey")
async def test_no_answer_gets_one_reminder_then_the_journey_ends(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await delivered_then_asked(bench, ts_env, "max", email="max@example.com")
        await ts_env.sleep(timedelta(days=5))
        assert [m.step_id for m in bench.messages("max")] == ["survey", "survey_reminder"]
        assert await bench.result("nps_survey", "max") == "exited"
    [run] = bench.runs("max")
    assert run.exit_reason == "no answer"
    assert len(bench.messages("max")) == 2


@pytest.mark.journey("nps_survey")
async def test_an_answer_to_the_reminder_counts(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await delivered_then_asked(bench, ts_env, "ned", email="ned@example.com")
        await ts_env.sleep(timedelta(days=5))
        reminder = bench.messages("ned")[1]
        answer_by_email(bench, reminder, 10)
        await bench.route_all()
        assert await bench.result("nps_survey", "ned") == "completed"
    assert [m.step_id for m in bench.messages("ned")] == [
        "survey",
        "survey_reminder",
        "review_invite",
    ]


# --- win_back -------------------------------------------------------------------------


async def lapse(bench: Bench, user: str, days: int, **traits: Any) -> None:
    await bench.identify(user, **traits)
    at = datetime.now(UTC) - timedelta(days=days)
    await bench.track(user, "Order Completed", order_id=f"{user}-old", revenue=30, at=at)


@pytest.mark.journey("win_back")
async def test_a_lapsed_customer_gets_email_push_then_a_last_offer(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await lapse(
            bench, "oli", 61, email="oli@example.com", context={"device": {"token": "t-oli"}}
        )
        await lapse(bench, "pam", 20, email="pam@example.com")  # ordered recently: not lapsed
        await refresh_segment(bench, "lapsed_customers")
        await ts_env.sleep(timedelta(minutes=5))
        assert sent(bench, "oli") == [("miss_you", "email", "sent")]
        await ts_env.sleep(timedelta(days=7))
        assert [m.step_id for m in bench.messages("oli")] == ["miss_you", "miss_you_push"]
        await ts_env.sleep(timedelta(days=14))
        assert [m.step_id for m in bench.messages("oli")][-1] == "last_offer"
        [code] = coupons_of(bench, "oli")
        assert code.code in bench.messages("oli")[-1].content["text"]
        # Nothing holds the run after the last offer; an order with the code a day later
        # (22 days after entry, within the goal's 45) still converts it.
        assert await bench.result("win_back", "oli") == "completed"
        [run] = bench.runs("oli")
        await bench.track(
            "oli",
            "Order Completed",
            order_id="oli-back",
            revenue=45,
            coupon=code.code,
            at=run.entered_at + timedelta(days=22),
        )
    assert bench.messages("pam") == []
    [run] = bench.runs("oli")
    assert run.converted_at is not None and run.revenue == 45


@pytest.mark.journey("win_back")
async def test_an_opened_email_skips_the_push_and_an_order_ends_it(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await lapse(
            bench, "quin", 90, email="quin@example.com", context={"device": {"token": "t-q"}}
        )
        await refresh_segment(bench, "lapsed_customers")
        await ts_env.sleep(timedelta(minutes=5))
        [email] = bench.messages("quin")
        await bench.track("quin", "Email Opened", message_id=email.id)
        await ts_env.sleep(timedelta(days=10))
        await bench.track("quin", "Order Completed", order_id="q-back", revenue=20)
        assert await bench.result("win_back", "quin") == "exited"
    assert [m.step_id for m in bench.messages("quin")] == ["miss_you"]
    assert coupons_of(bench, "quin") == []


# --- welcome --------------------------------------------------------------------------


async def zone_where_it_is(ts_env, hour: int) -> str:  # type: ignore[no-untyped-def]
    """A fixed-offset timezone in which the journey's local time is now `hour`:xx."""
    now = await ts_env.get_current_time()
    offset = (hour - now.astimezone(UTC).hour + 12) % 24 - 12  # -12..11
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"  # Etc/GMT signs are inverted


@pytest.mark.journey("welcome")
async def test_a_subscriber_gets_a_first_order_code_then_a_reminder(bench: Bench, ts_env) -> None:
    async with bench.worker():
        noon = await zone_where_it_is(ts_env, 12)
        await bench.identify(
            "rae",
            email="rae@example.com",
            first_name="Rae",
            consent={"email": True},
            context={"timezone": noon},
        )
        await bench.identify(
            "sid", email="sid@example.com", context={"timezone": noon}
        )  # no consent
        await ts_env.sleep(timedelta(minutes=5))
        assert sent(bench, "rae") == [("welcome", "email", "sent")]
        [code] = coupons_of(bench, "rae")
        assert (
            code.code.startswith("HELLO-") and code.code in bench.messages("rae")[0].content["text"]
        )
        await bench.identify("rae", first_name="Rae")  # identifying again starts nothing new
        await ts_env.sleep(timedelta(days=3))
        assert [m.step_id for m in bench.messages("rae")] == ["welcome", "code_reminder"]
        assert await bench.result("welcome", "rae") == "completed"
    assert bench.messages("sid") == [] and bench.runs("sid") == []
    assert len(bench.runs("rae")) == 1


@pytest.mark.journey("welcome")
async def test_a_customer_who_already_ordered_gets_no_first_order_code(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify("wes", email="wes@example.com")
        await bench.track("wes", "Order Completed", order_id="w1", revenue=30)
        await bench.identify("wes", consent={"email": {"marketing": True}})
        await ts_env.sleep(timedelta(days=1))
    assert bench.messages("wes") == [] and coupons_of(bench, "wes") == []


@pytest.mark.journey("welcome")
async def test_the_welcome_waits_for_the_morning_and_an_order_ends_the_series(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        late = await zone_where_it_is(ts_env, 23)
        await bench.identify(
            "tia", email="tia@example.com", consent={"email": True}, context={"timezone": late}
        )
        await ts_env.sleep(timedelta(minutes=5))
        assert bench.messages("tia")[0].status == "deferred"  # 23:00 there: quiet hours
        await ts_env.sleep(timedelta(hours=10))
        [email] = bench.messages("tia")
        assert email.status == "sent"
        await bench.track("tia", "Order Completed", order_id="t1", revenue=25)
        assert await bench.result("welcome", "tia") == "exited"
    assert [m.step_id for m in bench.messages("tia")] == ["welcome"]


# --- birthday --------------------------------------------------------------------------


async def test_a_birthday_brings_a_gift_code_at_ten_local_time_every_year(
    sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """On a server of its own: a year skipped makes the segment schedules of the benches
    before it fire on task queues no worker polls, which holds back a shared clock."""
    async with own_time_skipping_server() as ts_env:
        bench = Bench(ts_env, sqlite_engine, shipped_journeys(tmp_path / "journeys", "birthday"))
        bench.deploy()
        await _birthday(bench, ts_env)


async def _birthday(bench: Bench, ts_env: WorkflowEnvironment) -> None:
    from zoneinfo import ZoneInfo

    async def advance_to(moment: datetime) -> None:
        now = await ts_env.get_current_time()
        if moment > now:
            await ts_env.sleep(moment - now)
        await bench.route_all()

    async with bench.worker():
        now = await ts_env.get_current_time()
        day = (now + timedelta(days=2)).date()
        await bench.identify(
            "ada",
            email="ada@example.com",
            first_name="Ада",
            birthday=f"1990-{day:%m-%d}",
            context={"timezone": "Europe/Moscow", "locale": "ru-RU", "device": {"token": "t-ada"}},
        )
        ten = datetime(day.year, day.month, day.day, 10, tzinfo=ZoneInfo("Europe/Moscow"))
        await advance_to(ten - timedelta(minutes=1))
        assert bench.messages("ada") == []
        await advance_to(ten + timedelta(minutes=1))
        assert await bench.result("birthday", "ada") == "completed"
        email, push = bench.messages("ada")
        assert (email.channel, email.status, push.channel, push.status) == (
            "email",
            "sent",
            "push",
            "sent",
        )
        subject = "С днём рождения, Ада! Подарок от Fernwood Home"  # noqa: RUF001 - Russian
        assert email.content["subject"] == subject
        [code] = coupons_of(bench, "ada")
        assert code.code.startswith("BDAY-") and code.code in text_of(email)
        assert code.code in push.content["body"] and "15" in push.content["body"]
        # A year later, the next one: a new entry with its own code.
        await advance_to(ten.replace(year=ten.year + 1) + timedelta(minutes=1))
        assert await bench.result("birthday", "ada") == "completed"
        assert [r.entry_seq for r in bench.runs("ada")] == [1, 2]
        assert len(coupons_of(bench, "ada")) == 2
        await bench.client.get_workflow_handle("date:birthday:ada").terminate(reason="test over")


# --- monthly_picks (a campaign) ---------------------------------------------------------

# The months as the emails name them ("Our picks for March", "Наша подборка на март").
EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")  # fmt: skip
RU_MONTHS = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август",
             "сентябрь", "октябрь", "ноябрь", "декабрь")  # fmt: skip


def first_of_next_month(after: datetime, zone: Any) -> datetime:
    """10:00 on the 1st of the month after `after`'s, in `zone`: when "0 10 1 * *" fires."""
    local = after.astimezone(zone)
    year, month = local.year + local.month // 12, local.month % 12 + 1
    return datetime(year, month, 1, 10, tzinfo=zone)


async def test_the_monthly_picks_reach_each_subscriber_at_ten_their_time_every_month(
    sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """On a server of its own, as the birthday's: it skips to the 1st of next month, and
    of the month after."""
    async with own_time_skipping_server() as ts_env:
        folder = shipped_journeys(tmp_path / "journeys", "monthly_picks")
        bench = Bench(ts_env, sqlite_engine, folder)
        bench.deploy()
        await _monthly_picks(bench, ts_env, load_journey(folder / "monthly_picks.yaml").journey)


async def _monthly_picks(bench: Bench, ts_env: WorkflowEnvironment, journey: Journey) -> None:
    from zoneinfo import ZoneInfo

    moscow, new_york = ZoneInfo("Europe/Moscow"), ZoneInfo("America/New_York")
    # The campaign's Temporal Schedule, as the worker makes it; the time-skipping server
    # has none, so the test starts the workflow it would start, when it would.
    spec = schedule_spec(journey.trigger, "UTC")
    assert spec.cron_expressions == ["0 10 1 * *"]
    fires_in = ZoneInfo(spec.time_zone_name or "UTC")

    async def advance_to(moment: datetime) -> None:
        await bench.route_all()
        now = await ts_env.get_current_time()
        if moment > now:
            await ts_env.sleep(moment - now)
        for _ in range(3):  # the released members' events routed, their runs sending
            await bench.route_all()
            await ts_env.sleep(timedelta(seconds=5))
        await bench.route_all()

    async def fire(at: datetime) -> None:
        await advance_to(at)
        await bench.client.start_workflow(
            CAMPAIGN_WORKFLOW,
            t.CampaignInput(journey.id),
            id=f"{campaign_workflow_id(journey.id)}-{at:%Y-%m-%dT%H:%MZ}",
            task_queue=bench.task_queue,
        )

    def emails(user: str) -> list[Message]:
        return [m for m in bench.messages(user) if m.status == "sent"]

    async with bench.worker():
        await bench.identify(
            "ada",
            email="ada@example.com",
            first_name="Ада",
            newsletter=True,
            context={"timezone": "Europe/Moscow", "locale": "ru-RU"},
        )
        await bench.identify(
            "ben",
            email="ben@example.com",
            first_name="Ben",
            newsletter=True,
            context={"timezone": "America/New_York"},
        )
        await bench.identify(  # unsubscribed from the newsletter: no member
            "cyd", email="cyd@example.com", newsletter=False, context={"timezone": "Europe/Moscow"}
        )
        await refresh_segment(bench, "newsletter")

        due = first_of_next_month(await ts_env.get_current_time(), fires_in)
        await fire(due)
        # Ben looked at a throw since: his email picks it for him.
        await bench.track("ben", "Product Viewed", at=await ts_env.get_current_time(), **THROW)
        days = []
        for month in (1, 2):
            day = due.date()  # the 1st: it is 10:00 on that date in each member's zone
            days.append(day)
            ten = {
                user: datetime(day.year, day.month, day.day, 10, tzinfo=zone)
                for user, zone in (("ada", moscow), ("ben", new_york))
            }
            await advance_to(ten["ada"] - timedelta(minutes=1))
            assert [len(emails(u)) for u in ("ada", "ben")] == [month - 1, month - 1]
            await advance_to(ten["ada"] + timedelta(minutes=1))
            assert [len(emails(u)) for u in ("ada", "ben")] == [month, month - 1]
            await advance_to(ten["ben"] + timedelta(minutes=1))
            assert [len(emails(u)) for u in ("ada", "ben")] == [month, month]
            subjects = {
                "ada": f"Наша подборка на {RU_MONTHS[day.month - 1]}",
                "ben": f"Our picks for {EN_MONTHS[day.month - 1]}",
            }
            for user, moment in ten.items():
                email = emails(user)[-1]
                assert email.queued_at is not None
                assert moment <= email.queued_at < moment + timedelta(minutes=2), user
                assert (email.step_id, email.channel) == ("picks_email", "email")
                assert email.content["subject"] == subjects[user]
            assert emails("ada")[-1].locale == "ru"
            assert "Здравствуйте, Ада!" in text_of(emails("ada")[-1])
            assert bench.messages("cyd") == [] and bench.runs("cyd") == []
            if month == 1:
                assert "Linen Throw Blanket" in text_of(emails("ben")[-1])
                due = first_of_next_month(ten["ben"], fires_in)
                await fire(due)
    # A recurring campaign enters its members again each time it is due.
    assert [r.entry_seq for r in bench.runs("ada")] == [1, 2]
    assert [r.entry_seq for r in bench.runs("ben")] == [1, 2]
    with session_scope(bench.engine) as session:
        dispatches = session.exec(select(CampaignDispatch).order_by(CampaignDispatch.due))
        # Each month's dispatch reached both members, every wave sent.
        assert [(d.due, d.recipients, d.waves_done == d.waves, d.status) for d in dispatches] == [
            (f"{day:%Y-%m-%d} 10:00", 2, True, "done") for day in days
        ]


# --- browse_abandonment ------------------------------------------------------------------

THROW = {
    "product_id": "p-throw",
    "name": "Linen Throw Blanket",
    "price": 89.0,
    "url": "https://shop.example/p/throw",
}


@pytest.mark.journey("browse_abandonment")
async def test_a_viewed_product_comes_back_four_hours_later_unless_carted_or_bought(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        morning = await zone_where_it_is(ts_env, 9)  # 13:00 four hours on: daytime
        for user in ("val", "cat", "bo"):
            await bench.identify(user, email=f"{user}@example.com", context={"timezone": morning})
            await bench.track(user, "Product Viewed", **THROW)
        await bench.track("val", "Product Viewed", **{**THROW, "product_id": "p-mug"})
        await bench.track("cat", "Product Added", **THROW)  # the cart journey's from here
        await ts_env.sleep(timedelta(hours=3))
        await bench.track("bo", "Order Completed", order_id="b1", revenue=89.0)
        assert bench.messages() == []
        await ts_env.sleep(timedelta(hours=1, minutes=5))
        [email] = bench.messages("val")  # once, for the first product viewed
        assert (email.step_id, email.status) == ("viewed_product", "sent")
        assert email.content["subject"] == "Still thinking about Linen Throw Blanket?"
        assert any(  # the product's link, behind click tracking
            link.startswith("https://shop.example/p/throw") for link in email.content["links"]
        )
        assert await bench.result("browse_abandonment", "val") == "completed"
        for user, why in (("cat", "Product Added"), ("bo", "Order Completed")):
            assert bench.messages(user) == []
            [run] = bench.runs(user)
            assert (run.status, run.exit_reason) == ("exited", f"event: {why}")


# --- price_drop, back_in_stock ----------------------------------------------------------


async def catalogue(bench: Bench, event: str, **properties: Any) -> None:
    """What the shop's catalogue sends to POST /v1/catalog/track with a server key."""
    from orchestrator.store.keys import create_key

    key = create_key(bench.engine, f"catalogue-{utcnow().timestamp()}", "server")
    client = TestClient(create_app(bench.engine, [], settings=bench.settings))
    r = client.post(
        "/v1/catalog/track",
        json={"event": event, "properties": properties},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    await bench.route_all()


@pytest.mark.journey("price_drop")
async def test_a_price_drop_reaches_who_looked_and_did_not_buy_once_per_product(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        noon = await zone_where_it_is(ts_env, 12)
        for user in ("pia", "cal", "ole", "obi"):
            await bench.identify(user, email=f"{user}@example.com", context={"timezone": noon})
        await bench.track("pia", "Product Viewed", **THROW)
        await bench.track("cal", "Product Added", **THROW)
        await bench.track("ole", "Product Viewed", **{**THROW, "product_id": "p-mug"})
        await bench.track("obi", "Product Viewed", **THROW)
        await bench.track("obi", "Order Completed", order_id="o-obi", revenue=89.0)
        await ts_env.sleep(timedelta(hours=1))
        await catalogue(
            bench, "Price Dropped", product_id="p-throw", name="Linen Throw Blanket",
            price=69.0, old_price=89.0, url="https://shop.example/p/throw",
        )  # fmt: skip
        await ts_env.sleep(timedelta(minutes=5))
        for user in ("pia", "cal"):
            [email] = bench.messages(user)
            assert (email.step_id, email.status) == ("price_drop_email", "sent")
            assert email.content["subject"] == "Linen Throw Blanket is now $69.00"
            assert "(it was $89.00)" in text_of(email)
        assert bench.messages("ole") == [] and bench.messages("obi") == []
        # It drops again a day later: no second alert for the same product.
        await ts_env.sleep(timedelta(days=1))
        await catalogue(bench, "Price Dropped", product_id="p-throw", price=59.0)
        await ts_env.sleep(timedelta(minutes=5))
        assert len(bench.messages("pia")) == 1 and len(bench.messages("cal")) == 1
        # A client cannot start it for someone by sending the event itself.
        await bench.track("ole", "Price Dropped", product_id="p-mug", price=1.0)
        await ts_env.sleep(timedelta(minutes=5))
        assert bench.messages("ole") == []


@pytest.mark.journey("back_in_stock")
async def test_back_in_stock_by_push_with_the_app_else_by_email(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify("app", email="app@example.com", context={"device": {"token": "t-app"}})
        await bench.identify("web", email="web@example.com")
        for user in ("app", "web"):
            await bench.track(user, "Product Viewed", **THROW)
        await catalogue(bench, "Back In Stock", product_id="p-throw", name="Linen Throw Blanket")
        await ts_env.sleep(timedelta(minutes=5))
        assert [(m.channel, m.status) for m in bench.messages("app")] == [("push", "sent")]
        assert [(m.channel, m.status) for m in bench.messages("web")] == [("email", "sent")]
        assert bench.messages("web")[0].content["subject"] == (
            "Linen Throw Blanket is back in stock"
        )
