"""How sending is going right now, for the dashboard's Health page: provider errors in the
last hour and the sends waiting on quiet hours or a cap.

Indexed by (status, created_at) (migration 0011): a provider error is a message that
failed on the provider's answer (`check: provider`) or whose outcome is unknown (the
worker stopped during the call); it is counted when that happened in the window,
among messages created in the last day (a send is retried for hours, not days).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from ..store.tables import Message, utcnow

LOOKBACK = timedelta(days=1)


@dataclass
class SendHealth:
    provider_errors: int  # in the window
    by_channel: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None  # the newest provider error's text
    deferred: int = 0  # waiting now for quiet hours to end or a cap to allow
    deferred_by_check: dict[str, int] = field(default_factory=dict)


def send_health(session: Session, window: timedelta = timedelta(hours=1)) -> SendHealth:
    now = utcnow()
    start = now - window
    found = SendHealth(provider_errors=0)
    newest: datetime | None = None
    rows = session.exec(
        select(Message.channel, Message.status, Message.error, Message.timeline).where(
            col(Message.status).in_(("failed", "unknown")),
            col(Message.created_at) >= now - LOOKBACK,
        )
    )
    for channel, status, error, timeline in rows:
        last = (timeline or [{}])[-1]
        if status == "failed" and last.get("check") != "provider":
            continue
        at = _parse(last.get("at"))
        if at is None or at < start:
            continue
        found.provider_errors += 1
        found.by_channel[channel] = found.by_channel.get(channel, 0) + 1
        if newest is None or at > newest:
            newest, found.last_error = at, error
    for timeline in session.exec(select(Message.timeline).where(Message.status == "deferred")):
        check = str(((timeline or [{}])[-1]).get("check") or "other")
        found.deferred_by_check[check] = found.deferred_by_check.get(check, 0) + 1
        found.deferred += 1
    return found


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
