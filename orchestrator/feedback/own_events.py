"""The event names this orchestrator records itself, and which of them clients may send.

We store events of our own (`events.origin = internal`): segment entries and exits,
survey answers, provider reports (delivered, bounced, spam, unsubscribed...), SMS
replies and opt-outs. Journeys start, wait, exit and convert on them, so a client
sending one by name would be believed: a `Segment Entered` earns the VIP code, a
`Survey Answered` with a low score the apology code. Hence two rules over one list:

- the API refuses a client `track` call with such a name (400 naming `event`);
- the router acts on such a name only when the event is ours (rows a client stored
  before the API refused them start, wake, end or convert nothing).

The list is derived, not kept by hand: every name we record is reserved unless it is
one clients are meant to send too (`CLIENT_ENGAGEMENT`: what docs/ingestion.md tells a
storefront or app to report about our messages, which counts only for the message's
own contact). A name added to what we record is reserved from the start.
"""

from __future__ import annotations

from ..dsl.models import CAMPAIGN_DUE, DATE_REACHED, IDENTIFY, SEGMENT_EVENTS
from ..store.engagement import ENGAGEMENT_EVENTS
from .recording import SURVEY_ANSWERED
from .sendgrid_events import SIMPLE as SENDGRID_EVENTS
from .twilio_events import INBOUND_EVENTS

# What this orchestrator stores itself: segment refreshes, date triggers, the survey page, provider
# webhooks (SendGrid, Twilio: delivery, engagement, inbound SMS).
OWN_EVENTS = frozenset(
    {
        *SEGMENT_EVENTS.values(),
        DATE_REACHED,
        CAMPAIGN_DUE,
        SURVEY_ANSWERED,
        *SENDGRID_EVENTS.values(),
        *INBOUND_EVENTS.values(),
        *ENGAGEMENT_EVENTS,
    }
)
# Engagement a storefront or app reports about one of our messages (`message_id`): an
# open in the app, a click tracked by the shop. Counted only for the message's contact.
CLIENT_ENGAGEMENT = frozenset(
    {"Email Opened", "Email Link Clicked", "Push Opened", "Push Notification Tapped"}
)
# Only ever ours. `$identify` is what the router calls an identify call (journeys with
# `trigger: {identify: true}`): a track event of that name is no identify.
INTERNAL_ONLY = (OWN_EVENTS - CLIENT_ENGAGEMENT) | {IDENTIFY}


def reserved_name_problem(name: str) -> str | None:
    """Why a client may not send a `track` event called `name`, or None."""
    if name not in INTERNAL_ONLY:
        return None
    return (
        f"{name!r} is an event the orchestrator records itself (segment entries and exits, "
        "survey answers, provider reports, SMS replies): journeys would take a client's "
        "for ours, so clients cannot send it. For an event of your own, pick another name "
        "(e.g. 'Shop Survey Answered') and declare it in journeys/events.yaml"
    )
