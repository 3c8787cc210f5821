"""Invariants checked on every simulated contact: which broke, for whom, and their story.

`journeys simulate` (and `journeys check`) run journeys on a synthetic population, then
call `check_invariants` on the store they wrote: each rule of the journeys' `invariants:`
lists and of `journeys/invariants.yaml` (docs/invariants.md) is evaluated over the facts
of `invariant_context.py`. A broken rule fails the command; `cli/simulate.py` prints
the first offending contacts with the story `journeys explain` tells.

The report is deterministic (contacts by id, then time; no wall-clock time, no random
id): the same seed gives a byte-identical report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from ..dsl.conditions import evaluate
from ..dsl.durations import format_duration
from ..dsl.invariants import Declared, journey_invariants, load_project_invariants
from ..dsl.loader import LoadedJourney
from ..dsl.models import Invariant, Journey
from ..dsl.roots import INVARIANT_ROOTS
from .invariant_context import ContactFacts, OrderFacts, SentMessage, read_facts

__all__ = [
    "InvariantReport",
    "InvariantResult",
    "Violation",
    "check_facts",
    "check_invariants",
    "declared_invariants",
    "load_project_invariants",
]

MAX_EXAMPLES = 20  # violations kept per invariant in the report (all are counted)
MAX_LISTED = 6  # messages named in one count's violation line


@dataclass(frozen=True, order=True)
class Violation:
    contact_id: str
    at: str  # ISO, UTC: the item's time (the first message of a window, the order)
    what: str  # one line: 'abandoned_cart sms "reminder_push" sent 2026-03-01 23:05 local (…)'


@dataclass
class InvariantResult:
    name: str
    kind: str  # never | always | at_most | at_least | exactly
    declared_at: str  # file:line:column
    journey: str | None  # None: project-wide
    checked: int = 0  # messages, runs, orders or contacts the rule was evaluated on
    broken: int = 0
    contacts: list[str] = field(default_factory=list)  # who broke it, by id
    examples: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "declared_at": self.declared_at,
            "journey": self.journey,
            "checked": self.checked,
            "broken": self.broken,
            "contacts": len(self.contacts),
            "examples": [
                {"contact": v.contact_id, "at": v.at, "what": v.what} for v in self.examples
            ],
        }


@dataclass
class InvariantReport:
    results: list[InvariantResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def broken(self) -> list[InvariantResult]:
        return [r for r in self.results if not r.ok]

    def offending_contacts(self) -> list[str]:
        """Contacts that broke a rule: by rule (in declaration order), then by id."""
        return list(dict.fromkeys(c for r in self.broken for c in r.contacts))

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "invariants": [r.to_json() for r in self.results]}


def declared_invariants(
    journeys: Iterable[LoadedJourney | Journey], project: Iterable[Declared]
) -> list[Declared]:
    """The project-wide rules, then each journey's, in the order given."""
    found = list(project)
    for item in journeys:
        if isinstance(item, LoadedJourney):
            found += journey_invariants(item)
        else:  # a journey without its file: no position to point at
            where = f"journey {item.id}"
            found += [Declared(rule, where, 0, 0, item.id) for rule in item.invariants]
    return found


def check_invariants(
    engine: Engine,
    journeys: Sequence[LoadedJourney | Journey],
    project: Sequence[Declared],
    default_timezone: str,
) -> InvariantReport:
    """Every rule of `journeys` and `project` (`load_project_invariants`) over what the
    store holds; `default_timezone` is the local time of a contact without one."""
    with Session(engine) as session:
        facts = read_facts(session, default_timezone)
    return check_facts(facts, declared_invariants(journeys, project))


def check_facts(facts: list[ContactFacts], rules: Iterable[Declared]) -> InvariantReport:
    return InvariantReport([_check_rule(rule, facts) for rule in rules])


def _check_rule(declared: Declared, facts: list[ContactFacts]) -> InvariantResult:
    rule = declared.invariant
    result = InvariantResult(rule.title, rule.kind, declared.location, declared.journey_id)
    found: list[Violation] = []
    for contact in facts:
        checked, broken = _CHECKS[_shape(rule)](rule, declared.journey_id, contact)
        result.checked += checked
        found += broken
    found.sort()
    result.broken = len(found)
    result.contacts = sorted({v.contact_id for v in found})
    result.examples = found[:MAX_EXAMPLES]
    return result


def _shape(rule: Invariant) -> str:
    if rule.kind in ("never", "always"):
        return f"each {rule.for_}"
    if rule.within is not None:
        return "window"
    return "per order" if rule.per == "order" else "whole"


def _holds(text: str | None, context: dict[str, Any]) -> bool:
    return text is None or evaluate(text, context, INVARIANT_ROOTS, dates=False)


def _ours(journey_id: str | None, journey: str) -> bool:
    return journey_id is None or journey == journey_id


Result = tuple[int, list[Violation]]


