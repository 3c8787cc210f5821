"""Is this request really from SendGrid / Twilio? Checked before anything is parsed or stored.

SendGrid signs `timestamp + raw body` with the account's ECDSA P-256 key; Twilio signs
the URL it called plus the sorted form parameters with HMAC-SHA1 keyed by the Auth
Token. Both checks use the vendor SDK's own helper, so we verify exactly what the
vendor documents. The SDKs are optional extras: they are imported when a verifier is
built, and a missing one is a configuration error that names the pip extra.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE = "X-Twilio-Signature"

UNIX_SECONDS = re.compile(r"^\d{1,12}$")
PEM_ARMOR = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")


class WebhookConfigError(Exception):
    """The endpoint cannot verify anything: a secret is missing or unusable (HTTP 503)."""


class WebhookRejected(Exception):
    """The request is not provably from the provider (HTTP 401 or 403); nothing is stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FormParams(dict[str, list[str]]):
    """Form parameters, every value of a repeated name kept (what Twilio signs)."""

    def getall(self, name: str) -> list[str]:  # the interface RequestValidator looks for
        return self[name]

    def first(self, name: str) -> str | None:
        values = self.get(name)
        return values[0] if values else None


# --- SendGrid ------------------------------------------------------------------------


class SendGridVerifier:
    """Verifies SendGrid's Signed Event Webhook with `sendgrid.helpers.eventwebhook`."""

    def __init__(self, public_key: str) -> None:
        self._helper, self._key = _sendgrid_key(public_key)

    def verify(self, raw: bytes, signature: str, timestamp: str, now: float, max_age: int) -> None:
        """Raise WebhookRejected unless `signature` signs `timestamp + raw` and is fresh."""
        if not signature or not timestamp:
            missing = SENDGRID_SIGNATURE if not signature else SENDGRID_TIMESTAMP
            raise WebhookRejected(
                401,
                f"missing {missing} header: enable 'Signed Event Webhook Requests' in "
                "SendGrid (Settings > Mail Settings > Event Webhook)",
            )
        if not UNIX_SECONDS.match(timestamp):
            raise WebhookRejected(
                401, f"{SENDGRID_TIMESTAMP} must be unix seconds, got {timestamp[:40]!r}"
            )
        skew = now - int(timestamp)
        if abs(skew) > max_age:
            raise WebhookRejected(
                403,
                f"stale {SENDGRID_TIMESTAMP}: {int(skew)} s from our clock, more than the "
                f"{max_age} s allowed (JOURNEYS_WEBHOOK_MAX_AGE); a replayed request, or "
                "a clock out of sync",
            )
        try:
            # The helper takes text and encodes it as UTF-8 again: SendGrid's JSON is UTF-8,
            # so decoding strictly gives back exactly the bytes that were signed.
            payload = raw.decode("utf-8")
            valid = self._helper.verify_signature(payload, signature, timestamp, self._key)
        except (UnicodeDecodeError, binascii.Error, ValueError, TypeError):
            valid = False  # not base64, not DER, not UTF-8: cannot be SendGrid's
        if not valid:
            raise WebhookRejected(
                403,
                f"{SENDGRID_SIGNATURE} does not verify with "
                "JOURNEYS_SENDGRID_WEBHOOK_PUBLIC_KEY: the body or timestamp was changed, "
                "or the key is not this SendGrid account's verification key",
            )


@lru_cache(maxsize=4)
def _sendgrid_key(public_key: str) -> tuple[Any, Any]:
    """The SDK helper and the parsed key, once per configured key."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from sendgrid.helpers.eventwebhook import EventWebhook
    except ImportError as exc:
        raise WebhookConfigError(
            "the SendGrid webhook needs the SendGrid SDK: "
            f"pip install 'journeys-orchestrator[sendgrid]' ({exc})"
        ) from exc
    helper = EventWebhook()
    # SendGrid shows the key as one base64 line; accept it pasted as PEM or wrapped too.
    text = "".join(PEM_ARMOR.sub("", public_key).split())
    try:
        key = helper.convert_public_key_to_ecdsa(text)
    except (ValueError, TypeError) as exc:
        raise WebhookConfigError(
            "JOURNEYS_SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key: copy the "
            "'Verification Key' from SendGrid > Settings > Mail Settings > Event Webhook"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise WebhookConfigError(
            "JOURNEYS_SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 key; SendGrid's "
            "verification key is one"
        )
    return helper, key


# --- Twilio ---------------------------------------------------------------------------


class TwilioVerifier:
    """Verifies `X-Twilio-Signature` with the SDK's `RequestValidator`."""

    def __init__(self, auth_token: str) -> None:
        try:
            from twilio.request_validator import RequestValidator
        except ImportError as exc:
            raise WebhookConfigError(
                "the Twilio webhooks need the Twilio SDK: "
                f"pip install 'journeys-orchestrator[twilio]' ({exc})"
            ) from exc
        self._validator = RequestValidator(auth_token)

    def verify(self, url: str, params: Mapping[str, list[str]], signature: str) -> None:
        """`url` is the public URL Twilio called (with its query), not the one we see."""
        if not signature:
            raise WebhookRejected(
                401, f"missing {TWILIO_SIGNATURE} header: only Twilio may call this endpoint"
            )
        if not self._validator.validate(url, params, signature):
            raise WebhookRejected(
                403,
                f"{TWILIO_SIGNATURE} does not match TWILIO_AUTH_TOKEN for {url}: check the "
                "token, and that JOURNEYS_PUBLIC_URL is the address Twilio calls (behind a "
                "proxy it must be the public https:// URL)",
            )
