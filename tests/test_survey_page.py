"""Survey answers as a recipient gives them: a score link from the NPS email opens a
confirm page, its button stores `Survey Answered` once (the first answer counts), and a
mail scanner that opens all eleven links stores nothing.

Pages are reached over HTTP (FastAPI app in-process, as in tests/test_unsubscribe.py) on
SQLite and PostgreSQL; the last test follows a real journey from the sent email to the
run that was waiting for the answer.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
import uuid
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from harness import Bench, write_journey
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.services.links import MessageLinks
from orchestrator.settings import Settings
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, Event, Message

PUBLIC_URL = "https://crm.shop.example"
LINKS = MessageLinks(PUBLIC_URL, "survey-test-secret")
FORM = {"content-type": "application/x-www-form-urlencoded"}


def add_message(engine: Engine, contact_id: str, template: str = "nps_survey") -> str:
    """A contact and the NPS email sent to them (or another message), as the send pipeline
    leaves it: the rendered content carries the links its template used."""
    message_id = str(uuid.uuid4())
    links = LINKS.for_message(message_id)
    if template == "nps_survey":
        scores = " ".join(f'<a href="{links["survey_url"]}?score={n}">{n}</a>' for n in range(11))
        content = {"subject": "How did we do?", "html": f"<p>Rate us: {scores}</p>"}
    else:  # an order thank-you: the message's other links, no question
        content = {"subject": "Thank you", "html": f'<a href="{links["view_url"]}">View</a>'}
    with session_scope(engine) as session:
        session.add(Contact(id=contact_id, email=f"{contact_id}@example.com"))
        session.add(
            Message(
                id=message_id,
                idempotency_key=f"journey:nps:{contact_id}:survey:{message_id}",
                workflow_id=f"journey:nps:{contact_id}",
                entry_seq=1,
                step_id="survey",
                journey_id="nps",
                contact_id=contact_id,
                channel="email",
                adapter="console",
                template=template,
                recipient=f"{contact_id}@example.com",
                content=content,
                status="sent",
            )
        )
    return message_id


def answers(engine: Engine) -> list[Event]:
    with session_scope(engine) as session:
        rows = list(session.exec(select(Event).where(Event.name == "Survey Answered")))
        for row in rows:
            session.expunge(row)
        return rows


def survey_url(message_id: str, links: MessageLinks = LINKS) -> str:
    return links.for_message(message_id)["survey_url"]


class Recipient:
    """A person with a browser (and their mail scanner) reaching our API."""

    def __init__(self, engine: Engine) -> None:
        self.woken: list[int] = []
        app = create_app(
            engine,
            ["key"],
            links=LINKS,
            settings=Settings(),
            on_stored=lambda: self.woken.append(1),
        )
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)

    async def open(self, message_id: str, score: Any) -> httpx.Response:
        return await self.http.get(f"{survey_url(message_id)}?score={score}")

    async def submit(self, message_id: str, score: Any) -> httpx.Response:
        """The confirm page's button: a form POST to the link it was opened from."""
        url = f"{survey_url(message_id)}?score={score}"
        return await self.http.post(url, content=f"score={score}", headers=FORM)


@pytest_asyncio.fixture
async def person(engine: Engine) -> AsyncIterator[Recipient]:
    recipient = Recipient(engine)
    async with recipient.http:
        yield recipient


async def test_opening_score_links_stores_nothing_and_asks_to_confirm(
    engine: Engine, person: Recipient
) -> None:
    message_id = add_message(engine, "ann")
    for score in range(11):  # a mail scanner follows every link in the email
        page = await person.open(message_id, score)
        assert page.status_code == 200
        assert f"Submit score {score}</button>" in page.text
    assert answers(engine) == [] and person.woken == []
    # The one button posts the score back to this page; no scripts, not framed, not indexed.
    assert '<form method="post"><input type="hidden" name="score" value="10">' in page.text
    assert "<script" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-robots-tag"] == "noindex"


