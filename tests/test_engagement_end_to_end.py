"""Engagement end to end: a journey waits on what a recipient does, reported through the API.

Time-skipping Temporal server, real store, real router, real worker (console channel).
Provider webhooks are signed for real and posted to the HTTP API in-process; the
router's sweep then routes what they stored. The 2-day waits pass in milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from fakes.webhook_signers import (
    SENDGRID_PATH,
    TWILIO_INBOUND_PATH,
    TWILIO_STATUS_PATH,
    SendGridSigner,
    TwilioSigner,
    inbound_params,
    sendgrid_body,
    sendgrid_event,
    status_params,
)
from fakes.webhook_world import suppressions
from harness import Bench, save_histories, tiny_templates, write_journey

from orchestrator.api import create_app
from orchestrator.settings import Settings
from orchestrator.store.tables import Message

KEY = "e2e-write-key"
MESSAGES = ("promo", "thanks", "nudge", "news", "nps")


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path, request) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = Bench(
        ts_env, sqlite_engine, tmp_path / "journeys", tiny_templates(tmp_path / "t", MESSAGES)
    )
    yield bench
    await save_histories(bench, request.node.name)


class Providers:
    """SendGrid, Twilio and the storefront, all talking to our HTTP API in-process."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.sendgrid = SendGridSigner()
        self.twilio = TwilioSigner()
        settings = Settings(
            public_url=self.twilio.public_url,
            twilio_auth_token=self.twilio.auth_token,
            sendgrid_webhook_public_key=self.sendgrid.public_key,
        )
        app = create_app(bench.engine, [KEY], on_stored=bench.router.wake, settings=settings)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://journeys"
        )

    async def sendgrid_events(self, *events: dict[str, Any]) -> dict[str, Any]:
        body = sendgrid_body(*events)
        r = await self.http.post(SENDGRID_PATH, content=body, headers=self.sendgrid.headers(body))
        assert r.status_code == 200, r.text
        await self.route()
        return dict(r.json())

    async def twilio_post(self, path: str, params: dict[str, str]) -> httpx.Response:
        target, body, headers = self.twilio.request(path, params)
        r = await self.http.post(target, content=body, headers=headers)
        assert r.status_code == 200, r.text
        await self.route()
        return r

    async def track(self, user: str, event: str, **properties: Any) -> None:
        auth = base64.b64encode(f"{KEY}:".encode()).decode()
        r = await self.http.post(
            "/v1/track",
            headers={"Authorization": f"Basic {auth}"},
            json={"userId": user, "event": event, "properties": properties},
        )
        assert r.status_code == 200, r.text
        await self.route()

    async def route(self) -> None:
        """What the running router would do on the wake-up: route everything stored."""
        while await self.bench.router.sweep():
            pass


@pytest_asyncio.fixture
async def providers(bench: Bench) -> AsyncIterator[Providers]:
    providers = Providers(bench)
    async with providers.http:
        yield providers


def journey(bench: Bench, text: str) -> None:
    spec = textwrap.dedent(text)
    write_journey(bench.journeys_dir, spec.split("id:", 1)[1].split()[0], spec)
    bench.deploy()


async def sent(bench: Bench, user: str, step: str) -> Message:
    """The message of `step`, once the worker has sent it (real seconds, no time skipped)."""
    for _ in range(1200):
        for message in bench.messages(user):
            if message.step_id == step and message.status not in ("pending", "queued", "sending"):
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user}'s {step} was not sent within 60 s: {bench.messages(user)}")


def outcome(bench: Bench, user: str) -> dict[str, tuple[str, str]]:
    return {m.step_id: (m.status, m.channel) for m in bench.messages(user)}


