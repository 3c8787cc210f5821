"""Unsubscribe and preferences as a recipient meets them: links from a real message,
over HTTP, without login; RFC 8058 one-click, a GET that never unsubscribes, forged
links that learn nothing, and an opt-out that stops a send already on its way."""

from __future__ import annotations

import asyncio
import re
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from harness import Bench, tiny_templates, write_journey
from sqlalchemy import Engine
from sqlmodel import select

from channels.console import ConsoleChannel
from orchestrator.api import create_app
from orchestrator.processes.worker import build_worker
from orchestrator.services.links import MessageLinks
from orchestrator.services.policy import consent_refusal
from orchestrator.settings import Settings
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, Message

PUBLIC_URL = "https://crm.shop.example"
LINKS = MessageLinks(PUBLIC_URL, "unsubscribe-test-secret")
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


def add_message(
    engine: Engine, contact_id: str, channel: str = "email", consent: dict[str, Any] | None = None
) -> str:
    """A contact and a marketing message sent to them, as the send pipeline leaves it."""
    message_id = str(uuid.uuid4())
    with session_scope(engine) as session:
        if session.get(Contact, contact_id) is None:
            session.add(
                Contact(
                    id=contact_id,
                    email=f"{contact_id}@example.com",
                    phone="+15550100000",
                    consent=consent or {},
                )
            )
        session.add(
            Message(
                id=message_id,
                idempotency_key=f"journey:promo:{contact_id}:offer:{message_id}",
                workflow_id=f"journey:promo:{contact_id}",
                entry_seq=1,
                step_id="offer",
                journey_id="promo",
                contact_id=contact_id,
                channel=channel,
                adapter="console",
                template="promo",
                category="marketing",
                recipient=f"{contact_id}@example.com",
                content={"subject": "Sale", "text": "Everything half price"},
                status="sent",
                timeline=[{"status": "sent", "at": "2026-06-01T10:00:00+00:00"}],
            )
        )
    return message_id


def consent_of(engine: Engine, contact_id: str) -> dict[str, Any]:
    with session_scope(engine) as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        return dict(contact.consent or {})


def timeline_of(engine: Engine, message_id: str) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return list(message.timeline)


def url(message_id: str, kind: str, links: MessageLinks = LINKS) -> str:
    return links.for_message(message_id)[f"{kind}_url"]


def ticked(page: str) -> dict[str, bool]:
    """{checkbox name: ticked} of a preference page."""
    boxes = re.findall(
        r'<input type="checkbox" id="(\w+)" name="\w+" value="yes"( checked)?>', page
    )
    return {name: bool(on) for name, on in boxes}


def api(
    engine: Engine, settings: Settings | None = None, links: MessageLinks = LINKS
) -> httpx.AsyncClient:
    app = create_app(engine, ["write-key"], links=links, settings=settings or Settings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=links.public_url)


