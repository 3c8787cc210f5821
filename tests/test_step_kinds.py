"""Every step kind and entry rule, on the time-skipping server with the real store."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest_asyncio
from harness import Bench, save_histories, tiny_templates, write_journey
from sqlmodel import select
from temporalio.api.enums.v1 import EventType

from orchestrator.api.ingest import store_call
from orchestrator.api.segment import TrackCall
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, Event
from orchestrator.workflows.journey import split_bucket

MESSAGES = ("thanks", "nudge", "gold", "basic", "variant_a", "variant_b", "hello", "late")


def templates(root: Path) -> Path:
    return tiny_templates(root, MESSAGES)


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path, request) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates(tmp_path / "templates"))
    yield bench
    await save_histories(bench, request.node.name)


def journey(bench: Bench, text: str) -> None:
    spec = textwrap.dedent(text)
    name = spec.split("id:", 1)[1].split()[0]
    write_journey(bench.journeys_dir, name, spec)
    bench.deploy()


def sent(bench: Bench, user: str) -> list[str]:
    return [m.template for m in bench.messages(user) if m.status in ("sent", "opened")]


async def test_wait_for_event_takes_then_or_on_timeout(bench: Bench, ts_env) -> None:  # type: ignore[no-untyped-def]
    journey(
        bench,
        """
        id: checkout
        name: Checkout follow-up
        trigger: { event: Checkout Started }
        steps:
          - wait_for: { event: Order Completed, timeout: 1h, where: "event.properties.total > 100" }
            then:
              - send: { id: thank_you, channel: email, template: thanks }
            on_timeout:
              - send: { id: nudge, channel: email, template: nudge }
        """,
    )
    async with bench.worker():
        for user in ("big", "small", "none"):
            await bench.identify(user, email=f"{user}@example.com")
            await bench.track(user, "Checkout Started")
        await bench.track("big", "Order Completed", total=150)
        await bench.track("small", "Order Completed", total=20)  # fails `where`: keeps waiting
        for user in ("big", "small", "none"):
            assert await bench.result("checkout", user) == "completed"
    assert sent(bench, "big") == ["thanks"]
    assert sent(bench, "small") == ["nudge"]
    assert sent(bench, "none") == ["nudge"]


async def test_branch_on_contact_traits(bench: Bench) -> None:
    journey(
        bench,
        """
        id: tiers
        name: Tiers
        trigger: { event: Signed Up }
        steps:
          - branch:
              - if: contact.traits.tier == "gold" and contact.traits.spent >= 1000
                then:
                  - send: { id: gold_offer, channel: email, template: gold }
            else:
              - send: { id: basic_offer, channel: email, template: basic }
        """,
    )
    async with bench.worker():
        await bench.identify("g", email="g@example.com", tier="gold", spent=1500)
        await bench.identify("s", email="s@example.com", tier="silver", spent=5000)
        for user in ("g", "s"):
            await bench.track(user, "Signed Up")
            await bench.result("tiers", user)
    assert sent(bench, "g") == ["gold"]
    assert sent(bench, "s") == ["basic"]


async def test_dates_in_a_condition_follow_the_runs_clock(bench: Bench) -> None:
    """After a 3-day wait, `today()` is three days on: conditions read the workflow's
    time (here the time-skipping server's), not the worker's wall clock."""
    journey(
        bench,
        """
        id: trial
        name: Trial ending
        trigger: { event: Trial Started }
        steps:
          - wait: 3d
          - branch:
              - if: >-
                  days_since(contact.traits.trial_started_at) >= 3
                  and today() > date(contact.traits.trial_started_at)
                then:
                  - send: { id: ending, channel: email, template: late }
            else:
              - send: { id: too_early, channel: email, template: hello }
        """,
    )
    started = datetime.now(UTC).isoformat()
    async with bench.worker():
        await bench.identify("t", email="t@example.com", trial_started_at=started)
        await bench.track("t", "Trial Started")
        assert await bench.result("trial", "t") == "completed"
    assert sent(bench, "t") == ["late"]


async def test_split_is_weighted_and_stable_per_contact(bench: Bench) -> None:
    journey(
        bench,
        """
        id: ab
        name: A/B
        trigger: { event: Signed Up }
        steps:
          - split:
              - variant: a
                weight: 30
                then: [{ send: { id: offer_a, channel: email, template: variant_a } }]
              - variant: b
                weight: 70
                then: [{ send: { id: offer_b, channel: email, template: variant_b } }]
            id: experiment
        """,
    )
    users = [f"user{i}" for i in range(24)]
    async with bench.worker():
        for user in users:
            await bench.identify(user, email=f"{user}@example.com")
            await bench.track(user, "Signed Up")
        for user in users:
            await bench.result("ab", user)
    got = {user: sent(bench, user) for user in users}
    expected = {
        user: ["variant_a"] if split_bucket("ab", "experiment", user, 100) < 30 else ["variant_b"]
        for user in users
    }
    assert got == expected
    assert {tuple(v) for v in got.values()} == {("variant_a",), ("variant_b",)}


async def test_send_falls_back_and_prefers(bench: Bench) -> None:
    journey(
        bench,
        """
        id: reach
        name: Reach
        trigger: { event: Signed Up }
        steps:
          - send: { id: first, channel: [sms, email], template: hello }
          - send: { id: second, channel: preferred, template: late }
          - send: { id: third, channel: push, template: nudge }
        """,
    )
    async with bench.worker():
        await bench.identify("p", email="p@example.com", phone="+15550001", preferred_channel="sms")
        await bench.identify("e", email="e@example.com")
        for user in ("p", "e"):
            await bench.track(user, "Signed Up")
            assert await bench.result("reach", user) == "completed"
    by_user = {u: [(m.template, m.channel, m.status) for m in bench.messages(u)] for u in "pe"}
    assert by_user["p"][:2] == [("hello", "sms", "sent"), ("late", "sms", "sent")]
    assert by_user["e"][:2] == [("hello", "email", "sent"), ("late", "email", "sent")]
    # No device token: the push cannot be delivered; it is recorded as failed, not dropped.
    [push] = [m for m in bench.messages("e") if m.step_id == "third"]
    assert push.status == "failed"
    assert "no push address" in (push.error or "")


async def test_action_updates_contact_once(bench: Bench) -> None:
    journey(
        bench,
        """
        id: loyalty
        name: Loyalty
        trigger: { event: Order Completed }
        entry: { re_entry: always }
        steps:
          - action:
              type: update_contact
              set: { vip: true }
              increment: { orders: 1 }
              unset: [churn_risk]
        """,
    )
    async with bench.worker():
        await bench.identify("v", email="v@example.com", orders=2, churn_risk=True)
        await bench.track("v", "Order Completed")
        await bench.result("loyalty", "v")
        await bench.track("v", "Order Completed")  # a second entry increments again
        await bench.result("loyalty", "v")
    with session_scope(bench.engine) as session:
        contact = session.get(Contact, "v")
        assert contact is not None
        assert contact.traits["vip"] is True
        assert contact.traits["orders"] == 4
        assert "churn_risk" not in contact.traits
    assert [r.entry_seq for r in bench.runs("v")] == [1, 2]


async def test_exit_step_ends_the_run(bench: Bench) -> None:
    journey(
        bench,
        """
        id: short
        name: Short
        trigger: { event: Signed Up }
        steps:
          - branch:
              - if: contact.email == null
                then: [{ exit: no email address }]
          - send: { id: hi, channel: email, template: hello }
        """,
    )
    async with bench.worker():
        await bench.identify("noemail", phone="+1555")
        await bench.track("noemail", "Signed Up")
        assert await bench.result("short", "noemail") == "exited"
    assert bench.messages("noemail") == []
    [run] = bench.runs("noemail")
    assert (run.status, run.exit_reason) == ("exited", "no email address")


async def test_wait_until_local_time_and_weekday(bench: Bench, ts_env) -> None:  # type: ignore[no-untyped-def]
    journey(
        bench,
        """
        id: monday
        name: Monday morning
        trigger: { event: Signed Up }
        steps:
          - wait_until: { time: "09:30", weekdays: [mon] }
          - send: { id: hi, channel: email, template: hello }
        """,
    )
    async with bench.worker():
        await bench.identify("tz", email="tz@example.com", context={"timezone": "Asia/Tokyo"})
        await bench.track("tz", "Signed Up")
        handle = bench.handle("monday", "tz")
        await bench.result("monday", "tz")
    fired = [
        e.event_time.ToDatetime(tzinfo=UTC)
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    ]
    assert len(fired) == 1
    local = fired[0].astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.strftime("%a"), local.hour, local.minute) == ("Mon", 9, 30)
    history = await handle.fetch_history()
    started = history.events[0].event_time.ToDatetime(tzinfo=UTC)
    assert timedelta(0) < fired[0] - started <= timedelta(days=7)
    assert sent(bench, "tz") == ["hello"]


async def test_re_entry_rules(bench: Bench, ts_env) -> None:  # type: ignore[no-untyped-def]
    for name, rule in (("once", "never"), ("weekly", "after 7d"), ("every", "always")):
        write_journey(
            bench.journeys_dir,
            name,
            f"""
id: {name}
name: {name}
trigger: {{ event: Product Added }}
entry: {{ re_entry: {rule} }}
steps:
  - send: {{ id: hi, channel: email, template: hello }}
""",
        )
    bench.deploy()
    async with bench.worker():
        await bench.identify("r", email="r@example.com")
        # No timers here: keep the shared test clock from jumping while we await results.
        with ts_env.auto_time_skipping_disabled():
            for _ in range(2):
                await bench.track("r", "Product Added")
                for name in ("once", "weekly", "every"):
                    await bench.result(name, "r")
        await ts_env.sleep(timedelta(days=8))
        await bench.track("r", "Product Added")
        for name in ("once", "weekly", "every"):
            await bench.result(name, "r")
        # A router that crashed before marking its work delivers the last trigger again.
        with session_scope(bench.engine) as session:
            last = session.exec(select(Event).order_by(Event.id.desc())).first()  # type: ignore[attr-defined]
            assert last is not None
            last.routed_at = None
        await bench.router.sweep()
        for name in ("once", "weekly", "every"):
            assert await bench.result(name, "r") == "skipped"
    entries = {
        name: len([r for r in bench.runs("r") if r.journey_id == name])
        for name in ("once", "weekly", "every")
    }
    assert entries == {"once": 1, "weekly": 2, "every": 3}


async def test_entry_condition_and_trigger_filter(bench: Bench) -> None:
    journey(
        bench,
        """
        id: filtered
        name: Filtered
        trigger: { event: Product Added, where: "event.properties.price >= 10" }
        entry: { if: 'contact.traits.country != "XX"' }
        steps:
          - send: { id: hi, channel: email, template: hello }
        """,
    )
    async with bench.worker():
        await bench.identify("cheap", email="a@example.com", country="RS")
        await bench.identify("blocked", email="b@example.com", country="XX")
        await bench.identify("ok", email="c@example.com", country="RS")
        await bench.track("cheap", "Product Added", price=5)
        await bench.track("blocked", "Product Added", price=50)
        await bench.track("ok", "Product Added", price=50)
        assert await bench.result("filtered", "blocked") == "skipped"
        assert await bench.result("filtered", "ok") == "completed"
    assert [r.contact_id for r in bench.runs()] == ["ok"]
    assert sent(bench, "ok") == ["hello"] and bench.messages("blocked") == []


async def test_goal_converts_without_ending_and_redelivery_is_ignored(
    bench: Bench,
    ts_env,  # type: ignore[no-untyped-def]
) -> None:
    journey(
        bench,
        """
        id: nurture
        name: Nurture
        trigger: { event: Signed Up }
        goal: { event: Order Completed, within: 3d, where: "event.properties.revenue > 0" }
        steps:
          - wait: 1d
          - send: { id: hi, channel: email, template: hello }
        """,
    )
    async with bench.worker():
        await bench.identify("n", email="n@example.com")
        await bench.track("n", "Signed Up")
        await bench.track("n", "Order Completed", revenue=0)  # does not meet `where`
        await bench.track("n", "Order Completed", revenue=42.5)
        # The router crashes after delivering but before marking: everything again.
        with session_scope(bench.engine) as session:
            for event in session.exec(select(Event)):
                event.routed_at = None
        await bench.router.sweep()
        assert await bench.result("nurture", "n") == "completed"
    [run] = bench.runs("n")
    assert run.status == "completed" and run.converted_at is not None
    assert run.revenue == 42.5
    assert sent(bench, "n") == ["hello"]


async def test_long_runs_continue_as_new_and_lose_nothing(ts_env, sqlite_engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bench = Bench(
        ts_env,
        sqlite_engine,
        tmp_path / "journeys",
        templates(tmp_path / "templates"),
        history_limit=60,
    )
    journey(
        bench,
        """
        id: chatty
        name: Chatty
        trigger: { event: Signed Up }
        exit_on: [Account Deleted]
        steps:
          - wait_for: { event: Order Completed, timeout: 2d, where: "event.properties.total > 100" }
            then:
              - send: { id: thank_you, channel: email, template: thanks }
              - wait: 1d
              - send: { id: later, channel: email, template: late }
        """,
    )
    async with bench.worker():
        await bench.identify("c", email="c@example.com")
        await bench.track("c", "Signed Up")
        handle = bench.handle("chatty", "c")
        first_run = (await handle.describe()).run_id
        for i in range(30):  # orders too small for `where`: each one grows the history
            await bench.track("c", "Order Completed", total=i)
        await bench.track("c", "Order Completed", total=500)
        assert await bench.result("chatty", "c") == "completed"
        last_run = (await handle.describe()).run_id
    assert first_run != last_run, "the run should have continued as new"
    assert sent(bench, "c") == ["thanks", "late"]
    [run] = bench.runs("c")
    assert run.status == "completed"


async def test_concurrent_triggers_for_one_contact_make_one_run(bench: Bench) -> None:
    """RELIABILITY §1 id policy: 100 concurrent signal-with-starts, exactly one run."""
    journey(
        bench,
        """
        id: burst
        name: Burst
        trigger: { event: Product Added }
        entry: { re_entry: always }
        steps:
          - wait: 1h
          - send: { id: hi, channel: email, template: hello }
        """,
    )
    await bench.identify("b", email="b@example.com")
    calls = [
        TrackCall.model_validate({"userId": "b", "event": "Product Added", "messageId": f"m{i}"})
        for i in range(100)
    ]
    for call in calls:
        store_call(bench.engine, call)
    bench.router._refresh()
    with session_scope(bench.engine) as session:
        stored = list(session.exec(select(Event).where(Event.name == "Product Added")))
        for event in stored:
            session.expunge(event)
    async with bench.worker():
        await asyncio.gather(*(bench.router.route(event) for event in stored))
        assert await bench.result("burst", "b") == "completed"
    assert [r.entry_seq for r in bench.runs("b")] == [1]
    assert sent(bench, "b") == ["hello"]
