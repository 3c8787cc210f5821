"""Event names a journey waits for must be events that can arrive.

Event names are free text: `trigger: {event: product viewed}` or `exit_on: [Order
Complete]` validates, deploys, and never fires (a wrong `exit_on` keeps emailing
people who bought). A name is known when it is

- a Segment spec event (e-commerce v2, email, mobile, B2B SaaS: `SEGMENT_SPEC_EVENTS`),
- one this orchestrator records itself (`OWN_EVENTS`: segment entries, survey
  answers, SMS replies, email and push engagement),
- declared in the shop's tracking plan, `events.yaml` beside the journeys
  (`tracking_plan.py`),
- emitted by a `track` action of a journey being validated, or
- among the names the store has received (when a store is there to ask), unless it is
  a near miss of one of the above: anyone with a write key can send `Order Complete`
  once, which must not make `exit_on: [Order Complete]` pass.

Any other name is a warning with a "did you mean" (the same name in another case or
spelling): `journeys validate` passes, `journeys validate --strict` does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from ..dsl.loader import LoadedJourney, iter_steps
from ..dsl.models import CAMPAIGN_DUE, SEGMENT_EVENTS, ActionStep, TrackAction, WaitForStep
from ..dsl.problems import JourneyError, Problem
from ..dsl.source import Source, YamlPath, read_source
from ..feedback.own_events import OWN_EVENTS
from ..feedback.recording import SURVEY_ANSWERED
from ..services.spelling import closest_name
from ..store.tables import Event
from .tracking_plan import TRACKING_PLAN, PlannedEvent

# segmentio/segment-docs, src/connections/spec: ecommerce/v2.md, email.md, mobile.md,
# b2b-saas.md (the standard names a storefront or its tools send).
SEGMENT_SPEC_EVENTS = frozenset(
    {
        # E-commerce v2: browsing, promotions, ordering, coupons, wishlist, sharing, reviews
        "Products Searched",
        "Product List Viewed",
        "Product List Filtered",
        "Promotion Viewed",
        "Promotion Clicked",
        "Product Clicked",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Checkout Started",
        "Checkout Step Viewed",
        "Checkout Step Completed",
        "Payment Info Entered",
        "Order Completed",
        "Order Updated",
        "Order Refunded",
        "Order Cancelled",
        "Coupon Entered",
        "Coupon Applied",
        "Coupon Denied",
        "Coupon Removed",
        "Product Added to Wishlist",
        "Product Removed from Wishlist",
        "Wishlist Product Added to Cart",
        "Product Shared",
        "Cart Shared",
        "Product Reviewed",
        # Email
        "Email Bounced",
        "Email Delivered",
        "Email Link Clicked",
        "Email Marked as Spam",
        "Email Opened",
        "Unsubscribed",
        # Mobile
        "Application Installed",
        "Application Opened",
        "Application Backgrounded",
        "Application Updated",
        "Application Uninstalled",
        "Application Crashed",
        "Install Attributed",
        "Push Notification Received",
        "Push Notification Tapped",
        "Push Notification Bounced",
        "Deep Link Opened",
        "Deep Link Clicked",
        # B2B SaaS (sign-up and sign-in are what most shops send too)
        "Account Created",
        "Account Deleted",
        "Signed Up",
        "Signed In",
        "Signed Out",
        "Invite Sent",
        "Account Added User",
        "Account Removed User",
        "Trial Started",
        "Trial Ended",
    }
)
# What our own events always carry (the rest of their properties may be missing).
OWN_EVENT_PROPERTIES: dict[str, frozenset[str]] = {
    **{name: frozenset({"segment"}) for name in SEGMENT_EVENTS.values()},
    SURVEY_ANSWERED: frozenset({"score", "message_id", "template", "channel", "journey_id"}),
    # A campaign member's event (campaigns/dispatch.py): `due` is the local due time.
    CAMPAIGN_DUE: frozenset({"journey", "segment", "dispatch", "due"}),
}


@dataclass
class KnownEvents:
    """Every event name a journey may rely on, and where the list came from."""

    tracked: set[str] = field(default_factory=set)  # by a journey's `track` action
    planned: dict[str, PlannedEvent] = field(default_factory=dict)  # in a tracking plan
    # Reads the names the store has received (None: there is no store to ask).
    read_store: Callable[[], set[str] | None] | None = None
    plans: list[Path] = field(default_factory=list)
    checked: int = 0  # how many event names the journeys and segments wait for
    unknown: int = 0  # how many of them nothing is known to send
    _received: set[str] | None = field(default=None, init=False, repr=False)
    _store_read: bool = field(default=False, init=False, repr=False)

    @property
    def received(self) -> set[str] | None:
        """The names the store has received (None: not consulted). Read once, and only
        when a name nothing else vouches for asks: it scans the whole events table, about
        0.4 s per million events on SQLite, which every deploy would otherwise pay."""
        if not self._store_read:
            self._store_read = True
            self._received = self.read_store() if self.read_store is not None else None
        return self._received

    @property
    def declared(self) -> set[str]:
        return set(self.planned)

    def vouched(self) -> set[str]:
        """Names known from the spec, ours, a `track` action or the plan: anyone with a
        write key can make the store receive a name, so that alone vouches for nothing."""
        return {*SEGMENT_SPEC_EVENTS, *OWN_EVENTS, *self.tracked, *self.planned}

    def names(self) -> set[str]:
        return {*self.vouched(), *(self.received or ())}

    def plan_file(self, folder: Path) -> str:
        """Where a name or property is declared: the plan read, else `events.yaml` there."""
        return str(self.plans[0] if self.plans else folder / TRACKING_PLAN)


def received_event_names(engine: Engine) -> set[str]:
    """The `track` event names the store has received; raises SQLAlchemyError when the
    store cannot be read (no tables yet, server down)."""
    query = select(Event.name).where(Event.type == "track").distinct()  # type: ignore[arg-type]
    with engine.connect() as connection:
        return {name for (name,) in connection.execute(query) if name}


def store_names(engine: Engine | None) -> tuple[set[str] | None, str | None]:
    """The store's names, or None and why it could not be read."""
    if engine is None:
        return None, "no store"
    try:
        return received_event_names(engine), None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return None, f"cannot read its events ({reason})"


