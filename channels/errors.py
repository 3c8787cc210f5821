"""Errors a channel adapter raises, typed so Temporal knows whether to retry.

    ChannelError
    ├── TransientChannelError   retry, after `retry_after` seconds when the provider said so
    ├── PermanentChannelError   never retry: bad address, unsubscribed, dead token, bad payload
    └── ChannelConfigError      the adapter cannot start: missing setting or package

Adapters convert SDK exceptions at their boundary (`raise ... from exc`).
"""

from __future__ import annotations


class ChannelError(Exception):
    """Base of every adapter error; `provider` names who said no."""

    def __init__(self, message: str, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class TransientChannelError(ChannelError):
    def __init__(
        self,
        message: str,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider, status)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError, ValueError):
    pass


class ChannelConfigError(ChannelError, RuntimeError):
    pass
