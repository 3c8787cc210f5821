"""What invariants read, per contact: the messages sent, the runs, the orders.

Built from the store after a simulation, in a few whole-table reads (a simulated store is
small), into the plain dicts the condition language evaluates. The keys are exactly
those `dsl/roots.py` declares (`INVARIANT_*_KEYS`), which `journeys validate` checks
conditions against; tests/test_invariants.py holds the two together.

Times are the store's (journey time in a simulation), never the wall clock's, so the
same simulation reads the same facts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from ..services.zones import zone_of
from ..store.tables import Contact, Coupon, Event, JourneyRun, Message, TrailEntry

ORDER_EVENT = "Order Completed"
# A message that will not be sent, and why (`Message.error` says it).
NOT_SENT = frozenset({"suppressed", "skipped", "failed", "unknown"})
# Runs that ended early: their status is a reason when they left no exit reason.
ENDED_EARLY = frozenset({"exited", "failed", "skipped", "converted"})
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as `wait_until` spells them
DECISIONS = ("branch", "split", "wait")

RunKey = tuple[str, int]  # (workflow_id, entry_seq)


@dataclass(frozen=True)
class SentMessage:
    context: dict[str, Any]  # `message`
    at: datetime
    journey: str
    run: RunKey
    text: str  # one line saying what it was: 'sms "reminder" sent 2026-03-01 23:05 local (…)'
    short: str  # 'abandoned_cart/reminder 03-01 23:05'


@dataclass(frozen=True)
class RunFacts:
    context: dict[str, Any]  # `run`
    at: datetime  # entered
    journey: str
    key: RunKey
    trigger_event_id: int | None
    text: str


@dataclass(frozen=True)
class OrderFacts:
    context: dict[str, Any]  # `order`
    at: datetime
    event_id: int | None
    text: str


@dataclass
class ContactFacts:
    """One contact as invariants see it; lists in time order."""

    id: str
    context: dict[str, Any]  # `contact`
    zone: str
    messages: list[SentMessage] = field(default_factory=list)
    runs: list[RunFacts] = field(default_factory=list)
    orders: list[OrderFacts] = field(default_factory=list)
    runs_by_key: dict[RunKey, RunFacts] = field(default_factory=dict)


def read_facts(session: Session, default_timezone: str) -> list[ContactFacts]:
    """Every contact that has a contact row, a run, a message or an order, by id."""
    contacts = {c.id: c for c in session.exec(select(Contact))}
    runs = _grouped(session.exec(select(JourneyRun)), lambda r: r.contact_id)
    messages = _grouped(session.exec(select(Message)), lambda m: m.contact_id)
    orders = _grouped(
        session.exec(select(Event).where(Event.name == ORDER_EVENT, Event.type == "track")),
        lambda e: e.contact_id,
    )
    coupons = _grouped(session.exec(select(Coupon)), lambda c: c.contact_id)
    decisions = _grouped(
        session.exec(
            select(TrailEntry)
            .where(col(TrailEntry.kind).in_(DECISIONS))
            .order_by(col(TrailEntry.at), col(TrailEntry.id))
        ),
        lambda t: (t.workflow_id, t.entry_seq),
    )
    ids = sorted({*contacts, *runs, *messages, *orders})
    return [
        _contact_facts(
            cid,
            contacts.get(cid),
            runs.get(cid, []),
            messages.get(cid, []),
            orders.get(cid, []),
            [c.code.upper() for c in coupons.get(cid, [])],
            decisions,
            default_timezone,
        )
        for cid in ids
    ]


def _grouped(rows: Iterable[Any], key: Any) -> dict[Any, list[Any]]:
    found: dict[Any, list[Any]] = defaultdict(list)
    for row in rows:
        found[key(row)].append(row)
    return found


def contact_context(contact_id: str, contact: Contact | None) -> dict[str, Any]:
    if contact is None:
        return {"id": contact_id, "traits": {}, "consent": {}}
    return {
        "id": contact.id,
        "email": contact.email,
        "phone": contact.phone,
        "locale": contact.locale,
        "timezone": contact.timezone,
        "traits": contact.traits or {},
        "consent": contact.consent or {},
    }


def _contact_facts(
    contact_id: str,
    contact: Contact | None,
    runs: list[JourneyRun],
    messages: list[Message],
    order_events: list[Event],
    codes: list[str],
    decisions: dict[RunKey, list[TrailEntry]],
    default_timezone: str,
) -> ContactFacts:
    zone = zone_of(contact.timezone if contact else None, default_timezone)
    facts = ContactFacts(contact_id, contact_context(contact_id, contact), str(zone))
    order_events = sorted(order_events, key=lambda e: (_utc(e.timestamp), e.id or 0))
    facts.orders = [order_facts(e) for e in order_events]
    by_run: dict[RunKey, list[Message]] = defaultdict(list)
    for message in messages:
        by_run[(message.workflow_id, message.entry_seq)].append(message)
    for run in sorted(runs, key=lambda r: (_utc(r.entered_at), r.journey_id, r.entry_seq)):
        key = (run.workflow_id, run.entry_seq)
        found = run_facts(run, by_run.get(key, []), decisions.get(key, []))
        facts.runs.append(found)
        facts.runs_by_key[key] = found
    sent = sorted(
        (m for m in messages if m.sent_at is not None),
        key=lambda m: (_utc(m.sent_at), m.journey_id, m.step_id),
    )
    run_rows = {(r.workflow_id, r.entry_seq): r for r in runs}
    for message in sent:
        run_row = run_rows.get((message.workflow_id, message.entry_seq))
        facts.messages.append(message_facts(message, run_row, order_events, codes, zone))
    return facts


def message_facts(
    message: Message,
    run: JourneyRun | None,
    order_events: list[Event],
    codes: list[str],
    zone: Any,
) -> SentMessage:
    """A sent message as `message`: where and when it went, relative to orders and its
    run's conversion, and whether it carried one of the contact's promo codes."""
    at = _utc(message.sent_at)
    local = at.astimezone(zone)
    before = [e for e in order_events if _utc(e.timestamp) <= at]
    latest = _utc(before[-1].timestamp) if before else None
    converted = _utc(run.converted_at) if run is not None and run.converted_at else None
    content = message.content or {}
    text = json.dumps(content, ensure_ascii=False).upper()
    context = {
        "journey": message.journey_id,
        "version": run.version if run is not None else None,
        "step": message.step_id,
        "channel": message.channel,
        "category": message.category,
        "template": message.template,
        "status": message.status,
        "locale": message.locale,
        "local_hour": local.hour,
        "local_time": local.strftime("%H:%M"),
        "local_weekday": WEEKDAYS[local.weekday()],
        "at": at.isoformat(),
        "content": content,
        "after_conversion": converted is not None and converted < at,
        "hours_since_order": (at - latest).total_seconds() / 3600 if latest else None,
        "orders_before": len(before),
        "has_coupon": any(code in text for code in codes),
    }
    line = (
        f'{message.journey_id} {message.channel} "{message.step_id}" sent '
        f"{local:%Y-%m-%d %H:%M} local ({zone})"
    )
    short = f"{message.journey_id}/{message.step_id} {at:%m-%d %H:%M}"
    return SentMessage(
        context, at, message.journey_id, (message.workflow_id, message.entry_seq), line, short
    )


def run_facts(run: JourneyRun, messages: list[Message], decisions: list[TrailEntry]) -> RunFacts:
    """A run as `run`, with `reason`: why it sent nothing (more)."""
    sent = [m for m in messages if m.sent_at is not None]
    not_sent = sorted(
        (m for m in messages if m.sent_at is None and m.status in NOT_SENT),
        key=lambda m: (_utc(m.created_at), m.step_id),
    )
    reason = _reason(run, len(sent), not_sent, decisions)
    context = {
        "journey": run.journey_id,
        "version": run.version,
        "status": run.status,
        "exit_reason": run.exit_reason,
        "converted": run.converted_at is not None,
        "current_step": run.current_step,
        "messages_sent": len(sent),
        "messages_not_sent": len(not_sent),
        "reason": reason,
        "entered_at": _utc(run.entered_at).isoformat(),
    }
    text = (
        f"{run.journey_id} run {run.entry_seq} entered {_utc(run.entered_at):%Y-%m-%d %H:%M} "
        f"UTC: {run.status}, {len(sent)} sent, reason: {reason or 'none'}"
    )
    key = (run.workflow_id, run.entry_seq)
    return RunFacts(context, _utc(run.entered_at), run.journey_id, key, run.trigger_event_id, text)


def _reason(
    run: JourneyRun, sent: int, not_sent: list[Message], decisions: list[TrailEntry]
) -> str | None:
    """A message not sent (its status and why), else the exit of a run that ended early,
    else, for a run that sent nothing, the last decision on its way."""
    if not_sent:
        first = not_sent[0]
        return f"{first.status}: {first.error}" if first.error else first.status
    if run.status in ENDED_EARLY:
        return run.exit_reason or run.status
    if sent == 0 and decisions:
        last = decisions[-1]
        why = f": {last.reason}" if last.reason else ""
        return f"{last.kind} {last.step_id} took {last.outcome}{why}"
    return None


def order_facts(event: Event) -> OrderFacts:
    props = event.properties or {}
    order_id = props.get("order_id")
    revenue = props.get("revenue", props.get("total"))
    at = _utc(event.timestamp)
    context = {
        "id": str(order_id) if order_id is not None else None,
        "revenue": revenue if isinstance(revenue, int | float) else None,
        "at": at.isoformat(),
        "properties": props,
    }
    name = f"order {order_id}" if order_id is not None else f"order event {event.id}"
    return OrderFacts(context, at, event.id, f"{name} at {at:%Y-%m-%d %H:%M} UTC")


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