async def test_the_button_stores_the_answer_once_and_the_first_answer_counts(
    engine: Engine, person: Recipient
) -> None:
    message_id = add_message(engine, "ann")
    done = await person.submit(message_id, 9)
    assert done.status_code == 200
    assert "Thank you!" in done.text and "9 out of 10" in done.text
    [answer] = answers(engine)
    assert answer.contact_id == "ann" and answer.type == "track"
    assert answer.properties == {
        "score": 9,
        "message_id": message_id,
        "template": "nps_survey",
        "channel": "email",
        "journey_id": "nps",
    }
    assert answer.routed_at is None  # the router delivers it to journeys like any event
    assert person.woken == [1]

    # Changing their mind, or clicking again, stores nothing new: the 9 stands.
    again = await person.submit(message_id, 3)
    assert again.status_code == 200
    assert "You already answered, thank you" in again.text and "9 out of 10" in again.text
    later = await person.open(message_id, 3)
    assert "You already answered" in later.text and "<form" not in later.text
    assert [a.properties["score"] for a in answers(engine)] == [9] and person.woken == [1]


async def test_two_clicks_at_once_store_one_answer(engine: Engine, person: Recipient) -> None:
    message_id = add_message(engine, "bo")
    pages = await asyncio.gather(*(person.submit(message_id, s) for s in (10, 10, 10, 10)))
    assert all(p.status_code == 200 for p in pages)
    assert len(answers(engine)) == 1


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("?score=11", "“11” is not a score"),
        ("?score=-1", "“-1” is not a score"),
        ("?score=7.5", "“7.5” is not a score"),
        ("?score=great", "“great” is not a score"),
        ("?score=", "This link has no score"),
        ("", "This link has no score"),
    ],
)
async def test_a_link_without_a_valid_score_is_a_400_page_that_offers_the_scores(
    engine: Engine, person: Recipient, query: str, says: str
) -> None:
    message_id = add_message(engine, "cy")
    for method in ("GET", "POST"):
        page = await person.http.request(method, survey_url(message_id) + query)
        assert page.status_code == 400, (method, query)
        assert says in unescape(page.text)
        assert "whole number from 0 to 10" in page.text or "no score" in page.text
        # What to do instead: every score is a button right there.
        assert all(f'name="score" value="{n}">{n}</button>' in page.text for n in range(11))
    assert answers(engine) == []
    # One of those buttons works.
    chosen = await person.http.post(survey_url(message_id) + query, content="score=0", headers=FORM)
    assert chosen.status_code == 200 and "0 out of 10" in chosen.text


async def test_forged_or_unknown_links_are_404_and_store_nothing(
    engine: Engine, person: Recipient
) -> None:
    message_id = add_message(engine, "dee")
    erased = add_message(engine, "gone")
    with session_scope(engine) as session:
        session.delete(session.get(Contact, "gone"))
    tokens = [
        MessageLinks(PUBLIC_URL, "guessed").token(message_id),
        LINKS.token(str(uuid.uuid4())),
        LINKS.token(erased),
        "not-a-token",
    ]
    for token in tokens:
        for method in ("GET", "POST"):
            page = await person.http.request(
                method, f"/s/{token}?score=9", content="score=9", headers=FORM
            )
            assert page.status_code == 404, (method, token)
    assert answers(engine) == []


