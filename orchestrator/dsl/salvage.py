"""The part of a journey that is valid, when some of it is not, so every check still runs.

pydantic reports every schema mistake of a file at once, but the checks that need a
validated journey (the keys conditions read, step ids, `wait_for` references,
timezones, trait names) could only run on a file without any: one `re_entry: after 3
days` hid four other problems, and a marketer fixed the file one round at a time.

So the invalid parts are set aside and the rest is checked: a step with a mistake
becomes a neutral placeholder step (same place in the list, so every position and
YAML path still points at what the marketer wrote), an optional key with a mistake
is dropped, and a required top-level key (`id`, `name`, `trigger`) gets a neutral
value. What a left-out step would have provided is not held against the rest: a
`wait_for` may name a send step that was set aside, and a condition may read a
`journey.*` value a set-aside step would have kept (`Salvaged.complete` is False).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .models import Journey
from .pydantic_errors import raw_path
from .source import YamlPath

STEP_LISTS = ("steps", "then", "on_timeout", "else", "on_failure")
PLACEHOLDER_STEP = {"wait": "1s"}
# Required top-level keys: a neutral value keeps the rest checkable.
PLACEHOLDERS: dict[str, Any] = {
    "id": "salvaged",
    "name": "salvaged",
    "trigger": {"event": "salvaged"},
}
MAX_ROUNDS = 20


@dataclass
class Salvaged:
    """The valid part of a journey, and what was set aside to get it."""

    journey: Journey
    left_out_ids: set[str] = field(default_factory=set)  # step ids inside what was set aside
    complete: bool = True  # no step was set aside


def salvage(data: Any) -> Salvaged | None:
    """The journey without its invalid parts, or None when nothing sensible is left
    (no steps, or not a mapping)."""
    if not isinstance(data, dict):
        return None
    data = copy.deepcopy(data)
    left_out: set[str] = set()
    complete = True
    for _ in range(MAX_ROUNDS):
        try:
            journey = Journey.model_validate(data)
        except ValidationError as exc:
            changed = False
            for error in exc.errors(include_url=False):
                outcome = _set_aside(data, raw_path(error["loc"], data), left_out)
                if outcome == "step":
                    complete = False
                changed |= outcome is not None
            if not changed:
                return None
            continue
        return Salvaged(journey, left_out, complete)
    return None


def _set_aside(data: dict[str, Any], path: YamlPath, left_out: set[str]) -> str | None:
    """Set aside the part of `data` at `path`: "step", "key", or None if it cannot be."""
    for depth in range(len(path), 1, -1):  # the innermost step holding the mistake
        index, owner = path[depth - 1], path[depth - 2]
        if isinstance(index, int) and owner in STEP_LISTS:
            steps = _at(data, path[: depth - 1])
            if isinstance(steps, list) and 0 <= index < len(steps):
                if steps[index] == PLACEHOLDER_STEP:
                    return None
                left_out.update(_ids(steps[index]))
                steps[index] = dict(PLACEHOLDER_STEP)
                return "step"
    for depth in range(len(path), 0, -1):  # else the innermost key of a mapping
        parent = _at(data, path[: depth - 1])
        key = path[depth - 1]
        if not isinstance(parent, dict) or key not in parent:
            continue
        if depth == 1 and key in PLACEHOLDERS:
            if parent[key] == PLACEHOLDERS[key]:
                return None
            parent[key] = copy.deepcopy(PLACEHOLDERS[key])
            return "key"
        if depth == 1 and key == "steps":
            return None  # no steps to check
        del parent[key]
        return "key"
    return None


def _at(data: Any, path: YamlPath) -> Any:
    for part in path:
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not in_list and not (isinstance(data, dict) and part in data):
            return None
        data = data[part]
    return data


def _ids(tree: Any) -> set[str]:
    """Every step id written inside `tree` (`id:` and a send's `id:`)."""
    if isinstance(tree, dict):
        own = {v for k, v in tree.items() if k == "id" and isinstance(v, str)}
        return own.union(*(_ids(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(*(_ids(v) for v in tree))
    return set()