@pytest_asyncio.fixture
async def http(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with api(engine) as client:
        yield client


async def test_one_click_post_opts_out_of_marketing_on_that_channel_only_and_is_idempotent(
    engine: Engine, http: httpx.AsyncClient
) -> None:
    message_id = add_message(engine, "ann")
    for _ in range(2):  # mailbox providers retry; every answer is a 200
        answer = await http.post(
            url(message_id, "unsubscribe"), content="List-Unsubscribe=One-Click", headers=ONE_CLICK
        )
        assert answer.status_code == 200
        assert "You are unsubscribed" in answer.text
    consent = consent_of(engine, "ann")
    assert consent == {"email": {"marketing": False}}
    assert consent_refusal(consent, "email", "marketing", False) is not None
    assert consent_refusal(consent, "email", "transactional", False) is None  # receipts still go
    assert consent_refusal(consent, "sms", "marketing", False) is None  # other channels untouched
    unsubscribes = [e for e in timeline_of(engine, message_id) if e.get("check") == "unsubscribe"]
    assert len(unsubscribes) == 1  # the message that made her leave, recorded once


async def test_a_get_only_asks_and_the_button_unsubscribes_then_links_to_preferences(
    engine: Engine, http: httpx.AsyncClient
) -> None:
    message_id = add_message(engine, "bob", channel="sms")
    for _ in range(3):  # a mail scanner prefetching the link changes nothing
        page = await http.get(url(message_id, "unsubscribe"))
        assert page.status_code == 200
        assert consent_of(engine, "bob") == {}
    assert '<form method="post">' in page.text
    assert "Unsubscribe from marketing text messages" in page.text
    assert "<script" not in page.text and "src=" not in page.text
    headers = page.headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]
    assert (headers["x-robots-tag"], headers["cache-control"]) == ("noindex", "private, no-store")
    assert headers["referrer-policy"] == "no-referrer"

    done = await http.post(url(message_id, "unsubscribe"))  # the form's empty POST
    assert done.status_code == 200
    assert "You will no longer get marketing text messages" in done.text
    assert f'href="{url(message_id, "preferences")}"' in done.text
    assert consent_of(engine, "bob") == {"sms": {"marketing": False}}
    again = await http.get(url(message_id, "unsubscribe"))
    assert "You are not subscribed" in again.text and "<form" not in again.text


async def test_forged_or_unknown_links_get_the_same_404_and_change_nothing(
    engine: Engine, http: httpx.AsyncClient
) -> None:
    message_id = add_message(engine, "cat")
    gone_contact = add_message(engine, "gone")
    with session_scope(engine) as session:  # a message whose contact was erased
        session.delete(session.get(Contact, "gone"))
    tokens = [
        MessageLinks(PUBLIC_URL, "a-guessed-secret").token(message_id),  # forged signature
        LINKS.token(str(uuid.uuid4())),  # signed by us, but no such message
        LINKS.token(gone_contact),
        "not-a-token",
        "bad.base64!",
    ]
    before = (consent_of(engine, "cat"), timeline_of(engine, message_id))
    bodies = set()
    for token in tokens:
        for path in (f"/u/{token}", f"/preferences/{token}"):
            for method in ("GET", "POST"):
                answer = await http.request(
                    method, path, content="List-Unsubscribe=One-Click", headers=ONE_CLICK
                )
                assert answer.status_code == 404, (method, path)
                bodies.add(answer.text)
    assert len(bodies) == 1  # which part was wrong is not told
    assert "cat" not in bodies.pop()
    assert (consent_of(engine, "cat"), timeline_of(engine, message_id)) == before


async def test_preferences_show_the_current_choices_and_save_them(
    engine: Engine, http: httpx.AsyncClient
) -> None:
    message_id = add_message(engine, "dan", consent={"sms": {"marketing": False}})
    page = await http.get(url(message_id, "preferences"))
    assert page.status_code == 200
    assert ticked(page.text) == {
        "email_marketing": True,
        "email_transactional": True,
        "sms_marketing": False,
        "sms_transactional": True,
        "push_marketing": True,
        "push_transactional": True,
    }
    for name in ticked(page.text):  # every box has a label a screen reader reads out
        assert f'<label for="{name}">' in page.text
    assert "<script" not in page.text and "src=" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-robots-tag"] == "noindex"

    form = {
        "form": "preferences",
        "email_transactional": "yes",
        "sms_marketing": "yes",
        "sms_transactional": "yes",
        "push_transactional": "yes",
    }
    saved = await http.post(url(message_id, "preferences"), data=form)
    assert saved.status_code == 200 and "Your preferences are saved." in saved.text
    expected = {
        "email_marketing": False,
        "email_transactional": True,
        "sms_marketing": True,
        "sms_transactional": True,
        "push_marketing": False,
        "push_transactional": True,
    }
    assert ticked(saved.text) == expected
    assert ticked((await http.get(url(message_id, "preferences"))).text) == expected
    consent = consent_of(engine, "dan")
    assert consent == {
        "email": {"marketing": False},
        "sms": {"marketing": True},
        "push": {"marketing": False},
    }

    # No service messages on a channel means nothing at all on it, marketing included.
    form = {"form": "preferences", "email_transactional": "yes", "sms_marketing": "yes"}
    saved = await http.post(url(message_id, "preferences"), data=form)
    assert ticked(saved.text)["sms_marketing"] is False
    consent = consent_of(engine, "dan")
    assert consent["sms"] == {"marketing": False, "transactional": False}
    assert consent_refusal(consent, "sms", "transactional", False) == "contact opted out of sms"

    # A POST that is not the form (no marker) must not read as "untick everything".
    refused = await http.post(url(message_id, "preferences"), content=b"")
    assert refused.status_code == 400 and "Nothing was saved" in refused.text
    assert consent_of(engine, "dan") == consent


