"""POST /webhooks/twilio/status and /webhooks/twilio/inbound, signed for real.

Requests are signed with the Twilio SDK's `RequestValidator.compute_signature` over
the public URL (JOURNEYS_PUBLIC_URL + path + query) and the form parameters, as
Twilio signs them; the in-process client reaches the app under another host, as a
proxy would. Store tests run on SQLite and PostgreSQL (`engine`).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fakes.webhook_signers import (
    TWILIO_INBOUND_PATH,
    TWILIO_STATUS_PATH,
    SyncPost,
    TwilioSigner,
    inbound_params,
    status_params,
)
from fakes.webhook_world import (
    add_contact,
    add_message,
    consent,
    events,
    message_row,
    row_counts,
    suppressions,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from orchestrator.api import create_app
from orchestrator.processes.router import Router
from orchestrator.services.policy import consent_refusal
from orchestrator.settings import Settings

KEY = "test-write-key"
FORGERY_EXAMPLES = int(os.environ.get("JOURNEYS_FORGERY_EXAMPLES", "200"))
PHONE = "+15550001111"
UPSTREAM = "http://journeys-upstream:8000"


def app_for(engine: Engine, signer: TwilioSigner, woken: list[int], **overrides: Any) -> Any:
    values = {"twilio_auth_token": signer.auth_token, "public_url": signer.public_url}
    return create_app(
        engine,
        [KEY],
        on_stored=lambda: woken.append(1),
        settings=Settings(**{**values, **overrides}),
    )


@pytest.fixture
def signer() -> TwilioSigner:
    return TwilioSigner()


class Twilio:
    """Posts signed webhooks the way Twilio does, to the app behind a 'proxy'."""

    def __init__(self, http: httpx.AsyncClient, signer: TwilioSigner, woken: list[int]):
        self.http, self.signer, self.woken = http, signer, woken

    async def post(self, path: str, params: dict[str, str], query: str = "") -> httpx.Response:
        target, body, headers = self.signer.request(path, params, query)
        return await self.http.post(target, content=body, headers=headers)

    async def status(self, sid: str, status: str, code: str | None = None) -> httpx.Response:
        return await self.post(TWILIO_STATUS_PATH, status_params(sid, status, code))

    async def inbound(self, sid: str, sender: str, body: str, **extra: str) -> httpx.Response:
        return await self.post(TWILIO_INBOUND_PATH, inbound_params(sid, sender, body, **extra))


@pytest_asyncio.fixture
async def twilio(engine: Engine, signer: TwilioSigner) -> AsyncIterator[Twilio]:
    woken: list[int] = []
    transport = httpx.ASGITransport(app=app_for(engine, signer, woken))
    # The app sees a proxy's upstream address, not the public URL Twilio signed.
    async with httpx.AsyncClient(transport=transport, base_url=UPSTREAM) as http:
        yield Twilio(http, signer, woken)


@pytest.fixture
def bo(engine: Engine) -> str:
    """Bo, who was sent one SMS (Twilio's SM1); returns our message id."""
    add_contact(engine, "bo", phone=PHONE)
    return add_message(engine, "bo", "sms", PHONE, provider_message_id="SM1")


# --- status callbacks -------------------------------------------------------------------


async def test_delivered_is_stored_once_for_our_message(
    twilio: Twilio, engine: Engine, bo: str
) -> None:
    r = await twilio.status("SM1", "delivered")
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 1, "duplicates": 0, "ignored": 0}
    (event,) = events(engine)
    assert (event.type, event.name, event.contact_id) == ("track", "SMS Delivered", "bo")
    assert event.message_id == "twilio:SM1:delivered"
    assert event.properties["message_id"] == bo
    assert PHONE not in str(event.properties)
    again = await twilio.status("SM1", "delivered")  # Twilio's retry, or a replay
    assert again.json() == {"success": True, "stored": 0, "duplicates": 1, "ignored": 0}
    assert len(events(engine)) == 1 and twilio.woken == [1]


