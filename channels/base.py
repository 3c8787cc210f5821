"""The adapter interface every channel implements, built in or third party.

The send pipeline (`orchestrator.activities.delivery`) does everything that is
not provider-specific: the ledger, consent, caps, quiet hours, rendering and
retries. An adapter only turns one rendered `OutgoingMessage` into one provider
call and maps the answer to a `Receipt` or a typed error (`channels.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message, ready for a provider. `message_id` is ours, for correlation.

    `to` is the email address, the E.164 number or (for push) the first device token;
    `devices` lists every registered token of the contact for push. `metadata` carries
    ids only (journey, step, contact): providers keep it, so it must never hold PII.
    `options` are the journey's sender settings (`from`, `reply_to`, `categories`,
    `analytics_label`, `android`, `apns`, ...); `links` the message's signed
    `unsubscribe_url`, `preferences_url` and `view_url`.
    """

    message_id: str
    channel: str  # email | push | sms
    to: str
    content: dict[str, str]  # subject/html/text, title/body/image/link, or body
    category: str = "marketing"  # marketing | transactional
    metadata: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    @property
    def is_marketing(self) -> bool:
        return self.category == "marketing"


@dataclass(frozen=True)
class Receipt:
    """What the provider answered when it accepted the message.

    `dead_devices` lists push tokens the provider reported as gone while others
    still received the message; the pipeline removes them from the contact.
    """

    provider_message_id: str
    status: str = "sent"
    dead_devices: tuple[str, ...] = ()


class Channel:
    """Base class: subclasses set `name` and `serves`, and implement `send`.

    Adapters never return a bool: they return a `Receipt` or raise one of the
    errors in `channels.errors`, so the caller knows whether a retry can help.
    `from_settings` raises `ChannelConfigError` naming the missing setting or pip
    extra, so a misconfigured worker fails at start-up, not at the first send.
    Adapters are called from worker threads, concurrently: keep them thread-safe.
    """

    name: ClassVar[str] = ""
    serves: ClassVar[tuple[str, ...]] = ()  # logical channels: email, push, sms
    # True only when the provider deduplicates on `OutgoingMessage.message_id` (sent as
    # its idempotency key): a delivery whose outcome is unknown (the worker stopped during
    # the call) is then sent again with the same id. Otherwise the pipeline records it
    # `unknown` and never calls the provider for it again.
    idempotent: ClassVar[bool] = False
    # Whose limit a "wait" answer (`TransientChannelError.retry_after`) is: "provider" (the
    # account's or the sender's: every worker holds every send to it until then) or
    # "recipient" (one device's or number's quota: only that message waits).
    backoff_scope: ClassVar[str] = "provider"

    @classmethod
    def from_settings(cls, settings: Any) -> Channel:
        return cls()

    def send(self, message: OutgoingMessage) -> Receipt:
        raise NotImplementedError  # every adapter overrides this
