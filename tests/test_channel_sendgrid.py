"""The SendGrid adapter, through the real `sendgrid` SDK against a loopback SendGrid.

Nothing in the SDK is patched: the adapter's host points at `FakeSendGrid`, which
checks the request as SendGrid does and answers as SendGrid does.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fakes.sendgrid import FakeSendGrid
from fakes.server import RESET, Reply

from channels.base import OutgoingMessage
from channels.email import EmailSettings
from channels.errors import ChannelConfigError, PermanentChannelError, TransientChannelError
from channels.registry import adapter_class
from channels.sendgrid import SendGridChannel

FROM = "Shop Team <news@shop.example.com>"
UNSUBSCRIBE = "https://shop.example.com/u/tok123"

# Read before the autouse fixture below clears the environment.
LIVE = {
    name: os.environ.get(name, "")
    for name in (
        "JOURNEYS_LIVE_SENDGRID",
        "SENDGRID_API_KEY",
        "JOURNEYS_EMAIL_FROM",
        "JOURNEYS_LIVE_EMAIL_TO",
    )
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell must not change what these tests see."""
    for name in list(os.environ):
        if name == "SENDGRID_API_KEY" or name.startswith(("JOURNEYS_SENDGRID_", "JOURNEYS_EMAIL_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:  # stopping a server takes 0.5 s: one per module
        yield server


@pytest.fixture
def fake(shared_fake: FakeSendGrid) -> FakeSendGrid:
    shared_fake.reset()
    return shared_fake


def email_settings(**values: Any) -> EmailSettings:
    # EmailSettings takes the sender by its environment name only (see the report).
    return EmailSettings(JOURNEYS_EMAIL_FROM=values.pop("from_", FROM), **values)


def channel(fake: FakeSendGrid, **kwargs: Any) -> SendGridChannel:
    kwargs.setdefault("email", email_settings())
    if "host" not in kwargs:
        kwargs["host"] = fake.url
    kwargs.setdefault("timeout", 2.0)
    return SendGridChannel(kwargs.pop("api_key", fake.api_key), **kwargs)


def message(**overrides: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "channel": "email",
        "to": "ann@example.com",
        "content": {
            "subject": "You left something behind",
            "html": "<p>Your cart misses you</p>",
            "text": "Your cart misses you",
        },
        "category": "marketing",
        "metadata": {"journey": "abandoned_cart", "step": "reminder", "contact": "c_123"},
        "links": {"unsubscribe_url": UNSUBSCRIBE},
    }
    values.update(overrides)
    return OutgoingMessage(**values)


# --- what is sent --------------------------------------------------------------------------


def test_payload_has_sender_recipient_subject_parts_and_correlation_ids(
    fake: FakeSendGrid,
) -> None:
    msg = message(options={"categories": ["cart"]})
    receipt = channel(fake).send(msg)

    sent = fake.delivery(msg.message_id)
    payload = sent.payload
    assert payload["from"] == {"email": "news@shop.example.com", "name": "Shop Team"}
    assert payload["personalizations"] == [{"to": [{"email": "ann@example.com"}]}]
    assert payload["subject"] == "You left something behind"
    assert payload["content"] == [
        {"type": "text/plain", "value": "Your cart misses you"},
        {"type": "text/html", "value": "<p>Your cart misses you</p>"},
    ]
    assert payload["categories"] == ["cart", "marketing"]
    assert payload["custom_args"] == {
        "msg_id": msg.message_id,
        "journey": "abandoned_cart",
        "step": "reminder",
        "contact": "c_123",
    }
    assert "mail_settings" not in payload and "reply_to" not in payload
    assert receipt.provider_message_id == sent.x_message_id
    assert receipt.status == "sent"


def test_html_only_message_sends_one_part(fake: FakeSendGrid) -> None:
    msg = message(content={"subject": "Hi", "html": "<p>Hi</p>"})
    channel(fake).send(msg)
    assert fake.delivery(msg.message_id).payload["content"] == [
        {"type": "text/html", "value": "<p>Hi</p>"}
    ]


def test_reply_to_comes_from_the_journey_else_the_default(fake: FakeSendGrid) -> None:
    adapter = channel(fake, email=email_settings(reply_to="Care <care@shop.example.com>"))
    default, override = message(), message(options={"reply_to": "cart@shop.example.com"})
    adapter.send(default)
    adapter.send(override)

    assert fake.delivery(default.message_id).payload["reply_to"] == {
        "email": "care@shop.example.com",
        "name": "Care",
    }
    assert fake.delivery(override.message_id).payload["reply_to"] == {
        "email": "cart@shop.example.com"
    }


def test_journey_sender_overrides_the_default_and_may_quote_a_comma(fake: FakeSendGrid) -> None:
    msg = message(options={"from": '"Shop, Inc" <deals@shop.example.com>'})
    channel(fake).send(msg)
    assert fake.delivery(msg.message_id).payload["from"] == {
        "email": "deals@shop.example.com",
        "name": "Shop, Inc",
    }


def test_unquoted_comma_in_sender_fails_before_any_request(fake: FakeSendGrid) -> None:
    # The SDK alone would send {"from": {"name": "Shop"}} and get a 400 back.
    with pytest.raises(PermanentChannelError, match="not one email address") as caught:
        channel(fake).send(message(options={"from": "Shop, Inc <deals@shop.example.com>"}))
    assert caught.value.reason == "bad_payload"
    assert fake.requests == []


def test_custom_args_carry_ids_as_strings_and_never_the_address(fake: FakeSendGrid) -> None:
    msg = message(
        metadata={
            "journey": "winback",
            "step": 3,
            "run": None,
            "email": "ann@example.com",
            "msg_id": "spoofed",
        }
    )
    channel(fake).send(msg)
    args = fake.delivery(msg.message_id).custom_args
    assert args == {"msg_id": msg.message_id, "journey": "winback", "step": "3"}
    assert not any("@" in value for value in args.values())


def test_too_many_categories_or_custom_args_fail_before_any_request(fake: FakeSendGrid) -> None:
    adapter = channel(fake)
    with pytest.raises(PermanentChannelError, match="at most 10 categories") as caught:
        adapter.send(message(options={"categories": [f"c{i}" for i in range(10)]}))
    assert caught.value.reason == "bad_payload"
    with pytest.raises(PermanentChannelError, match="10000") as caught:
        adapter.send(message(metadata={"blob": "x" * 10_000}))
    assert caught.value.reason == "bad_payload"
    assert fake.requests == []


def test_marketing_mail_has_one_click_unsubscribe_headers(fake: FakeSendGrid) -> None:
    msg = message()
    channel(fake).send(msg)
    assert fake.delivery(msg.message_id).headers == {
        "List-Unsubscribe": f"<{UNSUBSCRIBE}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_mailto_unsubscribe_target_is_added_when_configured(fake: FakeSendGrid) -> None:
    adapter = channel(fake, email=email_settings(unsubscribe_mailto="unsub@shop.example.com"))
    msg = message()
    adapter.send(msg)
    headers = fake.delivery(msg.message_id).headers
    assert headers["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE}>, <mailto:unsub@shop.example.com?subject=unsubscribe>"
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_plain_http_unsubscribe_link_gets_no_one_click_header(fake: FakeSendGrid) -> None:
    msg = message(links={"unsubscribe_url": "http://localhost:8000/u/tok"})
    channel(fake).send(msg)
    assert fake.delivery(msg.message_id).headers == {
        "List-Unsubscribe": "<http://localhost:8000/u/tok>"
    }


def test_transactional_mail_has_no_unsubscribe_headers(fake: FakeSendGrid) -> None:
    msg = message(category="transactional")
    channel(fake, email=email_settings(unsubscribe_mailto="unsub@shop.example.com")).send(msg)
    payload = fake.delivery(msg.message_id).payload
    assert "headers" not in payload
    assert payload["categories"] == ["transactional"]


def test_sandbox_mode_is_validated_but_not_delivered(fake: FakeSendGrid) -> None:
    msg = message()
    receipt = channel(fake, sandbox=True).send(msg)
    assert fake.delivered == []
    assert len(fake.sandboxed) == 1
    assert fake.sandboxed[0].payload["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert receipt.status == "sandbox"
    assert receipt.provider_message_id


def test_api_key_is_sent_as_bearer_token(fake: FakeSendGrid) -> None:
    channel(fake).send(message())
    assert fake.requests[0].headers["authorization"] == f"Bearer {fake.api_key}"
    assert fake.requests[0].method == "POST" and fake.requests[0].path == "/v3/mail/send"


# --- errors ----------------------------------------------------------------------------------


def test_invalid_recipient_is_reported_as_such(fake: FakeSendGrid) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(fake).send(message(to="ann.example.com"))
    error = caught.value
    assert error.reason == "invalid_recipient"
    assert error.status == 400 and error.code == "personalizations.0.to.0.email"
    assert "Does not contain a valid address" in str(error)
    assert isinstance(error.__cause__, Exception)
    assert len(fake.requests) == 1 and fake.delivered == []


@pytest.mark.parametrize(
    "to",
    [
        "ann@example.com\r\nBcc: x@evil.example",
        "ann@example.com\nBcc: x@evil.example",
        "ann@example.com\u2028Bcc: x@evil.example",
        "ann@example.com\x0b",
        # An RFC 2047 encoded word: mail programs show it decoded, as two addresses.
        "=?utf-8?q?ceo=40bank.example=2C_cfo=40bank.example?=@evil.example",
    ],
)
def test_a_recipient_that_could_carry_a_header_is_refused_before_any_request(
    fake: FakeSendGrid, to: str
) -> None:
    """Also an address stored before ingestion checked them: nothing reaches SendGrid."""
    with pytest.raises(PermanentChannelError) as caught:
        channel(fake).send(message(to=to))
    assert caught.value.reason == "invalid_recipient"
    assert "recipient address cannot be used" in str(caught.value)
    assert "ann@example.com" not in str(caught.value)  # the error goes into histories
    assert fake.requests == []


def test_other_bad_request_is_a_bad_payload(fake: FakeSendGrid) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(fake).send(message(options={"from": "news@localhost"}))
    assert caught.value.reason == "bad_payload"
    assert caught.value.code == "from.email"
    assert "from email does not contain a valid address" in str(caught.value)


def test_wrong_api_key_tells_the_operator_what_to_check(fake: FakeSendGrid) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(fake, api_key="SG.revoked").send(message())
    assert caught.value.reason == "auth" and caught.value.status == 401
    assert "SENDGRID_API_KEY" in str(caught.value)
    assert "authorization grant is invalid" in str(caught.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            FakeSendGrid.error(
                403, "The from address does not match a verified Sender Identity.", "from"
            ),
            "auth",
        ),
        (FakeSendGrid.error(413, "Payload Too Large"), "bad_payload"),
        (
            # A payload fault, not the recipient's: the address must not be suppressed.
            FakeSendGrid.error(400, "The to array is required.", "personalizations.0.to"),
            "bad_payload",
        ),
        (FakeSendGrid.error(404, "resource not found"), "rejected"),
    ],
    ids=["403", "413", "400-to-array", "404"],
)
def test_permanent_errors(fake: FakeSendGrid, reply: Reply, reason: str) -> None:
    fake.fail_next(reply)
    with pytest.raises(PermanentChannelError) as caught:
        channel(fake).send(message())
    assert caught.value.reason == reason
    assert caught.value.status == reply.status
    assert caught.value.provider == "sendgrid"
    assert reply.body["errors"][0]["message"] in str(caught.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("reply", "status", "retry_after"),
    [
        (lambda: FakeSendGrid.rate_limited(retry_after=7), 429, 7.0),
        (lambda: FakeSendGrid.rate_limited(reset_in=30), 429, 30.0),
        (lambda: FakeSendGrid.rate_limited(retry_after=2, reset_in=60), 429, 2.0),
        (lambda: FakeSendGrid.rate_limited(), 429, 0.0),
        (lambda: FakeSendGrid.rate_limited(10**9), 429, SendGridChannel.max_retry_after),
        (lambda: FakeSendGrid.server_error(500), 500, None),
        (lambda: FakeSendGrid.server_error(500, retry_after=5), 500, 5.0),
        (lambda: FakeSendGrid.server_error(502), 502, None),
        (lambda: FakeSendGrid.server_error(503, retry_after=1), 503, 1.0),
        (lambda: FakeSendGrid.server_error(504), 504, None),
    ],
    ids=[
        "429-retry-after",
        "429-ratelimit-reset",
        "429-retry-after-wins",
        "429-reset-now",
        "429-clamped",
        "500",
        "500-retry-after",
        "502",
        "503",
        "504",
    ],
)
def test_transient_errors_carry_the_providers_delay(
    fake: FakeSendGrid, reply: Callable[[], Reply], status: int, retry_after: float | None
) -> None:
    fake.fail_next(reply())
    with pytest.raises(TransientChannelError) as caught:
        channel(fake).send(message())
    error = caught.value
    assert error.status == status
    assert "SendGrid answered" in str(error) and error.__cause__ is not None
    if retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(retry_after, abs=1.5)
    assert len(fake.requests) == 1, "the adapter must never retry by itself"
    assert fake.delivered == []


def test_connection_reset_is_transient(fake: FakeSendGrid) -> None:
    fake.fail_next(RESET)
    with pytest.raises(TransientChannelError, match="unreachable") as caught:
        channel(fake).send(message())
    assert caught.value.status is None and caught.value.__cause__ is not None
    assert len(fake.requests) == 1


def test_nothing_listening_is_transient() -> None:
    with FakeSendGrid() as gone:
        url = gone.url
    with pytest.raises(TransientChannelError, match="unreachable"):
        channel(gone, host=url).send(message())


def test_slow_answer_times_out_as_transient() -> None:
    with FakeSendGrid(delay=0.8) as slow:
        started = time.monotonic()
        with pytest.raises(TransientChannelError, match=r"unreachable.*timed out"):
            channel(slow, timeout=0.3).send(message())
        assert time.monotonic() - started < 0.7
        assert len(slow.requests) == 1
        # Let the fake's late answer hit the closed socket while pytest still captures it.
        time.sleep(max(0.0, started + 1.0 - time.monotonic()))


def test_concurrent_sends_do_not_leak_into_each_other(fake: FakeSendGrid) -> None:
    adapter = channel(fake)
    messages = [
        message(
            to=f"user{i}@example.com",
            content={"subject": f"subject {i}", "html": f"<p>{i}</p>"},
            category="marketing" if i % 2 else "transactional",
            metadata={"journey": "j", "step": f"s{i}"},
            links={"unsubscribe_url": f"https://shop.example.com/u/{i}"},
        )
        for i in range(40)
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        receipts = list(pool.map(adapter.send, messages))

    assert fake.by_msg_id() == {m.message_id: 1 for m in messages}
    assert len({r.provider_message_id for r in receipts}) == len(messages)
    for i, (msg, receipt) in enumerate(zip(messages, receipts, strict=True)):
        sent = fake.delivery(msg.message_id)
        assert receipt.provider_message_id == sent.x_message_id
        assert sent.to == [msg.to]
        assert sent.payload["subject"] == f"subject {i}"
        assert sent.custom_args["step"] == f"s{i}"
        if msg.is_marketing:
            assert sent.headers["List-Unsubscribe"] == f"<https://shop.example.com/u/{i}>"
        else:
            assert sent.headers == {}
    header_names = {frozenset(r.headers) - {"content-length"} for r in fake.requests}
    assert len(header_names) == 1, "every request carries the same HTTP headers"
    assert {r.headers["authorization"] for r in fake.requests} == {f"Bearer {fake.api_key}"}


# --- start-up --------------------------------------------------------------------------------


def test_registered_through_the_entry_point() -> None:
    assert adapter_class("sendgrid") is SendGridChannel
    assert SendGridChannel.serves == ("email",)


def test_from_settings_reads_the_environment(
    fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    monkeypatch.setenv("JOURNEYS_EMAIL_FROM", FROM)
    monkeypatch.setenv("JOURNEYS_EMAIL_REPLY_TO", "care@shop.example.com")
    monkeypatch.setenv("JOURNEYS_SENDGRID_HOST", fake.url)
    monkeypatch.setenv("JOURNEYS_SENDGRID_SANDBOX", "true")
    monkeypatch.setenv("JOURNEYS_SENDGRID_TIMEOUT", "3.5")
    adapter = SendGridChannel.from_settings(None)
    assert adapter.timeout == 3.5
    adapter.send(message())
    payload = fake.sandboxed[0].payload
    assert payload["reply_to"] == {"email": "care@shop.example.com"}
    assert payload["from"]["email"] == "news@shop.example.com"


def test_missing_api_key_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEYS_EMAIL_FROM", FROM)
    with pytest.raises(ChannelConfigError, match="SENDGRID_API_KEY"):
        SendGridChannel.from_settings(None)


def test_missing_sender_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    with pytest.raises(ChannelConfigError, match="JOURNEYS_EMAIL_FROM"):
        SendGridChannel.from_settings(None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOURNEYS_EMAIL_FROM", "Shop, Inc <news@shop.example.com>"),
        ("JOURNEYS_EMAIL_REPLY_TO", "care"),
        ("JOURNEYS_SENDGRID_TIMEOUT", "soon"),
        ("JOURNEYS_SENDGRID_TIMEOUT", "0"),
        ("JOURNEYS_SENDGRID_HOST", "api.sendgrid.com"),
    ],
)
def test_invalid_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    monkeypatch.setenv("JOURNEYS_EMAIL_FROM", FROM)
    monkeypatch.setenv(name, value)
    with pytest.raises(ChannelConfigError, match=name):
        SendGridChannel.from_settings(None)


def test_missing_sdk_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import channels

    monkeypatch.setitem(sys.modules, "sendgrid", None)  # makes `import sendgrid` fail
    # Re-import the adapter module; both references to it are restored afterwards.
    monkeypatch.setattr(channels, "sendgrid", sys.modules["channels.sendgrid"], raising=False)
    monkeypatch.delitem(sys.modules, "channels.sendgrid")
    module = importlib.import_module("channels.sendgrid")  # importing still works
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    monkeypatch.setenv("JOURNEYS_EMAIL_FROM", FROM)
    with pytest.raises(
        ChannelConfigError, match=r"pip install 'journeys-orchestrator\[sendgrid\]'"
    ):
        module.SendGridChannel.from_settings(None)


# --- the fake itself: other tests rely on it refusing what SendGrid refuses -------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p.update(content=p["content"][::-1]), "content.0.type"),
        (lambda p: p.update(custom_args={"msg_id": 42}), "custom_args.msg_id"),
        (lambda p: p.update(headers={"From": "x@example.com"}), "headers.From"),
        (lambda p: p.update(categories=[str(i) for i in range(11)]), "categories"),
        (lambda p: p.pop("subject"), "subject"),
        (lambda p: p["personalizations"][0].update(to=[]), "personalizations.0.to"),
    ],
    ids=[
        "html-before-text",
        "non-string-arg",
        "reserved-header",
        "11-categories",
        "no-subject",
        "empty-to",
    ],
)
def test_fake_refuses_what_sendgrid_refuses(fake: FakeSendGrid, change: Any, field: str) -> None:
    from python_http_client.exceptions import BadRequestsError
    from sendgrid import SendGridAPIClient

    payload = channel(fake).build(message()).get()
    change(payload)
    client = SendGridAPIClient(fake.api_key, host=fake.url)
    with pytest.raises(BadRequestsError) as caught:
        client.send(payload)
    assert field in [e["field"] for e in caught.value.to_dict["errors"]]
    assert fake.delivered == []


def test_fake_answers_unknown_paths_and_missing_auth_like_sendgrid(fake: FakeSendGrid) -> None:
    from python_http_client.exceptions import NotFoundError, UnauthorizedError
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(fake.api_key, host=fake.url)
    with pytest.raises(NotFoundError):
        client.client.mail.sendx.post(request_body={})
    client.client.request_headers.pop("Authorization")
    with pytest.raises(UnauthorizedError) as caught:
        client.send({})
    assert caught.value.to_dict == {
        "errors": [{"message": "authorization required", "field": None, "help": None}]
    }


# --- live (opt-in) ---------------------------------------------------------------------------


@pytest.mark.skipif(
    not (
        LIVE["JOURNEYS_LIVE_SENDGRID"] == "1"
        and LIVE["SENDGRID_API_KEY"]
        and LIVE["JOURNEYS_EMAIL_FROM"]
        and LIVE["JOURNEYS_LIVE_EMAIL_TO"]
    ),
    reason="live SendGrid test: set JOURNEYS_LIVE_SENDGRID=1, SENDGRID_API_KEY, "
    "JOURNEYS_EMAIL_FROM and JOURNEYS_LIVE_EMAIL_TO",
)
def test_live_sendgrid_accepts_our_payload_in_sandbox_mode() -> None:
    adapter = SendGridChannel(
        LIVE["SENDGRID_API_KEY"],
        email=EmailSettings(JOURNEYS_EMAIL_FROM=LIVE["JOURNEYS_EMAIL_FROM"]),
        sandbox=True,  # validated by SendGrid, delivered to nobody
    )
    receipt = adapter.send(message(to=LIVE["JOURNEYS_LIVE_EMAIL_TO"]))
    assert receipt.status == "sandbox" and receipt.provider_message_id