async def test_a_callback_that_outruns_the_recorded_sid_finds_the_message_by_our_id(
    twilio: Twilio, engine: Engine
) -> None:
    # The worker has not yet stored Twilio's MessageSid when the first callback arrives:
    # the msg_id our adapter put in the callback URL (and Twilio signed) finds the message.
    add_contact(engine, "cy", phone=PHONE)
    ours = add_message(engine, "cy", "sms", PHONE, provider_message_id=None)
    r = await twilio.post(TWILIO_STATUS_PATH, status_params("SM9", "delivered"), f"msg_id={ours}")
    assert r.json()["stored"] == 1, r.text
    (event,) = events(engine)
    assert (event.name, event.properties["message_id"]) == ("SMS Delivered", ours)
    # The id is signed with the URL: changing it breaks the signature.
    target, body, headers = twilio.signer.request(
        TWILIO_STATUS_PATH, status_params("SM9", "failed"), f"msg_id={ours}"
    )
    forged = target.replace(ours, "00000000-0000-0000-0000-000000000000")
    assert (await twilio.http.post(forged, content=body, headers=headers)).status_code == 403


async def test_intermediate_statuses_and_unknown_messages_are_acknowledged_only(
    twilio: Twilio, engine: Engine, bo: str
) -> None:
    for status in ("queued", "sending", "sent", "accepted", "read", "canceled"):
        r = await twilio.status("SM1", status)
        assert r.status_code == 200 and r.json()["ignored"] == 1
    r = await twilio.status("SMnot-ours", "undelivered", "30005")
    assert r.status_code == 200 and r.json()["ignored"] == 1
    assert events(engine) == [] and suppressions(engine) == {}


@pytest.mark.parametrize(
    ("status", "code", "suppressed", "sms_consent"),
    [
        ("undelivered", "30005", "invalid", None),
        ("undelivered", "30003", "invalid", None),
        ("failed", "30006", "invalid", None),
        ("failed", "21610", "unsubscribed", {"marketing": False, "transactional": False}),
        ("undelivered", "30008", None, None),  # unknown error: maybe next time
        ("failed", None, None, None),
    ],
)
async def test_failures_are_recorded_and_dead_numbers_suppressed(
    twilio: Twilio,
    engine: Engine,
    bo: str,
    status: str,
    code: str | None,
    suppressed: str | None,
    sms_consent: dict[str, bool] | None,
) -> None:
    r = await twilio.status("SM1", status, code)
    assert r.json()["stored"] == 1
    (event,) = events(engine)
    assert event.name == "SMS Failed" and event.properties["message_status"] == status
    assert event.properties.get("error_code") == (int(code) if code else None)
    expected = {("sms", PHONE): suppressed} if suppressed else {}
    assert suppressions(engine) == expected
    assert consent(engine, "bo").get("sms") == sms_consent


async def test_status_never_regresses(twilio: Twilio, engine: Engine, ts_env: Any) -> None:  # type: ignore[no-untyped-def]
    add_contact(engine, "cy", phone="+15550003333")
    first = add_message(engine, "cy", "sms", "+15550003333", provider_message_id="SMa")
    second = add_message(engine, "cy", "sms", "+15550003333", provider_message_id="SMb")
    router = Router(ts_env.client, engine, "tq-webhooks", interval=0)  # no runs: signals no-op

    async def report(sid: str, status: str, code: str | None = None) -> None:
        await twilio.status(sid, status, code)
        while await router.sweep():
            pass

    await report("SMa", "delivered")
    await report("SMa", "sent")  # late: Twilio does not promise order
    await report("SMa", "queued")
    await report("SMa", "delivered")  # replay
    row = message_row(engine, first)
    assert row.status == "delivered"
    assert [e["status"] for e in row.timeline] == ["delivered"]

    await report("SMb", "undelivered", "30008")
    await report("SMb", "delivered")  # contradicts a final status: the failure stands
    assert message_row(engine, second).status == "bounced"
    assert [e["status"] for e in message_row(engine, second).timeline] == ["bounced", "delivered"]


# --- inbound SMS --------------------------------------------------------------------------


