"""Hand every message to your own HTTP endpoint: a signed JSON POST, one per message.

For providers we have no adapter for, or an in-house notification service. The
receiver verifies `X-Journeys-Signature` (Stripe style, `t=<unix ts>,v1=<hex
HMAC-SHA256 of "<ts>.<raw body>">`) with `verify_signature`, rejects stale
timestamps (replays) and deduplicates on `Idempotency-Key`, which is our message id
and stays the same when a send is retried.

What the receiver's answer means (docs/channels/webhook.md):

    2xx                   accepted; JSON `id` (optional) becomes the provider message id,
                          `dead_devices` (optional) lists push tokens to forget
    408, 409, 429, 5xx    TransientChannelError, honouring Retry-After
    401, 403              PermanentChannelError(reason="auth")
    410                   PermanentChannelError(reason="invalid_recipient"): the address is gone
    404                   PermanentChannelError(reason="rejected"): most likely a wrong URL,
                          which must not suppress every contact
    413                   PermanentChannelError(reason="bad_payload")
    other 3xx/4xx         PermanentChannelError(reason="rejected"), with the body's message
    network errors        TransientChannelError

A 4xx body may name a more precise reason, `{"reason": "unsubscribed", "message": ...}`
(any of `channels.errors.PermanentReason` except auth), e.g. a 422 for an opted-out
phone number. Redirects are not followed: a signed body is only ever sent to the
configured URL. Each send is exactly one HTTP attempt; retries are Temporal's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, get_args
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import Channel, OutgoingMessage, Receipt
from .errors import (
    ChannelConfigError,
    ChannelError,
    PermanentChannelError,
    PermanentReason,
    TransientChannelError,
    retry_after_seconds,
)

NAME = "webhook"
SIGNATURE_HEADER = "X-Journeys-Signature"
MIN_SECRET_LENGTH = 16
MAX_RESPONSE_BYTES = 64 * 1024
BODY_REASONS = frozenset(get_args(PermanentReason)) - {"auth"}

try:
    USER_AGENT = f"journeys-orchestrator/{version('journeys-orchestrator')} (webhook channel)"
except PackageNotFoundError:  # running from a source tree that is not installed
    USER_AGENT = "journeys-orchestrator (webhook channel)"


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEYS_WEBHOOK_", extra="ignore")

    url: str | None = None
    secret: SecretStr | None = None
    timeout: float = 10.0


# --- signatures (shared with receivers) ---------------------------------------------


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Journeys-Signature` value for `body`: `t=<unix ts>,v1=<hex HMAC-SHA256>`."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={ts},v1={_digest(secret, ts, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """True when `header` signs exactly `body` with `secret`, within `tolerance` seconds.

    For receivers: pass the raw request body (before any JSON parsing). A stale or
    future timestamp fails, so a captured request cannot be replayed later; within
    the window, deduplicate on `Idempotency-Key`. Several `v1=` values are accepted
    (any may match), so a sender can sign with an old and a new secret while rotating.
    """
    if not header:
        return False
    timestamp: str | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isdigit() or not candidates:
        return False
    ts = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = _digest(secret, ts, body).encode()
    matches = [hmac.compare_digest(expected, c.encode("utf-8", "replace")) for c in candidates]
    return any(matches)


# --- the adapter ------------------------------------------------------------------


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx comes back as an HTTPError instead of a re-sent (or GET-converted) request."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookChannel(Channel):
    """POSTs each message as signed JSON; stateless per send, so safe across threads."""

    name: ClassVar[str] = NAME
    serves: ClassVar[tuple[str, ...]] = ("email", "push", "sms")
    # Receivers deduplicate on `Idempotency-Key` (our message id, the same on every
    # attempt): a send whose outcome is unknown can safely be made again.
    idempotent: ClassVar[bool] = True

    def __init__(self, *, url: str, secret: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChannelConfigError(
                f"the webhook channel needs JOURNEYS_WEBHOOK_URL, an http(s) URL (got {url!r})",
                provider=NAME,
            )
        if len(secret or "") < MIN_SECRET_LENGTH:
            raise ChannelConfigError(
                f"JOURNEYS_WEBHOOK_SECRET must be at least {MIN_SECRET_LENGTH} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
                provider=NAME,
            )
        if timeout <= 0:
            raise ChannelConfigError("JOURNEYS_WEBHOOK_TIMEOUT must be positive", provider=NAME)
        self.url = url
        self._secret = secret
        self.timeout = timeout
        # Handlers keep no per-request state: one opener serves every thread.
        self._opener = urllib.request.build_opener(_RefuseRedirects())

    @classmethod
    def from_settings(cls, settings: Any = None) -> WebhookChannel:
        try:
            config = WebhookSettings()
        except ValidationError as exc:
            problems = "; ".join(
                f"JOURNEYS_WEBHOOK_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise ChannelConfigError(
                f"invalid webhook channel settings: {problems}", provider=NAME
            ) from exc
        return cls(
            url=config.url or "",
            secret=config.secret.get_secret_value() if config.secret else "",
            timeout=config.timeout,
        )

    def payload(self, message: OutgoingMessage) -> bytes:
        """The JSON document, as the exact bytes that are signed and sent."""
        document = {
            "message_id": message.message_id,
            "channel": message.channel,
            "to": message.to,
            "devices": list(message.devices),
            "content": message.content,
            "category": message.category,
            "metadata": message.metadata,
            "links": message.links,
            "options": message.options,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()

    def send(self, message: OutgoingMessage) -> Receipt:
        body = self.payload(message)
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                "Idempotency-Key": message.message_id,
                SIGNATURE_HEADER: signature_header(self._secret, body),
            },
        )
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                error_body = exc.read(MAX_RESPONSE_BYTES)
            except (OSError, HTTPException):  # the status line is what matters
                error_body = b""
            finally:
                exc.close()
            raise _status_error(exc.code, exc.headers, error_body) from exc
        except (OSError, HTTPException) as exc:  # URLError, timeouts, resets, bad responses
            raise _network_error(exc) from exc
        with response:
            try:
                answer = response.read(MAX_RESPONSE_BYTES)
            except (OSError, HTTPException):
                # Accepted already: a lost answer must not turn into a retry and a duplicate.
                answer = b""
        return _receipt(answer, message.message_id)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _receipt(raw: bytes, idempotency_key: str) -> Receipt:
    answer = _json(raw)
    found = answer.get("id")
    dead = answer.get("dead_devices")
    has_id = isinstance(found, str | int) and not isinstance(found, bool) and found != ""
    return Receipt(
        provider_message_id=str(found) if has_id else idempotency_key,
        dead_devices=tuple(str(d) for d in dead) if isinstance(dead, list) else (),
    )


def _said(raw: bytes) -> str:
    """The receiver's own words: `message`, `error` or `error.message`, else the raw text."""
    answer = _json(raw)
    error = answer.get("error")
    nested = error.get("message") if isinstance(error, dict) else None
    for value in (answer.get("message"), error, nested):
        if isinstance(value, str) and value:
            return value[:300]
    return raw.decode("utf-8", "replace").strip()[:300]


