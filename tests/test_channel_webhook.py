"""The webhook channel against a loopback receiver that checks signatures as a user's would.

The receiver verifies every request with the exported `verify_signature`, so a change
in how we sign breaks the happy path, not just a unit test. Every error test also
counts requests: each send is exactly one HTTP attempt (retries belong to Temporal).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from fakes.server import RESET, FakeProvider, Reply, Request
from fakes.smtp import free_port

from channels import ChannelConfigError, OutgoingMessage, PermanentChannelError
from channels.errors import TransientChannelError
from channels.registry import adapter_class
from channels.webhook import (
    SIGNATURE_HEADER,
    WebhookChannel,
    signature_header,
    verify_signature,
)

SECRET = "whsec_0123456789abcdef"


class WebhookReceiver(FakeProvider):
    """What a user's endpoint does: verify the signature, then accept with an id."""

    path = "/hooks/journeys"

    def __init__(self, secret: str = SECRET) -> None:
        super().__init__()
        self.secret = secret
        self.accepted: list[Request] = []

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != self.path:
            return Reply(404, {"message": "no such hook"})
        if not verify_signature(
            self.secret, request.headers.get("x-journeys-signature"), request.body
        ):
            return Reply(401, {"message": "bad signature"})
        self.accepted.append(request)
        return Reply(202, {"id": f"evt_{len(self.accepted)}"})

    def reset(self) -> None:
        """Forget the previous test (one server per module: stopping one takes 0.5 s)."""
        with self._lock:
            self.requests.clear()
            self.accepted.clear()
            self._scripted.clear()
            self.faults = None


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JOURNEYS_WEBHOOK_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def running_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def receiver(running_receiver: WebhookReceiver) -> WebhookReceiver:
    running_receiver.reset()
    return running_receiver


def channel(receiver: WebhookReceiver, **overrides: object) -> WebhookChannel:
    options: dict[str, object] = {
        "url": receiver.url + receiver.path + "?team=growth",
        "secret": SECRET,
        "timeout": 5.0,
    }
    options.update(overrides)
    return WebhookChannel(**options)  # type: ignore[arg-type]


def sms(**overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "message_id": "5f0d3c1e-7a2b-4c3d-9e8f-001122334455",
        "channel": "sms",
        "to": "+381601234567",
        "content": {"body": "Ана, ваша корзина ждёт: https://shop.example/c/1"},
        "category": "marketing",
        "metadata": {"journey": "abandoned_cart", "step": "steps.0"},
        "options": {"from": "Shoes"},
        "links": {"unsubscribe_url": "https://shop.example/u/abc"},
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


# --- what the receiver gets -----------------------------------------------------------


def test_the_receiver_gets_one_signed_json_document(receiver: WebhookReceiver) -> None:
    message = sms()
    before = int(time.time())
    receipt = channel(receiver).send(message)

    assert len(receiver.requests) == 1 and len(receiver.accepted) == 1
    request = receiver.accepted[0]
    assert request.method == "POST"
    assert request.path == "/hooks/journeys" and request.query == {"team": "growth"}
    assert request.json() == {
        "message_id": message.message_id,
        "channel": "sms",
        "to": "+381601234567",
        "devices": [],
        "content": {"body": "Ана, ваша корзина ждёт: https://shop.example/c/1"},
        "category": "marketing",
        "metadata": {"journey": "abandoned_cart", "step": "steps.0"},
        "links": {"unsubscribe_url": "https://shop.example/u/abc"},
        "options": {"from": "Shoes"},
    }
    headers = request.headers
    assert headers["content-type"].startswith("application/json")
    assert headers["idempotency-key"] == message.message_id
    assert headers["user-agent"].startswith("journeys-orchestrator")
    timestamp = int(dict(p.split("=", 1) for p in headers["x-journeys-signature"].split(","))["t"])
    assert before <= timestamp <= time.time() + 1
    assert receipt.provider_message_id == "evt_1"


def test_push_carries_every_device_and_dead_tokens_come_back(receiver: WebhookReceiver) -> None:
    receiver.fail_next(Reply(200, {"id": "push-1", "dead_devices": ["tok-old"]}))
    receipt = channel(receiver).send(
        sms(
            channel="push",
            to="tok-new",
            devices=("tok-new", "tok-old"),
            content={"title": "Still thinking?", "body": "Your cart is waiting"},
        )
    )
    assert receiver.requests[0].json()["devices"] == ["tok-new", "tok-old"]
    assert receipt.provider_message_id == "push-1"
    assert receipt.dead_devices == ("tok-old",)


@pytest.mark.parametrize("reply", [Reply(204), Reply(200, "ok"), Reply(202, {"status": "queued"})])
def test_without_an_id_the_receipt_is_the_idempotency_key(
    receiver: WebhookReceiver, reply: Reply
) -> None:
    receiver.fail_next(reply)
    message = sms()
    assert channel(receiver).send(message).provider_message_id == message.message_id


def test_a_receiver_with_another_secret_refuses_and_we_say_which_setting(
    receiver: WebhookReceiver,
) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(receiver, secret="not-the-shared-secret").send(sms())
    assert caught.value.reason == "auth" and caught.value.status == 401
    assert "JOURNEYS_WEBHOOK_SECRET" in str(caught.value)
    assert receiver.accepted == []


# --- the signature helper receivers use ------------------------------------------------


def test_verify_signature_accepts_exactly_what_was_signed() -> None:
    body = b'{"message_id":"m1","to":"ann@example.com"}'
    now = 1_700_000_000
    header = signature_header(SECRET, body, timestamp=now)
    expected = hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={now},v1={expected}"  # documented format, reproducible by any language
    assert verify_signature(SECRET, header, body, now=now + 299)
    assert verify_signature(SECRET.encode(), header, body, now=now)

    assert not verify_signature(SECRET, header, body.replace(b"ann", b"eve"), now=now)  # tampered
    assert not verify_signature("another-secret-1234", header, body, now=now)  # wrong secret
    assert not verify_signature(SECRET, header, body, now=now + 301)  # replayed too late
    assert not verify_signature(SECRET, header, body, now=now - 301)  # from the future
    assert verify_signature(SECRET, header, body, tolerance=600, now=now + 500)
    # A valid signature cannot be moved to another timestamp to dodge the window.
    moved = header.replace(f"t={now}", f"t={now + 1000}")
    assert not verify_signature(SECRET, moved, body, now=now + 1000)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "t=abc,v1=00", "v1=" + "0" * 64, "t=1700000000", "t=1700000000;v1=x"],
)
def test_verify_signature_rejects_malformed_headers(header: str | None) -> None:
    assert not verify_signature(SECRET, header, b"{}", now=1_700_000_000)


