"""The shop's tracking plan, `events.yaml` beside the journeys: its events and their
properties, and which properties every such event carries.

    Order Delivered:
      description: The carrier delivered an order (sent by our shipping integration)
      properties:
        order_id:
          description: the order's id, the same as in its Order Completed event
          required: true            # every Order Delivered carries it
        carrier: the carrier's name (optional)
    Return Requested:

Each name maps to nothing, or to a `description` and `properties`: a list of names, or
a mapping of each name to what it means (text), or to `{description, required}`.

Properties are optional unless marked `required: true`: the Segment spec makes every
property of its events optional, and a storefront may leave out any of them. So a
message that shows an optional property without a guard fails to send whenever an
event lacks it (`template_checks.py` renders each message once more with only the
required properties), and a condition or template reading a property the plan does not
list for that event is most likely misspelt (`event_properties.py`). A spec event may
be listed too, to say what the shop's storefront always sends with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dsl.problems import JourneyError, Problem
from ..dsl.source import Source, kind_of, read_source, show

TRACKING_PLAN = "events.yaml"
PLAN_KEYS = ("description", "properties")
PROPERTY_KEYS = ("description", "required")


@dataclass(frozen=True)
class PlannedEvent:
    """An event of the tracking plan; `properties` maps each listed property to whether
    every such event carries it (None: the plan lists no properties for it)."""

    name: str
    properties: dict[str, bool] | None = None

    @property
    def required(self) -> frozenset[str]:
        return frozenset(k for k, v in (self.properties or {}).items() if v)


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


def load_tracking_plan(path: Path) -> tuple[dict[str, PlannedEvent], list[Problem]]:
    """The events `path` declares, and every mistake in it at its file:line:column."""
    try:
        if not path.read_text(encoding="utf-8").strip():
            return {}, []
        source = read_source(path)
    except (JourneyError, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, JourneyError):
            return {}, exc.problems
        return {}, [Problem(str(path), 1, 1, f"cannot read the file: {exc}")]
    if not isinstance(source.data, dict):
        message = (
            f"expected a mapping of event names to their descriptions, got "
            f"{kind_of(source.data)}; e.g.\nOrder Delivered:\n  properties: [order_id]"
        )
        return {}, [source.problem((), message)]
    planned: dict[str, PlannedEvent] = {}
    problems: list[Problem] = []
    for name, spec in source.data.items():
        problems += _plan_entry(source, name, spec)
        if isinstance(name, str) and name.strip():
            planned[name] = PlannedEvent(name, _properties(spec))
    return planned, problems


def _properties(spec: Any) -> dict[str, bool] | None:
    """The listed properties and whether each is required (mistakes count as optional)."""
    listed = spec.get("properties") if isinstance(spec, dict) else None
    if isinstance(listed, list):
        return {k: False for k in listed if isinstance(k, str) and k}
    if isinstance(listed, dict):
        return {
            k: isinstance(v, dict) and v.get("required") is True
            for k, v in listed.items()
            if isinstance(k, str) and k
        }
    return None


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
        elif key == "properties" and isinstance(value, dict):
            for prop, about in value.items():
                problems += _property_entry(source, (*where, prop), name, prop, about)
    return problems


def _property_entry(
    source: Source, where: tuple[Any, ...], event: str, prop: str, about: Any
) -> list[Problem]:
    """A property maps to nothing, what it means, or `{description, required}`."""
    if about is None or isinstance(about, str):
        return []
    if not isinstance(about, dict):
        message = (
            f"property {prop!r} of {event!r}: expected what it means (text), or a mapping "
            f"with description and required, got {kind_of(about)}"
        )
        return [source.problem(where, message)]
    problems = []
    for key, value in about.items():
        if key not in PROPERTY_KEYS:
            message = (
                f"unknown key {show(key)} in property {prop!r} of {event!r} (expected one "
                f"of: {', '.join(PROPERTY_KEYS)})"
            )
            problems.append(source.problem((*where, key), message, key=True))
        elif key == "required" and not isinstance(value, bool):
            message = (
                f"required of {prop!r} in {event!r}: expected true or false, got {kind_of(value)}"
            )
            problems.append(source.problem((*where, key), message))
        elif key == "description" and not isinstance(value, str):
            message = f"description of {prop!r} in {event!r}: expected text, got {kind_of(value)}"
            problems.append(source.problem((*where, key), message))
    return problems


def _property_names(value: Any) -> bool:
    keys = list(value) if isinstance(value, list | dict) else None
    return keys is not None and all(isinstance(k, str) and k for k in keys)
