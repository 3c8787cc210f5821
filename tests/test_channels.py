"""The channel registry: adapters are discovered through the `journeys.channels` entry point."""

from __future__ import annotations

import io

import pytest

from channels import ChannelConfigError, OutgoingMessage
from channels.console import ConsoleChannel
from channels.registry import adapter_class, available
from orchestrator.settings import Settings
from orchestrator.worker import channel_adapters


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