async def test_a_client_messageid_like_our_answer_key_does_not_block_the_answer(
    engine: Engine, person: Recipient
) -> None:
    """A track whose messageId is `survey:<message id>` (the key an answer is stored under)
    is the client's event in the client's namespace: the real answer still gets in. A
    client cannot send `Survey Answered` itself: journeys would believe its score."""
    message_id = add_message(engine, "eve")
    forged = {
        "userId": "mallory",
        "event": "Survey Answered",
        "messageId": f"survey:{message_id}",
        "properties": {"score": "ten", "message_id": message_id},
    }
    refused = await person.http.post("/v1/track", auth=("key", ""), json=forged)
    assert (refused.status_code, refused.json()["field"]) == (400, "event")
    for _ in range(2):  # a client's retry is still one event
        stored = await person.http.post(
            "/v1/track", auth=("key", ""), json={**forged, "event": "Product Reviewed"}
        )
        assert stored.status_code == 200
    page = await person.open(message_id, 9)
    assert page.status_code == 200 and "Submit score 9</button>" in page.text
    done = await person.submit(message_id, 9)
    assert done.status_code == 200 and "Thank you!" in done.text
    assert sorted((a.contact_id, a.properties["score"]) for a in answers(engine)) == [("eve", 9)]
    with session_scope(engine) as session:
        [mallorys] = session.exec(select(Event).where(Event.contact_id == "mallory"))
    assert (mallorys.name, mallorys.message_id) == ("Product Reviewed", f"survey:{message_id}")


async def test_a_message_that_asks_no_question_takes_no_answer(
    engine: Engine, person: Recipient
) -> None:
    """Every message's links carry the same signed token: an order thank-you's token put in
    a survey link must not record a score for it."""
    thanks = add_message(engine, "fay", template="order_thank_you")
    for method in ("GET", "POST"):
        page = await person.http.request(
            method, f"{survey_url(thanks)}?score=0", content="score=0", headers=FORM
        )
        assert page.status_code == 404, (method, page.text)
        assert "This message asks no question" in page.text
    assert answers(engine) == [] and person.woken == []
    survey = add_message(engine, "gus")  # the control: a survey on the same page works
    assert (await person.submit(survey, 8)).status_code == 200
    assert [a.properties["score"] for a in answers(engine)] == [8]


# --- from the sent email to the waiting journey -------------------------------------------

JOURNEY = """\
id: nps_page
name: NPS by email
trigger: {event: Order Delivered}
steps:
  - send: {id: survey, channel: email, template: nps_survey}
  - wait_for: {event: Survey Answered, where: "event.properties.score >= 9", timeout: 5d}
    then:
      - exit: promoter
    on_timeout:
      - exit: no answer
"""


async def test_a_score_clicked_in_the_sent_email_reaches_the_waiting_journey(
    ts_env, sqlite_engine: Engine, tmp_path: Path
) -> None:
    write_journey(tmp_path / "journeys", "nps_page", textwrap.dedent(JOURNEY))
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys")  # the repository's templates
    bench.deploy()
    links = MessageLinks(bench.settings.resolved_public_url, "bench-secret")
    app = create_app(bench.engine, ["key"], links=links, on_stored=bench.router.wake)
    async with (
        bench.worker(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=links.public_url
        ) as http,
    ):
        await bench.identify("fan", email="fan@example.com", first_name="Fay")
        await bench.track("fan", "Order Delivered", order_id="o1")
        email = await _sent(bench, "fan")
        html = unescape(email.content["html"])
        nine = f"{links.for_message(email.id)['survey_url']}?score=9"
        assert f'href="{nine}"' in html and f"9: {nine}" in email.content["text"]

        confirm = await http.get(nine)
        form = re.search(r'<input type="hidden" name="score" value="(\d+)">', confirm.text)
        assert form is not None
        done = await http.post(nine, content=f"score={form.group(1)}", headers=FORM)
        assert "Thank you!" in done.text
        while await bench.router.sweep():
            pass
        assert await bench.result("nps_page", "fan") == "exited"
    [run] = bench.runs("fan")
    assert run.exit_reason == "promoter"


async def _sent(bench: Bench, user: str) -> Message:
    for _ in range(1200):
        for message in bench.messages(user):
            if message.status not in ("pending", "queued", "sending"):
                assert message.status == "sent", message.error
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user}'s survey was not sent within 60 s")
