"""The adapter interface every channel implements, built in or third party."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message, ready for a provider. `message_id` is ours, for correlation."""

    message_id: str
    channel: str  # email | push | sms
    to: str  # address, phone number or device token
    content: dict[str, str]  # subject/html/text, title/body or body
    category: str = "marketing"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """What the provider answered when it accepted the message."""

    provider_message_id: str
    status: str = "sent"


class Channel:
    """Base class: subclasses set `name` and `serves`, and implement `send`.

    Adapters never return a bool: they return a `Receipt` or raise one of the
    errors in `channels.errors`, so the caller knows whether a retry can help.
    """

    name: ClassVar[str] = ""
    serves: ClassVar[tuple[str, ...]] = ()  # logical channels: email, push, sms

    @classmethod
    def from_settings(cls, settings: Any) -> Channel:
        return cls()

    def send(self, message: OutgoingMessage) -> Receipt:
        raise NotImplementedError  # every adapter overrides this
