"""What recipients did with a message: the status timeline, which never moves backwards.

Engagement arrives as events (Segment's Email and Mobile spec names, from the
app or from provider webhooks, see `orchestrator/feedback/`); the router records
it here and signals the run that sent the message. It counts only when the event
is the message's own contact's (through any of its ids), never for an erased one.

The status climbs one ladder, whatever order the reports arrive in:

    sent < delivered < bounced < opened < clicked = replied

- A bounce beats `delivered`: mail servers bounce after accepting (asynchronous
  bounces), and an SMS `undelivered` is final. It does not beat an open or a
  click: the person saw the message, so the bounce is stale or about a forward.
- A late `delivered` after `opened`, or Twilio's `sent` after `delivered`, changes
  nothing.
- `complained` (marked as spam) and `unsubscribed` go on the timeline and are
  signalled to the run, but are not statuses: the send pipeline counts a message
  by its status (frequency caps, retries), and these say nothing new about whether
  it was sent. Their real effect is on the contact (suppression, opt-out), which the
  webhook already committed.
- A message not handed to a provider (pending, deferred, suppressed, skipped,
  failed) keeps its status: a report about it can only be wrong, and raising it
  would make the send pipeline take it for sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from .db import session_scope
from .identity import canonical_id
from .tables import Contact, Event, Message

log = logging.getLogger(__name__)

# Event names (Segment's Email and Mobile spec, and ours for SMS and failures), and the
# engagement each one means: the `kind` of the run's `engagement` signal.
ENGAGEMENT_EVENTS = {
    "Email Delivered": "delivered",
    "Email Opened": "opened",
    "Email Link Clicked": "clicked",
    "SMS Link Clicked": "clicked",
    "Push Link Clicked": "clicked",
    "Email Bounced": "bounced",
    "Email Blocked": "bounced",  # the receiving server refused it (reputation, policy)
    "Email Dropped": "bounced",  # SendGrid did not send it (its own suppression lists)
    "Email Marked as Spam": "complained",
    "Unsubscribed": "unsubscribed",
    "Push Opened": "opened",
    "Push Notification Tapped": "opened",
    "SMS Delivered": "delivered",
    "SMS Failed": "bounced",
    "SMS Received": "replied",  # a reply to the last SMS we sent that number
}
STATUS_RANK = {
    "sent": 1,
    "delivered": 2,
    "bounced": 3,
    "opened": 4,
    "clicked": 5,
    "replied": 5,
}
# Handed to the provider, acceptance not recorded yet: a report that beats the send's
# bookkeeping moves it on (the send keeps what a webhook already said). `unknown` (the
# worker stopped during the provider call) is settled the same way: a delivery report
# proves the provider had it. A pending or deferred message has not been sent at all,
# so a report about it changes nothing.
IN_FLIGHT = frozenset({"queued", "sending", "unknown"})
# Reports of one kind a message's timeline keeps (the first ones): a message clicked a
# thousand times must not grow a row that every later report rewrites.
TIMELINE_REPEATS = 20
TIMELINE_ONLY = frozenset({"complained", "unsubscribed"})


def next_status(current: str, kind: str) -> str:
    """The message's status after an engagement of `kind`: never lower, never un-sent."""
    if kind in TIMELINE_ONLY or kind not in STATUS_RANK:
        return current
    if current in IN_FLIGHT:
        return kind
    if current not in STATUS_RANK:  # pending, deferred, suppressed, skipped, failed
        return current
    return kind if STATUS_RANK[kind] > STATUS_RANK[current] else current


# Counts an engagement on a message the first time its kind (or what it implies) is seen
# and returns what it implied (`analytics.message_counts.count_engagement`): passed in, so
# the store does not reach up into the reporting layer.
Counter = Callable[[Session, Message, str], list[str]]


def record_engagement(
    engine: Engine, message_id: str, kind: str, event: Event, count: Counter | None = None
) -> tuple[str, str, int] | None:
    """Add to the message's timeline, raise its status (never lower it); returns
    (workflow id, step id, entry seq) of the run that sent it, or None when nothing counts.

    Only the message's own contact engages with it, under any of its ids: the event is
    ignored when it is about someone else (a storefront's write key is public, and a
    message id is in every link of the message), or when the message's contact was
    erased (its row names a tombstone, and no contact).
    """
    with session_scope(engine) as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None:
            log.debug("engagement event %s names no message of ours", event.id)
            return None
        owner = canonical_id(session, message.contact_id)
        engaged = (
            owner
            if event.contact_id == message.contact_id
            else canonical_id(session, event.contact_id)
        )
        if owner != engaged or session.get(Contact, owner) is None:
            log.debug("engagement event %s is not from its message's contact: ignored", event.id)
            return None
        entry: dict[str, Any] = {
            "status": kind,
            "at": event.timestamp.isoformat(),
            "event_id": event.id,
        }
        same_kind = sum(1 for e in message.timeline if e.get("status") == kind)
        if same_kind < TIMELINE_REPEATS and not any(
            e.get("event_id") == event.id for e in message.timeline
        ):
            sent = message.status in IN_FLIGHT or message.status in STATUS_RANK
            if count is not None and sent:
                implied = count(session, message, kind)
                if implied:
                    entry["implies"] = implied
            message.timeline = [*message.timeline, entry]
        message.status = next_status(message.status, kind)
        return message.workflow_id, message.step_id, message.entry_seq
