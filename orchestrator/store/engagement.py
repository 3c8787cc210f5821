"""What recipients did with a message: the status timeline, which never moves backwards.

Engagement arrives as events (Segment's Email and Mobile spec names, from the
app or from provider webhooks); the router records it here and signals the
run that sent the message.
"""

from __future__ import annotations

from sqlalchemy import Engine

from .db import session_scope
from .tables import Event, Message

# Segment's Email and Mobile spec names, and the engagement each one means.
ENGAGEMENT_EVENTS = {
    "Email Delivered": "delivered",
    "Email Opened": "opened",
    "Email Link Clicked": "clicked",
    "Email Bounced": "bounced",
    "Push Opened": "opened",
    "Push Notification Tapped": "opened",
}
STATUS_RANK = {"pending": 0, "sent": 1, "delivered": 2, "opened": 3, "clicked": 4, "replied": 4}


def record_engagement(
    engine: Engine, message_id: str, kind: str, event: Event
) -> tuple[str, str, int] | None:
    """Add to the message's timeline, raise its status (never lower it); returns
    (workflow id, step id, entry seq) of the run that sent it, or None if unknown."""
    with session_scope(engine) as session:
        message = session.get(Message, message_id)
        if message is None:
            return None
        entry = {"status": kind, "at": event.timestamp.isoformat(), "event_id": event.id}
        if not any(e.get("event_id") == event.id for e in message.timeline):
            message.timeline = [*message.timeline, entry]
        if STATUS_RANK.get(kind, 0) > STATUS_RANK.get(message.status, 0) or kind == "bounced":
            message.status = kind
        return message.workflow_id, message.step_id, message.entry_seq
