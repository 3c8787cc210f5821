"""`JourneyStats`: what one journey did, step by step, message by message, variant by
variant. The one reporting model: `journeys stats`, `GET /v1/journeys/{id}/stats`,
`/metrics`, the dashboard and the simulator's report all read it.

Numbers come from the counters kept on write (`journey_counts`, a few hundred rows per
journey) plus one indexed count of the runs waiting now. A period (`since`, `until`,
whole UTC days, both included) selects the runs that *entered* in it, and every number
is about those runs: what they reached, were sent, opened, bought.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ..dsl import models as m
from ..dsl.durations import format_duration
from ..store.tables import JourneyCount, JourneyRun, JourneyVersion
from ..store.versions import get_version
from . import conversion_time
from . import significance as sig
from .counts import JOURNEY
from .message_counts import ENGAGEMENTS

NOT_SENT = ("failed", "suppressed", "skipped")


@dataclass
class StepStats:
    step_id: str
    kind: str  # wait | wait_until | wait_for | send | branch | split | action | exit
    depth: int  # 0 for top-level steps, 1 inside a branch, a split or a wait's outcome
    label: str = ""  # what the step does, in words: "send cart_reminder by email"
    reached: int = 0
    waiting_now: int = 0
    # What the step decided: `case 1`/`else`, a variant, `event:<name>`/`timeout`, a
    # send's `sent`/`failed`/`suppressed`/`skipped`.
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class MessageStats:
    step_id: str
    template: str | None
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    replied: int = 0
    unknown: int = 0  # the worker stopped during the provider call: maybe sent
    not_sent: dict[str, int] = field(default_factory=dict)  # failed, suppressed, skipped
    # why, in a fixed word: "suppressed: consent", "skipped: frequency_cap", "failed: template"
    not_sent_reasons: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)  # quiet_hours, frequency_cap
    by_channel: dict[str, int] = field(default_factory=dict)  # sent, per channel
    rates: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Comparison:
    """A variant against the split's first (control) variant."""

    against: str
    rate_difference: float
    rate_interval: tuple[float, float]
    rate_significant: bool
    revenue_per_entrant_difference: float
    revenue_interval: tuple[float, float] | None
    revenue_significant: bool
    verdict: str


@dataclass
class VariantStats:
    variant: str
    weight: int | None
    entrants: int
    conversions: int
    conversion_rate: float | None
    revenue: float
    revenue_per_entrant: float | None
    comparison: Comparison | None = None


@dataclass
class SplitStats:
    step_id: str
    variants: list[VariantStats]
    warning: str | None = None
    versions: list[int] = field(default_factory=list)  # the versions its entrants ran


@dataclass
class JourneyStats:
    journey_id: str
    name: str | None
    version: int | None  # the version asked for, None = every version
    versions: list[int]
    since: str | None
    until: str | None
    entered: int = 0
    active: int = 0
    finished: dict[str, int] = field(default_factory=dict)  # completed, exited, failed
    exits: dict[str, int] = field(default_factory=dict)  # why runs exited
    refused: dict[str, int] = field(default_factory=dict)  # re_entry, entry_if, erased
    goal: str | None = None  # the goal event; None: the journey has no goal to convert
    converted: int = 0
    conversion_rate: float | None = None
    revenue: float | None = 0.0
    revenue_per_entrant: float | None = None
    # Revenue by the currency the orders named ("" when they named none): amounts in
    # different currencies are not added up by anyone who reads this.
    revenue_by_currency: dict[str, float] = field(default_factory=dict)
    # Runs converted, by how long after entry (`conversion_time.BUCKETS`), and the median's.
    time_to_convert: dict[str, int] = field(default_factory=dict)
    median_time_to_convert: str | None = None
    steps: list[StepStats] = field(default_factory=list)
    messages: list[MessageStats] = field(default_factory=list)
    splits: list[SplitStats] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JourneyHeadline:
    """One journey in the list: `journeys stats` without a journey, `GET /v1/journeys`."""

    journey_id: str
    name: str | None
    goal: str | None
    status: str  # active | retired
    version: int
    versions: list[int]
    entered: int
    active: int
    converted: int
    conversion_rate: float | None
    revenue: float | None
    revenue_by_currency: dict[str, float] = field(default_factory=dict)  # as JourneyStats'

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def revenue_text(s: JourneyStats | JourneyHeadline) -> str:
    """The revenue as every view shows it: the total, or each currency's when the orders
    named more than one (amounts in different currencies are never added up)."""
    return money_text(s.revenue, s.revenue_by_currency)


