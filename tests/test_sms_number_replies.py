"""An SMS reply that is just a number ("9", " 10 ", "9.") arrives as `properties.number`,
so an NPS journey can read the score with `where: "event.properties.number >= 9"`.

Replies go through the real, signed Twilio inbound webhook (as in
tests/test_webhooks_twilio.py), on SQLite and PostgreSQL (`engine`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fakes.webhook_signers import TWILIO_INBOUND_PATH, TwilioSigner, inbound_params
from fakes.webhook_world import add_contact, events
from sqlalchemy import Engine

from orchestrator.api import create_app
from orchestrator.dsl.conditions import evaluate
from orchestrator.settings import Settings

PHONE = "+15550002222"
PROMOTER = "event.properties.number >= 9"


@pytest_asyncio.fixture
async def reply(engine: Engine) -> AsyncIterator:  # type: ignore[type-arg]
    """Sends `body` from the contact's phone as Twilio would; returns the stored event."""
    signer = TwilioSigner()
    settings = Settings(twilio_auth_token=signer.auth_token, public_url=signer.public_url)
    app = create_app(engine, ["key"], settings=settings)
    add_contact(engine, "nia", phone=PHONE)
    sent = iter(range(1, 1000))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=signer.public_url
    ) as http:

        async def send(body: str) -> dict:  # type: ignore[type-arg]
            sid = f"SMn{next(sent)}"
            target, content, headers = signer.request(
                TWILIO_INBOUND_PATH, inbound_params(sid, PHONE, body)
            )
            answer = await http.post(target, content=content, headers=headers)
            assert answer.status_code == 200, answer.text
            (event,) = [e for e in events(engine) if e.message_id == f"twilio:{sid}"]
            assert (event.name, event.contact_id) == ("SMS Received", "nia")
            return dict(event.properties)

        yield send


@pytest.mark.parametrize(
    ("body", "number"),
    [("9", 9), (" 10 ", 10), ("9.", 9), ("0", 0), ("\n7\n", 7), ("٩", 9), ("08", 8)],
)
async def test_a_bare_number_is_stored_as_an_integer(reply, body: str, number: int) -> None:  # type: ignore[no-untyped-def]
    properties = await reply(body)
    assert properties["body"] == body  # what they wrote, unchanged
    assert properties["number"] == number and type(properties["number"]) is int
    assert evaluate(PROMOTER, {"event": {"properties": properties}}) is (number >= 9)


@pytest.mark.parametrize(
    "body", ["9/10", "9 - great shop", "nine", "-1", "7.5", "10!", "", "1234567890", "9.."]
)
async def test_anything_else_has_no_number(reply, body: str) -> None:  # type: ignore[no-untyped-def]
    properties = await reply(body)
    assert "number" not in properties
    assert evaluate(PROMOTER, {"event": {"properties": properties}}) is False
