"""What every email adapter shares: sender defaults and RFC 8058 unsubscribe headers."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import OutgoingMessage
from .errors import PermanentChannelError


class EmailSettings(BaseSettings):
    """`JOURNEYS_EMAIL_FROM` is required by real email adapters; a journey may override it."""

    model_config = SettingsConfigDict(
        env_prefix="JOURNEYS_EMAIL_", extra="ignore", populate_by_name=True
    )

    from_: str | None = Field(default=None, validation_alias=AliasChoices("JOURNEYS_EMAIL_FROM"))
    reply_to: str | None = None
    # Second List-Unsubscribe target for mailbox providers that prefer mail: unsubscribe@…
    unsubscribe_mailto: str | None = None


def sender(message: OutgoingMessage, settings: EmailSettings, provider: str) -> str:
    """The From address: the journey's `from`, else JOURNEYS_EMAIL_FROM."""
    value = message.options.get("from") or settings.from_
    if not value:
        raise PermanentChannelError(
            "no sender address: set JOURNEYS_EMAIL_FROM or `sender: {email: {from: ...}}` "
            "in the journey",
            provider=provider,
            reason="bad_payload",
        )
    return str(value)


def reply_to(message: OutgoingMessage, settings: EmailSettings) -> str | None:
    value = message.options.get("reply_to") or settings.reply_to
    return str(value) if value else None


def list_unsubscribe_headers(message: OutgoingMessage, mailto: str | None) -> dict[str, str]:
    """RFC 8058 one-click headers, on marketing mail only (transactional mail is exempt).

    One-click needs an HTTPS URI: over plain HTTP (local development) only the
    `List-Unsubscribe` header is sent, so mailbox providers fall back to opening it.
    """
    url = message.links.get("unsubscribe_url")
    if not message.is_marketing or not (url or mailto):
        return {}
    targets = []
    if url:
        targets.append(f"<{url}>")
    if mailto:
        targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
    headers = {"List-Unsubscribe": ", ".join(targets)}
    if url and url.startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers
