"""Provider answers through the whole pipeline: real journeys, real adapters and SDKs,
loopback fakes. Permanent refusals are tried once, change what we know about the
contact, and send the journey down the step's failure path; transient ones retry
as the provider asked; a sent message is never sent again."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from fakes.fcm import FakeFCM
from fakes.sendgrid import FakeSendGrid
from fakes.server import FakeProvider, Reply, Request
from fakes.twilio import FakeTwilio
from harness import Bench, write_journey
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from channels.base import Channel, OutgoingMessage, Receipt
from channels.email import EmailSettings
from channels.errors import TransientChannelError
from channels.firebase import FirebaseChannel
from channels.sendgrid import SendGridChannel
from channels.twilio import TwilioChannel
from channels.webhook import WebhookChannel
from orchestrator.activities.sending import SendActivities
from orchestrator.rendering import Renderer
from orchestrator.services.links import MessageLinks
from orchestrator.store.db import make_engine, session_scope
from orchestrator.store.suppressions import suppress
from orchestrator.store.tables import Contact, Message, Suppression
from orchestrator.workflows import types as t

PHONE, OTHER_PHONE = "+15550101010", "+15550102020"


def templates(root: Path) -> Path:
    for name in ("offer", "fallback"):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "email.subject").write_text(f"{name} subject")
        (folder / "email.html").write_text(f"<p>{name} for {{{{ contact.id }}}}</p>")
        (folder / "push.title").write_text(name)
        (folder / "push.body").write_text(f"{name} push")
        (folder / "sms.body").write_text(f"{name} sms")
    return root


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="module")
def fcm() -> Iterator[FakeFCM]:
    with FakeFCM() as fake:
        yield fake


@pytest.fixture
def adapters(
    sendgrid: FakeSendGrid, twilio: FakeTwilio, fcm: FakeFCM, tmp_path: Path
) -> dict[str, Any]:
    for fake in (sendgrid, twilio, fcm):
        fake.reset()
    return {
        "email": SendGridChannel(
            sendgrid.api_key,
            host=sendgrid.url,
            email=EmailSettings(from_="Fernwood <shop@example.com>"),
        ),
        "sms": TwilioChannel(
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            sms_from="+15550000000",
            base_url=twilio.url,
        ),
        "push": FirebaseChannel(
            fcm.service_account(tmp_path / "service-account.json"), fcm_base_url=fcm.url
        ),
    }


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = Bench(
        ts_env,
        sqlite_engine,
        tmp_path / "journeys",
        templates(tmp_path / "templates"),
        overrides={"marketing_cap": "none", "message_cap": "none"},
    )
    write_journey(
        bench.journeys_dir,
        "offer",
        textwrap.dedent(
            """
            id: offer
            name: Offer
            trigger: { event: Offer }
            entry: { re_entry: always }
            steps:
              - send: { id: offer, channel: sms, template: offer }
                on_failure:
                  - send: { id: fallback, channel: email, template: fallback }
              - send: { id: push_offer, channel: push, template: offer }
            """
        ),
    )
    bench.deploy()
    yield bench


def row(bench: Bench, user: str, template: str) -> Message:
    return next(m for m in bench.messages(user) if m.step_id == template)


def contact(bench: Bench, user: str) -> Contact:
    with session_scope(bench.engine) as session:
        found = session.get(Contact, user)
        assert found is not None
        session.expunge(found)
        return found


def suppressions(bench: Bench) -> set[tuple[str, str, str]]:
    with session_scope(bench.engine) as session:
        return {(s.channel, s.address, s.reason) for s in session.exec(select(Suppression))}


async def run_offer(bench: Bench, adapters: dict[str, Any], **people: dict[str, Any]) -> None:
    async with bench.worker(adapters):
        for user, traits in people.items():
            context = traits.pop("context", {})
            await bench.identify(user, context=context, **traits)
            await bench.track(user, "Offer")
            assert await bench.result("offer", user) == "completed"


async def test_stop_reply_21610_opts_the_contact_out_and_takes_the_failure_path(
    bench: Bench, adapters: dict[str, Any], twilio: FakeTwilio, sendgrid: FakeSendGrid
) -> None:
    twilio.stopped.add(PHONE)
    await run_offer(bench, adapters, ann={"phone": PHONE, "email": "ann@example.com"})

    offer = row(bench, "ann", "offer")
    assert offer.status == "failed" and offer.attempts == 1
    assert "unsubscribed" in (offer.error or "") and "21610" in (offer.error or "")
    assert len([r for r in twilio.requests if r.path.endswith("/Messages.json")]) == 1
    assert contact(bench, "ann").consent["sms"] == {"marketing": False, "transactional": False}
    assert ("sms", PHONE, "unsubscribed") in suppressions(bench)
    # The failure path: the email fallback went out through SendGrid.
    fallback = row(bench, "ann", "fallback")
    assert fallback.status == "sent" and fallback.channel == "email"
    assert sendgrid.delivery(fallback.id).to == ["ann@example.com"]

    # Next time, policy stops the SMS before Twilio is asked.
    twilio.reset()
    bench.finished.clear()
    async with bench.worker(adapters):
        await bench.track("ann", "Offer")
        await bench.result("offer", "ann")
    again = [m for m in bench.messages("ann") if m.step_id == "offer"][-1]
    assert again.status == "suppressed" and twilio.requests == []


async def test_invalid_number_is_suppressed_after_one_attempt(
    bench: Bench, adapters: dict[str, Any], twilio: FakeTwilio
) -> None:
    twilio.invalid.add(OTHER_PHONE)
    await run_offer(bench, adapters, bo={"phone": OTHER_PHONE, "email": "bo@example.com"})
    offer = row(bench, "bo", "offer")
    assert (offer.status, offer.attempts) == ("failed", 1)
    assert "21211" in (offer.error or "")
    assert ("sms", OTHER_PHONE, "invalid") in suppressions(bench)
    assert row(bench, "bo", "fallback").status == "sent"


async def test_dead_push_tokens_are_removed_and_live_devices_still_get_it(
    bench: Bench, adapters: dict[str, Any], fcm: FakeFCM
) -> None:
    fcm.register("live-token")
    # "gone-token" is unknown to FCM: UNREGISTERED.
    await run_offer(
        bench,
        adapters,
        cy={"phone": PHONE, "context": {"device": {"token": "gone-token"}}},
    )
    await run_offer(bench, adapters, dee={"phone": OTHER_PHONE, "context": {}})
    with session_scope(bench.engine) as session:
        for user, tokens in (("dee", ["live-token", "gone-token"]),):
            found = session.get(Contact, user)
            assert found is not None
            found.push_tokens = tokens

    push = row(bench, "cy", "push_offer")
    assert push.status == "failed" and "dead_token" in (push.error or "")
    assert contact(bench, "cy").push_tokens == []

    bench.finished.clear()
    async with bench.worker(adapters):
        await bench.track("dee", "Offer")
        await bench.result("offer", "dee")
    latest = [m for m in bench.messages("dee") if m.step_id == "push_offer"][-1]
    assert latest.status == "sent"
    assert len(fcm.messages_to("live-token")) == 1
    assert contact(bench, "dee").push_tokens == ["live-token"]


async def test_rate_limited_send_retries_after_the_reset_and_sends_once(
    bench: Bench, adapters: dict[str, Any], sendgrid: FakeSendGrid, twilio: FakeTwilio
) -> None:
    twilio.stopped.add(PHONE)  # so the journey goes to the email fallback
    sendgrid.fail_next(FakeSendGrid.rate_limited(retry_after=1), FakeSendGrid.server_error(503))
    await run_offer(bench, adapters, eve={"phone": PHONE, "email": "eve@example.com"})
    fallback = row(bench, "eve", "fallback")
    assert (fallback.status, fallback.attempts) == ("sent", 3)
    assert sendgrid.by_msg_id()[fallback.id] == 1
    assert fallback.provider_message_id == sendgrid.delivery(fallback.id).x_message_id


async def test_a_retry_of_a_sent_message_returns_the_stored_id_without_calling_the_provider(
    bench: Bench, adapters: dict[str, Any], sendgrid: FakeSendGrid
) -> None:
    sends = SendActivities(
        bench.engine,
        Renderer.from_settings(bench.settings),
        adapters,
        MessageLinks("http://127.0.0.1:8000", "secret"),
        bench.settings,
    )
    await bench.identify("fay", email="fay@example.com")
    request = t.SendRequest(
        workflow_id="journey:offer:fay",
        entry_seq=1,
        step_id="fallback",
        journey_id="offer",
        contact_id="fay",
        channel="email",
        template="fallback",
        category="transactional",
        trigger_event_id=None,
    )
    env = ActivityEnvironment()
    prepared = env.run(sends.prepare_message, request)
    assert prepared.status == "ready"
    first = env.run(sends.deliver_message, t.DeliverRequest(prepared.message_id or ""))
    # Temporal retries both activities (a lost completion, a worker restart...).
    again = env.run(sends.prepare_message, request)
    second = env.run(sends.deliver_message, t.DeliverRequest(prepared.message_id or ""))
    assert first.status == second.status == again.status == "sent"
    assert again.message_id == prepared.message_id
    assert len(sendgrid.requests) == 1
    stored = row(bench, "fay", "fallback")
    assert stored.attempts == 1 and stored.provider_message_id


@pytest.mark.parametrize(
    ("injected", "why"),
    [
        (
            "eve@example.com\r\nBcc: other@example.net",
            "it contains a line break (CR/LF), which could add mail headers",
        ),
        (
            "=?utf-8?q?ceo=40bank.example=2C_cfo=40bank.example?=@evil.example",
            "it contains an encoded word",
        ),
    ],
)
async def test_an_address_with_a_line_break_or_an_encoded_word_never_reaches_the_provider(
    bench: Bench, adapters: dict[str, Any], sendgrid: FakeSendGrid, injected: str, why: str
) -> None:
    """Addresses stored before ingestion refused them (a line break; an RFC 2047 encoded
    word, which mail programs show decoded): the pipeline does not take one as an address,
    and the adapter refuses one that was queued already."""
    with session_scope(bench.engine) as session:
        session.add(Contact(id="eve", email=injected))
        session.add(Contact(id="gus", email="gus@example.com"))
    sends = SendActivities(
        bench.engine,
        Renderer.from_settings(bench.settings),
        adapters,
        MessageLinks("http://127.0.0.1:8000", "secret"),
        bench.settings,
    )

    def request(user: str) -> t.SendRequest:
        return t.SendRequest(
            workflow_id=f"journey:offer:{user}",
            entry_seq=1,
            step_id="fallback",
            journey_id="offer",
            contact_id=user,
            channel="email",
            template="fallback",
            category="transactional",
            trigger_event_id=None,
        )

    env = ActivityEnvironment()
    prepared = env.run(sends.prepare_message, request("eve"))
    assert prepared.status == "failed"
    assert prepared.error is not None
    assert prepared.error.startswith(f"the email address on file cannot be used ({why}")
    assert prepared.error.endswith("); fix it with an identify")
    queued = env.run(sends.prepare_message, request("gus"))
    with session_scope(bench.engine) as session:
        message = session.get(Message, queued.message_id)
        assert message is not None
        message.recipient = injected  # as if queued before the fix
    with pytest.raises(ApplicationError) as refused:
        env.run(sends.deliver_message, t.DeliverRequest(queued.message_id or ""))
    assert refused.value.non_retryable
    assert "eve@example.com" not in str(refused.value) and "bank.example" not in str(refused.value)
    assert row(bench, "gus", "fallback").status == "failed"
    assert sendgrid.requests == []


class Scripted(Channel):
    """A provider stand-in for pipeline edge cases: runs `behaviour` on each send."""

    name: ClassVar[str] = "scripted"
    serves: ClassVar[tuple[str, ...]] = ("email", "push", "sms")

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.calls = 0

    def send(self, message: OutgoingMessage) -> Receipt:
        self.calls += 1
        return self.behaviour(message)


def always_busy(message: OutgoingMessage) -> Receipt:
    raise TransientChannelError("provider busy", provider="scripted", status=503)


async def test_when_retries_run_out_the_message_fails_and_the_failure_path_runs(
    bench: Bench, adapters: dict[str, Any]
) -> None:
    """6 hours of a provider answering 503 (time-skipped): about 40 attempts, then give up."""
    busy = Scripted(always_busy)
    await run_offer(bench, {**adapters, "sms": busy}, gus={"phone": PHONE, "email": "g@x.io"})
    offer = row(bench, "gus", "offer")
    assert offer.status == "failed" and offer.attempts == busy.calls >= 30
    assert "gave up after 6 h of retries" in (offer.error or "")
    assert row(bench, "gus", "fallback").status == "sent"


def activities(bench: Bench, adapters: dict[str, Any]) -> SendActivities:
    return SendActivities(
        bench.engine,
        Renderer.from_settings(bench.settings),
        adapters,
        MessageLinks("http://127.0.0.1:8000", "secret"),
        bench.settings,
    )


def sms_request(user: str, step: str = "offer") -> t.SendRequest:
    return t.SendRequest(
        workflow_id=f"journey:offer:{user}",
        entry_seq=1,
        step_id=step,
        journey_id="offer",
        contact_id=user,
        channel="sms",
        template="offer",
        category="marketing",
        trigger_event_id=None,
        now="2026-06-10T12:00:00+00:00",
    )


def attempt_at(env: ActivityEnvironment, when: datetime) -> None:
    env.info = dataclasses.replace(env.info, current_attempt_scheduled_time=when)


async def test_delivery_checks_policy_again_when_it_happens(bench: Bench) -> None:
    """Retries and a busy queue can put hours between prepare and delivery."""
    accepted = Scripted(lambda m: Receipt(provider_message_id=f"p-{m.message_id}"))
    sends = activities(bench, {"sms": accepted})
    quiet = {"quiet_hours": {"sms": "21:00-08:00"}}
    env = ActivityEnvironment()
    for user in ("night", "stopped"):
        await bench.identify(user, phone=PHONE, context={"timezone": "UTC"})
        prepared = env.run(sends.prepare_message, dataclasses.replace(sms_request(user)))
        assert prepared.status == "ready"

    attempt_at(env, datetime(2026, 6, 10, 22, 0, tzinfo=UTC))  # quiet hours now
    night = row(bench, "night", "offer")
    held = env.run(sends.deliver_message, t.DeliverRequest(night.id, {}, quiet))
    assert (held.status, held.retry_at) == ("deferred", "2026-06-11T08:00:00+00:00")

    with session_scope(bench.engine) as session:  # replied STOP meanwhile
        suppress(session, "sms", PHONE, "unsubscribed", "twilio")
    attempt_at(env, datetime(2026, 6, 10, 13, 0, tzinfo=UTC))
    stopped = row(bench, "stopped", "offer")
    result = env.run(sends.deliver_message, t.DeliverRequest(stopped.id, {}, quiet))
    assert result.status == "suppressed"
    assert accepted.calls == 0


async def test_recording_a_long_provider_id_never_causes_a_resend(
    bench: Bench, engine: Any
) -> None:
    long_id = Scripted(lambda m: Receipt(provider_message_id="x" * 300))
    bench.engine = engine
    sends = activities(bench, {"sms": long_id})
    await bench.identify("hal", phone=PHONE)
    env = ActivityEnvironment()
    prepared = env.run(sends.prepare_message, sms_request("hal"))
    for _ in range(2):  # a retry finds it sent
        result = env.run(sends.deliver_message, t.DeliverRequest(prepared.message_id or ""))
        assert result.status == "sent"
    assert long_id.calls == 1
    assert row(bench, "hal", "offer").provider_message_id == "x" * 255


async def test_a_webhook_that_already_said_delivered_is_not_overwritten(bench: Bench) -> None:
    def delivered_before_we_record(message: OutgoingMessage) -> Receipt:
        with session_scope(bench.engine) as session:  # the status callback won the race
            found = session.get(Message, message.message_id)
            assert found is not None
            found.status = "delivered"
        return Receipt(provider_message_id="SM1")

    sends = activities(bench, {"sms": Scripted(delivered_before_we_record)})
    await bench.identify("ivy", phone=PHONE)
    env = ActivityEnvironment()
    prepared = env.run(sends.prepare_message, sms_request("ivy"))
    env.run(sends.deliver_message, t.DeliverRequest(prepared.message_id or ""))
    stored = row(bench, "ivy", "offer")
    assert (stored.status, stored.provider_message_id) == ("delivered", "SM1")


# --- a provider call without a recorded outcome (the worker stopped or died during it) ----


class Died(BaseException):
    """The worker process ending in the middle of a provider call: nothing after it runs."""


def dies_after_the_provider_accepts(message: OutgoingMessage) -> Receipt:
    raise Died()


async def test_a_delivery_whose_outcome_is_unknown_is_never_sent_again(bench: Bench) -> None:
    """The first attempt's call started and never came back: the retry cannot know whether
    the provider has the message, so it records `unknown` instead of sending it twice."""
    dying = Scripted(dies_after_the_provider_accepts)
    await bench.identify("jo", phone=PHONE)
    env = ActivityEnvironment()
    prepared = env.run(activities(bench, {"sms": dying}).prepare_message, sms_request("jo"))
    with pytest.raises(Died):
        env.run(
            activities(bench, {"sms": dying}).deliver_message,
            t.DeliverRequest(prepared.message_id or ""),
        )
    assert row(bench, "jo", "offer").status == "sending"

    accepting = Scripted(lambda m: Receipt(provider_message_id="SM2"))
    retry = env.run(
        activities(bench, {"sms": accepting}).deliver_message,
        t.DeliverRequest(prepared.message_id or ""),
    )
    assert accepting.calls == 0, "sent twice"
    stored = row(bench, "jo", "offer")
    assert (stored.status, stored.attempts) == ("unknown", 1)
    assert "outcome unknown" in (stored.error or "") and "not sent again" in (stored.error or "")
    assert stored.timeline[-1]["status"] == "unknown"
    # The run goes on as if sent (the call had started): no failure path on another channel.
    assert retry.status == "sent"
    # A later delivery report settles it.
    from orchestrator.store.engagement import next_status

    assert next_status("unknown", "delivered") == "delivered"


async def test_a_failure_before_the_provider_call_is_not_unknown(bench: Bench) -> None:
    """Only "the call started, no outcome recorded" is unknown: a provider that said "not
    now", or a database failing before the call, leave the message to be sent by the retry."""
    await bench.identify("kim", phone=PHONE)
    await bench.identify("lee", phone=OTHER_PHONE)
    env = ActivityEnvironment()
    busy_once = Scripted(lambda m: always_busy(m) if busy_once.calls == 1 else Receipt("SM3"))
    sends = activities(bench, {"sms": busy_once})
    kim = env.run(sends.prepare_message, sms_request("kim"))
    with pytest.raises(Exception, match="provider busy"):
        env.run(sends.deliver_message, t.DeliverRequest(kim.message_id or ""))
    assert row(bench, "kim", "offer").status == "queued"  # the provider does not have it
    assert env.run(sends.deliver_message, t.DeliverRequest(kim.message_id or "")).status == "sent"
    assert busy_once.calls == 2
    assert (row(bench, "kim", "offer").status, row(bench, "kim", "offer").attempts) == ("sent", 2)

    accepting = Scripted(lambda m: Receipt(provider_message_id="SM4"))
    sends = activities(bench, {"sms": accepting})
    lee = env.run(sends.prepare_message, sms_request("lee"))
    failing = make_engine(bench.engine.url.render_as_string(hide_password=False))

    def disk_full(*_: Any) -> None:  # the commit that would say `sending`
        raise OperationalError("COMMIT", {}, Exception("database or disk is full"))

    event.listen(failing, "commit", disk_full)
    broken = activities(bench, {"sms": accepting})
    broken.engine = failing
    with pytest.raises(OperationalError, match="disk is full"):
        env.run(broken.deliver_message, t.DeliverRequest(lee.message_id or ""))
    failing.dispose()
    assert row(bench, "lee", "offer").status == "queued"
    assert env.run(sends.deliver_message, t.DeliverRequest(lee.message_id or "")).status == "sent"
    assert accepting.calls == 1


