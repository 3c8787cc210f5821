"""`journeys campaigns list|pause|resume|cancel`: an operator's hand on a campaign.

The state is a row in the store, which is what stops sends: the release of members
reads it between chunks and the send activity before each message (campaigns/gate.py),
so a pause or a cancel holds on every worker at once, even with Temporal unreachable.
The campaign's Temporal Schedule follows (paused, or deleted on cancel) when the
command, or a worker's next sync, reaches Temporal.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from ..dsl.models import Journey
from ..services.spelling import closest_name
from ..store.tables import Campaign, CampaignDispatch, utcnow
from ..store.versions import active_versions
from .gate import campaign_status

ACTIONS = {"pause": "paused", "resume": "active", "cancel": "cancelled"}


class CampaignError(ValueError):
    """Not a campaign, or a change its state does not allow: the message says which."""


@dataclass
class CampaignSummary:
    journey_id: str
    schedule: str  # the trigger in words
    throttle: str
    status: str  # active | paused | cancelled
    last_due: str | None  # the latest dispatch's local due time
    last_status: str | None  # sending | done | cancelled
    recipients: int  # members the latest dispatch released
    waves: str  # "3/5"


def campaigns(session: Session) -> dict[str, Journey]:
    """The deployed campaign journeys, by id."""
    found = {}
    for row in active_versions(session):
        journey = Journey.model_validate(row.spec)
        if journey.trigger.schedule is not None:
            found[journey.id] = journey
    return found


def summaries(session: Session) -> list[CampaignSummary]:
    rows = []
    for journey_id, journey in sorted(campaigns(session).items()):
        last = session.exec(
            select(CampaignDispatch)
            .where(CampaignDispatch.journey_id == journey_id)
            .order_by(col(CampaignDispatch.started_at).desc())
            .limit(1)
        ).first()
        throttle = ", ".join(f"{c} {r}" for c, r in sorted(journey.trigger.throttle.items()))
        rows.append(
            CampaignSummary(
                journey_id,
                journey.trigger.campaign_text(),
                throttle or "none",
                campaign_status(session, journey_id),
                last.due if last else None,
                last.status if last else None,
                last.recipients if last else 0,
                f"{last.waves_done}/{last.waves}" if last else "",
            )
        )
    return rows


def change(session: Session, journey_id: str, action: str) -> str:
    """Apply `pause`, `resume` or `cancel`; the campaign's new state."""
    known = campaigns(session)
    if journey_id not in known:
        guess = closest_name(journey_id, sorted(known))
        names = ", ".join(sorted(known)) or "none deployed"
        meant = f"; did you mean {guess!r}?" if guess else ""
        raise CampaignError(
            f"{journey_id!r} is not a deployed campaign (a journey with `schedule:` in its "
            f"trigger){meant}; campaigns: {names}"
        )
    status = campaign_status(session, journey_id)
    wanted = ACTIONS[action]
    if status == wanted:
        raise CampaignError(f"campaign {journey_id} is already {status}")
    if action == "pause" and status == "cancelled":
        raise CampaignError(
            f"campaign {journey_id} is cancelled: nothing to pause (resume makes its next "
            "due times send again)"
        )
    row = session.get(Campaign, journey_id) or Campaign(journey_id=journey_id)
    row.status, row.changed_at = wanted, utcnow()
    session.add(row)
    if action == "cancel":  # what is being sent stops; resuming later does not restart it
        sending = session.exec(
            select(CampaignDispatch).where(
                CampaignDispatch.journey_id == journey_id, CampaignDispatch.status == "sending"
            )
        )
        for dispatch in sending:
            dispatch.status, dispatch.finished_at = "cancelled", utcnow()
            session.add(dispatch)
    return wanted
