"""A contact's story: what they did and what every journey did with them, and why.

`journeys explain CONTACT` and `GET /v1/contacts/{id}/timeline` read it. One list in
time order of:

- `event`: what the storefront (or a provider) told us;
- `journey`: entered or refused (why), each step reached, each decision (the branch
  case, the split variant, how a wait ended, what became of a send), the goal reached
  with its order and revenue, the exit and its cause: the run's trail;
- `message`: each change of a message's status with the policy check that made it
  (consent, suppression, quiet hours, caps) and the provider's reports;
- `points`, `coupon`: the loyalty ledger and the codes issued and redeemed.

Indexed reads by contact (events, trail, messages, ledger, coupons): a handful of
queries however big the store is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ..store.date_plans import DATE_PLAN_EVENT
from ..store.identity import aliases_of, canonical_id
from ..store.loyalty import balance_seen
from ..store.tables import Contact, Coupon, Event, LoyaltyEntry, Message, TrailEntry, utcnow
from .trail import trail_of

DEFAULT_EVENTS = 200  # the newest events told; journeys and messages are always all told
MAX_EVENTS = 5000
# A message's statuses on its way out, told only when they carry a reason.
QUIET_STATUSES = frozenset({"pending", "queued", "sending"})


@dataclass
class Moment:
    at: str  # ISO, UTC
    kind: str  # event | journey | message | points | coupon
    text: str  # one line a marketer reads
    journey_id: str | None = None
    step_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Story:
    contact_id: str
    ids: list[str]  # the contact's id first, then its aliases
    exists: bool
    points: int
    moments: list[Moment]
    events_shown: int
    events_total: int
    # Only the newest lines were read (`contact_story(newest=N)`): older ones exist.
    cut: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def contact_story(
    session: Session,
    contact_id: str,
    journey_id: str | None = None,
    events: int = DEFAULT_EVENTS,
    newest: int | None = None,
) -> Story:
    """`newest`: tell only the latest N lines (the dashboard's contact page), reading at
    most N of each kind (events, trail rows, messages) instead of all of them."""
    owner = canonical_id(session, contact_id)
    ids = [owner, *aliases_of(session, owner)]
    contact = session.get(Contact, owner)
    moments: list[Moment] = []
    shown, total = _events(session, ids, min(events, newest or events), moments)
    trail = trail_of(session, ids, journey_id, newest)
    cut = newest is not None and len(trail) >= newest
    for entry in trail:
        moments.append(_trail_moment(entry))
    # The columns the story tells, not the rendered content (kilobytes of HTML each).
    m = Message
    query = select(m.id, m.journey_id, m.step_id, m.channel, m.template, m.timeline).where(
        col(m.contact_id).in_(ids)
    )
    if journey_id is not None:
        query = query.where(m.journey_id == journey_id)
    if newest is not None:
        query = query.order_by(col(m.created_at).desc()).limit(newest)
    found = session.exec(query).all()
    cut = cut or (newest is not None and len(found) >= newest)
    for message in found:
        moments.extend(_message_moments(message))
    if journey_id is None:
        _commerce(session, ids, moments)
    moments.sort(key=lambda mo: mo.at)
    if newest is not None and len(moments) > newest:
        moments, cut = moments[-newest:], True
    return Story(
        contact_id=owner,
        ids=ids,
        exists=contact is not None,
        points=balance_seen(session, owner, utcnow()) if contact is not None else 0,
        moments=moments,
        events_shown=shown,
        events_total=total,
        cut=cut,
    )


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _events(session: Session, ids: list[str], limit: int, out: list[Moment]) -> tuple[int, int]:
    total = session.exec(
        select(func.count()).select_from(Event).where(col(Event.contact_id).in_(ids))
    ).one()
    rows = session.exec(
        select(Event)
        .where(col(Event.contact_id).in_(ids))
        .order_by(col(Event.timestamp).desc(), col(Event.id).desc())
        .limit(limit)
    ).all()
    for e in rows:
        name = e.name if e.type == "track" else e.type
        if e.type == "message":  # POST /v1/messages: the request of a transactional message
            name = f"transactional message {e.name} asked for"
        if e.type == DATE_PLAN_EVENT:  # a deploy planning known contacts' dates
            name = f"date of {e.name} planned (the journey was deployed)"
        props = e.properties or {}
        keys = ("order_id", "revenue", "currency", "product_id", "cart_id", "url")
        bits = [f"{k}={props[k]}" for k in keys if k in props]
        out.append(
            Moment(
                _iso(e.timestamp),
                "event",
                f"{name}" + (f" ({', '.join(bits)})" if bits else ""),
                detail={"event_id": e.id, "type": e.type, "name": e.name},
            )
        )
    return len(rows), int(total)


def _trail_moment(entry: TrailEntry) -> Moment:
    j, step = entry.journey_id, entry.step_id
    reason = f": {entry.reason}" if entry.reason else ""
    match entry.kind:
        case "entered":
            text = f"entered {j} (version {entry.version}, {entry.outcome}){reason}"
        case "refused":
            text = f"not entered into {j}{reason}"
        case "step":
            text = f"{j}: reached step {step}"
        case "branch":
            text = f"{j}: branch {step} took {entry.outcome}{reason}"
        case "split":
            text = f"{j}: split {step} chose variant {entry.outcome}{reason}"
        case "wait":
            ended = "timed out" if entry.outcome == "timeout" else f"ended by {entry.outcome}"
            text = f"{j}: wait {step} {ended}{reason}"
        case "send":
            text = f"{j}: send {step} {entry.outcome}{reason}"
        case "goal":
            revenue = (entry.detail or {}).get("revenue")
            worth = f", revenue {revenue:g}" if isinstance(revenue, int | float) else ""
            text = f"{j}: converted (order {entry.outcome}{worth}){reason}"
        case "exit":
            text = f"{j}: {entry.outcome}{reason}"
        case _:
            text = f"{j}: {entry.kind} {entry.outcome or ''}{reason}"
    detail = {
        "workflow_id": entry.workflow_id,
        "entry_seq": entry.entry_seq,
        **(entry.detail or {}),
    }
    if entry.outcome is not None:
        detail["outcome"] = entry.outcome
    return Moment(_iso(entry.at), "journey", text, j, step, detail)


def _message_moments(message: Any) -> list[Moment]:
    """`message`: a row with id, journey_id, step_id, channel, template and timeline."""
    found = []
    name = f"message {message.step_id} ({message.channel}, {message.template})"
    for e in message.timeline or []:
        status = e.get("status", "")
        check, result, why = e.get("check"), e.get("result"), e.get("detail")
        if result == "pass" and check != "channel":
            continue  # a check that let the message through: the story is what stopped it
        if result is None and status in QUIET_STATUSES and not why:
            continue  # the pipeline's own steps
        if result == "pass" and check == "channel":
            text = f"{name}: channel {why}"
        elif result is not None:
            text = f"{name}: {check} {result}" + (f" ({why})" if why else "")
        else:
            text = f"{name}: {status}"
            if check:
                text += f" by {check}"
            if why:
                text += f": {why}"
            if e.get("until"):
                text += f" (until {e['until']})"
        found.append(
            Moment(
                str(e.get("at", "")),
                "message",
                text,
                message.journey_id,
                message.step_id,
                {"message_id": message.id, "status": status, "check": check},
            )
        )
    return found


def _commerce(session: Session, ids: list[str], out: list[Moment]) -> None:
    for entry in session.exec(select(LoyaltyEntry).where(col(LoyaltyEntry.contact_id).in_(ids))):
        why = f" ({entry.note})" if entry.note else ""
        out.append(
            Moment(
                _iso(entry.created_at),
                "points",
                f"points {entry.kind} {entry.points:+d}{why}",
                entry.journey_id,
                detail={"order_id": entry.order_id},
            )
        )
    for coupon in session.exec(select(Coupon).where(col(Coupon.contact_id).in_(ids))):
        out.append(
            Moment(
                _iso(coupon.issued_at),
                "coupon",
                f"coupon {coupon.code} issued ({coupon.campaign})",
                coupon.journey_id,
                detail={"code": coupon.code},
            )
        )
        if coupon.redeemed_at is not None:
            out.append(
                Moment(
                    _iso(coupon.redeemed_at),
                    "coupon",
                    f"coupon {coupon.code} redeemed (order {coupon.redeemed_order_id})",
                    coupon.journey_id,
                    detail={"code": coupon.code},
                )
            )
