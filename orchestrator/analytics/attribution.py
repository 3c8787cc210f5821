"""Conversions that do not need the run alive: a goal event within `goal.within` of the
entry (or of the run's last message) converts a run, once, with the order's revenue.

The router applies it to every goal event it routes; a run that sees the event itself
(`exit_on`, a live goal) asks for the same attribution, so both paths agree:

- per journey, the goal event converts the run that entered most recently before it
  and is still in its window (and passes `goal.where`): one order, one run;
- a run converts once (the first goal event in its window);
- measured in journey time: the event's timestamp, or the run's clock when the run
  itself saw the event; an event stamped before the run began (beyond a clock skew)
  converts nothing, whoever sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..dsl.conditions import evaluate
from ..dsl.durations import format_duration
from ..dsl.models import Goal
from ..store.context import contact_context, event_context
from ..store.identity import aliases_of, canonical_id, load_contact
from ..store.orders import amount_of, order_id_of
from ..store.tables import Event, JourneyRun, JourneyVersion, Message, Order, utcnow
from . import trail
from .conversion_time import PREFIX, bucket_of
from .counts import JOURNEY

# The largest revenue one conversion may carry; more is a mistake or an attack.
MAX_REVENUE = 1e12
# A goal event reported this long after its timestamp converts nothing.
LATE = timedelta(days=1)
ORDER_COMPLETED = "Order Completed"
# How far a client's clock may be behind ours when it stamps an event.
CLOCK_SKEW = timedelta(minutes=5)

# Parsed goals by (journey, version, spec hash): a deployed version's spec never changes.
_GOALS: dict[tuple[str, int, str], Goal | None] = {}


def goals(session: Session) -> dict[tuple[str, int], Goal]:
    """Every deployed version's goal, by (journey, version)."""
    v = JourneyVersion
    rows = list(session.exec(select(v.id, v.journey_id, v.version, v.spec_hash)))
    missing = {row_id: (j, n, h) for row_id, j, n, h in rows if (j, n, h) not in _GOALS}
    if missing:
        specs = session.exec(select(v.id, v.spec).where(col(v.id).in_(list(missing))))
        for row_id, spec in specs:
            raw = (spec or {}).get("goal")
            _GOALS[missing[row_id]] = Goal.model_validate(raw) if raw else None
    found: dict[tuple[str, int], Goal] = {}
    for _, journey_id, version, spec_hash in rows:
        goal = _GOALS.get((journey_id, version, spec_hash))
        if goal is not None:
            found[(journey_id, version)] = goal
    return found


def goal_event_names(session: Session) -> frozenset[str]:
    return frozenset(goal.event for goal in goals(session).values())


def attribute_conversion(
    session: Session,
    event: Event,
    journey_ids: set[str] | None = None,
    at: datetime | None = None,
    unlisted: tuple[str, Goal] | None = None,
    default_zone: str = "UTC",
) -> list[JourneyRun]:
    """Convert, per journey, the run this goal event belongs to; returns the runs converted.

    `unlisted`: (journey, goal) of a hand-written Python journey, which has no deployed
    version to read its goal from (its runs are version 0). `default_zone`: the zone
    of contacts without one, for dates in a goal's `where`.
    """
    wanted = {
        key: goal
        for key, goal in goals(session).items()
        if goal.event == event.name and (journey_ids is None or key[0] in journey_ids)
    }
    if unlisted is not None and not any(j == unlisted[0] for j, _ in wanted):
        wanted[(unlisted[0], 0)] = unlisted[1]
    if not wanted or event.id is None or not _credible(session, event):
        return []
    # The run's clock when it saw the event, unless the event says it happened later.
    moment = max(_aware(at), _aware(event.timestamp)) if at else _aware(event.timestamp)
    owner = canonical_id(session, event.contact_id)
    ids = [owner, *aliases_of(session, owner)]
    if event.contact_id not in ids:
        ids.append(event.contact_id)
    journeys = {journey_id for journey_id, _ in wanted}
    query = select(JourneyRun).where(
        col(JourneyRun.contact_id).in_(ids),
        col(JourneyRun.journey_id).in_(journeys),
        col(JourneyRun.converted_at).is_(None),
        col(JourneyRun.entered_at) <= moment,
    )
    if all(goal.after == "entry" for goal in wanted.values()):
        longest = max(goal.within for goal in wanted.values())
        query = query.where(col(JourneyRun.entered_at) >= moment - timedelta(seconds=longest))
    done = set(
        session.exec(
            select(JourneyRun.journey_id).where(
                col(JourneyRun.journey_id).in_(journeys),
                JourneyRun.conversion_event_id == event.id,
            )
        )
    )
    converted: list[JourneyRun] = []
    for run in session.exec(
        query.order_by(col(JourneyRun.entered_at).desc(), col(JourneyRun.id).desc())
    ):
        goal = wanted.get((run.journey_id, run.version))
        if goal is None or run.journey_id in done:
            continue
        if _aware(event.timestamp) < _aware(run.entered_at) - CLOCK_SKEW:
            continue  # it happened before the run began: a late report, not this run's doing
        start = _window_start(session, run, goal)
        if start is None or moment - start > timedelta(seconds=goal.within):
            continue
        if goal.where and not _holds(session, goal.where, run, event, moment, default_zone):
            continue
        if _convert(session, run, event, goal, moment):
            converted.append(run)
        done.add(run.journey_id)
    return converted


