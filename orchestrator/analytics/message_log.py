"""The message log: messages searched by journey, channel, status, contact and period,
newest first, a page at a time; and one message whole (its status timeline and the
content as rendered). The dashboard's Messages page reads it.

Keyset pages (`before`: the last row's (created_at, id)), never OFFSET: page 1,000 costs
what page 1 does. Each filter has an index that serves it newest first (migration 0011;
a contact's messages: `ix_messages_contact_queued` and the contact's aliases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from datetime import date as Date
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from ..store.identity import aliases_of, canonical_id
from ..store.tables import Message
from .message_counts import not_sent_reason

PAGE = 50
MAX_PAGE = 200
STATUSES = (
    "pending",
    "queued",
    "sending",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "replied",
    "bounced",
    "deferred",
    "suppressed",
    "skipped",
    "failed",
    "unknown",
)
CHANNELS = ("email", "sms", "push")


@dataclass(frozen=True)
class MessageQuery:
    journey: str | None = None
    step: str | None = None  # with `journey`: one send step's messages
    channel: str | None = None
    status: str | None = None
    contact: str | None = None
    since: Date | None = None  # UTC days, both included: when the message was created
    until: Date | None = None
    before: tuple[datetime, str] | None = None  # the page after this (created_at, id)
    limit: int = PAGE


@dataclass
class MessageRow:
    id: str
    created_at: datetime
    journey_id: str
    step_id: str
    contact_id: str
    channel: str
    template: str
    status: str
    why: str | None  # not sent or deferred: the reason, in the counters' words
    subject: str | None  # the email subject, the push title or the SMS text, shortened


@dataclass
class MessagePage:
    rows: list[MessageRow]
    next_before: tuple[datetime, str] | None  # None: this was the last page


@dataclass
class MessageDetail:
    row: MessageRow
    recipient: str | None
    adapter: str
    category: str
    locale: str | None
    provider_message_id: str | None
    attempts: int
    error: str | None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    content: dict[str, Any] = field(default_factory=dict)
    workflow_id: str = ""
    entry_seq: int = 0


def search_messages(session: Session, q: MessageQuery) -> MessagePage:
    query = select(Message)
    if q.contact:
        owner = canonical_id(session, q.contact)
        query = query.where(col(Message.contact_id).in_([owner, *aliases_of(session, owner)]))
    if q.journey:
        query = query.where(Message.journey_id == q.journey)
    if q.step:
        query = query.where(Message.step_id == q.step)
    if q.channel:
        query = query.where(Message.channel == q.channel)
    if q.status:
        query = query.where(Message.status == q.status)
    if q.since:
        query = query.where(col(Message.created_at) >= _start(q.since))
    if q.until:
        query = query.where(col(Message.created_at) < _start(q.until) + timedelta(days=1))
    if q.before:
        at, last_id = q.before
        query = query.where(
            or_(
                col(Message.created_at) < at,
                and_(col(Message.created_at) == at, col(Message.id) < last_id),
            )
        )
    limit = max(1, min(q.limit, MAX_PAGE))
    found = session.exec(
        query.order_by(col(Message.created_at).desc(), col(Message.id).desc()).limit(limit + 1)
    ).all()
    rows = [_row(m) for m in found[:limit]]
    more = len(found) > limit
    return MessagePage(rows, (rows[-1].created_at, rows[-1].id) if more and rows else None)


def message_detail(session: Session, message_id: str) -> MessageDetail | None:
    message = session.get(Message, message_id)
    if message is None:
        return None
    return MessageDetail(
        row=_row(message),
        recipient=message.recipient,
        adapter=message.adapter,
        category=message.category,
        locale=message.locale,
        provider_message_id=message.provider_message_id,
        attempts=message.attempts,
        error=message.error,
        timeline=list(message.timeline or []),
        content=dict(message.content or {}),
        workflow_id=message.workflow_id,
        entry_seq=message.entry_seq,
    )


def _row(m: Message) -> MessageRow:
    content = m.content or {}
    subject = content.get("subject") or content.get("title") or content.get("body")
    return MessageRow(
        id=m.id,
        created_at=m.created_at,
        journey_id=m.journey_id,
        step_id=m.step_id,
        contact_id=m.contact_id,
        channel=m.channel,
        template=m.template,
        status=m.status,
        why=_why(m),
        subject=_short(subject) if isinstance(subject, str) else None,
    )


def _why(m: Message) -> str | None:
    last = (m.timeline or [{}])[-1]
    if m.status in ("failed", "suppressed", "skipped"):
        return not_sent_reason(m.status, last.get("check"), m.error)
    if m.status == "deferred":
        return str(last.get("check") or "") or None
    return None


def _short(text: str, chars: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


def _start(day: Date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)