async def test_an_email_open_reported_by_sendgrid_takes_the_then_branch(
    bench: Bench, providers: Providers
) -> None:
    journey(
        bench,
        """
        id: promo_followup
        name: Promo follow-up
        trigger: { event: Promo Started }
        steps:
          - send: { id: promo, channel: email, template: promo }
          - wait_for: { message: promo, engagement: opened, timeout: 2d }
            then:
              - send: { id: thanks, channel: email, template: thanks }
            on_timeout:
              - send: { id: nudge, channel: sms, template: nudge }
        """,
    )
    async with bench.worker():
        for user in ("reader", "ignorer"):
            await bench.identify(user, email=f"{user}@example.com", phone="+15550001000")
            await bench.track(user, "Promo Started")
        promo = await sent(bench, "reader", "promo")
        await sent(bench, "ignorer", "promo")
        stored = await providers.sendgrid_events(
            sendgrid_event("delivered", promo.id, email="reader@example.com"),
            sendgrid_event("open", promo.id, email="reader@example.com"),
        )
        assert stored["stored"] == 2
        for user in ("reader", "ignorer"):
            assert await bench.result("promo_followup", user) == "completed"
    assert outcome(bench, "reader") == {"promo": ("opened", "email"), "thanks": ("sent", "email")}
    assert outcome(bench, "ignorer") == {"promo": ("sent", "email"), "nudge": ("sent", "sms")}
    timeline = [e["status"] for e in bench.messages("reader")[0].timeline]
    assert timeline[-2:] == ["delivered", "opened"]


async def test_a_push_open_tracked_by_the_app_takes_the_then_branch(
    bench: Bench, providers: Providers
) -> None:
    journey(
        bench,
        """
        id: push_followup
        name: Push follow-up
        trigger: { event: Push Promo }
        steps:
          - send: { id: promo_push, channel: push, template: promo }
          - wait_for: { message: promo_push, engagement: opened, timeout: 2d }
            then:
              - send: { id: thanks, channel: email, template: thanks }
            on_timeout:
              - send: { id: nudge, channel: email, template: nudge }
        """,
    )
    async with bench.worker():
        for user in ("tapper", "idle"):
            await bench.identify(
                user, email=f"{user}@example.com", context={"device": {"token": user}}
            )
            await bench.track(user, "Push Promo")
        push = await sent(bench, "tapper", "promo_push")
        await providers.track("tapper", "Push Opened", message_id=push.id)
        for user in ("tapper", "idle"):
            assert await bench.result("push_followup", user) == "completed"
    assert outcome(bench, "tapper")["thanks"] == ("sent", "email")
    assert outcome(bench, "tapper")["promo_push"] == ("opened", "push")
    assert outcome(bench, "idle")["nudge"] == ("sent", "email")


async def test_an_sms_reply_through_twilio_answers_an_nps_question(
    bench: Bench, providers: Providers
) -> None:
    journey(
        bench,
        """
        id: nps_survey
        name: NPS survey
        trigger: { event: Order Delivered }
        steps:
          - send: { id: nps_ask, channel: sms, template: nps }
          - wait_for: { event: SMS Received, timeout: 3d }
            then:
              - send: { id: thanks, channel: email, template: thanks }
            on_timeout:
              - send: { id: nudge, channel: email, template: nudge }
        """,
    )
    async with bench.worker():
        await bench.identify("fan", email="fan@example.com", phone="+1 555 000 2000")
        await bench.identify("quiet", email="quiet@example.com", phone="+15550003000")
        for user in ("fan", "quiet"):
            await bench.track(user, "Order Delivered")
        ask = await sent(bench, "fan", "nps_ask")
        await sent(bench, "quiet", "nps_ask")
        assert ask.provider_message_id
        await providers.twilio_post(
            TWILIO_STATUS_PATH, status_params(ask.provider_message_id, "delivered")
        )
        reply = await providers.twilio_post(
            TWILIO_INBOUND_PATH, inbound_params("SMreply1", "+15550002000", "10, great service")
        )
        assert "<Response/>" in reply.text
        for user in ("fan", "quiet"):
            assert await bench.result("nps_survey", user) == "completed"
    assert outcome(bench, "fan") == {"nps_ask": ("replied", "sms"), "thanks": ("sent", "email")}
    assert outcome(bench, "quiet")["nudge"] == ("sent", "email")
    fan_ask = next(m for m in bench.messages("fan") if m.step_id == "nps_ask")
    assert [e["status"] for e in fan_ask.timeline][-2:] == ["delivered", "replied"]