def tracked_events(journeys: Iterable[LoadedJourney]) -> set[str]:
    """Names the journeys' own `track` actions emit."""
    return {
        step.action.event
        for item in journeys
        for _, step in iter_steps(item.journey.steps, ("steps",))
        if isinstance(step, ActionStep) and isinstance(step.action, TrackAction)
    }


def journey_references(item: LoadedJourney) -> Iterator[tuple[YamlPath, str]]:
    """Every event name a journey waits for, with its YAML path."""
    journey = item.journey
    if journey.trigger.event is not None:
        yield ("trigger", "event"), journey.trigger.event
    audience = journey.trigger.audience
    if audience is not None:
        # `did: Product Viewed` or a list: a misspelt name selects no one (`did`) or
        # leaves in those it should keep out (`not_did`).
        for key, names in (("did", audience.did), ("not_did", audience.not_did)):
            where = ("trigger", "audience", key)
            for k, name in enumerate(names):
                yield ((*where, k) if (*where, k) in item.source.nodes else where), name
    for i, name in enumerate(journey.exit_on):
        yield ("exit_on", i), name
    if journey.goal is not None:
        yield ("goal", "event"), journey.goal.event
    for path, step in iter_steps(journey.steps, ("steps",)):
        if isinstance(step, WaitForStep) and step.wait_for.event is not None:
            where = (*path, "wait_for", "event")
            if isinstance(step.wait_for.event, str):
                yield where, step.wait_for.event
            else:
                for k, name in enumerate(step.wait_for.event):
                    yield (*where, k), name


def segment_references(path: Path) -> Iterator[tuple[Source, YamlPath, str]]:
    """Every `event: {name: …}` condition of a segments file, with its YAML path."""
    try:
        source = read_source(path)
    except JourneyError:
        return  # the segments loader reports it

    def walk(node: Any, here: YamlPath) -> Iterator[tuple[Source, YamlPath, str]]:
        if isinstance(node, dict):
            event = node.get("event")
            if isinstance(event, dict) and isinstance(event.get("name"), str):
                yield source, (*here, "event", "name"), event["name"]
            for key, value in node.items():
                yield from walk(value, (*here, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, (*here, index))

    yield from walk(source.data, ())


def check_event_names(
    journeys: Collection[LoadedJourney], segment_files: Iterable[Path], known: KnownEvents
) -> list[Problem]:
    """A warning for each event name nothing is known to send, and for each name only the
    store vouches for that is a near miss of a known one (`Order Complete`)."""
    references = [
        (item.source, path, name, item.path.parent)
        for item in journeys
        for path, name in journey_references(item)
    ]
    references += [
        (source, path, name, file.parent)
        for file in segment_files
        for source, path, name in segment_references(file)
    ]
    problems = []
    for source, path, name, folder in references:
        known.checked += 1
        text = name_problem(name, known, known.plan_file(folder))
        if text is not None:
            known.unknown += 1
            problems.append(source.problem(path, text).as_warning())
    return problems


def name_problem(name: str, known: KnownEvents, plan: str) -> str | None:
    """What is wrong with waiting for event `name`, if anything."""
    vouched = known.vouched()
    if name in vouched:
        return None
    if name in (known.received or ()):
        guess = closest_event(name, vouched)
        if guess is None:
            return None
        # One track call with any name makes the store "know" it; a typo of a known name
        # must not pass because someone (or something) sent that typo once.
        return (
            f"event {name!r} was received by the store, but is not a Segment spec event, "
            f"one of ours, tracked by a journey or declared in {plan}; did you mean "
            f"{guess!r}? (anyone with a write key can send any name: if your storefront "
            f"really sends {name!r}, declare it in {plan})"
        )
    return unknown_event(name, known.names(), plan)


def unknown_event(name: str, known: Collection[str], plan: str) -> str:
    text = (
        f"unknown event {name!r}: not a Segment spec event, one of ours, tracked by a "
        f"journey, declared in {plan} or received by the store"
    )
    guess = closest_event(name, known)
    if guess is not None:
        return f"{text}; did you mean {guess!r}?"
    return f"{text}; if your storefront sends it, declare it in {plan}"


def closest_event(name: str, known: Collection[str]) -> str | None:
    """The known name written another way (case, `_`, spaces), else the closest spelling."""
    return closest_name(name, sorted(known), key=_key, cutoff=0.8)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()
