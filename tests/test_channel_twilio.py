"""The Twilio SMS adapter, through the real `twilio` SDK against a loopback fake.

Nothing in the SDK is patched: the adapter is pointed at the fake by configuration
(JOURNEYS_TWILIO_BASE_URL), as local development would. Every error test also counts
HTTP requests, because a hidden retry inside the SDK would double-send.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from fakes.server import RESET, Reply, Request
from fakes.twilio import FakeTwilio, error, new_sid, too_many_requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from channels import ChannelConfigError, OutgoingMessage, PermanentChannelError
from channels.errors import TransientChannelError
from channels.registry import adapter_class
from channels.twilio import TwilioChannel
from orchestrator.processes.worker import channel_adapters
from orchestrator.settings import Settings

SENDER = "+15005550006"
TO = "+14155550123"
SERVICE = new_sid("MG")
JOURNEY_SERVICE = new_sid("MG")

ENV = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "JOURNEYS_TWILIO_MESSAGING_SERVICE_SID",
    "JOURNEYS_SMS_FROM",
    "JOURNEYS_TWILIO_BASE_URL",
    "JOURNEYS_TWILIO_TIMEOUT",
    "JOURNEYS_PUBLIC_URL",
    "JOURNEYS_SMS_MAX_SEGMENTS",
    "JOURNEYS_SMS_CHANNEL",
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilio]:
    # One server for the module: stopping one takes half a second (the serve loop's poll).
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeTwilio) -> Iterator[FakeTwilio]:
    yield server.reset()
    server.reset()  # release anything a failed test left scripted


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio) -> pytest.MonkeyPatch:
    """A worker environment configured for the fake; tests remove what they need missing."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", fake.account_sid)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", fake.auth_token)
    monkeypatch.setenv("JOURNEYS_SMS_FROM", SENDER)
    monkeypatch.setenv("JOURNEYS_TWILIO_BASE_URL", fake.url)
    return monkeypatch


def adapter(fake: FakeTwilio, **overrides: Any) -> TwilioChannel:
    options: dict[str, Any] = {
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "sms_from": SENDER,
        "base_url": fake.url,
        "timeout": 5.0,
    }
    return TwilioChannel(**{**options, **overrides})


def sms(
    body: str = "Your cart is waiting: 2 items", to: str = TO, **options: Any
) -> OutgoingMessage:
    return OutgoingMessage(
        message_id="m-1", channel="sms", to=to, content={"body": body}, options=options
    )


def refused(channel: TwilioChannel, message: OutgoingMessage) -> Any:
    """The error `send` raised (any ChannelError), for assertions on its fields."""
    with pytest.raises((PermanentChannelError, TransientChannelError)) as caught:
        channel.send(message)
    return caught.value


# --- what is sent ------------------------------------------------------------------


def test_sends_to_from_and_body_with_basic_auth_and_returns_the_sid(fake: FakeTwilio) -> None:
    receipt = adapter(fake).send(sms())

    [sent] = fake.delivered
    assert sent.form == {"To": TO, "From": SENDER, "Body": "Your cart is waiting: 2 items"}
    assert receipt.provider_message_id == sent.sid
    assert receipt.provider_message_id.startswith("SM") and len(sent.sid) == 34
    assert receipt.status == "queued"
    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    credentials = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"


def test_a_messaging_service_is_preferred_over_a_number(fake: FakeTwilio) -> None:
    receipt = adapter(fake, messaging_service_sid=SERVICE).send(sms())

    [sent] = fake.delivered
    assert sent.messaging_service_sid == SERVICE and sent.from_ is None
    assert "From" not in sent.form
    assert receipt.status == "accepted"  # Twilio's first status through a Messaging Service


@pytest.mark.parametrize(
    ("default", "journey", "expected"),
    [
        ({}, {"messaging_service_sid": JOURNEY_SERVICE}, {"MessagingServiceSid": JOURNEY_SERVICE}),
        ({"messaging_service_sid": SERVICE}, {"from": "+15005550007"}, {"From": "+15005550007"}),
    ],
    ids=["journey-service-over-default-number", "journey-number-over-default-service"],
)
def test_the_journey_sender_overrides_the_default(
    fake: FakeTwilio, default: dict[str, str], journey: dict[str, str], expected: dict[str, str]
) -> None:
    adapter(fake, **default).send(sms(**journey))

    [sent] = fake.delivered
    sender_fields = {k: v for k, v in sent.form.items() if k in ("From", "MessagingServiceSid")}
    assert sender_fields == expected


def test_status_callback_goes_to_the_public_url_only_when_it_is_set(
    fake: FakeTwilio, env: pytest.MonkeyPatch
) -> None:
    TwilioChannel.from_settings(Settings(public_url="https://journeys.example.com/")).send(sms())
    TwilioChannel.from_settings(Settings()).send(sms())

    with_url, without = fake.delivered
    assert with_url.status_callback == (
        "https://journeys.example.com/webhooks/twilio/status?msg_id=m-1"
    )
    # The default public URL is the local API, which Twilio could never reach.
    assert "StatusCallback" not in without.form


def test_the_worker_builds_it_from_the_environment(
    fake: FakeTwilio, env: pytest.MonkeyPatch
) -> None:
    assert adapter_class("twilio") is TwilioChannel
    env.setenv("JOURNEYS_TWILIO_TIMEOUT", "2.5")

    built = channel_adapters(Settings(sms_channel="twilio"))["sms"]

    assert isinstance(built, TwilioChannel) and built.timeout == 2.5
    built.send(sms())
    assert len(fake.delivered) == 1


# --- permanent errors ----------------------------------------------------------------


def _script(fake: FakeTwilio, code: int) -> None:
    fake.fail_next(error(400, code, f"scripted {code} for {TO}"))


@pytest.mark.parametrize(
    ("setup", "to", "code", "reason"),
    [
        (lambda f: f.invalid.add(TO), TO, 21211, "invalid_recipient"),
        (lambda f: None, "0415 555 0123", 21211, "invalid_recipient"),  # not E.164
        (lambda f: f.landlines.add(TO), TO, 21614, "invalid_recipient"),
        (lambda f: _script(f, 21612), TO, 21612, "invalid_recipient"),
        (lambda f: _script(f, 21408), TO, 21408, "rejected"),
        (lambda f: f.stopped.add(TO), TO, 21610, "unsubscribed"),
    ],
    ids=["21211", "21211-not-e164", "21614-landline", "21612", "21408", "21610-stop"],
)
def test_recipient_errors_are_permanent_with_the_reason_the_pipeline_acts_on(
    fake: FakeTwilio, setup: Callable[[FakeTwilio], None], to: str, code: int, reason: str
) -> None:
    setup(fake)

    exc = refused(adapter(fake), sms(to=to))

    assert isinstance(exc, PermanentChannelError)
    assert (exc.reason, exc.code, exc.status, exc.provider) == (reason, code, 400, "twilio")
    assert isinstance(exc.__cause__, TwilioRestException)
    assert to not in str(exc)  # Twilio echoes the number; it must not reach our history
    assert len(fake.requests) == 1 and fake.delivered == []


@pytest.mark.parametrize(
    ("account_sid", "auth_token"),
    [(None, "not-the-token"), (new_sid("AC"), None)],
    ids=["wrong-token", "other-account"],
)
def test_rejected_credentials_are_an_auth_error_naming_the_settings(
    fake: FakeTwilio, account_sid: str | None, auth_token: str | None
) -> None:
    channel = adapter(
        fake,
        account_sid=account_sid or fake.account_sid,
        auth_token=auth_token or fake.auth_token,
    )

    exc = refused(channel, sms())

    assert isinstance(exc, PermanentChannelError)
    assert (exc.reason, exc.code, exc.status) == ("auth", 20003, 401)
    assert "TWILIO_ACCOUNT_SID" in str(exc) and "TWILIO_AUTH_TOKEN" in str(exc)
    assert len(fake.requests) == 1


