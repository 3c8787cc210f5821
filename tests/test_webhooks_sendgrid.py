"""POST /webhooks/sendgrid: SendGrid's signed Event Webhook, signed for real.

A P-256 key pair is made per test and requests are signed over `timestamp + raw
body` exactly as SendGrid signs them; the endpoint verifies with the SendGrid SDK's
helper. Runs on SQLite and PostgreSQL (`engine`), except the forgery property test.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fakes.webhook_signers import (
    SENDGRID_PATH,
    SendGridSigner,
    SyncPost,
    sendgrid_body,
    sendgrid_event,
)
from fakes.webhook_world import (
    add_contact,
    add_message,
    consent,
    events,
    row_counts,
    suppressions,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from orchestrator.api import create_app
from orchestrator.services.privacy import erase_rows, plan_erasure
from orchestrator.settings import Settings

KEY = "test-write-key"
FORGERY_EXAMPLES = int(os.environ.get("JOURNEYS_FORGERY_EXAMPLES", "200"))


class Api:
    """The API in-process, with SendGrid's key configured, counting router wake-ups."""

    def __init__(self, engine: Engine, signer: SendGridSigner, **overrides: Any) -> None:
        self.signer = signer
        self.woken = 0
        values = {"sendgrid_webhook_public_key": signer.public_key, **overrides}
        self.app = create_app(engine, [KEY], on_stored=self._wake, settings=Settings(**values))

    def _wake(self) -> None:
        self.woken += 1


@pytest.fixture
def signer() -> SendGridSigner:
    return SendGridSigner()


@pytest_asyncio.fixture
async def client(engine: Engine, signer: SendGridSigner) -> AsyncIterator[httpx.AsyncClient]:
    api = Api(engine, signer)
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        http.api = api  # type: ignore[attr-defined]
        yield http


@pytest.fixture
def ann(engine: Engine) -> str:
    """Ann, who was sent one marketing email through SendGrid; returns its message id."""
    add_contact(engine, "ann", email="Ann@Example.com")
    return add_message(engine, "ann", "email", "Ann@Example.com")