def _status_error(status: int, headers: Any, raw: bytes) -> ChannelError:
    said = _said(raw)
    detail = f"webhook answered {status}" + (f": {said}" if said else "")
    if status in (408, 409, 429) or status >= 500:
        return TransientChannelError(
            detail,
            provider=NAME,
            status=status,
            code=status,
            retry_after=retry_after_seconds(headers.get("Retry-After") if headers else None),
        )
    if status in (401, 403):
        return PermanentChannelError(
            f"{detail} (check JOURNEYS_WEBHOOK_SECRET against the receiver's)",
            provider=NAME,
            status=status,
            code=status,
            reason="auth",
        )
    if 300 <= status < 400:
        location = headers.get("Location") if headers else None
        return PermanentChannelError(
            f"webhook answered {status}, a redirect to {location}: redirects are not followed, "
            "set JOURNEYS_WEBHOOK_URL to the final URL",
            provider=NAME,
            status=status,
            code=status,
            reason="rejected",
        )
    answer = _json(raw)
    reason: PermanentReason = "rejected"
    if status == 410:
        reason = "invalid_recipient"
    elif status == 413:
        reason = "bad_payload"
    elif status == 404:
        detail += " (is JOURNEYS_WEBHOOK_URL right?)"
    if answer.get("reason") in BODY_REASONS:
        reason = answer["reason"]
    dead = answer.get("dead_devices")
    return PermanentChannelError(
        detail,
        provider=NAME,
        status=status,
        code=status,
        reason=reason,
        dead_devices=tuple(str(d) for d in dead) if isinstance(dead, list) else (),
    )


def _network_error(exc: OSError | HTTPException) -> ChannelError:
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return PermanentChannelError(
            f"the webhook's TLS certificate does not verify ({cause.verify_message}): "
            "check JOURNEYS_WEBHOOK_URL",
            provider=NAME,
            code="tls",
            reason="rejected",
        )
    return TransientChannelError(
        f"cannot reach the webhook: {type(cause).__name__}: {cause}", provider=NAME
    )
