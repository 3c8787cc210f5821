"""A campaign's hold on its own sends: paused, cancelled, throttled.

The send activity asks before each message of a run a campaign started (its trigger is
the member's `Campaign Due` event): a cancelled campaign sends nothing more (the send is
skipped), a paused one holds the send on the run's durable timer and asks again, and a
throttled one gives each send the next free moment on its channel, `1 / rate` after the
previous one (a row per dispatch and channel, taken under a row lock, so every worker
shares one pace).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from ..dsl.models import CAMPAIGN_DUE
from ..store.db import dialect_insert
from ..store.tables import (
    ORIGIN_INTERNAL,
    Campaign,
    CampaignDispatch,
    CampaignSlot,
    Event,
    JourneyRun,
    utcnow,
)
from .dispatch import CAMPAIGN_OF

PAUSED_RECHECK = timedelta(minutes=1)  # the first re-check of a paused send, then doubling
PAUSED_RECHECK_MAX = timedelta(minutes=15)


@dataclass
class Hold:
    """`skip` (why) or `until` (defer to that moment); a slot taken says which."""

    skip: str | None = None
    until: datetime | None = None
    detail: str = ""


def dispatch_of(session: Session, trigger_event_id: int | None) -> CampaignDispatch | None:
    """The dispatch whose member event started the run, if a campaign started it: our own
    `Campaign Due` event only (a client's event may carry any context)."""
    if trigger_event_id is None:
        return None
    event = session.get(Event, trigger_event_id)
    if event is None or event.origin != ORIGIN_INTERNAL or event.name != CAMPAIGN_DUE:
        return None
    dispatch_id = (event.context or {}).get(CAMPAIGN_OF)
    return session.get(CampaignDispatch, dispatch_id) if isinstance(dispatch_id, str) else None


def held_at_delivery(session: Session, workflow_id: str, entry_seq: int) -> Hold | None:
    """A prepared message of a campaign's run, about to go out: skipped if the campaign
    was cancelled, held a minute (then prepared again) if it is paused, else None."""
    trigger = session.exec(
        select(JourneyRun.trigger_event_id).where(
            JourneyRun.workflow_id == workflow_id, JourneyRun.entry_seq == entry_seq
        )
    ).first()
    dispatch = dispatch_of(session, trigger)
    if dispatch is None:
        return None
    status = campaign_status(session, dispatch.journey_id)
    if dispatch.status == "cancelled" or status == "cancelled":
        return Hold(skip=f"campaign {dispatch.journey_id} was cancelled")
    if status == "paused":
        return Hold(
            until=utcnow() + PAUSED_RECHECK, detail=f"campaign {dispatch.journey_id} is paused"
        )
    return None


def campaign_status(session: Session, journey_id: str) -> str:
    row = session.get(Campaign, journey_id)
    return row.status if row is not None else "active"


def hold(
    session: Session,
    dispatch: CampaignDispatch,
    channel: str,
    now: datetime,
    paused_before: int,
    slot_taken: datetime | None,
) -> Hold | None:
    """Why the send must wait or not happen now, or None to send it.

    `paused_before`: how many times this send was held for a pause already (the wait
    doubles, up to a quarter of an hour); `slot_taken`: the moment a throttle gave it
    earlier (it keeps that place in the queue).
    """
    status = campaign_status(session, dispatch.journey_id)
    if status == "cancelled" or dispatch.status == "cancelled":
        return Hold(skip=f"campaign {dispatch.journey_id} was cancelled")
    if status == "paused":
        wait = min(PAUSED_RECHECK * 2**paused_before, PAUSED_RECHECK_MAX)
        return Hold(until=now + wait, detail=f"campaign {dispatch.journey_id} is paused")
    rate = (dispatch.throttle or {}).get(channel)
    if not rate:
        return None
    if slot_taken is not None:
        return None if slot_taken <= now else Hold(until=slot_taken, detail="throttle")
    slot = take_slot(session, dispatch.id, channel, now, float(rate))
    if slot <= now:
        return None
    return Hold(until=slot, detail=f"throttle {_rate_text(float(rate))} on {channel}")


def take_slot(
    session: Session, dispatch_id: str, channel: str, now: datetime, rate: float
) -> datetime:
    """The next free moment on the dispatch's channel (now, if the pace allows), taken."""
    session.execute(
        dialect_insert(session)(CampaignSlot)
        .values(dispatch_id=dispatch_id, channel=channel, next_at=now)
        .on_conflict_do_nothing()
    )
    row = session.exec(
        select(CampaignSlot)
        .where(CampaignSlot.dispatch_id == dispatch_id, CampaignSlot.channel == channel)
        .with_for_update()
    ).one()
    slot = max(row.next_at, now)
    row.next_at = slot + timedelta(seconds=1 / rate)
    session.add(row)
    return slot


def _rate_text(rate: float) -> str:
    return f"{rate:g}/s" if rate >= 1 else f"{rate * 60:g}/min"