@pytest.fixture
def phone_contacts(engine: Engine) -> list[str]:
    """Two contacts sharing a number, stored in different formats; one elsewhere."""
    add_contact(engine, "dee", phone="+1 (555) 000-1111")
    add_contact(engine, "eli", phone="+15550001111")
    add_contact(engine, "fay", phone="+15550009999")
    return ["dee", "eli"]


@pytest.mark.parametrize("body", ["STOP", "stop", " Unsubscribe\n", "StopAll", "cancel", "QUIT"])
async def test_stop_keywords_opt_out_every_contact_with_the_number(
    twilio: Twilio, engine: Engine, phone_contacts: list[str], body: str
) -> None:
    r = await twilio.inbound("SMin1", PHONE, body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml") and "<Response/>" in r.text
    assert suppressions(engine) == {("sms", PHONE): "unsubscribed"}
    for contact in phone_contacts:
        assert consent(engine, contact) == {"sms": {"marketing": False, "transactional": False}}
    assert consent(engine, "fay") == {}
    stored = events(engine)
    assert [(e.name, e.contact_id) for e in stored] == [
        ("SMS Opted Out", "dee"),
        ("SMS Opted Out", "eli"),
    ]
    assert stored[0].properties["keyword"] == body.strip().upper()
    assert "5550001111" not in str([e.properties for e in stored])


async def test_advanced_opt_out_types_count_whatever_the_word(
    twilio: Twilio, engine: Engine, phone_contacts: list[str]
) -> None:
    await twilio.inbound("SMin1", PHONE, "ARRET", OptOutType="STOP")
    assert suppressions(engine) == {("sms", PHONE): "unsubscribed"}
    await twilio.inbound("SMin2", PHONE, "ok", OptOutType="START")
    assert suppressions(engine) == {}
    assert [e.name for e in events(engine)] == ["SMS Opted Out"] * 2 + ["SMS Opted In"] * 2


async def test_start_restores_sms_and_a_replayed_stop_changes_nothing(
    twilio: Twilio, engine: Engine, phone_contacts: list[str]
) -> None:
    await twilio.inbound("SMstop", PHONE, "STOP")
    r = await twilio.inbound("SMstart", PHONE, "start")
    assert r.status_code == 200
    assert suppressions(engine) == {}
    # START lifts the block; marketing is back to the default (implied consent sends it,
    # JOURNEYS_MARKETING_CONSENT=explicit still waits for a yes).
    for contact in phone_contacts:
        assert consent(engine, contact) == {"sms": {"transactional": True}}
    # Twilio retries the STOP webhook after the START was handled: same MessageSid.
    await twilio.inbound("SMstop", PHONE, "STOP")
    assert suppressions(engine) == {}
    assert consent(engine, "dee") == {"sms": {"transactional": True}}
    assert len(events(engine)) == 4


async def test_start_is_not_explicit_consent_to_marketing(twilio: Twilio, engine: Engine) -> None:
    add_contact(engine, "fay", phone=PHONE, consent={"sms": {"marketing": False}})
    await twilio.inbound("SMs1", PHONE, "STOP")
    await twilio.inbound("SMs2", PHONE, "START")
    assert consent(engine, "fay") == {"sms": {"transactional": True}}
    assert consent_refusal(consent(engine, "fay"), "sms", "marketing", explicit_marketing=True)
    assert consent_refusal(consent(engine, "fay"), "sms", "transactional", True) is None


async def test_help_is_recorded_only(
    twilio: Twilio, engine: Engine, phone_contacts: list[str]
) -> None:
    await twilio.inbound("SMhelp", PHONE, "help")
    assert [e.name for e in events(engine)] == ["SMS Help Requested"] * 2
    assert suppressions(engine) == {} and consent(engine, "dee") == {}


async def test_stop_from_a_number_without_contact_still_suppresses_once(
    twilio: Twilio, engine: Engine
) -> None:
    await twilio.inbound("SMx", "+15550004444", "STOP")
    assert suppressions(engine) == {("sms", "+15550004444"): "unsubscribed"}
    await twilio.inbound("SMy", "+15550004444", "START")
    await twilio.inbound("SMx", "+15550004444", "STOP")  # a late retry of the first
    assert suppressions(engine) == {}
    receipts = events(engine)
    assert [(e.type, e.contact_id, e.routed_at is not None) for e in receipts] == [
        ("feedback", "", True),
        ("feedback", "", True),
    ]


async def test_a_reply_becomes_sms_received_for_each_contact_with_the_number(
    twilio: Twilio, engine: Engine, phone_contacts: list[str]
) -> None:
    nps = add_message(engine, "eli", "sms", PHONE, provider_message_id="SMnps", step_id="nps")
    r = await twilio.inbound("SMreply", PHONE, "9 - stop sending me surveys")
    assert r.status_code == 200 and "<Response/>" in r.text
    stored = events(engine)
    assert [(e.type, e.name, e.contact_id) for e in stored] == [
        ("track", "SMS Received", "dee"),
        ("track", "SMS Received", "eli"),
    ]
    assert stored[0].message_id == "twilio:SMreply"
    for event in stored:
        assert event.properties["body"] == "9 - stop sending me surveys"
        assert event.properties["message_sid"] == "SMreply"
        assert "5550001111" not in str(event.properties)
    # Eli's reply answers the SMS we sent him: the router records it as `replied`.
    assert "message_id" not in stored[0].properties
    assert stored[1].properties["message_id"] == nps
    await twilio.inbound("SMreply", PHONE, "9 - stop sending me surveys")
    assert len(events(engine)) == 2 and twilio.woken == [1]
    assert suppressions(engine) == {}


async def test_a_reply_from_an_unknown_number_is_acknowledged(
    twilio: Twilio, engine: Engine
) -> None:
    r = await twilio.inbound("SMz", "+15550005555", "hello?")
    assert r.status_code == 200 and events(engine) == []


async def test_nul_characters_in_a_signed_form_are_stored_replaced(
    twilio: Twilio, engine: Engine, phone_contacts: list[str]
) -> None:
    r = await twilio.inbound("SM\x00nul", PHONE, "9\x00 points")
    assert r.status_code == 200, r.text
    stored = events(engine)
    assert stored[0].message_id == "twilio:SM\ufffdnul"
    assert stored[0].properties["body"] == "9\ufffd points"


# --- verification and bad requests --------------------------------------------------------


async def test_signature_covers_the_public_url_and_its_query(
    twilio: Twilio, engine: Engine, bo: str, signer: TwilioSigner
) -> None:
    params = status_params("SM1", "delivered")
    ok = await twilio.post(TWILIO_STATUS_PATH, params, query="run=7&x=a%20b")
    assert ok.status_code == 200 and ok.json()["stored"] == 1

    target, body, headers = signer.request(TWILIO_STATUS_PATH, params, query="run=7")
    r = await twilio.http.post(TWILIO_STATUS_PATH + "?run=8", content=body, headers=headers)
    assert r.status_code == 403
    # Signed for the address the app sees (no JOURNEYS_PUBLIC_URL behind a proxy).
    internal = TwilioSigner(signer.auth_token, UPSTREAM)
    target, body, headers = internal.request(TWILIO_STATUS_PATH, params)
    r = await twilio.http.post(target, content=body, headers=headers)
    assert r.status_code == 403
    assert "JOURNEYS_PUBLIC_URL" in r.json()["error"] and signer.public_url in r.json()["error"]
    # A status callback's signature replayed against the inbound endpoint.
    target, body, headers = signer.request(TWILIO_STATUS_PATH, inbound_params("S", PHONE, "STOP"))
    r = await twilio.http.post(TWILIO_INBOUND_PATH, content=body, headers=headers)
    assert r.status_code == 403
    assert len(events(engine)) == 1 and suppressions(engine) == {}


async def test_a_public_url_with_a_path_prefix(engine: Engine, bo: str) -> None:
    signer = TwilioSigner(public_url="https://shop.example.com/journeys/")
    woken: list[int] = []
    transport = httpx.ASGITransport(app=app_for(engine, signer, woken))
    async with httpx.AsyncClient(transport=transport, base_url="http://upstream") as http:
        # The proxy strips /journeys; Twilio signed https://shop.example.com/journeys/webhooks/...
        url = "https://shop.example.com/journeys" + TWILIO_STATUS_PATH
        params = status_params("SM1", "delivered")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signer.signature(url, params),
        }
        body = urllib.parse.urlencode(params).encode()
        r = await http.post(TWILIO_STATUS_PATH, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["stored"] == 1


async def test_missing_or_wrong_signatures_store_nothing(
    twilio: Twilio, engine: Engine, bo: str, signer: TwilioSigner
) -> None:
    add_contact(engine, "gus", phone="+15550006666")
    params = inbound_params("SMs", "+15550006666", "STOP")
    target, body, headers = signer.request(TWILIO_INBOUND_PATH, params)
    cases = {
        "no signature": ({"Content-Type": headers["Content-Type"]}, 401),
        "another account's token": (
            {
                **headers,
                "X-Twilio-Signature": TwilioSigner("other-token").request(
                    TWILIO_INBOUND_PATH, params
                )[2]["X-Twilio-Signature"],
            },
            403,
        ),
        "garbage": ({**headers, "X-Twilio-Signature": "not a signature"}, 403),
    }
    for name, (sent_headers, status) in cases.items():
        r = await twilio.http.post(target, content=body, headers=sent_headers)
        assert r.status_code == status, name
        assert r.json()["success"] is False and r.json()["error"], name
    tampered = urllib.parse.urlencode({**params, "From": "+15550007777"}).encode()
    r = await twilio.http.post(target, content=tampered, headers=headers)
    assert r.status_code == 403
    assert row_counts(engine) == (0, 0) and consent(engine, "gus") == {}


async def test_unconfigured_token_answers_503_naming_the_setting(
    engine: Engine, signer: TwilioSigner
) -> None:
    transport = httpx.ASGITransport(app=app_for(engine, signer, [], twilio_auth_token=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as http:
        for path in (TWILIO_STATUS_PATH, TWILIO_INBOUND_PATH):
            target, body, headers = signer.request(path, inbound_params("S", PHONE, "STOP"))
            r = await http.post(target, content=body, headers=headers)
            assert r.status_code == 503 and "TWILIO_AUTH_TOKEN" in r.json()["error"]
    assert row_counts(engine) == (0, 0)


async def test_signed_requests_without_twilio_parameters_are_400(
    twilio: Twilio, engine: Engine
) -> None:
    r = await twilio.post(TWILIO_STATUS_PATH, {"MessageSid": "SM1"})
    assert r.status_code == 400 and r.json()["field"] == "MessageStatus"
    r = await twilio.post(TWILIO_INBOUND_PATH, {"MessageSid": "SM1", "Body": "hi"})
    assert r.status_code == 400 and r.json()["field"] == "From"
    target, _, headers = twilio.signer.request(TWILIO_INBOUND_PATH, {})
    r = await twilio.http.post(target, content=b"Body=\xff\xfe", headers=headers)
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]
    r = await twilio.http.post(target, content=b"Body=" + b"x" * 70_000, headers=headers)
    assert r.status_code == 413
    assert row_counts(engine) == (0, 0)


# --- forgery ------------------------------------------------------------------------------


@pytest.fixture
def sync_post(sqlite_engine: Engine, signer: TwilioSigner) -> Iterator[SyncPost]:
    with SyncPost(app_for(sqlite_engine, signer, [])) as post:
        yield post


@pytest.fixture
def hal(sqlite_engine: Engine) -> str:
    """Hal, with one SMS sent (SMhal): what a forged STOP or failure would act on."""
    add_contact(sqlite_engine, "hal", phone=PHONE)
    return add_message(sqlite_engine, "hal", "sms", PHONE, provider_message_id="SMhal")


TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
MUTATIONS = st.one_of(
    st.tuples(st.just("change_value"), st.integers(0, 100), TEXT),
    st.tuples(st.just("add_param"), NAME, TEXT),
    st.tuples(st.just("remove_param"), st.integers(0, 100), st.just("")),
    st.tuples(st.just("rename_param"), st.integers(0, 100), NAME),
    st.tuples(st.just("flip_byte"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(
        st.just("signed_url"),
        st.sampled_from(
            [
                "https://journeys.example.com/webhooks/twilio/other",
                "http://journeys.example.com",
                "https://journeys.example.org",
                "https://evil.example.com",
                "https://journeys.example.com:8443",
                "https://journeys.example.com/prefix",
            ]
        ),
        st.just(""),
    ),
    st.tuples(st.just("query"), st.just(""), TEXT.filter(bool)),
    st.tuples(st.just("swap_endpoint"), st.just(""), st.just("")),
    st.tuples(st.just("flip_signature"), st.integers(0, 100), st.integers(1, 127)),
    st.tuples(st.just("other_token"), TEXT.filter(bool), st.just("")),
)


def _meaning(body: bytes) -> dict[str, frozenset[str]] | None:
    """What Twilio's signature covers: each name's set of values (None if not UTF-8)."""
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    meaning: dict[str, set[str]] = {}
    for name, value in pairs:
        meaning.setdefault(name, set()).add(value)
    return {name: frozenset(values) for name, values in meaning.items()}


@settings(
    max_examples=FORGERY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutation=MUTATIONS,
    endpoint=st.sampled_from(["inbound", "status"]),
    stop_word=st.sampled_from(["STOP", "stop", "CANCEL"]),
)
def test_forged_requests_are_never_accepted(
    sync_post: SyncPost,
    sqlite_engine: Engine,
    signer: TwilioSigner,
    hal: str,
    mutation: tuple[str, Any, Any],
    endpoint: str,
    stop_word: str,
) -> None:
    """Any change to a signed request that changes what it says (parameters, URL,
    signature, token) is refused and stores nothing. A change that keeps the signed
    meaning (`%2b` for `%2B`, a repeated identical pair) is not a forgery and is skipped.
    `JOURNEYS_FORGERY_EXAMPLES=10000` for the full run (docs/webhooks.md)."""
    if endpoint == "inbound":
        path, params = TWILIO_INBOUND_PATH, inbound_params("SMf", PHONE, stop_word)
    else:
        path, params = TWILIO_STATUS_PATH, status_params("SMhal", "failed", "21610")
    pairs = list(params.items())
    how, a, b = mutation
    url = signer.public_url + path
    signature = signer.signature(url, pairs)
    target = path
    if how == "change_value":
        name, old = pairs[a % len(pairs)]
        assume(b != old)
        pairs[a % len(pairs)] = (name, b)
    elif how == "add_param":
        pairs.append((a, b))
    elif how == "remove_param":
        pairs.pop(a % len(pairs))
    elif how == "rename_param":
        name, value = pairs[a % len(pairs)]
        assume(b != name)
        pairs[a % len(pairs)] = (b, value)
    elif how == "signed_url":
        signature = signer.signature(a + path if not a.endswith("/other") else a, pairs)
    elif how == "query":
        target = path + "?" + urllib.parse.quote(b)
    elif how == "swap_endpoint":
        target = TWILIO_STATUS_PATH if path == TWILIO_INBOUND_PATH else TWILIO_INBOUND_PATH
    elif how == "flip_signature":
        chars = list(signature)
        i = a % len(chars)
        chars[i] = chr(ord(chars[i]) ^ b)
        assume(chars[i].isprintable() and not chars[i].isspace())
        signature = "".join(chars)
    elif how == "other_token":
        assume(a != signer.auth_token)
        signature = TwilioSigner(a, signer.public_url).signature(url, pairs)
    body = urllib.parse.urlencode(pairs).encode()
    if how == "flip_byte":
        i = a % len(body)
        body = body[:i] + bytes([body[i] ^ b]) + body[i + 1 :]
    if how in ("change_value", "add_param", "remove_param", "rename_param", "flip_byte"):
        assume(_meaning(body) != _meaning(urllib.parse.urlencode(params).encode()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    r = sync_post(target, body, headers)
    # 400 only for a body refused before verification (not UTF-8): never a verified one.
    refused = r.status_code in (401, 403) or (r.status_code == 400 and "UTF-8" in r.text)
    assert refused, (how, r.status_code, r.text)
    assert row_counts(sqlite_engine) == (0, 0)
    assert consent(sqlite_engine, "hal") == {}
