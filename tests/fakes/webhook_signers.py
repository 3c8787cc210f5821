"""Sign webhook requests exactly as SendGrid and Twilio do, for tests of our endpoints.

SendGrid: an ECDSA P-256 key pair made here; the public key is handed to us the way
SendGrid's console shows it (base64 DER), and each request is signed over
`timestamp + raw body` (SHA-256, ASN.1 DER signature, base64). Twilio: the SDK's own
`RequestValidator.compute_signature` over the URL and the form parameters.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

SENDGRID_PATH = "/webhooks/sendgrid"
TWILIO_STATUS_PATH = "/webhooks/twilio/status"
TWILIO_INBOUND_PATH = "/webhooks/twilio/inbound"


@dataclass
class SendGridSigner:
    """One SendGrid account's Event Webhook signing key."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_key(self) -> str:
        """As SendGrid shows it: base64 of the DER SubjectPublicKeyInfo, one line."""
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: str) -> str:
        signature = self.private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        stamp = timestamp if timestamp is not None else str(int(time.time()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": self.sign(body, stamp),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }


def sendgrid_event(kind: str, msg_id: str | None, **fields: Any) -> dict[str, Any]:
    """One event as SendGrid posts it, with our custom_args.msg_id at the top level."""
    event: dict[str, Any] = {
        "email": "ann@example.com",
        "timestamp": int(time.time()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": kind,
        "category": ["marketing"],
        "sg_event_id": uuid.uuid4().hex[:22],
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }
    if msg_id is not None:
        event["msg_id"] = msg_id
    return event


def sendgrid_body(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


@dataclass
class TwilioSigner:
    """One Twilio account's Auth Token, and the public URL Twilio is configured with."""

    auth_token: str = "twilio-test-auth-token-0123456789"
    public_url: str = "https://journeys.example.com"

    def signature(self, url: str, params: dict[str, str] | list[tuple[str, str]]) -> str:
        multi: dict[str, list[str]] = {}
        for name, value in params.items() if isinstance(params, dict) else params:
            multi.setdefault(name, []).append(value)
        return RequestValidator(self.auth_token).compute_signature(url, _Multi(multi))

    def request(
        self, path: str, params: dict[str, str], query: str = ""
    ) -> tuple[str, bytes, dict[str, str]]:
        """(path with query, form body, headers) for a POST Twilio would make to `path`."""
        target = path + (f"?{query}" if query else "")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.signature(self.public_url + target, params),
        }
        return target, urllib.parse.urlencode(params).encode(), headers


class _Multi(dict[str, list[str]]):
    def getall(self, name: str) -> list[str]:
        return self[name]


def status_params(sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
    """A status callback as Twilio posts it (a subset of the message's properties)."""
    params = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": "+15550001111",
    }
    if error_code is not None:
        params["ErrorCode"] = error_code
    return params


def inbound_params(sid: str, sender: str, body: str, **extra: str) -> dict[str, str]:
    """An incoming SMS as Twilio posts it to the number's messaging webhook."""
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": sender,
        "FromCountry": "US",
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": "+15005550006",
        **extra,
    }


class SyncPost:
    """POST to an ASGI app from synchronous code (Hypothesis tests), on a loop of its own."""

    def __init__(self, app: Any) -> None:
        self._loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://api")

    def __call__(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self._loop.run_until_complete(self._client.post(path, content=body, headers=headers))

    def __enter__(self) -> SyncPost:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()