def _each_message(rule: Invariant, journey_id: str | None, contact: ContactFacts) -> Result:
    checked, broken = 0, []
    for message in contact.messages:
        if not _ours(journey_id, message.journey):
            continue
        context = _message_context(message, contact)
        if not _holds(rule.where, context):
            continue
        checked += 1
        if _breaks(rule, context):
            broken.append(Violation(contact.id, message.context["at"], message.text))
    return checked, broken


def _each_run(rule: Invariant, journey_id: str | None, contact: ContactFacts) -> Result:
    checked, broken = 0, []
    for run in contact.runs:
        if not _ours(journey_id, run.journey):
            continue
        context = {"run": run.context, "contact": contact.context}
        if not _holds(rule.where, context):
            continue
        checked += 1
        if _breaks(rule, context):
            broken.append(Violation(contact.id, run.at.isoformat(), run.text))
    return checked, broken


def _breaks(rule: Invariant, context: dict[str, Any]) -> bool:
    if rule.never is not None:
        return evaluate(rule.never, context, INVARIANT_ROOTS, dates=False)
    return not evaluate(rule.always or "true", context, INVARIANT_ROOTS, dates=False)


def _message_context(message: SentMessage, contact: ContactFacts) -> dict[str, Any]:
    run = contact.runs_by_key.get(message.run)
    return {
        "message": message.context,
        "run": run.context if run is not None else {},
        "contact": contact.context,
    }


def _counted(
    rule: Invariant, contact: ContactFacts, keep: Callable[[SentMessage], bool], **extra: Any
) -> list[SentMessage]:
    """The contact's messages `keep` selects that match the rule's `of`."""
    return [
        m
        for m in contact.messages
        if keep(m)
        and evaluate(
            rule.of or "true",
            {**_message_context(m, contact), **extra},
            INVARIANT_ROOTS,
            dates=False,
        )
    ]


def _window(rule: Invariant, journey_id: str | None, contact: ContactFacts) -> Result:
    """A cap across journeys: every journey's messages count, and a journey's own rule
    breaks on a window holding one of its messages."""
    if journey_id is not None and not any(r.journey == journey_id for r in contact.runs):
        return 0, []
    if not _holds(rule.where, {"contact": contact.context}):
        return 0, []
    within, limit = rule.within or 0, rule.count or 0
    counted = _counted(rule, contact, lambda m: True)
    for i, first in enumerate(counted):
        inside = [m for m in counted[i:] if (m.at - first.at).total_seconds() < within]
        if len(inside) > limit and any(_ours(journey_id, m.journey) for m in inside):
            what = (
                f"{len(inside)} matching messages within {format_duration(within)} "
                f"(at most {limit}): {_listed(inside)}"
            )
            return 1, [Violation(contact.id, first.context["at"], what)]
    return 1, []


def _per_order(rule: Invariant, journey_id: str | None, contact: ContactFacts) -> Result:
    """Each order: the matching messages of the runs it started."""
    checked, broken = 0, []
    for order in contact.orders:
        order_context = {"contact": contact.context, "order": order.context}
        if not _holds(rule.where, order_context):
            continue
        checked += 1
        started = {
            r.key
            for r in contact.runs
            if r.trigger_event_id == order.event_id and _ours(journey_id, r.journey)
        }
        counted = _counted(
            rule, contact, lambda m, runs=started: m.run in runs, order=order.context
        )
        if not _count_ok(rule, len(counted)):
            broken.append(_count_violation(rule, contact, counted, order))
    return checked, broken


def _whole(rule: Invariant, journey_id: str | None, contact: ContactFacts) -> Result:
    """The whole simulation; a journey's own rule is about the contacts it had."""
    if journey_id is not None and not any(r.journey == journey_id for r in contact.runs):
        return 0, []
    if not _holds(rule.where, {"contact": contact.context}):
        return 0, []
    counted = _counted(rule, contact, lambda m: _ours(journey_id, m.journey))
    if _count_ok(rule, len(counted)):
        return 1, []
    return 1, [_count_violation(rule, contact, counted, None)]


def _count_ok(rule: Invariant, n: int) -> bool:
    limit = rule.count or 0
    return {"at_most": n <= limit, "at_least": n >= limit, "exactly": n == limit}[rule.kind]


def _count_violation(
    rule: Invariant, contact: ContactFacts, counted: list[SentMessage], order: OrderFacts | None
) -> Violation:
    expected = f"{rule.kind.replace('_', ' ')} {rule.count}"
    what = f"{len(counted)} matching messages (expected {expected})"
    if counted:
        what += f": {_listed(counted)}"
    if order is not None:
        return Violation(contact.id, order.at.isoformat(), f"{order.text}: {what}")
    at = counted[0].context["at"] if counted else ""
    return Violation(contact.id, at, what)


def _listed(messages: list[SentMessage]) -> str:
    names = [m.short for m in messages[:MAX_LISTED]]
    more = len(messages) - MAX_LISTED
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


_CHECKS: dict[str, Callable[[Invariant, str | None, ContactFacts], Result]] = {
    "each message": _each_message,
    "each run": _each_run,
    "window": _window,
    "per order": _per_order,
    "whole": _whole,
}
