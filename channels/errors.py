"""Errors a channel adapter raises, typed so Temporal knows whether to retry.

    ChannelError
    ├── TransientChannelError   retry, after `retry_after` seconds when the provider said so
    │                           (429, 5xx, timeouts, connection resets, queue overflow)
    ├── PermanentChannelError   never retry: bad address, unsubscribed, dead token, bad payload,
    │                           rejected credentials; `reason` says which, for the pipeline
    └── ChannelConfigError      the adapter cannot start: missing setting or package

Adapters convert SDK exceptions at their boundary (`raise ... from exc`), keeping
the provider's own error `code` (Twilio 21610, FCM "UNREGISTERED", HTTP 400...).
"""

from __future__ import annotations

from typing import Literal

# What the pipeline does with a permanent error depends on its reason:
#   invalid_recipient -> suppress the address;   unsubscribed -> opt the contact out
#   of the channel and suppress;   dead_token -> remove `dead_devices` from the contact;
#   bad_payload / rejected / auth -> the message fails, nothing else changes.
PermanentReason = Literal[
    "invalid_recipient", "unsubscribed", "dead_token", "bad_payload", "rejected", "auth"
]


class ChannelError(Exception):
    """Base of every adapter error; `provider` names who said no, `code` how they said it."""

    def __init__(
        self,
        message: str,
        provider: str = "",
        status: int | None = None,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.code = code


class TransientChannelError(ChannelError):
    def __init__(
        self,
        message: str,
        provider: str = "",
        status: int | None = None,
        code: str | int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider, status, code)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError, ValueError):
    def __init__(
        self,
        message: str,
        provider: str = "",
        status: int | None = None,
        code: str | int | None = None,
        reason: PermanentReason = "rejected",
        dead_devices: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, provider, status, code)
        self.reason = reason
        self.dead_devices = dead_devices


class ChannelConfigError(ChannelError, RuntimeError):
    pass


MAX_RETRY_AFTER = 86_400.0  # a provider asking for more than a day is not taken literally


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (delta seconds or an HTTP date) into seconds from now.

    Garbage, NaN and infinity give None; anything over a day is capped at a day.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return min(MAX_RETRY_AFTER, max(0.0, seconds))
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(MAX_RETRY_AFTER, max(0.0, (when - datetime.now(UTC)).total_seconds()))