def test_a_403_without_a_code_is_an_auth_error(fake: FakeTwilio) -> None:
    fake.fail_next(Reply(403, "Forbidden", {"Content-Type": "text/plain"}))
    exc = refused(adapter(fake), sms())
    assert isinstance(exc, PermanentChannelError) and exc.reason == "auth" and exc.status == 403


def test_other_client_errors_are_bad_payload_with_twilios_message(fake: FakeTwilio) -> None:
    fake.fail_next(error(400, 21606, f"The 'From' number cannot send SMS to {TO}."))
    exc = refused(adapter(fake), sms())
    assert isinstance(exc, PermanentChannelError)
    assert (exc.reason, exc.code) == ("bad_payload", 21606)
    # Twilio's words, with the recipient's number masked: errors land in Temporal history.
    assert "The 'From' number cannot send SMS to +14…23." in str(exc)

    # And a real check of the fake: the callback URL must be absolute (21609).
    exc = refused(adapter(fake, status_callback="/webhooks/twilio/status"), sms())
    assert isinstance(exc, PermanentChannelError)
    assert (exc.reason, exc.code) == ("bad_payload", 21609)
    assert len(fake.requests) == 2 and fake.delivered == []


def test_problem_details_bodies_are_mapped_too(fake: FakeTwilio) -> None:
    """Newer Twilio APIs answer RFC 9457 bodies, which the SDK raises as another class."""
    problem = {
        "type": "https://www.twilio.com/docs/errors/21610",
        "title": "Unsubscribed recipient",
        "status": 400,
        "code": 21610,
        "detail": f"{TO} replied STOP",
    }
    fake.fail_next(
        Reply(400, problem), Reply(429, {**problem, "code": 20429}, {"Retry-After": "9"})
    )
    channel = adapter(fake)

    stop = refused(channel, sms())
    limited = refused(channel, sms())

    assert isinstance(stop, PermanentChannelError) and stop.reason == "unsubscribed"
    assert isinstance(stop.__cause__, TwilioServiceException)
    assert isinstance(limited, TransientChannelError) and limited.retry_after == 9


# --- transient errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [
        (too_many_requests(retry_after="7"), 7.0),
        (too_many_requests(), TwilioChannel.rate_limit_delay),
        (Reply(429, "Too Many Requests", {"Content-Type": "text/plain"}), 5.0),  # default
    ],
    ids=["20429-retry-after", "20429-no-header", "429-not-json"],
)
def test_rate_limits_are_transient_and_honour_retry_after(
    fake: FakeTwilio, reply: Reply, retry_after: float
) -> None:
    fake.fail_next(reply)

    exc = refused(adapter(fake), sms())

    assert isinstance(exc, TransientChannelError)
    assert exc.retry_after == retry_after and exc.status == 429
    assert len(fake.requests) == 1 and fake.delivered == []


@pytest.mark.parametrize("code", [30001, 21611])
def test_a_full_sender_queue_pauses_sends_and_nothing_is_dropped(
    fake: FakeTwilio, code: int
) -> None:
    channel = adapter(fake)
    fake.queue_full = code

    exc = refused(channel, sms())
    assert isinstance(exc, TransientChannelError) and exc.code == code
    assert exc.retry_after == TwilioChannel.queue_full_delay >= 60

    fake.queue_full = None  # the queue drained: the retry goes through, once
    channel.send(sms())
    assert len(fake.delivered) == 1 and len(fake.requests) == 2


def test_a_queue_full_retry_after_longer_than_ours_wins(fake: FakeTwilio) -> None:
    fake.fail_next(error(400, 21611, "too many queued", retry_after="300"))
    exc = refused(adapter(fake), sms())
    assert isinstance(exc, TransientChannelError) and exc.retry_after == 300