def money_text(
    total: float | None,
    by_currency: dict[str, float],
    number: Callable[[float], str] = lambda v: f"{v:,.2f}",
) -> str:
    """`revenue_text` with the views' own number format (`number`)."""
    named = {k: v for k, v in by_currency.items() if v}
    if len(named) > 1:
        return " + ".join(f"{number(v)} {k or '(no currency)'}" for k, v in named.items())
    (only,) = named or {"": 0.0}
    return f"{number(total or 0)} {only}".rstrip()


class UnknownJourney(LookupError):
    pass


def journey_stats(
    session: Session,
    journey_id: str,
    since: date | None = None,
    until: date | None = None,
    version: int | None = None,
) -> JourneyStats:
    versions = _versions(session, journey_id)
    if not versions:
        raise UnknownJourney(f"no journey {journey_id!r} was ever deployed")
    if version is not None and version not in versions:
        raise UnknownJourney(
            f"journey {journey_id!r} has no version {version}; it has "
            + ", ".join(str(v) for v in versions)
        )
    spec_row = get_version(session, journey_id, version if version is not None else versions[-1])
    journey = m.Journey.model_validate(spec_row.spec) if spec_row is not None else None
    stats = JourneyStats(
        journey_id=journey_id,
        name=journey.name if journey else None,
        version=version,
        versions=versions,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
    )
    counters = _counters(session, journey_id, since, until, version)
    stats.goal = journey.goal.event if journey and journey.goal else None
    _journey_level(stats, counters.get(JOURNEY, {}))
    waiting = _waiting(session, journey_id, since, until, version)
    stats.active = sum(waiting.values())
    stats.steps = _steps(journey, counters, waiting)
    stats.messages = _messages(journey, counters)
    stats.splits = _splits(journey, counters)
    if version is None:
        for split in stats.splits:
            split.versions = _split_versions(session, journey_id, split.step_id, since, until)
            if len(split.versions) > 1:
                pooled = ", ".join(str(n) for n in split.versions)
                note = (
                    f"pools versions {pooled}, whose weights or steps may differ: compare "
                    "within one (--version N)"
                )
                split.warning = f"{split.warning}; {note}" if split.warning else note
    return stats


def headlines(
    session: Session, since: date | None = None, until: date | None = None
) -> list[JourneyHeadline]:
    """Every journey ever deployed, active ones first: counters and the active-runs index,
    never a scan of the runs."""
    v = JourneyVersion
    by_journey: dict[str, list[Any]] = {}
    for row in session.exec(
        select(v.id, v.journey_id, v.version, v.active, v.retired_at).order_by(
            col(v.journey_id), col(v.version)
        )
    ):
        by_journey.setdefault(row.journey_id, []).append(row)
    found = []
    for journey_id, rows in by_journey.items():
        active = [r for r in rows if r.active]
        retired = [r for r in rows if r.retired_at is not None]
        current = (
            max(active, key=lambda r: r.version)
            if active
            else max(retired, key=lambda r: r.retired_at)
            if retired
            else rows[-1]
        )
        level = _counters(session, journey_id, since, until, None, JOURNEY).get(JOURNEY, {})
        entered, converted = _n(level, "entered"), _n(level, "converted")
        spec = session.exec(select(v.spec).where(v.id == current.id)).one()
        goal = (spec.get("goal") or {}).get("event")
        found.append(
            JourneyHeadline(
                journey_id=journey_id,
                name=spec.get("name"),
                goal=goal,
                status="active" if active else "retired",
                version=current.version,
                versions=[r.version for r in rows],
                entered=entered,
                active=sum(_waiting(session, journey_id, since, until, None).values()),
                converted=converted,
                conversion_rate=_ratio(converted, entered) if goal or converted else None,
                revenue=round(_amount(level, "converted"), 2) if goal or converted else None,
                revenue_by_currency={
                    currency: round(amount, 2)
                    for currency, amount in sorted(
                        _amounts_with_prefix(level, "converted:currency:").items()
                    )
                },
            )
        )
    return sorted(found, key=lambda h: (h.status != "active", h.journey_id))


# --- reading -----------------------------------------------------------------

# {step: {(metric, channel): (count, amount, amount_sq)}}
Counters = dict[str, dict[tuple[str, str], tuple[int, float, float]]]


