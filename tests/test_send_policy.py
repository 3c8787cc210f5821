"""The send policy end to end: consent, suppressions, caps across journeys, quiet hours
across timezones and channel fallback, on the time-skipping server with the real store."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from harness import Bench, save_histories, tiny_templates, write_journey
from temporalio.api.enums.v1 import EventType

from orchestrator.store.db import session_scope
from orchestrator.store.suppressions import suppress
from orchestrator.store.tables import Contact, Message

MESSAGES = ("promo", "receipt", "a1", "a2", "b1", "b2", "c1", "d1", "nudge", "sorry")


def templates(root: Path) -> Path:
    return tiny_templates(root, MESSAGES)


def make_bench(env: Any, engine: Any, tmp_path: Path, **overrides: Any) -> Bench:
    return Bench(
        env,
        engine,
        tmp_path / "journeys",
        templates(tmp_path / "templates"),
        overrides=overrides,
    )


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path, request) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = make_bench(ts_env, sqlite_engine, tmp_path)
    yield bench
    await save_histories(bench, request.node.name)


def journey(bench: Bench, text: str) -> None:
    spec = textwrap.dedent(text)
    name = spec.split("id:", 1)[1].split()[0]
    write_journey(bench.journeys_dir, name, spec)
    bench.deploy()


def set_contact(bench: Bench, user: str, **fields: Any) -> None:
    with session_scope(bench.engine) as session:
        contact = session.get(Contact, user)
        assert contact is not None
        for name, value in fields.items():
            setattr(contact, name, value)


def outcome(bench: Bench, user: str) -> dict[str, tuple[str, str]]:
    """{template: (status, channel)} of the contact's messages."""
    return {m.template: (m.status, m.channel) for m in bench.messages(user)}


def message(bench: Bench, user: str, template: str) -> Message:
    return next(m for m in bench.messages(user) if m.template == template)


async def test_marketing_needs_consent_and_receipts_respect_only_channel_opt_outs(
    bench: Bench,
) -> None:
    journey(
        bench,
        """
        id: order_flow
        name: Order flow
        trigger: { event: Order Completed }
        steps:
          - send: { id: receipt, channel: email, template: receipt, category: transactional }
          - send: { id: promo, channel: email, template: promo }
        """,
    )
    async with bench.worker():
        for user, consent in (
            ("unsubscribed", {"email": {"marketing": False}}),
            ("opted_out", {"email": False}),
            ("default", {}),
        ):
            await bench.identify(user, email=f"{user}@example.com")
            set_contact(bench, user, consent=consent)
            await bench.track(user, "Order Completed")
            assert await bench.result("order_flow", user) == "completed"
    assert outcome(bench, "unsubscribed") == {
        "receipt": ("sent", "email"),
        "promo": ("suppressed", "email"),
    }
    assert outcome(bench, "opted_out") == {
        "receipt": ("suppressed", "email"),
        "promo": ("suppressed", "email"),
    }
    assert outcome(bench, "default") == {"receipt": ("sent", "email"), "promo": ("sent", "email")}
    promo = message(bench, "unsubscribed", "promo")
    assert promo.error == "contact opted out of marketing email"
    assert "promo for unsubscribed" not in bench.console.getvalue()