async def test_with_explicit_consent_no_box_is_ticked_for_marketing_until_the_person_does(
    engine: Engine,
) -> None:
    message_id = add_message(engine, "eve")
    async with api(engine, Settings(marketing_consent="explicit")) as http:
        page = await http.get(url(message_id, "preferences"))
        assert ticked(page.text)["email_marketing"] is False  # no pre-ticked consent
        form = {"form": "preferences", "email_marketing": "yes"}
        form |= {f"{c}_transactional": "yes" for c in ("email", "sms", "push")}
        await http.post(url(message_id, "preferences"), data=form)
    consent = consent_of(engine, "eve")
    assert consent == {"email": {"marketing": True}}  # only what she changed is written
    assert consent_refusal(consent, "email", "marketing", True) is None


# --- an opt-out between prepare and delivery -------------------------------------------


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = Bench(
        ts_env,
        sqlite_engine,
        tmp_path / "journeys",
        tiny_templates(tmp_path / "templates", ("promo",)),
    )
    write_journey(
        bench.journeys_dir,
        "browse",
        textwrap.dedent(
            """\
            id: browse
            name: Browse abandonment
            trigger: { event: Product Viewed }
            steps:
              - send: { id: offer, channel: email, template: promo }
            """
        ),
    )
    bench.deploy()
    yield bench


async def queued_message(bench: Bench, user: str) -> Message:
    """The user's message once prepare has passed it (rendered, waiting for delivery)."""
    for _ in range(600):
        with session_scope(bench.engine) as session:
            found = session.exec(select(Message).where(Message.contact_id == user)).first()
            if found is not None and found.status == "queued":
                session.expunge(found)
                return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no queued message for {user}")


async def test_an_unsubscribe_after_prepare_stops_the_delivery(bench: Bench) -> None:
    console = ConsoleChannel(stream=bench.console)
    adapters = {"email": console, "push": console, "sms": console}
    journeys_only = bench.settings.model_copy(update={"worker_queues": ["main"]})
    email_only = bench.settings.model_copy(update={"worker_queues": ["email"]})
    async with build_worker(bench.client, bench.engine, journeys_only, adapters):
        for user in ("leaver", "stayer"):
            await bench.identify(user, email=f"{user}@example.com")
            await bench.track(user, "Product Viewed")
        leaving = await queued_message(bench, "leaver")
        await queued_message(bench, "stayer")
        # No email worker yet: both messages wait in the email queue, rendered.
        links = MessageLinks.from_settings(bench.settings)
        async with api(bench.engine, bench.settings, links) as http:
            answer = await http.post(
                url(leaving.id, "unsubscribe", links),
                content="List-Unsubscribe=One-Click",
                headers=ONE_CLICK,
            )
            assert answer.status_code == 200
        async with build_worker(bench.client, bench.engine, email_only, adapters):
            for user in ("leaver", "stayer"):
                assert await bench.result("browse", user) == "completed"
    [left], [stayed] = bench.messages("leaver"), bench.messages("stayer")
    assert (left.status, left.error) == ("suppressed", "contact opted out of marketing email")
    assert stayed.status == "sent"  # the control: the same path delivers without the opt-out
    printed = bench.console.getvalue()
    assert "promo for stayer" in printed and "promo for leaver" not in printed