async def test_after_a_bounce_or_a_spam_report_the_next_email_is_suppressed(
    bench: Bench, providers: Providers
) -> None:
    journey(
        bench,
        """
        id: first_promo
        name: First promo
        trigger: { event: Promo Started }
        steps:
          - send: { id: promo, channel: email, template: promo }
        """,
    )
    journey(
        bench,
        """
        id: newsletter
        name: Newsletter
        trigger: { event: Newsletter Due }
        steps:
          - send: { id: news, channel: email, template: news }
        """,
    )
    users = {"bouncer": "bounce", "complainer": "spamreport", "happy": "open"}
    async with bench.worker():
        for user in users:
            await bench.identify(user, email=f"{user.title()}@Example.com")
            await bench.track(user, "Promo Started")
        for user, kind in users.items():
            promo = await sent(bench, user, "promo")
            await providers.sendgrid_events(
                sendgrid_event(kind, promo.id, email=f"{user}@example.com", type="bounce")
            )
            assert await bench.result("first_promo", user) == "completed"
        for user in users:
            await bench.track(user, "Newsletter Due")
            assert await bench.result("newsletter", user) == "completed"
    assert suppressions(bench.engine) == {
        ("email", "bouncer@example.com"): "bounced",
        ("email", "complainer@example.com"): "complained",
    }
    assert outcome(bench, "bouncer")["news"] == ("suppressed", "email")
    assert outcome(bench, "complainer")["news"] == ("suppressed", "email")
    assert outcome(bench, "happy")["news"] == ("sent", "email")
    assert outcome(bench, "bouncer")["promo"] == ("bounced", "email")


OWN_OPEN_JOURNEY = """
    id: promo_owner
    name: Promo, then thanks when opened
    trigger: { event: Promo Started }
    steps:
      - wait_for: { event: Go, timeout: 1d }
      - send: { id: promo, channel: email, template: promo }
      - wait_for: { message: promo, engagement: opened, timeout: 2d }
        then:
          - send: { id: thanks, channel: email, template: thanks }
        on_timeout:
          - send: { id: nudge, channel: email, template: nudge }
    """


async def test_opens_and_clicks_tracked_by_another_contact_change_nothing(
    bench: Bench, providers: Providers
) -> None:
    """A storefront's write key is public: anyone can send `Email Opened` with a message id
    they saw. It counts only for the message's own contact, also sent under an id it had
    before signing in (its run, `journey:promo_owner:anon-visit-1`, is signalled)."""
    journey(bench, OWN_OPEN_JOURNEY)
    async with bench.worker():
        await bench.identify("victim", email="victim@example.com")
        await bench.identify("intruder", email="intruder@example.com")
        await bench.track("victim", "Promo Started")
        await bench.track("victim", "Go")
        # A visitor starts the journey before signing in, then signs in as "member".
        await bench.track_anonymous("anon-visit-1", "Promo Started")
        await bench.identify("member", anonymousId="anon-visit-1", email="member@example.com")
        await bench.track("member", "Go")
        victims = await sent(bench, "victim", "promo")
        members = await sent(bench, "member", "promo")
        for event in ("Email Opened", "Email Link Clicked"):
            await providers.track("intruder", event, message_id=victims.id)
        # The member's open, from a device that still sends the id from before sign-in.
        await providers.track("anon-visit-1", "Email Opened", message_id=members.id)
        assert await bench.result("promo_owner", "victim") == "completed"
        assert await bench.result("promo_owner", "anon-visit-1") == "completed"
    assert outcome(bench, "victim") == {"promo": ("sent", "email"), "nudge": ("sent", "email")}
    [promo] = [m for m in bench.messages("victim") if m.step_id == "promo"]
    assert [e["status"] for e in promo.timeline if e.get("event_id")] == []
    assert outcome(bench, "member") == {
        "promo": ("opened", "email"),
        "thanks": ("sent", "email"),
    }
    assert bench.router.engagement_ignored == 2


async def test_an_erased_contacts_message_takes_no_engagement(
    bench: Bench, providers: Providers
) -> None:
    from orchestrator.services.privacy import erase_contact

    journey(bench, OWN_OPEN_JOURNEY)
    async with bench.worker():
        await bench.identify("gone", email="gone@example.com")
        await bench.track("gone", "Promo Started")
        await bench.track("gone", "Go")
        promo = await sent(bench, "gone", "promo")
        await erase_contact(bench.engine, bench.client, "gone")
        # Someone sends the message id again, under the old id or another one.
        await providers.track("gone", "Email Opened", message_id=promo.id)
        await providers.track("someone", "Email Link Clicked", message_id=promo.id)
    [kept] = [m for m in bench.messages() if m.id == promo.id]
    assert kept.status == "sent"
    assert [e["status"] for e in kept.timeline if e.get("event_id")] == []