def test_verify_signature_accepts_any_of_several_signatures_while_rotating() -> None:
    body, now = b"{}", 1_700_000_000
    old = signature_header("old-secret-0123456789", body, timestamp=now)
    new = signature_header(SECRET, body, timestamp=now)
    both = f"{old},v1={new.split('v1=')[1]}"
    assert verify_signature(SECRET, both, body, now=now)
    assert verify_signature("old-secret-0123456789", both, body, now=now)
    assert not verify_signature("third-secret-0123456789", both, body, now=now)


def test_a_captured_request_replayed_later_is_rejected(receiver: WebhookReceiver) -> None:
    channel(receiver).send(sms())
    captured = receiver.accepted[0]
    signature = captured.headers["x-journeys-signature"]
    assert verify_signature(SECRET, signature, captured.body)
    assert not verify_signature(SECRET, signature, captured.body, now=time.time() + 600)


# --- error mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error", "reason", "retry_after"),
    [
        (
            Reply(429, {"message": "slow down"}, {"Retry-After": "7"}),
            TransientChannelError,
            None,
            7,
        ),
        (Reply(503, "maintenance", {"Retry-After": "120"}), TransientChannelError, None, 120),
        (Reply(500, {"error": "boom"}), TransientChannelError, None, None),
        (Reply(502), TransientChannelError, None, None),
        (Reply(408), TransientChannelError, None, None),
        (Reply(409, {"message": "in progress"}), TransientChannelError, None, None),
        (Reply(410, {"message": "number gone"}), PermanentChannelError, "invalid_recipient", None),
        (Reply(404), PermanentChannelError, "rejected", None),
        (Reply(401), PermanentChannelError, "auth", None),
        (Reply(403, {"message": "forbidden"}), PermanentChannelError, "auth", None),
        (Reply(400, {"message": "body too long"}), PermanentChannelError, "rejected", None),
        (Reply(413), PermanentChannelError, "bad_payload", None),
        (
            Reply(422, {"reason": "unsubscribed", "message": "STOP received"}),
            PermanentChannelError,
            "unsubscribed",
            None,
        ),
        (Reply(422, {"reason": "auth"}), PermanentChannelError, "rejected", None),
        (
            Reply(302, None, {"Location": "https://elsewhere.example/"}),
            PermanentChannelError,
            "rejected",
            None,
        ),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else None,
)
def test_answers_become_typed_errors_after_exactly_one_attempt(
    receiver: WebhookReceiver,
    reply: Reply,
    error: type[Exception],
    reason: str | None,
    retry_after: float | None,
) -> None:
    receiver.fail_next(reply)
    with pytest.raises(error) as caught:
        channel(receiver).send(sms())
    failure = caught.value
    assert len(receiver.requests) == 1
    assert failure.status == reply.status  # type: ignore[attr-defined]
    assert failure.provider == "webhook"  # type: ignore[attr-defined]
    if isinstance(failure, PermanentChannelError):
        assert failure.reason == reason
    else:
        assert failure.retry_after == retry_after  # type: ignore[attr-defined]
    said = reply.body.get("message") if isinstance(reply.body, dict) else reply.body
    if said:
        assert str(said) in str(failure)