@pytest.mark.parametrize(
    ("reply", "status", "retry_after"),
    [
        (error(500, 20500, "Internal Server Error"), 500, None),
        (Reply(502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"}), 502, None),
        (error(503, 20503, "Service Unavailable", retry_after="2"), 503, 2.0),
    ],
    ids=["500", "502-html", "503-retry-after"],
)
def test_server_errors_are_transient_after_one_attempt(
    fake: FakeTwilio, reply: Reply, status: int, retry_after: float | None
) -> None:
    fake.fail_next(reply)

    exc = refused(adapter(fake), sms())

    assert isinstance(exc, TransientChannelError)
    assert (exc.status, exc.retry_after) == (status, retry_after)
    assert len(fake.requests) == 1 and fake.delivered == []


def test_a_connection_reset_is_transient_after_one_attempt(fake: FakeTwilio) -> None:
    fake.fail_next(RESET)

    exc = refused(adapter(fake), sms())

    assert isinstance(exc, TransientChannelError)
    assert isinstance(exc.__cause__, requests.ConnectionError)
    assert len(fake.requests) == 1


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = TwilioChannel(
        account_sid=new_sid("AC"),
        auth_token="token",
        sms_from=SENDER,
        base_url=f"http://127.0.0.1:{port}",
    )
    exc = refused(channel, sms())
    assert isinstance(exc, TransientChannelError)


def test_a_slow_answer_times_out_at_the_configured_timeout(fake: FakeTwilio) -> None:
    """Transient, yet ambiguous: Twilio may accept the message after we gave up."""
    release, answered = threading.Event(), threading.Event()

    def stall(request: Request) -> Reply:
        release.wait(10)
        fake.handle(request)  # accepted late; the client is gone, so no answer is written
        answered.set()
        return RESET

    fake.faults = stall
    started = time.monotonic()
    try:
        exc = refused(adapter(fake, timeout=0.3), sms())
    finally:
        release.set()

    assert isinstance(exc, TransientChannelError) and "timed out" in str(exc)
    assert isinstance(exc.__cause__, requests.Timeout)
    assert time.monotonic() - started < 3
    assert len(fake.requests) == 1
    assert answered.wait(5) and len(fake.delivered) == 1  # why the send ledger matters


def test_concurrent_sends_each_get_their_own_retry_after(fake: FakeTwilio) -> None:
    """Retry-After is read from the adapter's HTTP client, so that client must not be shared.

    A tiny GIL switch interval makes threads interleave between reading a response and
    mapping its error, where a shared client would hand one thread another's header.
    """
    threads, rounds = 8, 5
    barrier = threading.Barrier(threads, timeout=10)

    def limited(request: Request) -> Reply:
        barrier.wait()  # every request of a round is in flight before any is answered
        return too_many_requests(retry_after=request.form()["Body"].split()[-1])

    fake.faults = limited
    channel = adapter(fake)

    def send(seconds: int) -> Any:
        try:
            channel.send(sms(body=f"wait {seconds}"))
        except TransientChannelError as exc:
            return exc.retry_after
        return "sent"

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(threads) as pool:
            got = [list(pool.map(send, range(1, threads + 1))) for _ in range(rounds)]
    finally:
        sys.setswitchinterval(interval)

    assert got == [[float(n) for n in range(1, threads + 1)]] * rounds
    assert len(fake.requests) == threads * rounds


# --- length, before any HTTP call ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "max_segments", "described"),
    [
        ("x" * (153 * 3 + 1), 3, "4 segments (GSM-7"),
        ("č" * (67 * 3 + 1), 3, "4 segments (UCS-2"),  # 202 characters: 2 segments in GSM-7
        ("x" * 1601, 20, "1600"),
        ("", 3, "empty"),
    ],
    ids=["gsm-4-segments", "ucs2-4-segments", "over-1600-characters", "empty"],
)
def test_bodies_too_long_are_refused_before_any_http_call(
    fake: FakeTwilio, body: str, max_segments: int, described: str
) -> None:
    exc = refused(adapter(fake, max_segments=max_segments), sms(body=body))

    assert isinstance(exc, PermanentChannelError) and exc.reason == "bad_payload"
    assert described in str(exc)
    assert fake.requests == []


@pytest.mark.parametrize("body", ["x" * (153 * 3), "č" * (67 * 3)], ids=["gsm", "ucs2"])
def test_three_segment_bodies_are_sent(fake: FakeTwilio, body: str) -> None:
    adapter(fake, max_segments=3).send(sms(body=body))
    [sent] = fake.delivered
    assert sent.body == body and sent.num_segments == 3


def test_the_segment_limit_comes_from_settings(fake: FakeTwilio, env: pytest.MonkeyPatch) -> None:
    channel = TwilioChannel.from_settings(Settings(sms_max_segments=1))
    exc = refused(channel, sms(body="x" * 161))
    assert isinstance(exc, PermanentChannelError) and "2 segments" in str(exc)
    assert fake.requests == []


# --- start-up errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("unset", "set_", "settings", "names"),
    [
        (["TWILIO_ACCOUNT_SID"], {}, {}, ["TWILIO_ACCOUNT_SID"]),
        (["TWILIO_AUTH_TOKEN"], {}, {}, ["TWILIO_AUTH_TOKEN"]),
        (
            ["JOURNEYS_SMS_FROM"],
            {},
            {},
            ["JOURNEYS_TWILIO_MESSAGING_SERVICE_SID", "JOURNEYS_SMS_FROM"],
        ),
        ([], {"JOURNEYS_TWILIO_TIMEOUT": "0"}, {}, ["JOURNEYS_TWILIO_TIMEOUT"]),
        ([], {"JOURNEYS_TWILIO_BASE_URL": "127.0.0.1:9"}, {}, ["JOURNEYS_TWILIO_BASE_URL"]),
        ([], {}, {"public_url": "journeys.example.com"}, ["JOURNEYS_PUBLIC_URL"]),
    ],
    ids=["no-sid", "no-token", "no-sender", "zero-timeout", "bad-base-url", "bad-public-url"],
)
def test_start_up_errors_name_the_setting(
    env: pytest.MonkeyPatch,
    unset: list[str],
    set_: dict[str, str],
    settings: dict[str, str],
    names: list[str],
) -> None:
    for name in unset:
        env.delenv(name)
    for name, value in set_.items():
        env.setenv(name, value)

    with pytest.raises(ChannelConfigError) as caught:
        channel_adapters(Settings(sms_channel="twilio", **settings))

    for name in names:
        assert name in str(caught.value)