def _counters(
    session: Session,
    journey_id: str,
    since: date | None,
    until: date | None,
    version: int | None,
    step_id: str | None = None,
) -> Counters:
    c = JourneyCount
    query = select(
        c.step_id,
        c.metric,
        c.channel,
        func.sum(c.count),
        func.sum(c.amount),
        func.sum(c.amount_sq),
    ).where(c.journey_id == journey_id)
    if version is not None:
        query = query.where(c.version == version)
    if since is not None:
        query = query.where(col(c.day) >= since.isoformat())
    if until is not None:
        query = query.where(col(c.day) <= until.isoformat())
    if step_id is not None:
        query = query.where(c.step_id == step_id)
    query = query.group_by(col(c.step_id), col(c.metric), col(c.channel))
    found: Counters = {}
    for step, metric, channel, count, amount, squares in session.exec(query):
        found.setdefault(step, {})[(metric, channel)] = (
            int(count or 0),
            float(amount or 0),
            float(squares or 0),
        )
    return found


def _waiting(
    session: Session,
    journey_id: str,
    since: date | None,
    until: date | None,
    version: int | None,
) -> dict[str, int]:
    """Active runs by the step they are at (from the index on journey, status, entry)."""
    r = JourneyRun
    query = select(r.current_step, func.count()).where(
        r.journey_id == journey_id, r.status == "active"
    )
    if since is not None:
        query = query.where(col(r.entered_at) >= datetime.combine(since, time(), UTC))
    if until is not None:
        query = query.where(col(r.entered_at) <= datetime.combine(until, time.max, UTC))
    if version is not None:
        query = query.where(r.version == version)
    query = query.group_by(col(r.current_step))
    return {step or "": int(n) for step, n in session.exec(query)}


def _split_versions(
    session: Session, journey_id: str, step_id: str, since: date | None, until: date | None
) -> list[int]:
    """The versions whose runs went through a split (from its counters)."""
    c = JourneyCount
    query = select(c.version).where(
        c.journey_id == journey_id, c.step_id == step_id, col(c.metric).startswith("split:")
    )
    if since is not None:
        query = query.where(col(c.day) >= since.isoformat())
    if until is not None:
        query = query.where(col(c.day) <= until.isoformat())
    return sorted(set(session.exec(query.distinct())))


def journey_exists(session: Session, journey_id: str) -> bool:
    return bool(_versions(session, journey_id))


def _versions(session: Session, journey_id: str) -> list[int]:
    query = select(JourneyVersion.version).where(JourneyVersion.journey_id == journey_id)
    return sorted(session.exec(query))


# --- shaping -----------------------------------------------------------------


def _n(level: dict[tuple[str, str], tuple[int, float, float]], metric: str) -> int:
    return sum(v[0] for (name, _), v in level.items() if name == metric)


def _amount(level: dict[tuple[str, str], tuple[int, float, float]], metric: str) -> float:
    return sum(v[1] for (name, _), v in level.items() if name == metric)


def _with_prefix(
    level: dict[tuple[str, str], tuple[int, float, float]], prefix: str
) -> dict[str, int]:
    """Counts of the metrics named `prefix<key>`, by key."""
    return {k: int(v) for k, v in _sums_with_prefix(level, prefix, 0).items()}


def _amounts_with_prefix(
    level: dict[tuple[str, str], tuple[int, float, float]], prefix: str
) -> dict[str, float]:
    """Amounts (revenue) of the metrics named `prefix<key>`, by key."""
    return _sums_with_prefix(level, prefix, 1)


def _sums_with_prefix(
    level: dict[tuple[str, str], tuple[int, float, float]], prefix: str, column: int
) -> dict[str, float]:
    found: dict[str, float] = {}
    for (name, _), values in level.items():
        if name.startswith(prefix):
            key = name[len(prefix) :]
            found[key] = found.get(key, 0) + values[column]
    return found


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def _journey_level(
    stats: JourneyStats, level: dict[tuple[str, str], tuple[int, float, float]]
) -> None:
    stats.entered = _n(level, "entered")
    stats.finished = _with_prefix(level, "finished:")
    stats.exits = _with_prefix(level, "exit:")
    stats.refused = _with_prefix(level, "refused:")
    stats.converted = _n(level, "converted")
    if stats.goal is None and not stats.converted:  # nothing to convert: not a 0 % journey
        stats.revenue = None
        return
    stats.revenue = round(_amount(level, "converted"), 2)
    stats.conversion_rate = _ratio(stats.converted, stats.entered)
    per = _ratio(stats.revenue, stats.entered)
    stats.revenue_per_entrant = round(per, 2) if per is not None else None
    stats.revenue_by_currency = {
        currency: round(amount, 2)
        for currency, amount in sorted(_amounts_with_prefix(level, "converted:currency:").items())
    }
    stats.time_to_convert = conversion_time.ordered(_with_prefix(level, conversion_time.PREFIX))
    stats.median_time_to_convert = conversion_time.median_bucket(stats.time_to_convert)


