"""Signed, opaque links a message carries: unsubscribe, preferences, view in browser,
survey answers.

The token names only our random message id plus an HMAC, so a link reveals
nothing about the contact (RFC 8058 asks for opaque identifiers) and cannot be
forged or pointed at another message. The message row leads to the contact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .private_files import write_private

_SIG_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class MessageLinks:
    public_url: str  # where the API is reachable from a mail client, e.g. https://crm.shop.com
    secret: str  # JOURNEYS_SECRET_KEY

    @classmethod
    def from_settings(cls, settings: Any) -> MessageLinks:
        return cls(settings.resolved_public_url, link_secret(settings))

    def token(self, message_id: str) -> str:
        body = message_id.encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def message_id(self, token: str) -> str | None:
        """The message a token was made for, or None when it was not made by us."""
        try:
            body_part, sig_part = token.split(".", 1)
            body, sig = _unb64(body_part), _unb64(sig_part)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        return body.decode("utf-8", "replace")

    def for_message(self, message_id: str) -> dict[str, str]:
        base, token = self.public_url.rstrip("/"), self.token(message_id)
        return {
            "unsubscribe_url": f"{base}/u/{token}",
            "preferences_url": f"{base}/preferences/{token}",
            "view_url": f"{base}/m/{token}",
            # The template appends the answer: `message.survey_url ~ "?score=" ~ n`.
            "survey_url": f"{base}/s/{token}",
        }

    def _sign(self, body: bytes) -> bytes:
        key = self.secret.encode()
        return hmac.new(key, b"message-link:" + body, hashlib.sha256).digest()[:_SIG_BYTES]


def dev_secret(data_dir: Path) -> str:
    """The development signing key: created once, kept in the data directory."""
    path = data_dir / "secret_key"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    key = secrets.token_urlsafe(32)
    write_private(path, key + "\n")  # 0600 from its first byte, in a 0700 directory
    return key


def link_secret(settings: Any) -> str:
    """JOURNEYS_SECRET_KEY, or (for `journeys dev` and tests) the data directory's own key."""
    return settings.secret_key or dev_secret(settings.data_dir)


def require_secret(settings: Any) -> None:
    """Production processes must share one key, or links signed by one break on another."""
    if not settings.secret_key:
        raise ValueError(
            "JOURNEYS_SECRET_KEY is not set: it signs the unsubscribe and view-in-browser "
            "links in messages and must be the same on every worker and API process "
            '(generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
