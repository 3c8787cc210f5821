"""Journey numbers for Prometheus, from the same counters `journeys stats` reads.

Fleet-wide and exact: the counters are written in the store by every worker, router and
API process in the transactions that make the changes, so any API replica's `/metrics`
shows the same totals, never one process's share, and a retried activity never
counts twice. Labels are journeys, channels, statuses and fixed reason words; never
contacts, steps or free text (Prometheus naming: `../shared/CONVENTIONS.md`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from ..store.tables import JourneyCount, JourneyRun
from .counts import JOURNEY
from .message_counts import ENGAGEMENTS, SEND_OUTCOMES

MESSAGE_STATUSES = frozenset({*SEND_OUTCOMES, *ENGAGEMENTS})
# Revenue rows are `converted:currency:<code>` (`attribution._convert`); other
# `converted:` rows (the conversion-time buckets) carry the same amount.
CURRENCY = "currency:"
# The write key is public, so an order's currency is anyone's to invent: a label is an
# ISO 4217 code (three letters) or empty, and any other text is summed as `other`, so
# made-up currencies cannot add series to /metrics without end.
_ISO_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # counter | gauge
    help: str
    labels: dict[str, str]
    value: float


HELP = {
    "journeys_messages_total": "Messages by journey, channel and status reached "
    "(each message counted once per status; engagement unique per message).",
    "journeys_sends_not_sent_total": "Sends that failed, were suppressed or skipped, by "
    "reason (no_address, template, provider, consent, suppression_list, frequency_cap...).",
    "journeys_sends_deferred_total": "Sends deferred at least once, by reason "
    "(quiet_hours, frequency_cap).",
    "journeys_runs_entered_total": "Runs that entered the journey.",
    "journeys_runs_refused_total": "Entries refused, by reason (re_entry, entry_if, erased).",
    "journeys_runs_finished_total": "Runs that ended, by status (completed, exited, failed).",
    "journeys_runs_converted_total": "Runs converted by their goal event.",
    "journeys_revenue_attributed_total": "Revenue of the orders that converted runs, by the "
    "currency the orders named (empty: none named; other: not a three-letter code).",
    "journeys_runs_active": "Runs in the journey now.",
}


def journey_samples(session: Session) -> Iterator[Sample]:
    c = JourneyCount
    rows = session.exec(
        select(c.journey_id, c.metric, c.channel, func.sum(c.count), func.sum(c.amount))
        .where(or_(c.step_id == JOURNEY, col(c.metric).startswith("message:")))
        .group_by(col(c.journey_id), col(c.metric), col(c.channel))
        .order_by(col(c.journey_id), col(c.metric), col(c.channel))
    )
    revenue: dict[tuple[str, str], float] = {}  # (journey, currency label): amount
    for journey, metric, channel, count, amount in rows:
        if metric.startswith(f"converted:{CURRENCY}"):
            label = currency_label(metric.removeprefix(f"converted:{CURRENCY}"))
            revenue[journey, label] = revenue.get((journey, label), 0.0) + float(amount or 0)
            continue
        sample = _sample(journey, metric, channel, int(count or 0), float(amount or 0))
        if sample is not None:
            yield from sample
    for (journey, label), amount in sorted(revenue.items()):
        labels = {"journey": journey, "currency": label}
        yield _s("journeys_revenue_attributed_total", labels, amount)
    active = session.exec(
        select(JourneyRun.journey_id, func.count())
        .where(JourneyRun.status == "active")
        .group_by(col(JourneyRun.journey_id))
        .order_by(col(JourneyRun.journey_id))
    )
    running = dict(active.all())
    known = session.exec(select(JourneyCount.journey_id).distinct()).all()
    for journey in sorted({*known, *running}):  # 0 too: a gauge that vanishes goes stale
        yield _s("journeys_runs_active", {"journey": journey}, running.get(journey, 0), "gauge")


def _sample(
    journey: str, metric: str, channel: str, count: int, amount: float
) -> list[Sample] | None:
    j = {"journey": journey}
    kind, _, rest = metric.partition(":")
    if kind == "message":
        status, _, reason = rest.partition(":")
        if status == "deferred":
            return [
                _s(
                    "journeys_sends_deferred_total",
                    {**j, "channel": channel, "reason": reason},
                    count,
                )
            ]
        if reason and status in ("failed", "suppressed", "skipped"):
            labels = {**j, "channel": channel, "status": status, "reason": reason}
            return [_s("journeys_sends_not_sent_total", labels, count)]
        if status in MESSAGE_STATUSES and not reason:
            return [
                _s("journeys_messages_total", {**j, "channel": channel, "status": status}, count)
            ]
        return None
    match kind:
        case "entered":
            return [_s("journeys_runs_entered_total", j, count)]
        case "refused":
            return [_s("journeys_runs_refused_total", {**j, "reason": rest}, count)]
        case "finished":
            return [_s("journeys_runs_finished_total", {**j, "status": rest}, count)]
        case "converted" if not rest:
            return [_s("journeys_runs_converted_total", j, count)]
    return None  # `converted:after:<bucket>` too: conversion times are not revenue;
    # `converted:currency:<code>` is summed by its label in `journey_samples`


def currency_label(currency: str) -> str:
    """The `currency` label of an order's currency as stored: the code, "" (none), or
    `other`."""
    return currency if not currency or _ISO_CURRENCY.fullmatch(currency) else "other"


def _s(name: str, labels: dict[str, str], value: float, kind: str = "counter") -> Sample:
    return Sample(name, kind, HELP[name], labels, value)