def _walk(steps: list[Any], depth: int = 0) -> list[tuple[Any, int]]:
    found: list[tuple[Any, int]] = []
    for step in steps:
        found.append((step, depth))
        for attr in ("then", "on_timeout", "else_", "on_failure"):
            found += _walk(getattr(step, attr, None) or [], depth + 1)
        for case in getattr(step, "branch", None) or getattr(step, "split", None) or []:
            found += _walk(case.then, depth + 1)
    return found


_KINDS = {
    m.WaitStep: "wait",
    m.WaitUntilStep: "wait_until",
    m.WaitForStep: "wait_for",
    m.BranchStep: "branch",
    m.SplitStep: "split",
    m.SendStep: "send",
    m.ActionStep: "action",
    m.ExitStep: "exit",
}


def describe(step: Any) -> str:
    """What a step does, in the words of its YAML: "send cart_reminder by email"."""
    match step:
        case m.WaitStep():
            return f"wait {format_duration(step.wait)}"
        case m.WaitUntilStep():
            days = f" on {', '.join(step.wait_until.weekdays)}" if step.wait_until.weekdays else ""
            return f"wait until {step.wait_until.time}{days}"
        case m.WaitForStep():
            spec, up_to = step.wait_for, format_duration(step.wait_for.timeout)
            if spec.message is not None:
                return f"wait up to {up_to} for message {spec.message} to be {spec.engagement}"
            return f"wait up to {up_to} for {' or '.join(spec.events)}"
        case m.BranchStep():
            cases = len(step.branch)
            return f"branch: {cases} case{'s' if cases > 1 else ''}, else"
        case m.SplitStep():
            return "split: " + ", ".join(f"{v.variant} {v.weight}" for v in step.split)
        case m.SendStep():
            channel = step.send.channel
            by = " or ".join(channel) if isinstance(channel, list) else channel
            return f"send {step.send.template} by {by}"
        case m.ActionStep():
            return str(getattr(step.action, "type", "action")).replace("_", " ")
        case m.ExitStep():
            return "exit"
    return ""


def _steps(
    journey: m.Journey | None, counters: Counters, waiting: dict[str, int]
) -> list[StepStats]:
    listed = _walk(journey.steps) if journey else []
    steps = [
        StepStats(str(s.id), _KINDS.get(type(s), "step"), depth, describe(s)) for s, depth in listed
    ]
    known = {s.step_id for s in steps}
    # Steps of other versions that appear in the counters or have runs waiting.
    for step_id in sorted((set(counters) | set(waiting)) - known - {JOURNEY}):
        steps.append(StepStats(step_id, "step", 0, "a step of another version"))
    for step in steps:
        level = counters.get(step.step_id, {})
        step.reached = _n(level, "reached")
        step.waiting_now = waiting.get(step.step_id, 0)
        for kind in ("branch", "split", "wait", "send"):
            for outcome, count in _with_prefix(level, f"{kind}:").items():
                if not outcome.endswith(":converted"):
                    step.outcomes[outcome] = step.outcomes.get(outcome, 0) + count
    return steps


