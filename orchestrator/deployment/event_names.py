"""Event names a journey waits for must be events that can arrive.

Event names are free text: `trigger: {event: product viewed}` or `exit_on: [Order
Complete]` validates, deploys, and never fires (a wrong `exit_on` keeps emailing
people who bought). A name is known when it is

- a Segment spec event (e-commerce v2, email, mobile, B2B SaaS: `SEGMENT_SPEC_EVENTS`),
- one this orchestrator records itself (`OWN_EVENTS`: segment entries, survey
  answers, SMS replies, email and push engagement),
- declared in the shop's tracking plan, `events.yaml` beside the journeys,
- emitted by a `track` action of a journey being validated, or
- among the names the store has received (when a store is there to ask).

Any other name is a warning with a "did you mean" (the same name in another case or
spelling): `journeys validate` passes, `journeys validate --strict` does not.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from ..dsl.loader import LoadedJourney, iter_steps
from ..dsl.models import ActionStep, TrackAction, WaitForStep
from ..dsl.problems import JourneyError, Problem
from ..dsl.source import Source, YamlPath, kind_of, read_source, show
from ..feedback.own_events import OWN_EVENTS
from ..store.tables import Event

TRACKING_PLAN = "events.yaml"

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
PLAN_KEYS = ("description", "properties")


@dataclass
class KnownEvents:
    """Every event name a journey may rely on, and where the list came from."""

    tracked: set[str] = field(default_factory=set)  # by a journey's `track` action
    declared: set[str] = field(default_factory=set)  # in a tracking plan
    received: set[str] | None = None  # by the store; None: not consulted
    plans: list[Path] = field(default_factory=list)
    checked: int = 0  # how many event names the journeys and segments wait for
    unknown: int = 0  # how many of them nothing is known to send

    def names(self) -> set[str]:
        return {
            *SEGMENT_SPEC_EVENTS,
            *OWN_EVENTS,
            *self.tracked,
            *self.declared,
            *(self.received or ()),
        }


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


def tracking_plan_files(targets: Iterable[Path]) -> list[Path]:
    """The `events.yaml` of each folder validated, or beside each journey file."""
    found: dict[Path, None] = {}
    for target in targets:
        if target.is_file() and target.name == TRACKING_PLAN:
            found[target] = None
        elif target.is_dir() and (target / TRACKING_PLAN).is_file():
            found[target / TRACKING_PLAN] = None
        elif target.is_file() and (target.parent / TRACKING_PLAN).is_file():
            found[target.parent / TRACKING_PLAN] = None
    return list(found)


def load_tracking_plan(path: Path) -> tuple[set[str], list[Problem]]:
    """The event names `path` declares, and every mistake in it at its file:line:column.

    The file maps each name to nothing, or to a `description` and `properties`
    (a list of names, or a mapping of names to what they mean)::

        Order Delivered:
          description: The carrier delivered the order (from our shipping webhook)
          properties: [order_id, carrier]
    """
    try:
        if not path.read_text(encoding="utf-8").strip():
            return set(), []
        source = read_source(path)
    except (JourneyError, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, JourneyError):
            return set(), exc.problems
        return set(), [Problem(str(path), 1, 1, f"cannot read the file: {exc}")]
    if not isinstance(source.data, dict):
        message = (
            f"expected a mapping of event names to their descriptions, got "
            f"{kind_of(source.data)}; e.g.\nOrder Delivered:\n  properties: [order_id]"
        )
        return set(), [source.problem((), message)]
    names: set[str] = set()
    problems: list[Problem] = []
    for name, spec in source.data.items():
        problems += _plan_entry(source, name, spec)
        if isinstance(name, str) and name.strip():
            names.add(name)
    return names, problems


def _plan_entry(source: Source, name: Any, spec: Any) -> list[Problem]:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        message = (
            f"invalid event name {show(name)}: expected the name as sent, like Order Delivered"
        )
        return [source.problem((name,), message, key=True)]
    if spec is None:
        return []
    if not isinstance(spec, dict):
        message = (
            f"event {name!r}: expected nothing, or a mapping with description and "
            f"properties, got {kind_of(spec)}"
        )
        return [source.problem((name,), message)]
    problems = []
    for key, value in spec.items():
        where = (name, key)
        if key not in PLAN_KEYS:
            message = (
                f"unknown key {show(key)} in event {name!r} (expected one of: "
                f"{', '.join(PLAN_KEYS)})"
            )
            problems.append(source.problem(where, message, key=True))
        elif key == "description" and not isinstance(value, str):
            message = f"description of {name!r}: expected text, got {kind_of(value)}"
            problems.append(source.problem(where, message))
        elif key == "properties" and not _property_names(value):
            message = (
                f"properties of {name!r}: expected a list of property names or a mapping "
                f"of names to what they mean, got {kind_of(value)}"
            )
            problems.append(source.problem(where, message))
    return problems


def _property_names(value: Any) -> bool:
    keys = list(value) if isinstance(value, list | dict) else None
    return keys is not None and all(isinstance(k, str) and k for k in keys)


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
    """A warning for each event name nothing is known to send."""
    names = known.names()

    def plan(folder: Path) -> str:
        return str(known.plans[0] if known.plans else folder / TRACKING_PLAN)

    problems = []
    for item in journeys:
        for path, name in journey_references(item):
            known.checked += 1
            if name not in names:
                known.unknown += 1
                text = unknown_event(name, names, plan(item.path.parent))
                problems.append(item.problem(path, text).as_warning())
    for file in segment_files:
        for source, path, name in segment_references(file):
            known.checked += 1
            if name not in names:
                known.unknown += 1
                text = unknown_event(name, names, plan(file.parent))
                problems.append(source.problem(path, text).as_warning())
    return problems


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
    by_key = {_key(k): k for k in sorted(known)}
    if _key(name) in by_key:
        return by_key[_key(name)]
    close = difflib.get_close_matches(_key(name), list(by_key), n=1, cutoff=0.8)
    return by_key[close[0]] if close else None


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()
