"""Signed, opaque links a message carries: unsubscribe, preferences, view in browser,
survey answers, and the click-tracking redirect (`/c/`) its own links go through.

The token names only our random message id plus an HMAC, so a link reveals
nothing about the contact (RFC 8058 asks for opaque identifiers) and cannot be
forged or pointed at another message. The message row leads to the contact.

A click token names the message and the link's index within it (the URLs are on the
message row, `content["links"]`), signed under its own HMAC domain: a `/u/` token is no
`/c/` token, nor the reverse. It is kept short for SMS: the message id's 16 bytes (a
UUID), the index's one and a 7-byte signature make 32 base64url characters, so
`https://shop.example.com/c/<token>` is 59. Seven bytes are plenty here: a guess must be
sent to the API to be tried, and a forged token could only lead to a link the message
already holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .private_files import write_private

_SIG_BYTES = 16
_CLICK_SIG_BYTES = 7
# Links per message the redirect can name (one byte of index); more are left as they are.
MAX_TRACKED_LINKS = 256
# Where a message row keeps the URLs its click tokens name, in index order: `content[...]`.
TRACKED_LINKS = "links"
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_-]{1,200}")


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

    # --- click tracking ------------------------------------------------------------

    def click_token(self, message_id: str, index: int) -> str:
        """The token of link `index` (0-255) of a message: 32 characters for a UUID id."""
        if not 0 <= index < MAX_TRACKED_LINKS:
            raise ValueError(f"link index {index} is outside 0-{MAX_TRACKED_LINKS - 1}")
        kind, packed = _packed_id(message_id)
        body = packed + bytes([index])
        return _b64(body + self._click_sign(kind, body))

    def click_url(self, message_id: str, index: int) -> str:
        return f"{self.public_url.rstrip('/')}/c/{self.click_token(message_id, index)}"

    def click_target(self, token: str) -> tuple[str, int] | None:
        """(message id, link index) a click token names, or None when we did not make it."""
        if not _TOKEN_CHARACTERS.fullmatch(token):
            return None
        try:
            raw = _unb64(token)
        except (ValueError, TypeError):
            return None
        if _b64(raw) != token or len(raw) < 2 + _CLICK_SIG_BYTES:
            return None  # one spelling per token: no padding, no stray bits
        body, sig = raw[:-_CLICK_SIG_BYTES], raw[-_CLICK_SIG_BYTES:]
        packed, index = body[:-1], body[-1]
        for kind in (b"u", b"t") if len(packed) == 16 else (b"t",):
            if hmac.compare_digest(sig, self._click_sign(kind, body)):
                message_id = str(uuid.UUID(bytes=packed)) if kind == b"u" else packed.decode()
                return message_id, index
        return None

    def points_here(self, url: str) -> bool:
        """Whether `url` is one of our own links (the API's public address): those are
        never rewritten for click tracking."""
        base = self.public_url.rstrip("/")
        if not url.lower().startswith(base.lower()):
            return False
        rest = url[len(base) :]
        return rest == "" or rest[0] in "/?#"

    def _sign(self, body: bytes) -> bytes:
        key = self.secret.encode()
        return hmac.new(key, b"message-link:" + body, hashlib.sha256).digest()[:_SIG_BYTES]

    def _click_sign(self, kind: bytes, body: bytes) -> bytes:
        key, domain = self.secret.encode(), b"click-link:" + kind + b":"
        return hmac.new(key, domain + body, hashlib.sha256).digest()[:_CLICK_SIG_BYTES]


def _packed_id(message_id: str) -> tuple[bytes, bytes]:
    """A message id as few bytes as it takes: a UUID's 16 (kind `u`), else its text's
    (kind `t`; the kind is signed, so the two forms never pass for each other)."""
    try:
        parsed = uuid.UUID(message_id)
    except ValueError:
        parsed = None
    if parsed is not None and str(parsed) == message_id:
        return b"u", parsed.bytes
    return b"t", message_id.encode()


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


PLACEHOLDERS = ("replace_me", "replace-me", "changeme", "change-me", "change_me")


def is_placeholder(value: str) -> bool:
    """A template's stand-in left in place (the Kubernetes Secret ships `REPLACE_ME`)."""
    return any(word in value.lower() for word in PLACEHOLDERS)


def require_secret(settings: Any) -> None:
    """Production processes must share one key, or links signed by one break on another."""
    generate = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
    if not settings.secret_key:
        raise ValueError(
            "JOURNEYS_SECRET_KEY is not set: it signs the unsubscribe and view-in-browser "
            "links in messages and must be the same on every worker and API process "
            f"({generate})"
        )
    if is_placeholder(settings.secret_key):
        raise ValueError(
            "JOURNEYS_SECRET_KEY is still the template's placeholder: anyone who read the "
            f"template could sign links and dashboard sessions ({generate})"
        )
