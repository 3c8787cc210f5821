"""Where invariants are declared, and the checks a file of them needs beyond its models.

An invariant (`models.Invariant`, docs/invariants.md) is declared in a journey's
`invariants:` list, where it is about that journey's messages and runs, or in the
project-wide `journeys/invariants.yaml`, about every journey's. Both are checked by
`journeys validate` with file:line:column like the rest of the language: a rule whose
condition reads a key that does not exist (`message.chanel`) would never break, so it
would pass every simulation while checking nothing. That is refused here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .context_check import expression, lookups_in, text_at, unknown_key
from .models import Invariant, Model
from .problems import JourneyError, Problem, sorted_problems
from .pydantic_errors import translate_errors
from .roots import INVARIANT_FREE_KEYS, INVARIANT_KEYS, INVARIANT_ROOTS
from .source import Source, YamlPath, read_source

if TYPE_CHECKING:
    from .loader import LoadedJourney

INVARIANTS_FILE = "invariants.yaml"


class InvariantsFile(Model):
    """`journeys/invariants.yaml`: rules about every journey."""

    invariants: list[Invariant] = []


@dataclass(frozen=True)
class Declared:
    """An invariant and where it was written; `journey_id` None: project-wide."""

    invariant: Invariant
    file: str
    line: int
    column: int
    journey_id: str | None = None

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.line else self.file


def read_invariants(path: Path) -> tuple[list[Declared], list[Problem]]:
    """The invariants of an invariants file, and every problem of it (then no invariant)."""
    try:
        source = read_source(path)
    except JourneyError as exc:
        if [p.message for p in exc.problems if p.message.startswith("the file is empty")]:
            return [], []  # only comments: declares nothing, which is fine
        return [], exc.problems
    if not isinstance(source.data, dict):
        return [], [source.problem((), "expected a mapping with an 'invariants:' list")]
    try:
        rules: list[Invariant | None] = list(InvariantsFile.model_validate(source.data).invariants)
        problems = []
    except ValidationError as exc:
        problems = translate_errors(exc, source, InvariantsFile)
        rules = _valid_items(source.data.get("invariants"))
    problems += check_invariant_keys(rules, source) + _bare_durations(source)
    if problems:
        return [], sorted_problems(problems, source.file)
    return [_declared(source, i, rule) for i, rule in enumerate(rules) if rule is not None], []


def _valid_items(items: Any) -> list[Invariant | None]:
    """Each item that validates on its own (None for the others, whose problems are
    reported already), so the keys of the good ones are checked in the same pass."""
    if not isinstance(items, list):
        return []
    found: list[Invariant | None] = []
    for item in items:
        try:
            found.append(Invariant.model_validate(item))
        except ValidationError:
            found.append(None)
    return found


def load_project_invariants(journeys_dir: Path) -> list[Declared]:
    """The project-wide invariants (`invariants.yaml` of the journeys folder; none without
    one); JourneyError listing every problem of the file."""
    path = journeys_dir / INVARIANTS_FILE
    if not path.is_file():
        return []
    found, problems = read_invariants(path)
    if problems:
        raise JourneyError(problems)
    return found


def journey_invariants(item: LoadedJourney) -> list[Declared]:
    """The invariants a journey file declares, about that journey."""
    journey = item.journey
    return [
        _declared(item.source, i, rule, journey.id) for i, rule in enumerate(journey.invariants)
    ]


def _declared(source: Source, index: int, rule: Invariant, journey: str | None = None) -> Declared:
    line, column = source.position(("invariants", index)) if source.nodes else (0, 0)
    return Declared(rule, source.file, line, column, journey)


def _bare_durations(source: Source) -> list[Problem]:
    from .loader import bare_durations  # not at the top: the loader imports this module

    return bare_durations(source)


# --- the keys conditions read ------------------------------------------------------


def visible_roots(rule: Invariant, key: str) -> tuple[str, ...]:
    """The roots the condition under `key` (never, always, where, of) is evaluated with."""
    order = ("order",) if rule.per == "order" else ()
    if rule.kind in ("never", "always"):
        return ("run", "contact") if rule.for_ == "run" else ("message", "run", "contact")
    if key == "of":
        return ("message", "run", "contact", *order)
    return ("contact", *order)  # a count's `where` picks the contacts (and orders)


def check_invariant_keys(
    rules: Sequence[Invariant | None], source: Source, at: YamlPath = ("invariants",)
) -> list[Problem]:
    """Every lookup of a root the condition does not see, or of a key its root never has,
    at the expression's file:line:column (None: an item with problems of its own)."""
    problems = []
    for index, rule in enumerate(rules):
        if rule is None:
            continue
        for key in ("where", "never", "always", "of"):
            path = (*at, index, key)
            text = text_at(source.data, path)
            if not isinstance(text, str) or getattr(rule, key) is None:
                continue
            for chain, offset in lookups_in(text, INVARIANT_ROOTS):
                message = _chain_problem(chain, visible_roots(rule, key), rule, key)
                if message is not None:
                    line, column = source.text_position(path, offset)
                    problems.append(Problem(source.file, line, column, message))
    return problems


def _chain_problem(
    chain: list[Any], roots: tuple[str, ...], rule: Invariant, key: str
) -> str | None:
    """What is wrong with reading `chain` where `roots` are seen, if anything."""
    root, written = chain[0], expression(chain)
    if root not in roots:
        *first, last = roots
        sees = f"{', '.join(first)} and {last}" if first else last
        if rule.kind in ("never", "always"):
            what = f"a `{rule.kind}:` invariant for each {rule.for_}"
        else:
            what = f"the `{key}:` of a count"
        hint = ""
        if root == "order":
            hint = " (order is there with per: order)"
        elif root == "message":
            hint = (
                " (use for: message to check each message)"
                if rule.for_ == "run"
                else " (`of:` picks the messages it counts)"
            )
        return f"{written} is always null here: {what} sees only {sees}{hint}"
    if len(chain) < 2 or not isinstance(chain[1], str) or chain[1] in INVARIANT_KEYS[root]:
        return None
    return unknown_key(
        chain[1],
        written,
        INVARIANT_KEYS[root],
        free=INVARIANT_FREE_KEYS.get(root, ()),
        at=[root],
        rest=chain[2:],
    )