def _messages(journey: m.Journey | None, counters: Counters) -> list[MessageStats]:
    templates = {
        str(s.id): s.send.template
        for s, _ in (_walk(journey.steps) if journey else [])
        if isinstance(s, m.SendStep)
    }
    step_ids = list(templates)
    for step_id, level in sorted(counters.items()):
        if step_id not in templates and any(k[0].startswith("message:") for k in level):
            step_ids.append(step_id)
    found = []
    for step_id in step_ids:
        level = counters.get(step_id, {})
        stats = MessageStats(step_id, templates.get(step_id))
        for kind in ("sent", "unknown", *ENGAGEMENTS):
            setattr(stats, kind, _n(level, f"message:{kind}"))
        stats.not_sent = {k: n for k in NOT_SENT if (n := _n(level, f"message:{k}"))}
        stats.not_sent_reasons = {
            f"{k}: {why}": n
            for k in ("failed", "suppressed", "skipped")
            for why, n in sorted(_with_prefix(level, f"message:{k}:").items())
        }
        stats.deferred = _with_prefix(level, "message:deferred:")
        stats.by_channel = {
            channel: count
            for (name, channel), (count, _, _) in sorted(level.items())
            if name == "message:sent" and channel
        }
        # Engagement over the messages not known to have bounced: channels that never
        # report a delivery (SMTP, push, the console) would make "of delivered" 100 %.
        reached = stats.sent - stats.bounced
        stats.rates = {
            "delivery": _ratio(stats.delivered, stats.sent),
            "open": _ratio(stats.opened, reached),
            "click": _ratio(stats.clicked, reached),
            "click_to_open": _ratio(stats.clicked, stats.opened),
            "bounce": _ratio(stats.bounced, stats.sent),
            "complaint": _ratio(stats.complained, reached),
            "unsubscribe": _ratio(stats.unsubscribed, reached),
            "reply": _ratio(stats.replied, reached),
        }
        found.append(stats)
    return found


def _splits(journey: m.Journey | None, counters: Counters) -> list[SplitStats]:
    splits = []
    for step, _ in _walk(journey.steps) if journey else []:
        if not isinstance(step, m.SplitStep):
            continue
        level = counters.get(str(step.id), {})
        variants = []
        for v in step.split:
            entrants = _n(level, f"split:{v.variant}")
            conversions = _n(level, f"split:{v.variant}:converted")
            revenue = _amount(level, f"split:{v.variant}:converted")
            per = _ratio(revenue, entrants)
            variants.append(
                VariantStats(
                    variant=v.variant,
                    weight=v.weight,
                    entrants=entrants,
                    conversions=conversions,
                    conversion_rate=_ratio(conversions, entrants),
                    revenue=round(revenue, 2),
                    revenue_per_entrant=round(per, 2) if per is not None else None,
                )
            )
        squares = {
            v.variant: sum(
                val[2] for (name, _), val in level.items() if name == f"split:{v.variant}:converted"
            )
            for v in step.split
        }
        control = variants[0]
        warning = None
        small = [v.variant for v in variants if sig.too_few(v.conversions, v.entrants)]
        if small:
            warning = (
                f"too few to tell yet ({', '.join(small)}): each variant needs at least "
                f"{sig.MIN_ENTRANTS} entrants and {sig.MIN_OUTCOMES} conversions and "
                f"{sig.MIN_OUTCOMES} non-conversions before a difference means much"
            )
        for v in variants[1:]:
            v.comparison = _compare(v, control, squares, small=bool(small))
        splits.append(SplitStats(str(step.id), variants, warning))
    return splits


def _compare(
    v: VariantStats, control: VariantStats, squares: dict[str, float], small: bool
) -> Comparison:
    d, interval = sig.rate_difference(
        v.conversions, v.entrants, control.conversions, control.entrants
    )
    rd, rinterval = sig.mean_difference(
        v.revenue,
        squares[v.variant],
        v.entrants,
        control.revenue,
        squares[control.variant],
        control.entrants,
    )
    revenue_clear = bool(rinterval and rinterval.excludes_zero)
    if small:
        verdict = "not enough data yet"
    else:
        if interval.excludes_zero:
            better, worse = (v.variant, control.variant) if d > 0 else (control.variant, v.variant)
            verdict = f"{better} converts better than {worse}, 95 % sure"
        else:
            verdict = (
                f"no clear difference in conversion between {v.variant} and {control.variant} yet"
            )
        if revenue_clear:
            more = v.variant if rd > 0 else control.variant
            verdict += f"; {more} brings more revenue per entrant, 95 % sure"
    return Comparison(
        against=control.variant,
        rate_difference=round(d, 6),
        rate_interval=(round(interval.low, 6), round(interval.high, 6)),
        rate_significant=interval.excludes_zero,
        revenue_per_entrant_difference=round(rd, 2),
        revenue_interval=(round(rinterval.low, 2), round(rinterval.high, 2)) if rinterval else None,
        revenue_significant=revenue_clear,
        verdict=verdict,
    )