def revenue_of(event: Event) -> float | None:
    """The event's `revenue` (else `total`) when it is a sane amount: finite, not negative,
    below `MAX_REVENUE` (a client's 1e400 must neither crash routing nor poison sums)."""
    props = event.properties or {}
    revenue = props.get("revenue")
    if revenue is None or revenue == "":
        revenue = props.get("total")
    if isinstance(revenue, dict | list):
        return None
    amount = amount_of(revenue)  # "80" and "80.50" too, as the orders table reads them
    return amount if amount is not None and 0 <= amount <= MAX_REVENUE else None


def currency_of(event: Event) -> str:
    """The order's currency as sent (`USD`), "" when it names none or not as text."""
    currency = (event.properties or {}).get("currency")
    return currency.strip().upper()[:8] if isinstance(currency, str) else ""


def _credible(session: Session, event: Event) -> bool:
    """Whether a goal event may convert anything. Not a report more than `LATE` after the
    fact (its timestamp is the client's: a backdated order must not reach into a closed
    window), nor an `Order Completed` for an order reported before (the shop re-sent it)
    or first reported by another contact (the write key is public)."""
    received, happened = _aware(event.received_at), _aware(event.timestamp)
    if received - happened > LATE:
        return False
    if event.name != ORDER_COMPLETED:
        return True
    order_id = order_id_of(event.properties or {}) or f"event:{event.id}"
    first = session.exec(select(Order.event_id).where(Order.order_id == order_id)).first()
    return first is None or first == event.id


def _convert(session: Session, run: JourneyRun, event: Event, goal: Goal, moment: datetime) -> bool:
    revenue = revenue_of(event)
    try:
        with session.begin_nested():
            result = session.execute(
                update(JourneyRun)
                .where(col(JourneyRun.id) == run.id, col(JourneyRun.converted_at).is_(None))
                .values(
                    converted_at=moment,
                    revenue=revenue,
                    conversion_event_id=event.id,
                    updated_at=utcnow(),
                )
            )
    except IntegrityError:  # another process gave this order to another run meanwhile
        return False
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.refresh(run)
    order_id = (event.properties or {}).get("order_id")
    since = "the last message" if goal.after == "last_message" else "entry"
    counters = [
        (JOURNEY, "converted"),
        (JOURNEY, f"converted:currency:{currency_of(event)}"),
        (JOURNEY, PREFIX + bucket_of((moment - _aware(run.entered_at)).total_seconds())),
    ]
    counters += [
        (step, f"split:{variant}:converted") for step, variant in trail.split_variants(session, run)
    ]
    trail.record(
        session,
        run,
        trail.GOAL,
        moment,
        outcome=str(order_id) if order_id is not None else event.name,
        reason=f"{event.name} within {format_duration(goal.within)} of {since}",
        detail={
            "event_id": event.id,
            "order_id": order_id,
            "revenue": revenue,
            "currency": currency_of(event) or None,
        },
        counters=counters,
        amount=revenue or 0.0,
    )
    return True


def _window_start(session: Session, run: JourneyRun, goal: Goal) -> datetime | None:
    if goal.after == "entry":
        return _aware(run.entered_at)
    # `queued_at` is journey time (when the message passed policy); only messages sent.
    last = session.exec(
        select(func.max(Message.queued_at)).where(
            Message.contact_id == run.contact_id,
            Message.workflow_id == run.workflow_id,
            Message.entry_seq == run.entry_seq,
            col(Message.sent_at).is_not(None),
        )
    ).first()
    return _aware(last) if last is not None else None


def _holds(
    session: Session,
    expression: str,
    run: JourneyRun,
    event: Event,
    moment: datetime,
    default_zone: str,
) -> bool:
    trigger = session.get(Event, run.trigger_event_id) if run.trigger_event_id else None
    context: dict[str, Any] = {
        "contact": contact_context(load_contact(session, run.contact_id), session),
        "event": event_context(event),
        "trigger": event_context(trigger),
        "journey": dict(run.data or {}),
    }
    return evaluate(expression, context, now=moment, default_zone=default_zone)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