def broken_sdk(message: OutgoingMessage) -> Receipt:
    raise KeyError("name")  # e.g. an SDK failing to read an accepted response


async def test_an_adapter_failing_unexpectedly_leaves_the_outcome_unknown(bench: Bench) -> None:
    odd = Scripted(broken_sdk)
    await bench.identify("max", phone=PHONE)
    env = ActivityEnvironment()
    sends = activities(bench, {"sms": odd})
    prepared = env.run(sends.prepare_message, sms_request("max"))
    for _ in range(2):  # a retry changes nothing
        result = env.run(sends.deliver_message, t.DeliverRequest(prepared.message_id or ""))
        assert result.status == "sent"
    assert odd.calls == 1
    stored = row(bench, "max", "offer")
    assert stored.status == "unknown" and "KeyError" in (stored.error or "")


def sdk_quoting_the_number(message: OutgoingMessage) -> Receipt:
    raise ValueError(f"could not parse the answer for {message.to}")


async def test_an_unexpected_adapter_failure_is_logged_where_it_failed_without_the_address(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """Log lines never name an address: the SDK's own text is redacted as the stored
    error is, and the traceback keeps only where it failed."""
    odd = Scripted(sdk_quoting_the_number)
    await bench.identify("mia", phone=PHONE)
    env = ActivityEnvironment()
    sends = activities(bench, {"sms": odd})
    prepared = env.run(sends.prepare_message, sms_request("mia"))
    with caplog.at_level("WARNING", logger="orchestrator.activities.sending"):
        env.run(sends.deliver_message, t.DeliverRequest(prepared.message_id or ""))
    [record] = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    logged = caplog.text
    assert PHONE not in logged and PHONE.lstrip("+") not in logged
    assert "ValueError: could not parse the answer for <recipient>" in record.getMessage()
    assert "in sdk_quoting_the_number" in record.getMessage()  # where it failed
    assert record.exc_info is None  # no traceback carrying the SDK's text unredacted


class Receiver(FakeProvider):
    """A webhook endpoint that deduplicates on Idempotency-Key, as docs/channels/webhook.md
    asks of receivers."""

    def handle(self, request: Request) -> Reply:
        return Reply(202, {"id": f"evt-{request.headers['idempotency-key']}"})


async def test_an_idempotent_provider_gets_the_unknown_delivery_again_with_the_same_key(
    bench: Bench,
) -> None:
    with Receiver() as receiver:
        webhook = WebhookChannel(url=receiver.url + "/hook", secret="whsec_0123456789abcdef")

        class DiesAfterTheCall(Channel):
            name, serves = webhook.name, webhook.serves

            def send(self, message: OutgoingMessage) -> Receipt:
                webhook.send(message)  # the receiver has it...
                raise Died()  # ...and the worker is gone before recording it

        await bench.identify("ned", phone=PHONE)
        env = ActivityEnvironment()
        prepared = env.run(
            activities(bench, {"sms": DiesAfterTheCall()}).prepare_message, sms_request("ned")
        )
        with pytest.raises(Died):
            env.run(
                activities(bench, {"sms": DiesAfterTheCall()}).deliver_message,
                t.DeliverRequest(prepared.message_id or ""),
            )
        result = env.run(
            activities(bench, {"sms": webhook}).deliver_message,
            t.DeliverRequest(prepared.message_id or ""),
        )
        keys = [r.headers["idempotency-key"] for r in receiver.requests]
    assert result.status == "sent"
    assert keys == [prepared.message_id] * 2  # sent again, under the same key
    stored = row(bench, "ned", "offer")
    assert (stored.status, stored.attempts) == ("sent", 2)
    assert "same message id" in stored.timeline[-2]["detail"]


# --- a provider's "wait" holds every worker ----------------------------------------------


def waits_once(provider_calls: Callable[[], int]) -> Callable[[OutgoingMessage], Receipt]:
    """The provider's first answer is "wait 30 s" (429), then it accepts."""

    def answer(message: OutgoingMessage) -> Receipt:
        if provider_calls() == 1:
            raise TransientChannelError("429", provider="scripted", status=429, retry_after=30)
        return Receipt(provider_message_id=f"p-{message.message_id}")

    return answer


async def two_workers(
    bench: Bench, engine: Any, provider: Scripted
) -> tuple[SendActivities, SendActivities, ActivityEnvironment, dict[str, str]]:
    """Two workers' send activities on one store, and an SMS prepared for ann and bob."""
    bench.engine = engine
    first, second = activities(bench, {"sms": provider}), activities(bench, {"sms": provider})
    env = ActivityEnvironment()
    prepared = {}
    for user in ("ann", "bob"):
        await bench.identify(user, phone=PHONE)
        prepared[user] = env.run(first.prepare_message, sms_request(user)).message_id or ""
    return first, second, env, prepared


async def test_a_429_heard_by_one_worker_holds_the_provider_for_every_worker(
    bench: Bench, engine: Any
) -> None:
    """SendGrid or Twilio limit the account, not a process: after one worker is told to
    wait 30 s, another worker on the same store does not call the provider either; it
    retries after the wait (ProviderBackoff with the delay), on SQLite and PostgreSQL."""
    provider = Scripted(waits_once(lambda: provider.calls))
    first, second, env, prepared = await two_workers(bench, engine, provider)
    with pytest.raises(ApplicationError) as told:
        env.run(first.deliver_message, t.DeliverRequest(prepared["ann"]))
    assert told.value.type == "TransientChannelError"
    with pytest.raises(ApplicationError) as held:
        env.run(second.deliver_message, t.DeliverRequest(prepared["bob"]))
    assert held.value.type == "ProviderBackoff" and "scripted asked us to wait" in str(held.value)
    assert held.value.next_retry_delay is not None
    assert 25 < held.value.next_retry_delay.total_seconds() <= 30
    assert provider.calls == 1, "the second worker called the provider during the wait"
    assert row(bench, "bob", "offer").status == "queued"


async def test_a_wait_for_one_recipient_holds_only_that_message(bench: Bench, engine: Any) -> None:
    """FCM's quota is mostly per device: its "wait" must not stop every push (a token
    copied onto many contacts would otherwise stop them all). The message waits; the
    next one goes out."""

    class PerDevice(Scripted):
        backoff_scope: ClassVar[str] = "recipient"

    provider = PerDevice(waits_once(lambda: provider.calls))
    first, second, env, prepared = await two_workers(bench, engine, provider)
    with pytest.raises(ApplicationError) as told:
        env.run(first.deliver_message, t.DeliverRequest(prepared["ann"]))
    assert told.value.type == "TransientChannelError"
    assert told.value.next_retry_delay == timedelta(seconds=30)  # ann's message waits
    assert env.run(second.deliver_message, t.DeliverRequest(prepared["bob"])).status == "sent"
    assert provider.calls == 2