async def post(client: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
    signed = client.api.signer.headers(body)  # type: ignore[attr-defined]
    return await client.post(SENDGRID_PATH, content=body, headers={**signed, **headers})


# --- events ------------------------------------------------------------------------------


async def test_engagement_events_are_stored_for_our_messages_and_replays_once(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    body = sendgrid_body(
        sendgrid_event("processed", ann),
        sendgrid_event("delivered", ann),
        sendgrid_event("open", ann, useragent="Mozilla/5.0", ip="203.0.113.9"),
        sendgrid_event("click", ann, url="https://shop.example.com/cart?utm_source=email"),
        sendgrid_event("open", "not-one-of-ours"),  # another system on the same account
        sendgrid_event("open", None),  # sent without our custom_args
    )
    r = await post(client, body)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 3, "duplicates": 0, "ignored": 3}
    stored = events(engine)
    assert [(e.type, e.name, e.contact_id) for e in stored] == [
        ("track", "Email Delivered", "ann"),
        ("track", "Email Opened", "ann"),
        ("track", "Email Link Clicked", "ann"),
    ]
    sent = json.loads(body)
    assert [e.message_id for e in stored] == [f"sendgrid:{e['sg_event_id']}" for e in sent[1:4]]
    assert {e.properties["message_id"] for e in stored} == {ann}
    assert stored[2].properties["link_url"] == "https://shop.example.com/cart?utm_source=email"
    # No personal data copied from the event: no address, IP or user agent.
    assert "ann@example.com" not in json.dumps([e.properties for e in stored]).lower()
    assert "203.0.113.9" not in json.dumps([e.properties for e in stored])
    assert client.api.woken == 1  # type: ignore[attr-defined]

    # SendGrid retries (same body, new timestamp) and an attacker's exact replay: no new rows.
    again = await post(client, body)
    assert again.json() == {"success": True, "stored": 0, "duplicates": 3, "ignored": 3}
    replay_headers = client.api.signer.headers(body)  # type: ignore[attr-defined]
    for _ in range(2):
        replay = await client.post(SENDGRID_PATH, content=body, headers=replay_headers)
        assert replay.status_code == 200 and replay.json()["stored"] == 0
    assert len(events(engine)) == 3
    assert client.api.woken == 1  # type: ignore[attr-defined]


async def test_one_event_twice_in_a_batch_is_stored_once(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    event = sendgrid_event("open", ann)
    r = await post(client, sendgrid_body(event, event))
    assert r.json() == {"success": True, "stored": 1, "duplicates": 1, "ignored": 0}


async def test_a_thousand_event_batch_is_one_transaction_and_replays_as_duplicates(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    add_contact(engine, "many", email="many@example.com")
    ids = [add_message(engine, "many", "email", "many@example.com") for _ in range(250)]
    batch = [
        sendgrid_event(kind, message_id)
        for message_id in ids
        for kind in ("processed", "delivered", "open", "click")
    ]
    body = sendgrid_body(*batch)
    r = await post(client, body)
    assert r.json() == {"success": True, "stored": 750, "duplicates": 0, "ignored": 250}
    r = await post(client, body)
    assert r.json() == {"success": True, "stored": 0, "duplicates": 750, "ignored": 250}
    assert len(events(engine)) == 750


async def test_bounce_suppresses_the_address_without_copying_it(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    bounce = sendgrid_event(
        "bounce",
        ann,
        type="bounce",
        status="5.1.1",
        reason="550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown",
    )
    r = await post(client, sendgrid_body(bounce))
    assert r.json()["stored"] == 1
    (event,) = events(engine)
    assert event.name == "Email Bounced"
    assert event.properties["reason"] == (
        "550 5.1.1 <<recipient>>: Recipient address rejected: User unknown"
    )
    assert event.properties["bounce_type"] == "bounce" and event.properties["status"] == "5.1.1"
    assert suppressions(engine) == {("email", "ann@example.com"): "bounced"}
    assert consent(engine, "ann") == {}  # a dead mailbox is not an opt-out


async def test_reports_about_an_erased_contacts_message_are_ignored(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    erase_rows(engine, plan_erasure(engine, "ann"))
    late = [sendgrid_event("open", ann), sendgrid_event("click", ann, url="https://shop.example")]
    r = await post(client, sendgrid_body(*late))
    assert r.json() == {"success": True, "stored": 0, "duplicates": 0, "ignored": 2}
    assert events(engine) == []


async def test_spam_report_suppresses_and_opts_out_of_marketing_email(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    r = await post(client, sendgrid_body(sendgrid_event("spamreport", ann)))
    assert r.json()["stored"] == 1
    assert [e.name for e in events(engine)] == ["Email Marked as Spam"]
    assert suppressions(engine) == {("email", "ann@example.com"): "complained"}
    assert consent(engine, "ann") == {"email": {"marketing": False}}


async def test_unsubscribe_stops_marketing_email_only(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    r = await post(client, sendgrid_body(sendgrid_event("unsubscribe", ann)))
    assert r.json()["stored"] == 1
    assert [e.name for e in events(engine)] == ["Unsubscribed"]
    assert consent(engine, "ann") == {"email": {"marketing": False}}
    assert suppressions(engine) == {}  # receipts still reach Ann


async def test_blocked_dropped_and_group_events_are_recorded_without_side_effects(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    body = sendgrid_body(
        sendgrid_event("bounce", ann, type="blocked", reason="550 blocked by ann@example.com"),
        sendgrid_event("dropped", ann, reason="Bounced Address"),
        sendgrid_event("group_unsubscribe", ann, asm_group_id=42),
        sendgrid_event("group_resubscribe", ann, asm_group_id=42),
        sendgrid_event("deferred", ann, response="400 try again later", attempt="1"),
        sendgrid_event("brand_new_kind", ann),
    )
    r = await post(client, body)
    assert r.json() == {"success": True, "stored": 4, "duplicates": 0, "ignored": 2}
    stored = events(engine)
    assert [e.name for e in stored] == [
        "Email Blocked",
        "Email Dropped",
        "Email Group Unsubscribed",
        "Email Group Resubscribed",
    ]
    assert stored[0].properties["reason"] == "550 blocked by <recipient>"
    assert stored[2].properties["asm_group_id"] == 42
    assert suppressions(engine) == {} and consent(engine, "ann") == {}


async def test_events_for_an_sms_message_id_are_ignored(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    add_contact(engine, "bo", phone="+15550002222")
    sms = add_message(engine, "bo", "sms", "+15550002222", provider_message_id="SM1")
    r = await post(client, sendgrid_body(sendgrid_event("spamreport", sms)))
    assert r.json()["ignored"] == 1 and events(engine) == [] and suppressions(engine) == {}


async def test_text_no_database_can_store_is_never_a_500(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    body = (
        b'[{"event": "open", "msg_id": "%s", "sg_event_id": "nul\\u0000id"},'
        b' {"event": "bounce", "msg_id": "%s", "sg_event_id": "b1",'
        b' "reason": "550 \\ud800 gone \\u0000"}]'
    ) % (ann.encode(), ann.encode())
    r = await post(client, body)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 1, "duplicates": 0, "ignored": 1}
    (event,) = events(engine)
    assert event.properties["reason"] == "550 \ufffd gone \ufffd"


# --- verification --------------------------------------------------------------------------


async def test_stale_and_future_timestamps_are_refused(
    client: httpx.AsyncClient, engine: Engine, ann: str, signer: SendGridSigner
) -> None:
    body = sendgrid_body(sendgrid_event("spamreport", ann))
    now = int(time.time())
    # A minute clear of the 300 s window either way: a loaded machine answering late must
    # not bring a future stamp back inside it.
    for stamp in (now - 360, now + 360, now - 86_400):
        r = await client.post(SENDGRID_PATH, content=body, headers=signer.headers(body, str(stamp)))
        assert r.status_code == 403
        assert "stale" in r.json()["error"] and "JOURNEYS_WEBHOOK_MAX_AGE" in r.json()["error"]
    ok = await client.post(
        SENDGRID_PATH, content=body, headers=signer.headers(body, str(now - 200))
    )
    assert ok.status_code == 200
    assert len(events(engine)) == 1


async def test_the_freshness_window_is_configurable(
    engine: Engine, ann: str, signer: SendGridSigner
) -> None:
    api = Api(engine, signer, webhook_max_age=30)
    body = sendgrid_body(sendgrid_event("open", ann))
    stamp = str(int(time.time()) - 60)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://a"
    ) as c:
        r = await c.post(SENDGRID_PATH, content=body, headers=signer.headers(body, stamp))
    assert r.status_code == 403 and "30 s allowed" in r.json()["error"]


async def test_missing_or_wrong_signatures_store_nothing(
    client: httpx.AsyncClient, engine: Engine, ann: str, signer: SendGridSigner
) -> None:
    body = sendgrid_body(sendgrid_event("spamreport", ann))
    good = signer.headers(body)
    stamp = good["X-Twilio-Email-Event-Webhook-Timestamp"]
    cases = {
        "no signature": ({"X-Twilio-Email-Event-Webhook-Timestamp": stamp}, 401),
        "no timestamp": (
            {
                "X-Twilio-Email-Event-Webhook-Signature": good[
                    "X-Twilio-Email-Event-Webhook-Signature"
                ]
            },
            401,
        ),
        "timestamp not a number": ({**good, "X-Twilio-Email-Event-Webhook-Timestamp": "now"}, 401),
        "another account's key": (SendGridSigner().headers(body, stamp), 403),
        "not base64": ({**good, "X-Twilio-Email-Event-Webhook-Signature": "%%%"}, 403),
        "not DER": ({**good, "X-Twilio-Email-Event-Webhook-Signature": "AAAA"}, 403),
    }
    for name, (headers, status) in cases.items():
        r = await client.post(SENDGRID_PATH, content=body, headers=headers)
        assert r.status_code == status, name
        assert r.json()["success"] is False and r.json()["error"], name
    # The body signed, then changed by one character.
    tampered = body.replace(b"spamreport", b"spamreporT")
    r = await client.post(SENDGRID_PATH, content=tampered, headers=good)
    assert r.status_code == 403 and "does not verify" in r.json()["error"]
    assert row_counts(engine) == (0, 0)
    assert consent(engine, "ann") == {}


async def test_unconfigured_or_broken_key_answers_503_naming_the_setting(
    engine: Engine, ann: str, signer: SendGridSigner
) -> None:
    body = sendgrid_body(sendgrid_event("open", ann))
    for key, expected in (
        (None, "set JOURNEYS_SENDGRID_WEBHOOK_PUBLIC_KEY"),
        ("bm90IGEga2V5", "is not a base64 DER public key"),
    ):
        api = Api(engine, signer, sendgrid_webhook_public_key=key)
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as c:
            r = await c.post(SENDGRID_PATH, content=body, headers=signer.headers(body))
        assert r.status_code == 503 and expected in r.json()["error"]
    assert row_counts(engine) == (0, 0)


async def test_a_key_pasted_as_pem_works(engine: Engine, ann: str, signer: SendGridSigner) -> None:
    key = signer.public_key
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        + "\n".join(key[i : i + 64] for i in range(0, len(key), 64))
        + "\n-----END PUBLIC KEY-----\n"
    )
    api = Api(engine, signer, sendgrid_webhook_public_key=pem)
    body = sendgrid_body(sendgrid_event("open", ann))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://a"
    ) as c:
        r = await c.post(SENDGRID_PATH, content=body, headers=signer.headers(body))
    assert r.status_code == 200 and r.json()["stored"] == 1


# --- bad bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"event": "open"}', "JSON array"),
        (b'[{"event": "open"}, 7]', "event 1 is not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
async def test_signed_bodies_that_are_not_events_are_400(
    client: httpx.AsyncClient, engine: Engine, body: bytes, error: str
) -> None:
    r = await post(client, body)
    assert r.status_code == 400 and error in r.json()["error"]
    assert row_counts(engine) == (0, 0)


async def test_a_body_over_one_megabyte_is_413(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    event = sendgrid_event("open", ann, padding="x" * 1000)
    body = sendgrid_body(*[event] * 1100)
    r = await post(client, body)
    assert r.status_code == 413 and "larger than" in r.json()["error"]


# --- forgery -------------------------------------------------------------------------------


@pytest.fixture
def sync_post(sqlite_engine: Engine, signer: SendGridSigner) -> Iterator[SyncPost]:
    """POST to the app from a plain (non-async) test: Hypothesis drives the examples."""
    with SyncPost(Api(sqlite_engine, signer).app) as post:
        yield post


@pytest.fixture
def eve(sqlite_engine: Engine) -> str:
    """Eve's sent email: what a forged spam report or bounce would try to act on."""
    add_contact(sqlite_engine, "eve", email="eve@example.com")
    return add_message(sqlite_engine, "eve", "email", "eve@example.com")


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("timestamp"), st.integers(-250, 250), st.just(0)),
    st.tuples(st.just("signature_flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("other_key"), st.just(0), st.just(0)),
    st.tuples(st.just("signature_of_other_body"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.sampled_from(["drop_signature", "drop_timestamp"]), st.just(0), st.just(0)),
)


@settings(
    max_examples=FORGERY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=MUTATIONS, kind=st.sampled_from(["spamreport", "bounce", "unsubscribe", "open"]))
def test_forged_requests_are_never_accepted(
    sync_post: SyncPost,
    sqlite_engine: Engine,
    signer: SendGridSigner,
    eve: str,
    mutation: tuple[str, int, int],
    kind: str,
) -> None:
    """Any change to a signed request (body, timestamp, signature, headers) is refused and
    stores nothing. `JOURNEYS_FORGERY_EXAMPLES=10000` for the full run (docs/webhooks.md)."""
    body = sendgrid_body(sendgrid_event(kind, eve, type="bounce"))
    headers = signer.headers(body)
    stamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    how, at, value = mutation
    if how in ("flip", "insert", "delete"):
        i = at % (len(body) + (how == "insert"))
        if how == "flip":
            body = body[:i] + bytes([body[i] ^ value]) + body[i + 1 :]
        elif how == "insert":
            body = body[:i] + bytes([value]) + body[i:]
        else:
            body = body[:i] + body[i + 1 :]
    elif how == "timestamp":
        assume(at != 0)
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(stamp) + at)
    elif how == "signature_flip":
        raw = bytearray(base64.b64decode(headers["X-Twilio-Email-Event-Webhook-Signature"]))
        raw[at % len(raw)] ^= value
        headers["X-Twilio-Email-Event-Webhook-Signature"] = base64.b64encode(raw).decode()
    elif how == "other_key":
        headers = SendGridSigner().headers(body, stamp)
    elif how == "signature_of_other_body":
        other = sendgrid_body(sendgrid_event("open", eve))
        headers["X-Twilio-Email-Event-Webhook-Signature"] = signer.sign(other, stamp)
    elif how == "drop_signature":
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    else:
        del headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    r = sync_post(SENDGRID_PATH, body, headers)
    assert r.status_code in (401, 403), (how, r.status_code, r.text)
    assert row_counts(sqlite_engine) == (0, 0)
    assert consent(sqlite_engine, "eve") == {}


async def test_a_client_messageid_equal_to_our_key_does_not_swallow_the_report(
    client: httpx.AsyncClient, engine: Engine, ann: str
) -> None:
    """Client messageIds and our dedupe keys are separate namespaces: a storefront (or
    anyone with its public write key) sending `sendgrid:<id>` first takes nothing away."""
    opened = sendgrid_event("open", ann)
    track = {
        "userId": "mallory",
        "event": "Email Opened",
        "messageId": f"sendgrid:{opened['sg_event_id']}",
    }
    assert (await client.post("/v1/track", auth=(KEY, ""), json=track)).status_code == 200
    r = await post(client, sendgrid_body(opened))
    assert r.json() == {"success": True, "stored": 1, "duplicates": 0, "ignored": 0}
    assert [(e.name, e.contact_id) for e in events(engine)] == [
        ("Email Opened", "mallory"),
        ("Email Opened", "ann"),
    ]
    # Each namespace still dedupes its own: the client's retry and SendGrid's.
    assert (await client.post("/v1/track", auth=(KEY, ""), json=track)).status_code == 200
    assert (await post(client, sendgrid_body(opened))).json()["duplicates"] == 1
    assert len(events(engine)) == 2
