"""The channel registry: adapters are discovered through the `journeys.channels` entry point."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from channels import ChannelConfigError, OutgoingMessage
from channels.console import ConsoleChannel
from channels.errors import PermanentChannelError
from channels.registry import adapter_class, available
from orchestrator.processes.worker import channel_adapters
from orchestrator.settings import Settings


def test_console_is_registered_through_the_entry_point() -> None:
    assert available()["console"] is ConsoleChannel
    assert adapter_class("console") is ConsoleChannel


def test_unknown_adapter_is_a_clear_configuration_error() -> None:
    with pytest.raises(ChannelConfigError, match=r"no channel adapter named 'sendgird'.*console"):
        adapter_class("sendgird")
    with pytest.raises(ChannelConfigError, match="sendgird"):
        channel_adapters(Settings(email_channel="sendgird"))


def test_console_prints_every_part_but_html_bodies() -> None:
    stream = io.StringIO()
    receipt = ConsoleChannel(stream).send(
        OutgoingMessage(
            message_id="m1",
            channel="email",
            to="ann@example.com",
            content={"subject": "Hi", "html": "<p>Hi</p>", "text": "Hi there"},
        )
    )
    assert receipt.provider_message_id.startswith("console-")
    printed = stream.getvalue()
    assert "--- email to ann@example.com (message m1)" in printed
    assert "subject: Hi" in printed and "text: Hi there" in printed
    assert "html: 9 characters" in printed


class _SlowStream(io.StringIO):
    """A terminal or log file that lets other threads run in the middle of a write."""

    def write(self, text: str) -> int:
        time.sleep(0.002)
        return super().write(text)


def test_console_messages_sent_at_once_never_splice_into_one_line() -> None:
    # Activities send from a thread pool; `journeys dev` output is read back by people
    # and by the storefront's `opens` (one `--- email to` header per line).
    stream = _SlowStream()
    console = ConsoleChannel(stream)

    def send(n: int) -> None:
        console.send(
            OutgoingMessage(
                message_id=f"m{n}",
                channel="email",
                to=f"shopper-{n}@example.com",
                content={"subject": f"Hi {n}", "text": "Your cart", "html": "<p>Hi</p>"},
            )
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(40)))
    lines = stream.getvalue().splitlines()
    headers = [line for line in lines if "--- email" in line]
    assert sorted(headers) == sorted(
        f"--- email to shopper-{n}@example.com (message m{n})" for n in range(40)
    )
    for n in range(40):  # each block whole, in order
        at = lines.index(f"--- email to shopper-{n}@example.com (message m{n})")
        assert lines[at + 1 : at + 4] == [
            f"subject: Hi {n}",
            "text: Your cart",
            "html: 9 characters",
        ]


def test_console_refuses_an_email_address_the_real_adapters_refuse() -> None:
    stream = io.StringIO()
    bad = OutgoingMessage(
        message_id="m1", channel="email", to="ann@example.com\r\nBcc: x@evil.example", content={}
    )
    with pytest.raises(PermanentChannelError) as caught:
        ConsoleChannel(stream).send(bad)
    assert caught.value.reason == "invalid_recipient" and stream.getvalue() == ""


def test_a_worker_refuses_to_start_without_a_providers_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SENDGRID_API_KEY", "TWILIO_ACCOUNT_SID", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    cases = {
        "email_channel": ("sendgrid", "SENDGRID_API_KEY"),
        "sms_channel": ("twilio", "TWILIO_ACCOUNT_SID"),
        "push_channel": ("firebase", "GOOGLE_APPLICATION_CREDENTIALS"),
    }
    for setting, (adapter, variable) in cases.items():
        with pytest.raises(ChannelConfigError, match=variable):
            channel_adapters(Settings(**{setting: adapter}))


def test_an_adapter_configured_for_a_channel_it_does_not_serve_is_refused() -> None:
    with pytest.raises(ChannelConfigError, match=r"JOURNEYS_EMAIL_CHANNEL=twilio.*serves sms"):
        channel_adapters(Settings(email_channel="twilio"))


def test_every_built_in_adapter_is_discovered_through_the_entry_point() -> None:
    names = set(available())
    assert {"console", "sendgrid", "twilio", "firebase", "smtp", "webhook"} <= names
