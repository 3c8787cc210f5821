"""A provider report on its way to the events table, and what it changes besides."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

OptOut = Literal["channel", "marketing"]

# What no store of ours can keep: NUL (PostgreSQL text refuses it) and lone UTF-16
# surrogates (JSON escapes can carry them; they are not Unicode text).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with what the database would refuse replaced by U+FFFD: a provider's odd
    byte must not turn its report into a 500 (and a retry loop)."""
    return UNSTORABLE.sub("\ufffd", text)


@dataclass(frozen=True)
class Feedback:
    """One report about one of our messages.

    `dedupe_key` becomes `events.message_id` in our own namespace (`origin = internal`),
    whose unique constraint makes a provider's retry (or a replayed request) a no-op.
    """

    dedupe_key: str  # sendgrid:<sg_event_id> | twilio:<MessageSid>:<status>
    name: str  # the track event stored: "Email Opened", "SMS Failed", ...
    properties: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None  # when the provider saw it; None = when we received it
    # What finds our message: our id (SendGrid's custom_args.msg_id) or the provider's
    # (Twilio's MessageSid = messages.provider_message_id).
    message_id: str | None = None
    provider_message_id: str | None = None
    # Beyond the event: put the recipient's address on the suppression list (with this
    # reason), and/or record the contact's opt-out of the channel.
    suppress: str | None = None
    opt_out: OptOut | None = None
    detail: str | None = None  # why, for the suppression row


@dataclass
class Outcome:
    """What one webhook request did: told back to the provider and to tests."""

    stored: int = 0  # new event rows
    duplicates: int = 0  # already stored (a provider retry or a replay)
    ignored: int = 0  # not about a message of ours, or a kind we do not record

    def as_json(self) -> dict[str, Any]:
        return {
            "success": True,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
        }
