"""Load journey YAML files into frozen, validated `Journey` models.

Marketers edit these files by hand, so every mistake comes back as a
`Problem` saying where (file:line:column) and what was expected, and all the
problems of a file are reported together. The steps, in order:

1. read the file with the node behind every path (`source.py`: size cap,
   anchors, aliases and duplicate keys refused before anything expands);
2. validate with the pydantic models and translate their errors
   (`pydantic_errors.py`);
3. give every step an id, then run the checks that span steps and files (step
   ids, message references, the keys conditions read, timezones, trait names,
   journey ids, segments).

What needs more than the journey language (rendering its messages, the event
names the store has seen) is checked a layer up, in `orchestrator.deployment`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..services.zones import unknown_zone, zone_named
from .context_check import check_condition_keys, did_you_mean
from .invariants import INVARIANTS_FILE, check_invariant_keys
from .models import (
    ID_PATTERN,
    ActionStep,
    BranchStep,
    Journey,
    SendStep,
    SplitStep,
    Step,
    UpdateContactAction,
    WaitForStep,
    WaitUntilStep,
)
from .problems import JourneyError, Problem, sorted_problems
from .pydantic_errors import IDENTIFIER_TEXT, translate_errors
from .salvage import Salvaged, salvage
from .source import Source, YamlPath, read_source

# segments; the tracking plan; project-wide invariants (`invariants.py`)
SKIPPED_FILES = ("segments.yaml", "events.yaml", INVARIANTS_FILE)
# `journeys simulate`'s populations, `scenarios/<journey>.yaml`: not journeys.
SKIPPED_FOLDERS = ("scenarios",)


@dataclass(frozen=True)
class LoadedJourney:
    """A validated journey with ids on every step, and the hash of its meaning.

    `source` keeps the YAML positions, so checks made a layer up (templates,
    event names) still point at the line the marketer wrote.
    """

    journey: Journey
    path: Path
    spec_hash: str
    source: Source = field(compare=False, repr=False, default_factory=lambda: Source(""))

    def problem(self, path: YamlPath, message: str, *, key: bool = False) -> Problem:
        """A problem at `path` (a YAML path such as `("steps", 0, "send")`) of this file."""
        return self.source.problem(path, message, key=key)


def load_journey(path: Path) -> LoadedJourney:
    """Load one journey file; raise JourneyError listing every problem found."""
    return _load(path)


# The segment names a journey file's triggers may use (None: not checked).
SegmentNames = Collection[str] | Callable[[Path], Collection[str] | None] | None


def load_journeys(
    paths: Iterable[Path], segments: SegmentNames = None
) -> tuple[list[LoadedJourney], list[Problem]]:
    """Load files and directories of journeys; return the good ones and all problems.

    A directory contributes its `*.yaml`/`*.yml` files recursively, sorted,
    except `segments.yaml`, `events.yaml`, `invariants.yaml` and what is in a
    `scenarios` folder. A journey id seen twice is a problem of the
    second file, which is then left out. With `segments` (the names segments.yaml
    defines, or a function giving those a file's triggers may use), a trigger naming
    any other segment is a problem.
    """
    loaded: list[LoadedJourney] = []
    problems: list[Problem] = []
    owners: dict[str, LoadedJourney] = {}
    for file in journey_files(paths):
        try:
            item = _load(file)
        except JourneyError as exc:
            problems.extend(exc.problems)
            continue
        wanted = item.journey.trigger.segment
        names = segments(file) if callable(segments) else segments
        if names is not None and wanted is not None and wanted not in names:
            known = ", ".join(sorted(names)) or "none"
            guess = did_you_mean(wanted, names)
            meant = f"; did you mean {guess!r}?" if guess else ""
            message = f"unknown segment {wanted!r}: segments.yaml defines {known}{meant}"
            problems.append(item.problem(("trigger", "segment"), message))
            continue
        first = owners.setdefault(item.journey.id, item)
        if first is not item:
            problems.append(
                item.problem(
                    ("id",),
                    f"duplicate journey id {item.journey.id!r}: already defined in {first.path}",
                )
            )
            continue
        loaded.append(item)
    return loaded, problems


def referenced_templates(paths: Iterable[Path]) -> set[str]:
    """Every message the journey files name, including files that do not validate."""
    names: set[str] = set()
    for file in journey_files(paths):
        try:
            names |= _templates_in(read_source(file).data)
        except JourneyError:
            continue  # unreadable YAML names nothing we can trust
    return names


def _templates_in(tree: Any) -> set[str]:
    if isinstance(tree, dict):
        found = {tree["template"]} if isinstance(tree.get("template"), str) else set()
        return found.union(*(_templates_in(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(*(_templates_in(v) for v in tree))
    return set()


def spec_hash(journey: Journey) -> str:
    """sha256 of the canonical JSON of the journey: comments and layout don't count."""
    data = journey.model_dump(mode="json", by_alias=True)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _load(path: Path) -> LoadedJourney:
    source = read_source(path)
    try:
        journey = Journey.model_validate(source.data)
        schema: list[Problem] = []
        valid = Salvaged(journey)
    except ValidationError as exc:
        # Every other check still runs on what is valid: all the file's problems at once.
        schema = translate_errors(exc, source)
        salvaged = salvage(source.data)
        if salvaged is None:
            problems = sorted_problems(schema + bare_durations(source), source.file)
            raise JourneyError(problems) from None
        valid = salvaged
    journey = valid.journey
    problems = schema + _check_ids(journey, source)
    journey = journey.model_copy(update={"steps": _with_ids(journey.steps, ("steps",))})
    problems += _check_references(journey, source, valid.left_out_ids)
    steps = list(iter_steps(journey.steps, ("steps",)))
    problems += check_condition_keys(journey, source, steps, complete=valid.complete)
    problems += _check_timezones(journey, source)
    problems += _check_trait_names(journey, source)
    problems += check_invariant_keys(journey.invariants, source)
    problems += bare_durations(source)
    if problems:
        raise JourneyError(sorted_problems(problems, source.file))
    return LoadedJourney(journey=journey, path=path, spec_hash=spec_hash(journey), source=source)


def journey_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The journey files of files and folders (see `load_journeys`), each once."""
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml")
                and p.name not in SKIPPED_FILES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and not any(part in SKIPPED_FOLDERS for part in p.relative_to(path).parts[:-1])
                and p.is_file()
            )
        else:
            found = [path]  # a missing file is reported when it is read
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


# --- step ids and cross-step checks -------------------------------------------


def iter_steps(steps: list[Step], path: YamlPath) -> Iterator[tuple[YamlPath, Step]]:
    """Every step with its YAML path, parents before their children."""
    for i, step in enumerate(steps):
        here = (*path, i)
        yield here, step
        for sub, children in _nested(step):
            yield from iter_steps(children, (*here, *sub))


def _nested(step: Step) -> list[tuple[YamlPath, list[Step]]]:
    """The step lists inside `step`, with their paths relative to it."""
    match step:
        case WaitForStep():
            return [(("then",), step.then), (("on_timeout",), step.on_timeout)]
        case BranchStep():
            cases = [(("branch", j, "then"), case.then) for j, case in enumerate(step.branch)]
            return [*cases, (("else",), step.else_)]
        case SplitStep():
            return [(("split", j, "then"), v.then) for j, v in enumerate(step.split)]
        case SendStep() | ActionStep():
            return [(("on_failure",), step.on_failure)]
    return []


def _own_id(step: Step) -> str | None:
    """The id a marketer gave: a send's `send.id` names the step too."""
    if isinstance(step, SendStep) and step.send.id is not None:
        return step.send.id
    return step.id


def _id_path(step: Step, path: YamlPath) -> YamlPath:
    if isinstance(step, SendStep) and step.send.id is not None:
        return (*path, "send", "id")
    return (*path, "id") if step.id is not None else path


def _auto_id(path: YamlPath) -> str:
    return ".".join(str(p) for p in path)


def _with_ids(steps: list[Step], path: YamlPath) -> list[Step]:
    """Copies of `steps` whose every step (nested too) has an id: its own, else its path."""
    result = []
    for i, step in enumerate(steps):
        here = (*path, i)
        update: dict[str, Any] = {"id": _own_id(step) or _auto_id(here)}
        match step:
            case WaitForStep():
                update["then"] = _with_ids(step.then, (*here, "then"))
                update["on_timeout"] = _with_ids(step.on_timeout, (*here, "on_timeout"))
            case BranchStep():
                update["branch"] = [
                    case.model_copy(
                        update={"then": _with_ids(case.then, (*here, "branch", j, "then"))}
                    )
                    for j, case in enumerate(step.branch)
                ]
                update["else_"] = _with_ids(step.else_, (*here, "else"))
            case SplitStep():
                update["split"] = [
                    v.model_copy(update={"then": _with_ids(v.then, (*here, "split", j, "then"))})
                    for j, v in enumerate(step.split)
                ]
            case SendStep() | ActionStep():
                update["on_failure"] = _with_ids(step.on_failure, (*here, "on_failure"))
        result.append(step.model_copy(update=update))
    return result


def _check_ids(journey: Journey, source: Source) -> list[Problem]:
    """Step ids are unique within the journey; a send's two ids agree."""
    problems = []
    first_line: dict[str, int] = {}
    for path, step in iter_steps(journey.steps, ("steps",)):
        if isinstance(step, SendStep) and step.id and step.send.id and step.id != step.send.id:
            message = (
                f"send step has id {step.id!r} but its send has id {step.send.id!r}: "
                "keep one of them"
            )
            problems.append(source.problem((*path, "id"), message))
        if step.id is not None and not re.match(ID_PATTERN, step.id):
            # the models accept path ids so a loaded journey round-trips; authors may not
            message = f"invalid id {step.id!r}: expected {IDENTIFIER_TEXT}"
            problems.append(source.problem((*path, "id"), message))
            continue
        step_id = _own_id(step) or _auto_id(path)
        where = _id_path(step, path)
        if step_id in first_line:
            message = f"duplicate step id {step_id!r} (first used on line {first_line[step_id]})"
            problems.append(source.problem(where, message))
        else:
            first_line[step_id] = source.position(where)[0]
    return problems


def _check_references(
    journey: Journey, source: Source, left_out: Collection[str] = ()
) -> list[Problem]:
    """`wait_for.message` names a send step written before it in the file (or one set
    aside for a mistake of its own, `left_out`: already reported)."""
    sends: dict[str, tuple[int, int]] = {}
    waits: list[tuple[YamlPath, str]] = []
    for path, step in iter_steps(journey.steps, ("steps",)):
        if isinstance(step, SendStep):
            sends.setdefault(step.id or "", source.position(path))
        elif isinstance(step, WaitForStep) and step.wait_for.message is not None:
            waits.append((path, step.wait_for.message))
    problems = []
    for path, message_id in waits:
        here = source.position(path)
        earlier = [n for n, where in sends.items() if where < here and re.match(ID_PATTERN, n)]
        if message_id in earlier or message_id in left_out:
            continue
        target = (*path, "wait_for", "message")
        if message_id in sends:
            line = sends[message_id][0]
            text = (
                f"wait_for refers to message {message_id!r} before its send step "
                f"(line {line}): a wait_for must come after the send it waits on"
            )
        else:
            known = ", ".join(earlier) if earlier else "none"
            text = (
                f"wait_for refers to message {message_id!r}, but no earlier send step "
                f"has that id (known: {known})"
            )
        problems.append(source.problem(target, text))
    return problems


DURATION_KEYS = frozenset(
    {
        *("wait", "timeout", "within", "expire_after", "expires_in", "every"),
        *("in_last", "in_next", "more_than_ago", "anniversary_in_next"),  # segments' dates
    }
)


def bare_durations(source: Source) -> list[Problem]:
    """A duration written as a bare number (`within: 30`) would be read as seconds, which
    no marketer means: it must carry its unit."""
    problems = []

    def walk(node: Any, path: YamlPath) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = (*path, key)
                if key in DURATION_KEYS and isinstance(value, int) and not isinstance(value, bool):
                    message = (
                        f"invalid duration {value}: add its unit, e.g. {value}d, {value}h or "
                        f"{value}m (s, m, h, d or w)"
                    )
                    problems.append(source.problem(here, message))
                else:
                    walk(value, here)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))

    walk(source.data, ())
    return problems


def _check_trait_names(journey: Journey, source: Source) -> list[Problem]:
    """Traits starting with "_" are the orchestrator's bookkeeping: not for journeys."""
    problems = []
    for path, step in iter_steps(journey.steps, ("steps",)):
        action = step.action if isinstance(step, ActionStep) else None
        if not isinstance(action, UpdateContactAction):
            continue
        for option, names in (
            ("set", list(action.set)),
            ("increment", list(action.increment)),
            ("unset", action.unset),
        ):
            for index, name in enumerate(names):
                if name.startswith("_"):
                    where = (*path, "action", option, name if option != "unset" else index)
                    message = (
                        f"invalid trait name {name!r}: expected a name not starting with '_' "
                        "(those are ours), like vip"
                    )
                    problems.append(source.problem(where, message, key=option != "unset"))
    return problems


def _check_timezones(journey: Journey, source: Source) -> list[Problem]:
    problems = []
    for path, step in iter_steps(journey.steps, ("steps",)):
        if isinstance(step, WaitUntilStep) and step.wait_until.timezone is not None:
            name = step.wait_until.timezone
            if zone_named(name) is None:
                message = unknown_zone(name)
                problems.append(source.problem((*path, "wait_until", "timezone"), message))
    return problems
