"""The smtp channel through real smtplib against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from fakes.smtp import SilentServer, SmtpInbox, TlsFiles, free_port, make_tls

from channels import (
    ChannelConfigError,
    OutgoingMessage,
    PermanentChannelError,
    TransientChannelError,
)
from channels.registry import adapter_class
from channels.smtp import SmtpChannel

SENDER = "Red Shoes Shop <news@shop.example>"


@pytest.fixture
def inbox() -> Iterator[SmtpInbox]:
    with SmtpInbox() as inbox:
        yield inbox


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own JOURNEYS_SMTP_*/JOURNEYS_EMAIL_* must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith(("JOURNEYS_SMTP_", "JOURNEYS_EMAIL_")):
            monkeypatch.delenv(name)


def channel(inbox: SmtpInbox, **overrides: object) -> SmtpChannel:
    options: dict[str, object] = {
        "host": inbox.host,
        "port": inbox.port,
        "sender": SENDER,
        "reply_to": "help@shop.example",
        "unsubscribe_mailto": "unsubscribe@shop.example",
        "timeout": 5.0,
    }
    options.update(overrides)
    return SmtpChannel(**options)  # type: ignore[arg-type]


def email(**overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "message_id": "0b9c6f4e-5d2a-4c1e-9a57-2f1c3e4d5a6b",
        "channel": "email",
        "to": "ann@example.com",
        "content": {
            "subject": "You left something behind",
            "text": "Your red shoes are still in your cart.",
            "html": "<p>Your <b>red shoes</b> are still in your cart.</p>",
        },
        "category": "marketing",
        "links": {"unsubscribe_url": "https://shop.example/u/abc"},
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def only_message(inbox: SmtpInbox) -> EmailMessage:
    assert len(inbox.messages) == 1, inbox.messages
    return inbox.messages[0].message


# --- what arrives -------------------------------------------------------------


def test_marketing_email_arrives_as_text_then_html_with_every_header(inbox: SmtpInbox) -> None:
    message = email()
    receipt = channel(inbox).send(message)

    received = inbox.messages[0]
    assert received.mail_from == "news@shop.example"
    assert received.rcpt_tos == ["ann@example.com"]
    mail = only_message(inbox)
    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().strip() == "Your red shoes are still in your cart."
    assert "<b>red shoes</b>" in parts[1].get_content()

    assert mail["From"] == SENDER
    assert mail["From"].addresses[0].display_name == "Red Shoes Shop"
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "You left something behind"
    assert mail["Reply-To"] == "help@shop.example"
    assert mail["Date"].datetime is not None
    assert mail["Message-ID"] == f"<{message.message_id}@shop.example>"
    assert receipt.provider_message_id == mail["Message-ID"]
    assert mail["X-Journeys-Message-Id"] == message.message_id
    assert mail["List-Unsubscribe"] == (
        "<https://shop.example/u/abc>, <mailto:unsubscribe@shop.example?subject=unsubscribe>"
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_transactional_email_has_no_unsubscribe_headers(inbox: SmtpInbox) -> None:
    channel(inbox).send(email(category="transactional"))
    mail = only_message(inbox)
    assert mail["List-Unsubscribe"] is None
    assert mail["List-Unsubscribe-Post"] is None
    assert mail["X-Journeys-Message-Id"]


def test_plain_http_unsubscribe_link_gets_no_one_click_header(inbox: SmtpInbox) -> None:
    channel(inbox, unsubscribe_mailto=None).send(
        email(links={"unsubscribe_url": "http://127.0.0.1:8000/u/abc"})
    )
    mail = only_message(inbox)
    assert mail["List-Unsubscribe"] == "<http://127.0.0.1:8000/u/abc>"
    assert mail["List-Unsubscribe-Post"] is None


def test_the_journey_sender_overrides_the_defaults(inbox: SmtpInbox) -> None:
    channel(inbox).send(
        email(options={"from": "Orders <orders@mail.shop.example>", "reply_to": "orders@shop.ex"})
    )
    mail = only_message(inbox)
    assert inbox.messages[0].mail_from == "orders@mail.shop.example"
    assert mail["From"] == "Orders <orders@mail.shop.example>"
    assert mail["Reply-To"] == "orders@shop.ex"
    assert mail["Message-ID"].endswith("@mail.shop.example>")


def test_russian_subject_body_and_sender_name_survive(inbox: SmtpInbox) -> None:
    channel(inbox, sender="Магазин обуви <news@shop.example>").send(
        email(
            content={
                "subject": "Ваша корзина ждёт вас",
                "text": "Здравствуйте, Анна! Красные туфли всё ещё в корзине.",
                "html": "<p>Здравствуйте, <b>Анна</b>!</p>",
            }
        )
    )
    mail = only_message(inbox)
    assert mail["Subject"] == "Ваша корзина ждёт вас"
    assert mail["From"].addresses[0].display_name == "Магазин обуви"
    text, html = (part.get_content() for part in mail.iter_parts())
    assert "Красные туфли всё ещё в корзине." in text
    assert "<b>Анна</b>" in html
    # Every line stays 7-bit: relays without 8BITMIME pass it unchanged.
    assert inbox.messages[0].raw.isascii()


def test_text_only_and_html_only_emails(inbox: SmtpInbox) -> None:
    sender = channel(inbox)
    sender.send(email(content={"subject": "Hi", "text": "Plain hello"}))
    sender.send(email(content={"subject": "Hi", "html": "<p>HTML hello</p>"}))
    plain, html = (received.message for received in inbox.messages)
    assert plain.get_content_type() == "text/plain" and "Plain hello" in plain.get_content()
    assert html.get_content_type() == "text/html" and "HTML hello" in html.get_content()


def test_one_adapter_serves_many_threads_at_once(inbox: SmtpInbox) -> None:
    sender = channel(inbox)
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            sender.send(email(message_id=f"m-{n}", to=f"user{n}@example.com"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    got = {(r.rcpt_tos[0], r.message["X-Journeys-Message-Id"]) for r in inbox.messages}
    assert got == {(f"user{n}@example.com", f"m-{n}") for n in range(8)}


# --- authentication --------------------------------------------------------------


def test_auth_with_the_right_credentials_delivers() -> None:
    with SmtpInbox(credentials=("mailer", "s3cret")) as inbox:
        channel(inbox, username="mailer", password="s3cret").send(email())
        assert inbox.messages[0].authenticated_as == "mailer"


def test_wrong_password_is_a_permanent_auth_error_naming_the_settings() -> None:
    with SmtpInbox(credentials=("mailer", "s3cret")) as inbox:
        with pytest.raises(PermanentChannelError) as caught:
            channel(inbox, username="mailer", password="wrong").send(email())
        assert inbox.messages == []
    assert caught.value.reason == "auth"
    assert caught.value.code == 535
    assert "JOURNEYS_SMTP_USERNAME/JOURNEYS_SMTP_PASSWORD" in str(caught.value)


def test_missing_credentials_on_a_server_that_requires_auth() -> None:
    with (
        SmtpInbox(credentials=("mailer", "s3cret")) as inbox,
        pytest.raises(PermanentChannelError) as caught,
    ):
        channel(inbox).send(email())
    assert caught.value.reason == "auth" and caught.value.code == 530
    assert "JOURNEYS_SMTP_USERNAME" in str(caught.value)


def test_credentials_for_a_server_that_offers_no_auth(inbox: SmtpInbox) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(inbox, username="mailer", password="s3cret").send(email())
    assert caught.value.reason == "auth"
    assert "does not offer AUTH" in str(caught.value)
    assert inbox.messages == []


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(inbox: SmtpInbox) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(inbox, security="starttls").send(email())
    assert "STARTTLS" in str(caught.value) and "JOURNEYS_SMTP_SECURITY" in str(caught.value)
    assert inbox.messages == []


# --- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


def test_starttls_then_auth_as_a_submission_port_wants(certificate: TlsFiles) -> None:
    # The server offers AUTH only after STARTTLS, like real relays.
    with SmtpInbox(
        credentials=("mailer", "s3cret"), tls="starttls", certificate=certificate
    ) as inbox:
        sender = channel(
            inbox,
            security="starttls",
            ca_file=str(certificate.ca),
            username="mailer",
            password="s3cret",
        )
        sender.send(email())
        assert inbox.messages[0].authenticated_as == "mailer"


def test_implicit_tls(certificate: TlsFiles) -> None:
    with SmtpInbox(tls="ssl", certificate=certificate) as inbox:
        channel(inbox, security="ssl", ca_file=str(certificate.ca)).send(email())
        assert only_message(inbox)["X-Journeys-Message-Id"]


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_an_untrusted_certificate_sends_nothing(certificate: TlsFiles, security: str) -> None:
    with SmtpInbox(tls=security, certificate=certificate) as inbox:  # type: ignore[arg-type]
        with pytest.raises(PermanentChannelError) as caught:
            channel(inbox, security=security).send(email())  # the system CAs only
        assert inbox.messages == []
    assert caught.value.code == "tls"
    assert "JOURNEYS_SMTP_CA_FILE" in str(caught.value)


def test_an_unreadable_ca_file_stops_the_worker(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="JOURNEYS_SMTP_CA_FILE"):
        SmtpChannel(host="smtp.example.com", sender=SENDER, ca_file=str(tmp_path / "missing.pem"))


# --- error mapping ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "error", "reason", "code"),
    [
        (("rcpt", "550 5.1.1 No such user"), PermanentChannelError, "invalid_recipient", 550),
        (("rcpt", "553 Mailbox name not allowed"), PermanentChannelError, "invalid_recipient", 553),
        (("rcpt", "550 5.7.1 Relaying denied"), PermanentChannelError, "rejected", 550),
        (("rcpt", "451 4.3.0 Try again later"), TransientChannelError, None, 451),
        (("rcpt", "452 4.2.2 Mailbox full"), TransientChannelError, None, 452),
        (("mail", "553 5.7.1 Sender not allowed"), PermanentChannelError, "rejected", 553),
        (("mail", "421 4.7.0 Too many connections"), TransientChannelError, None, 421),
        (("data", "554 5.6.0 Message looks like spam"), PermanentChannelError, "rejected", 554),
        (("data", "451 4.7.1 Greylisted"), TransientChannelError, None, 451),
    ],
)
def test_smtp_replies_become_typed_errors(
    inbox: SmtpInbox,
    script: tuple[str, str],
    error: type[Exception],
    reason: str | None,
    code: int,
) -> None:
    stage, reply = script
    if stage == "rcpt":
        inbox.reject_recipient("ann@example.com", reply)
    elif stage == "mail":
        inbox.reject_sender(reply)
    else:
        inbox.reject_data(reply)
    with pytest.raises(error) as caught:
        channel(inbox).send(email())
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert caught.value.provider == "smtp"  # type: ignore[attr-defined]
    if reason is not None:
        assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert reply.split(" ", 1)[1] in str(caught.value)
    assert inbox.messages == []


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_a_dropped_connection_is_transient(inbox: SmtpInbox, stage: str) -> None:
    inbox.drop_connection(at=stage)
    with pytest.raises(TransientChannelError, match="hung up"):
        channel(inbox).send(email())


def test_a_hang_up_after_the_message_was_accepted_is_still_a_success(inbox: SmtpInbox) -> None:
    """Reporting an error here would make Temporal retry, and the contact get it twice."""
    inbox.drop_connection(at="quit")
    receipt = channel(inbox).send(email())
    assert receipt.provider_message_id == only_message(inbox)["Message-ID"]


def test_nobody_listening_is_transient() -> None:
    sender = SmtpChannel(host="127.0.0.1", port=free_port(), sender=SENDER, timeout=2)
    with pytest.raises(TransientChannelError, match="ConnectionRefusedError"):
        sender.send(email())


def test_a_server_that_never_answers_times_out_as_transient() -> None:
    with SilentServer() as server:
        sender = SmtpChannel(host=server.host, port=server.port, sender=SENDER, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransientChannelError):
            sender.send(email())
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "to",
    [
        "ann",
        "",
        "ann@example.com, bob@example.com",
        "ann@example.com\r\nBcc: x@evil.example",
        "ann@example.com\u2028Bcc: x@evil.example",
        "ann@example.com\x0bBcc: x@evil.example",
        "ann@exa\x00mple.com",
        # An RFC 2047 encoded word: mail programs show it decoded, as two addresses.
        "=?utf-8?q?ceo=40bank.example=2C_cfo=40bank.example?=@evil.example",
    ],
)
def test_a_recipient_that_is_not_one_address_is_refused_before_connecting(
    inbox: SmtpInbox, to: str
) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(inbox).send(email(to=to))
    assert caught.value.reason == "invalid_recipient"
    assert inbox.messages == []


def test_only_email_is_sent(inbox: SmtpInbox) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(inbox).send(email(channel="sms", to="+15551234567", content={"body": "hi"}))
    assert caught.value.reason == "bad_payload"


def test_a_line_break_in_the_subject_is_a_bad_payload_not_a_header(inbox: SmtpInbox) -> None:
    with pytest.raises(PermanentChannelError) as caught:
        channel(inbox).send(
            email(content={"subject": "Hi\r\nBcc: x@evil.example", "text": "Hello"})
        )
    assert caught.value.reason == "bad_payload"
    assert inbox.messages == []


# --- configuration -----------------------------------------------------------------


def test_configured_from_the_environment_and_found_through_the_entry_point(
    inbox: SmtpInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEYS_SMTP_HOST", inbox.host)
    monkeypatch.setenv("JOURNEYS_SMTP_PORT", str(inbox.port))
    monkeypatch.setenv("JOURNEYS_EMAIL_FROM", SENDER)
    monkeypatch.setenv("JOURNEYS_EMAIL_REPLY_TO", "help@shop.example")
    cls = adapter_class("smtp")
    assert cls is SmtpChannel and cls.serves == ("email",)
    adapter = cls.from_settings(None)
    assert adapter.security == "none"  # a loopback relay needs no TLS by default
    adapter.send(email())
    assert only_message(inbox)["Reply-To"] == "help@shop.example"


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"JOURNEYS_EMAIL_FROM": SENDER}, "JOURNEYS_SMTP_HOST"),
        ({"JOURNEYS_SMTP_HOST": "smtp.example.com"}, "JOURNEYS_EMAIL_FROM"),
        (
            {
                "JOURNEYS_SMTP_HOST": "smtp.example.com",
                "JOURNEYS_EMAIL_FROM": SENDER,
                "JOURNEYS_SMTP_USERNAME": "mailer",
            },
            "JOURNEYS_SMTP_PASSWORD",
        ),
        (
            {
                "JOURNEYS_SMTP_HOST": "smtp.example.com",
                "JOURNEYS_EMAIL_FROM": SENDER,
                "JOURNEYS_SMTP_SECURITY": "tls",
            },
            "JOURNEYS_SMTP_SECURITY",
        ),
        (
            {
                "JOURNEYS_SMTP_HOST": "smtp.example.com",
                "JOURNEYS_EMAIL_FROM": SENDER,
                "JOURNEYS_SMTP_PORT": "submission",
            },
            "JOURNEYS_SMTP_PORT",
        ),
        (
            {
                "JOURNEYS_SMTP_HOST": "smtp.example.com",
                "JOURNEYS_EMAIL_FROM": SENDER,
                "JOURNEYS_SMTP_SECURITY": "none",
                "JOURNEYS_SMTP_USERNAME": "mailer",
                "JOURNEYS_SMTP_PASSWORD": "s3cret",
            },
            "JOURNEYS_SMTP_SECURITY",
        ),
    ],
    ids=["no-host", "no-from", "half-credentials", "bad-security", "bad-port", "clear-text-auth"],
)
def test_start_up_errors_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], named: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ChannelConfigError, match=named):
        SmtpChannel.from_settings(None)


def test_security_defaults_follow_the_host() -> None:
    remote = SmtpChannel(host="smtp.example.com", sender=SENDER)
    assert (remote.security, remote.port) == ("starttls", 587)
    implicit = SmtpChannel(host="smtp.example.com", security="ssl", sender=SENDER)
    assert (implicit.security, implicit.port) == ("ssl", 465)
    local = SmtpChannel(host="localhost", port=8025, sender=SENDER)
    assert local.security == "none"
    # An explicit choice for a relay on a trusted network is respected.
    relay = SmtpChannel(host="relay.internal", port=25, security="none", sender=SENDER)
    assert relay.security == "none"
