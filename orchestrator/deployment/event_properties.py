"""Properties a condition or message reads must be ones the tracking plan lists.

`where: event.properties.orderid == trigger.properties.order_id` on `Order Delivered`
(whose plan lists `order_id`) validates, deploys and never holds: a missing property is
null. Properties are the storefront's own data, so the journey language cannot know
them (`event.properties.*` is free there); the shop's tracking plan (`events.yaml`,
`tracking_plan.py`) can. When it lists the properties of every event a lookup may be
on, a property it does not list is a warning with a "did you mean": the plan may be
behind the storefront, so it does not stop a deploy, and `--strict` fails on it. The
same holds for what a message reads of its trigger (`{{ event.properties.pric }}`,
even behind `{% if … is defined %}`, where it would silently never show).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from jinja2 import Environment

from ..dsl.context_check import condition_lookups, did_you_mean, expression
from ..dsl.loader import LoadedJourney, iter_steps, referenced_templates
from ..dsl.models import IDENTIFY, Trigger
from ..dsl.problems import Problem
from ..dsl.roots import EVENT_UNDER_TEST
from ..rendering import Renderer
from ..rendering.catalog import PART_FILES
from ..rendering.expressions import property_reads
from .event_names import OWN_EVENT_PROPERTIES, OWN_EVENTS, SEGMENT_SPEC_EVENTS, KnownEvents


def check_condition_properties(
    journeys: Iterable[LoadedJourney], known: KnownEvents
) -> list[Problem]:
    """A warning for each `event.properties.x` / `trigger.properties.x` a condition reads
    that the plan does not list for the event(s) it is read on."""
    problems = []
    for item in journeys:
        journey = item.journey
        steps = list(iter_steps(journey.steps, ("steps",)))
        for found in condition_lookups(journey, item.source, steps):
            chain = found.chain
            if chain[0] not in ("event", "trigger") or len(chain) < 3:
                continue
            if chain[1] != "properties" or not isinstance(chain[2], str):
                continue
            if chain[0] == "event" and found.site.site in EVENT_UNDER_TEST:
                events = found.site.events
            else:
                events = (journey.trigger.name,)
            text = unlisted_property(chain, events, known, known.plan_file(item.path.parent))
            if text is not None:
                problems.append(Problem(str(item.path), found.line, found.column, text, "warning"))
    return problems


@dataclass(frozen=True)
class TriggerProperties:
    """What every trigger event of a journey carries (`required`), and what to tell a
    marketer whose message shows one of the others without a guard."""

    event: str  # the trigger's event name ('$identify' for identify calls)
    required: frozenset[str]
    plan: str  # the tracking plan file that would declare one required
    why: str  # why the others may be missing

    def advice(self, prop: str) -> str:
        """How to make a send that shows `prop` work for every trigger event."""
        if self.event == IDENTIFY:
            return f"or read contact.traits.{prop}, which keeps what earlier calls sent"
        return (
            f"or, if every {self.event!r} event your storefront sends has it, mark it "
            f"required in {self.plan} ({self.event}: properties: {prop}: {{required: true}})"
        )


def trigger_properties(trigger: Trigger, known: KnownEvents, plan: str) -> TriggerProperties:
    """The properties every event that starts a journey with `trigger` carries: those the
    tracking plan marks `required`, and those we always record with our own events."""
    name = trigger.name
    if trigger.identify:
        why = "an identify call has only the traits it sends"
        return TriggerProperties(name, frozenset(), plan, why)
    planned = known.planned.get(name)
    required = OWN_EVENT_PROPERTIES.get(name, frozenset()) | (
        planned.required if planned is not None else frozenset()
    )
    if planned is None and name in SEGMENT_SPEC_EVENTS:
        why = f"the Segment spec makes every property of {name!r} optional"
    elif planned is None and name in OWN_EVENTS:
        why = f"we do not record it with every {name!r}"
    else:
        why = f"{plan} does not mark it required for {name!r} events"
    return TriggerProperties(name, required, plan, why)


def check_template_properties(
    journeys: Iterable[LoadedJourney], renderer: Renderer, known: KnownEvents
) -> list[Problem]:
    """A warning for each `event.properties.x` a message reads (in any of its versions)
    that the plan does not list for the trigger of a journey that sends it."""
    parser = Environment()
    problems = []
    for item in journeys:
        trigger = (item.journey.trigger.name,)
        if listed_properties(trigger, known) is None:
            continue
        plan = known.plan_file(item.path.parent)
        for name in sorted(referenced_templates([item.path])):
            message = renderer.message(name)
            if not message.exists():
                continue  # reported at the send step
            for variant in message.variants():
                for part in PART_FILES:
                    file = variant.folder / part
                    if not file.is_file():
                        continue
                    for line, key in property_reads(parser, file, ("event", "properties")):
                        chain = ["event", "properties", key]
                        text = unlisted_property(chain, trigger, known, plan, "is never set")
                        if text is not None:
                            problems.append(Problem(str(file), line, 1, text, "warning"))
    return problems


def listed_properties(events: Iterable[str], known: KnownEvents) -> set[str] | None:
    """What the plan lists for these events together; None unless it lists properties
    for every one of them (a property of an unlisted event may be anything)."""
    listed: set[str] = set()
    for name in events:
        planned = known.planned.get(name)
        if planned is None or planned.properties is None:
            return None
        listed |= set(planned.properties)
    return listed


def unlisted_property(
    chain: list, events: tuple[str, ...], known: KnownEvents, plan: str, what: str = ""
) -> str | None:
    """What is wrong with reading `chain` (["event", "properties", "orderid"]) on
    `events`, if the plan says so; `what` is what that makes of it (a condition reads
    null, a template fails or shows nothing)."""
    listed = listed_properties(events, known)
    name = chain[2]
    if listed is None or name in listed:
        return None
    which = " or ".join(repr(e) for e in events)
    text = (
        f"{expression(chain)} {what or 'is always null'}: {plan} lists no property "
        f"{name!r} for {which} (it lists: {', '.join(sorted(listed)) or 'none'})"
    )
    guess = did_you_mean(name, listed)
    if guess is not None:
        return f"{text}; did you mean {expression([*chain[:2], guess, *chain[3:]])}?"
    return f"{text}; if the storefront sends it, add it to {plan}"