def test_a_redirect_is_not_followed(receiver: WebhookReceiver) -> None:
    receiver.fail_next(Reply(307, None, {"Location": receiver.url + receiver.path}))
    with pytest.raises(PermanentChannelError, match="JOURNEYS_WEBHOOK_URL"):
        channel(receiver).send(sms())
    assert len(receiver.requests) == 1 and receiver.accepted == []


def test_retry_after_as_an_http_date(receiver: WebhookReceiver) -> None:
    receiver.fail_next(Reply(503, None, {"Retry-After": formatdate(time.time() + 60, usegmt=True)}))
    with pytest.raises(TransientChannelError) as caught:
        channel(receiver).send(sms())
    assert caught.value.retry_after is not None and 55 <= caught.value.retry_after <= 61


def test_a_permanent_answer_can_name_dead_push_tokens(receiver: WebhookReceiver) -> None:
    receiver.fail_next(Reply(410, {"reason": "dead_token", "dead_devices": ["tok-1"]}))
    with pytest.raises(PermanentChannelError) as caught:
        channel(receiver).send(sms(channel="push", to="tok-1", devices=("tok-1",)))
    assert caught.value.reason == "dead_token" and caught.value.dead_devices == ("tok-1",)


def test_a_reset_connection_is_transient_after_one_attempt(receiver: WebhookReceiver) -> None:
    receiver.fail_next(RESET)
    with pytest.raises(TransientChannelError, match="cannot reach the webhook"):
        channel(receiver).send(sms())
    assert len(receiver.requests) == 1


def test_an_accepted_message_whose_answer_is_cut_off_is_still_sent() -> None:
    """The 200 arrived, then the connection was reset mid-body: a retry would send it twice."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer_then_hang_up() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                time.sleep(0.2)  # the client has the status line and waits for the body
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        server = threading.Thread(target=answer_then_hang_up, daemon=True)
        server.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/journeys"
        message = sms()
        receipt = WebhookChannel(url=url, secret=SECRET, timeout=5).send(message)
        server.join(5)
    assert receipt.provider_message_id == message.message_id


def test_a_slow_receiver_times_out_as_transient(receiver: WebhookReceiver) -> None:
    def slow(request: Request) -> Reply:
        time.sleep(1.0)
        return Reply(200, {"id": "late"})

    receiver.faults = slow
    started = time.monotonic()
    with pytest.raises(TransientChannelError):
        channel(receiver, timeout=0.3).send(sms())
    assert time.monotonic() - started < 0.9
    assert len(receiver.requests) == 1


def test_nobody_listening_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/journeys"
    with pytest.raises(TransientChannelError, match="Connection refused"):
        WebhookChannel(url=url, secret=SECRET, timeout=2).send(sms())


# --- configuration ----------------------------------------------------------------------


def test_configured_from_the_environment_and_found_through_the_entry_point(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEYS_WEBHOOK_URL", receiver.url + receiver.path)
    monkeypatch.setenv("JOURNEYS_WEBHOOK_SECRET", SECRET)
    cls = adapter_class("webhook")
    assert cls is WebhookChannel and set(cls.serves) == {"email", "push", "sms"}
    receipt = cls.from_settings(None).send(
        sms(channel="email", to="ann@example.com", content={"subject": "Hi", "text": "Hello"})
    )
    assert receipt.provider_message_id == "evt_1"
    assert receiver.accepted[0].json()["content"] == {"subject": "Hi", "text": "Hello"}


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"JOURNEYS_WEBHOOK_SECRET": SECRET}, "JOURNEYS_WEBHOOK_URL"),
        (
            {"JOURNEYS_WEBHOOK_URL": "ftp://hooks.example/x", "JOURNEYS_WEBHOOK_SECRET": SECRET},
            "JOURNEYS_WEBHOOK_URL",
        ),
        ({"JOURNEYS_WEBHOOK_URL": "https://hooks.example/x"}, "JOURNEYS_WEBHOOK_SECRET"),
        (
            {"JOURNEYS_WEBHOOK_URL": "https://hooks.example/x", "JOURNEYS_WEBHOOK_SECRET": "short"},
            "at least 16",
        ),
        (
            {
                "JOURNEYS_WEBHOOK_URL": "https://hooks.example/x",
                "JOURNEYS_WEBHOOK_SECRET": SECRET,
                "JOURNEYS_WEBHOOK_TIMEOUT": "soon",
            },
            "JOURNEYS_WEBHOOK_TIMEOUT",
        ),
    ],
    ids=["no-url", "not-http", "no-secret", "short-secret", "bad-timeout"],
)
def test_start_up_errors_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], named: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ChannelConfigError, match=named):
        WebhookChannel.from_settings(None)


def test_signature_header_name_is_the_documented_one() -> None:
    assert SIGNATURE_HEADER == "X-Journeys-Signature"
    body = json.dumps({"a": 1}).encode()
    assert verify_signature(SECRET, signature_header(SECRET, body), body)