def test_without_the_sdk_the_module_imports_and_the_error_names_the_extra() -> None:
    script = (
        "import sys; sys.modules['twilio'] = None\n"
        "import channels.twilio as t\n"
        "from channels.errors import ChannelConfigError\n"
        "try:\n"
        "    t.TwilioChannel(account_sid='AC1', auth_token='x', sms_from='+15005550006')\n"
        "except ChannelConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'journeys-orchestrator[twilio]'" in done.stdout


# --- live ----------------------------------------------------------------------------

LIVE = os.environ.get("JOURNEYS_LIVE_TWILIO") == "1" and all(
    os.environ.get(name)
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "JOURNEYS_LIVE_SMS_TO")
)


@pytest.mark.skipif(
    not LIVE,
    reason="live Twilio: set JOURNEYS_LIVE_TWILIO=1, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
    "JOURNEYS_LIVE_SMS_TO (test credentials with the default sender +15005550006 send nothing)",
)
def test_live_twilio() -> None:
    channel = TwilioChannel(
        account_sid=os.environ["TWILIO_ACCOUNT_SID"],
        auth_token=os.environ["TWILIO_AUTH_TOKEN"],
        messaging_service_sid=os.environ.get("JOURNEYS_TWILIO_MESSAGING_SERVICE_SID"),
        sms_from=os.environ.get("JOURNEYS_SMS_FROM") or SENDER,
    )
    receipt = channel.send(sms(body="journeys live check", to=os.environ["JOURNEYS_LIVE_SMS_TO"]))
    assert receipt.provider_message_id.startswith("SM")

    # Not a phone number at all: Twilio refuses it without sending anything.
    exc = refused(channel, sms(to="+1555"))
    assert isinstance(exc, PermanentChannelError) and exc.reason == "invalid_recipient"