async def test_explicit_consent_mode_sends_marketing_only_to_who_opted_in(
    ts_env, sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    bench = make_bench(ts_env, sqlite_engine, tmp_path, marketing_consent="explicit")
    journey(
        bench,
        """
        id: newsletter
        name: Newsletter
        trigger: { event: Subscribed }
        steps:
          - send: { id: promo, channel: email, template: promo }
        """,
    )
    async with bench.worker():
        for user, consent in (("yes", {"email": {"marketing": True}}), ("unknown", {})):
            await bench.identify(user, email=f"{user}@example.com")
            set_contact(bench, user, consent=consent)
            await bench.track(user, "Subscribed")
            await bench.result("newsletter", user)
    assert outcome(bench, "yes") == {"promo": ("sent", "email")}
    assert outcome(bench, "unknown") == {"promo": ("suppressed", "email")}
    assert "JOURNEYS_MARKETING_CONSENT=explicit" in (message(bench, "unknown", "promo").error or "")


async def test_suppressed_address_falls_back_along_the_list_and_else_takes_on_failure(
    bench: Bench,
) -> None:
    journey(
        bench,
        """
        id: winback
        name: Win-back
        trigger: { event: Lapsed }
        steps:
          - send: { id: offer, channel: [email, sms], template: promo }
            on_failure:
              - send: { id: sorry, channel: push, template: sorry }
        """,
    )
    async with bench.worker():
        await bench.identify("bounced", email="Bounced@Example.com", phone="+15550001111")
        await bench.identify("gone", email="gone@example.com", context={"device": {"token": "t1"}})
        with session_scope(bench.engine) as session:
            # Keyed by address, case-insensitively: "Bounced@Example.com" is the same mailbox.
            suppress(session, "email", "bounced@example.com", "bounced", "sendgrid")
            suppress(session, "email", "gone@example.com", "complained", "sendgrid")
        for user in ("bounced", "gone"):
            await bench.track(user, "Lapsed")
            assert await bench.result("winback", user) == "completed"
    assert outcome(bench, "bounced") == {"promo": ("sent", "sms")}
    sms = message(bench, "bounced", "promo")
    assert any("suppression list (bounced)" in (e.get("detail") or "") for e in sms.timeline)
    # "gone" has no phone and a suppressed email: nothing to send, so on_failure runs.
    assert outcome(bench, "gone") == {
        "promo": ("suppressed", "email"),
        "sorry": ("sent", "push"),
    }
    assert message(bench, "gone", "promo").error == (
        "email address on the suppression list (complained); no sms address"
    )


async def test_preferred_channel_then_first_reachable_and_consented(bench: Bench) -> None:
    journey(
        bench,
        """
        id: offer
        name: Personal offer
        trigger: { event: Promotion Viewed }
        steps:
          - send: { id: offer, channel: preferred, template: promo }
        """,
    )
    async with bench.worker():
        await bench.identify(
            "likes_sms", phone="+15550002222", email="a@example.com", preferred_channel="sms"
        )
        # Prefers push but has no device, and said no to marketing email: SMS is next.
        await bench.identify(
            "no_app", phone="+15550003333", email="b@example.com", preferred_channel="push"
        )
        set_contact(bench, "no_app", consent={"email": {"marketing": False}})
        await bench.identify("plain", email="c@example.com", phone="+15550004444")
        for user in ("likes_sms", "no_app", "plain"):
            await bench.track(user, "Promotion Viewed")
            await bench.result("offer", user)
    assert outcome(bench, "likes_sms") == {"promo": ("sent", "sms")}
    assert outcome(bench, "no_app") == {"promo": ("sent", "sms")}
    assert outcome(bench, "plain") == {"promo": ("sent", "email")}
    timeline = message(bench, "no_app", "promo").timeline
    chosen = next(e for e in timeline if e.get("check") == "channel")
    assert chosen["detail"] == ("sms (no push address; contact opted out of marketing email)")


async def test_frequency_cap_counts_every_journey_and_each_journey_skips_or_defers(
    bench: Bench, ts_env
) -> None:  # type: ignore[no-untyped-def]
    """3 marketing messages per 24 h: journey B defers the 4th, C skips the 5th and sends
    a receipt instead (transactional mail is not capped)."""
    journey(
        bench,
        """
        id: journey_a
        name: A
        trigger: { event: A }
        steps:
          - send: { id: a1, channel: email, template: a1 }
          - send: { id: a2, channel: email, template: a2 }
        """,
    )
    journey(
        bench,
        """
        id: journey_b
        name: B
        trigger: { event: B }
        policy: { when_capped: defer }
        steps:
          - send: { id: b1, channel: email, template: b1 }
          - send: { id: b2, channel: email, template: b2 }
        """,
    )
    journey(
        bench,
        """
        id: journey_c
        name: C
        trigger: { event: C }
        steps:
          - send: { id: c1, channel: email, template: c1 }
            on_failure:
              - send: { id: receipt, channel: email, template: receipt, category: transactional }
        """,
    )
    # The test server's clock moves only when told to: runs of other tests cannot
    # make it jump between these journeys' sends.
    with ts_env.auto_time_skipping_disabled():
        async with bench.worker():
            await bench.identify("ann", email="ann@example.com")
            await bench.track("ann", "A")
            await bench.result("journey_a", "ann")
            await ts_env.sleep(timedelta(hours=1))
            await bench.track("ann", "B")
            await until_status(bench, "ann", "b2", "deferred")
            await ts_env.sleep(timedelta(hours=1))
            await bench.track("ann", "C")
            assert await bench.result("journey_c", "ann") == "completed"
            await ts_env.sleep(timedelta(hours=23))
            assert await bench.result("journey_b", "ann") == "completed"
    assert outcome(bench, "ann") == {
        "a1": ("sent", "email"),
        "a2": ("sent", "email"),
        "b1": ("sent", "email"),
        "c1": ("skipped", "email"),
        "receipt": ("sent", "email"),  # transactional: not capped
        "b2": ("sent", "email"),
    }
    assert message(bench, "ann", "c1").error == "marketing cap reached: 3 per 24h"
    a1, b2 = message(bench, "ann", "a1"), message(bench, "ann", "b2")
    deferral = next(e for e in b2.timeline if e["status"] == "deferred")
    assert a1.queued_at is not None and b2.queued_at is not None
    # Deferred until the oldest of the three leaves the 24 h window, then sent.
    until = datetime.fromisoformat(deferral["until"])
    assert until - a1.queued_at == timedelta(hours=24, milliseconds=1)
    assert b2.queued_at >= until
    # The deferral was a durable timer in the workflow, not a sleep in an activity.
    history = await bench.handle("journey_b", "ann").fetch_history()
    timers = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    assert any(timedelta(hours=22) < d <= timedelta(hours=24) for d in timers), timers


async def until_status(bench: Bench, user: str, template: str, status: str) -> None:
    for _ in range(200):
        if any(m.template == template and m.status == status for m in bench.messages(user)):
            return
        await asyncio.sleep(0.05)
    timeline = [(m.template, m.status, m.queued_at) for m in bench.messages(user)]
    raise AssertionError(f"{template} never became {status}: {timeline}")


def window_around(moment: datetime, zone: str) -> str:
    """Quiet hours from 1 h before to 2 h after `moment`, local to `zone`."""
    local = moment.astimezone(ZoneInfo(zone))
    start, end = local - timedelta(hours=1), local + timedelta(hours=2)
    return f"{start:%H:%M}-{end:%H:%M}"


async def test_quiet_hours_follow_each_contacts_timezone(
    ts_env, sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Night in Tokyo is day in New York: one SMS waits for morning, the other goes now."""
    now = await ts_env.get_current_time()  # the test server's clock, not the wall clock
    # Quiet hours that contain Tokyo's present moment; 13-14 h away, New York's is outside.
    quiet = window_around(now, "Asia/Tokyo")
    bench = make_bench(ts_env, sqlite_engine, tmp_path, quiet_hours_sms=quiet)
    journey(
        bench,
        """
        id: sms_promo
        name: SMS promo
        trigger: { event: Browsed }
        exit_on: [Order Completed]
        steps:
          - send: { id: promo, channel: sms, template: promo }
        """,
    )
    with ts_env.auto_time_skipping_disabled():
        async with bench.worker():
            for user, zone in (
                ("tokyo", "Asia/Tokyo"),
                ("new_york", "America/New_York"),
                ("tokyo_buyer", "Asia/Tokyo"),
            ):
                await bench.identify(user, phone="+15550009999", context={"timezone": zone})
                await bench.track(user, "Browsed")
            assert await bench.result("sms_promo", "new_york") == "completed"
            await until_status(bench, "tokyo", "promo", "deferred")
            # A deferred send still listens: buying during quiet hours ends the run unsent.
            await ts_env.sleep(timedelta(minutes=10))
            await bench.track("tokyo_buyer", "Order Completed")
            assert await bench.result("sms_promo", "tokyo_buyer") == "exited"
            await ts_env.sleep(timedelta(hours=2))
            assert await bench.result("sms_promo", "tokyo") == "completed"

    ny = message(bench, "new_york", "promo")
    assert ny.status == "sent"
    assert not any(e["status"] == "deferred" for e in ny.timeline)
    tokyo = message(bench, "tokyo", "promo")
    assert tokyo.status == "sent"
    deferral = next(e for e in tokyo.timeline if e["status"] == "deferred")
    until = datetime.fromisoformat(deferral["until"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"{until:%H:%M}" == quiet.split("-")[1]
    assert "Asia/Tokyo" in deferral["detail"]
    assert tokyo.queued_at is not None and tokyo.queued_at >= until
    buyer = message(bench, "tokyo_buyer", "promo")
    assert buyer.status == "deferred" and buyer.sent_at is None


@pytest.mark.parametrize("quiet", ["none", "00:00-23:59"])
async def test_a_journey_can_override_quiet_hours(
    ts_env, sqlite_engine, tmp_path: Path, quiet: str
) -> None:  # type: ignore[no-untyped-def]
    now = await ts_env.get_current_time()
    bench = make_bench(ts_env, sqlite_engine, tmp_path, quiet_hours_push=window_around(now, "UTC"))
    journey(
        bench,
        f"""
        id: flash
        name: Flash sale
        trigger: {{ event: Flash }}
        policy: {{ quiet_hours: {{ push: "{quiet}" }} }}
        steps:
          - send: {{ id: promo, channel: push, template: promo }}
        """,
    )
    async with bench.worker():
        await bench.identify("p", context={"device": {"token": "tok"}, "timezone": "UTC"})
        await bench.track("p", "Flash")
        await bench.result("flash", "p")
    deferred = any(e["status"] == "deferred" for e in message(bench, "p", "promo").timeline)
    assert deferred == (quiet != "none")


async def test_wait_for_failed_engagement_sees_a_message_that_was_not_sent(bench: Bench) -> None:
    journey(
        bench,
        """
        id: check_failed
        name: Check failed
        trigger: { event: Go }
        steps:
          - send: { id: promo, channel: email, template: promo }
          - wait_for: { message: promo, engagement: failed, timeout: 1h }
            then:
              - send: { id: nudge, channel: sms, template: nudge }
        """,
    )
    async with bench.worker():
        for user, consent in (("blocked", {"email": False}), ("fine", {})):
            await bench.identify(user, email=f"{user}@example.com", phone="+15550007777")
            set_contact(bench, user, consent=consent)
            await bench.track(user, "Go")
            assert await bench.result("check_failed", user) == "completed"
    assert outcome(bench, "blocked") == {
        "promo": ("suppressed", "email"),
        "nudge": ("sent", "sms"),
    }
    assert outcome(bench, "fine") == {"promo": ("sent", "email")}
