"""SendGrid Event Webhook events, mapped to our events and suppressions.

SendGrid posts a JSON array of events. Ours carry `msg_id` (our message id, sent as
`custom_args.msg_id` by `channels/sendgrid.py`) as a top-level key; `sg_event_id`
identifies an event across SendGrid's retries. Names follow Segment's Email spec
where it has one; the others are our extension, in the same style.

| SendGrid event            | stored event              | besides                                 |
|---------------------------|---------------------------|-----------------------------------------|
| delivered                 | Email Delivered           |                                         |
| open                      | Email Opened              |                                         |
| click                     | Email Link Clicked        |                                         |
| bounce (type bounce)      | Email Bounced             | address suppressed (bounced)            |
| bounce (type blocked)     | Email Blocked             |                                         |
| dropped                   | Email Dropped             |                                         |
| spamreport                | Email Marked as Spam      | suppressed (complained), marketing off  |
| unsubscribe               | Unsubscribed              | marketing email off                     |
| group_unsubscribe         | Email Group Unsubscribed  | (SendGrid applies the group itself)     |
| group_resubscribe         | Email Group Resubscribed  |                                         |
| processed, deferred       | (nothing)                 |                                         |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .types import Feedback, OptOut, storable

PROVIDER = "sendgrid"
MAX_EVENTS = 10_000  # per request; SendGrid batches far fewer
MAX_TEXT = 500  # provider text kept in properties (reasons, statuses)
MAX_URL = 2048

SIMPLE = {
    "delivered": "Email Delivered",
    "open": "Email Opened",
    "click": "Email Link Clicked",
    "dropped": "Email Dropped",
    "blocked": "Email Blocked",
    "spamreport": "Email Marked as Spam",
    "unsubscribe": "Unsubscribed",
    "group_unsubscribe": "Email Group Unsubscribed",
    "group_resubscribe": "Email Group Resubscribed",
}
# What an event does besides being stored: (suppression reason, opt-out). A hard bounce
# is a dead mailbox, not a choice, so it leaves consent alone; an unsubscribe is a
# choice about marketing, so receipts still go (no suppression).
EFFECTS: dict[str, tuple[str | None, OptOut | None]] = {
    "bounce": ("bounced", None),
    "spamreport": ("complained", "marketing"),
    "unsubscribe": (None, "marketing"),
}
# Acknowledged, not stored: `processed` says SendGrid accepted the message (the send
# already recorded that), `deferred` that a receiving server asked it to retry later;
# the outcome comes as delivered, bounce or dropped.
NOT_RECORDED = frozenset({"processed", "deferred"})

EMAIL = re.compile(r"[^\s<>\"'@,;:]+@[^\s<>\"'@,;:]+")


class MalformedEvents(ValueError):
    """The body is not SendGrid's shape at all (HTTP 400): a JSON array of objects."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class Parsed:
    feedback: list[Feedback]
    ignored: int  # events of kinds we do not record, or without the ids we need


def parse_events(payload: Any) -> Parsed:
    """Map a decoded webhook body; events we cannot use are counted, not fatal.

    One odd event must not make SendGrid retry (and us refuse) the whole batch for a
    day, so only a body that is not an array of objects is an error.
    """
    if not isinstance(payload, list):
        raise MalformedEvents("the body must be a JSON array of SendGrid events")
    if len(payload) > MAX_EVENTS:
        raise MalformedEvents(f"at most {MAX_EVENTS} events per request, got {len(payload)}")
    feedback: list[Feedback] = []
    ignored = 0
    for index, event in enumerate(payload):
        if not isinstance(event, dict):
            raise MalformedEvents(f"event {index} is not a JSON object", str(index))
        item = map_event(event)
        if item is None:
            ignored += 1
        else:
            feedback.append(item)
    return Parsed(feedback, ignored)


def map_event(event: dict[str, Any]) -> Feedback | None:
    """Our event for one SendGrid event, or None if it is not one we record."""
    kind = event.get("event")
    sg_event_id = event.get("sg_event_id")
    msg_id = event.get("msg_id")
    if not (_short_text(kind, 64) and _short_text(sg_event_id, 200) and _short_text(msg_id, 64)):
        return None  # not ours (no msg_id), or not something SendGrid sends
    if kind == "bounce" and str(event.get("type") or "bounce") == "blocked":
        kind = "blocked"
    name = "Email Bounced" if kind == "bounce" else SIMPLE.get(kind)
    if name is None or kind in NOT_RECORDED:
        return None
    email = event.get("email") if isinstance(event.get("email"), str) else None
    properties: dict[str, Any] = {
        "message_id": msg_id,
        "provider": PROVIDER,
        "sg_event_id": sg_event_id,
    }
    if _short_text(event.get("sg_message_id"), 255):
        properties["sg_message_id"] = event["sg_message_id"]
    if kind == "click" and isinstance(event.get("url"), str):
        properties["link_url"] = storable(event["url"][:MAX_URL])
    for key in ("reason", "status", "type"):
        if isinstance(event.get(key), str | int) and kind in ("bounce", "blocked", "dropped"):
            properties["bounce_type" if key == "type" else key] = _redact(str(event[key]), email)
    if kind.startswith("group_") and isinstance(event.get("asm_group_id"), int):
        properties["asm_group_id"] = event["asm_group_id"]

    suppress, opt_out = EFFECTS.get(kind, (None, None))
    detail = properties.get("reason") or kind
    return Feedback(
        dedupe_key=f"{PROVIDER}:{sg_event_id}",
        name=name,
        properties=properties,
        timestamp=_time(event.get("timestamp")),
        message_id=msg_id,
        suppress=suppress,
        opt_out=opt_out,
        detail=f"sendgrid {kind}: {detail}" if suppress else None,
    )


def _short_text(value: Any, limit: int) -> bool:
    """A usable id or name: text, not empty, not too long, storable as it is."""
    return isinstance(value, str) and 0 < len(value) <= limit and storable(value) == value


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _redact(text: str, email: str | None) -> str:
    """Bounce reasons quote the address (`550 5.1.1 <ann@example.com>...`): keep it out."""
    if email:
        text = re.sub(re.escape(email), "<recipient>", text, flags=re.IGNORECASE)
    return storable(EMAIL.sub("<address>", text)[:MAX_TEXT])
