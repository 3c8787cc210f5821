"""Twilio status callbacks and inbound SMS, mapped to our events, opt-outs and suppressions.

Status callbacks: `delivered` becomes "SMS Delivered"; `undelivered` and `failed`
become "SMS Failed" with Twilio's ErrorCode. The other statuses (queued, sending,
sent, accepted, scheduled, read, canceled...) are acknowledged and not stored: the
send already recorded "sent", and the status never moves back. Error codes that
say the number cannot receive SMS put it on the suppression list, as a refusal at
send time does (`channels/twilio.py`).

Inbound SMS: Twilio's default keywords, matched as the exact single word (any case),
or the `OptOutType` that Advanced Opt-Out adds (custom keywords, other languages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from channels.twilio import UNSUBSCRIBED

from .signatures import FormParams
from .types import Feedback, OptOut, storable

PROVIDER = "twilio"
MAX_BODY = 1600  # Twilio's limit for one message body

OPT_OUT_WORDS = frozenset(
    {"STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"}
)
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

FAILED_STATUSES = frozenset({"undelivered", "failed"})
# The number cannot receive SMS: suppressed (reason `invalid`) so no journey tries again.
# 30003 (unreachable handset) can also mean a phone switched off for a long time: a
# START reply lifts the suppression, and so can an operator (docs/webhooks.md).
DEAD_NUMBER = {
    30003: "unreachable destination handset",
    30005: "unknown destination handset (the number does not exist)",
    30006: "landline or unreachable carrier",
}

InboundKind = Literal["stop", "start", "help", "message"]
INBOUND_EVENTS: dict[InboundKind, str] = {
    "stop": "SMS Opted Out",
    "start": "SMS Opted In",
    "help": "SMS Help Requested",
    "message": "SMS Received",
}


class MissingParameter(ValueError):
    """A signed request without a parameter Twilio always sends (HTTP 400)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"missing form parameter {name}")
        self.message = f"missing form parameter {name}: is this a Twilio messaging webhook?"
        self.field = name


def _required(params: FormParams, name: str, limit: int = 64) -> str:
    value = storable((params.first(name) or "").strip())
    if not value:
        raise MissingParameter(name)
    return value[:limit]


def status_feedback(params: FormParams) -> Feedback | None:
    """The event for a status callback, or None for a status we do not store."""
    sid = _required(params, "MessageSid")
    status = _required(params, "MessageStatus").lower()
    if status != "delivered" and status not in FAILED_STATUSES:
        return None
    properties: dict[str, object] = {
        "provider": PROVIDER,
        "message_sid": sid,
        "message_status": status,
    }
    if status == "delivered":
        return Feedback(
            dedupe_key=f"{PROVIDER}:{sid}:{status}",
            name="SMS Delivered",
            properties=properties,
            provider_message_id=sid,
        )
    code = _error_code(params.first("ErrorCode"))
    if code is not None:
        properties["error_code"] = code
    suppress: str | None = None
    opt_out: OptOut | None = None
    detail: str | None = None
    if code in DEAD_NUMBER:
        suppress, detail = "invalid", f"twilio {code}: {DEAD_NUMBER[code]}"
    elif code == UNSUBSCRIBED:
        suppress, opt_out = "unsubscribed", "channel"
        detail = f"twilio {code}: the recipient replied STOP to this sender"
    return Feedback(
        dedupe_key=f"{PROVIDER}:{sid}:{status}",
        name="SMS Failed",
        properties=properties,
        provider_message_id=sid,
        suppress=suppress,
        opt_out=opt_out,
        detail=detail,
    )


@dataclass(frozen=True)
class InboundSms:
    """An SMS someone sent to one of our numbers."""

    message_sid: str
    sender: str  # their number: used to find contacts, never copied into properties
    body: str
    kind: InboundKind
    keyword: str | None  # the matched keyword (or OptOutType), for the record
    num_media: int = 0

    @property
    def event_name(self) -> str:
        return INBOUND_EVENTS[self.kind]


def inbound_sms(params: FormParams) -> InboundSms:
    sid = _required(params, "MessageSid")
    sender = _required(params, "From", 64)
    body = storable(params.first("Body") or "")[:MAX_BODY]
    kind, keyword = classify(body, params.first("OptOutType"))
    media = params.first("NumMedia") or "0"
    return InboundSms(
        message_sid=sid,
        sender=sender,
        body=body,
        kind=kind,
        keyword=keyword,
        num_media=int(media) if media.isdigit() and len(media) < 4 else 0,
    )


def classify(body: str, opt_out_type: str | None) -> tuple[InboundKind, str | None]:
    """STOP / START / HELP (Twilio's keyword or Advanced Opt-Out's type), else a message."""
    declared = (opt_out_type or "").strip().upper()
    if declared in ("STOP", "START", "HELP"):
        return declared.lower(), declared  # type: ignore[return-value]
    word = body.strip().upper()
    if word in OPT_OUT_WORDS:
        return "stop", word
    if word in OPT_IN_WORDS:
        return "start", word
    if word in HELP_WORDS:
        return "help", word
    return "message", None


def _error_code(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) <= 6 else None
