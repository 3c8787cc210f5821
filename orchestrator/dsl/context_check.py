"""Conditions read keys that exist: `trigger.product_id` is a mistake, not a null.

A missing key is null at runtime, so `trigger.product_id == "sku-1"` (meant:
`trigger.properties.product_id`) validates, deploys and never holds. The shapes of
`contact`, `event`/`trigger` and of what steps keep on the run (`journey.*`) are known
(`roots.py`, the definition the runtime builds its contexts from), so a lookup of any
other key on them is an error, with the valid keys and a "did you mean". What the
storefront sends (`properties`, `context`, `traits`, `consent`) stays free.

`journey.<key>` must be kept by a step written before the step holding the condition
(any step, for `goal.where`, which may hold at any time).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..services.spelling import closest_name
from .conditions import ConditionError, parse
from .models import (
    ActionStep,
    AwardPointsAction,
    BranchStep,
    IssueCouponAction,
    Journey,
    Step,
    WaitForStep,
    WebhookAction,
)
from .problems import Problem
from .roots import (
    EVENT_UNDER_TEST,
    KEY_SYNONYMS,
    POINTS_KEYS,
    ROOTS,
    SAVED_EVENT_KEYS,
    SITE_ROOTS,
    coupon_keys,
    free_keys,
    record_keys,
)
from .source import Source, YamlPath

# What a key kept on the run holds: known keys, or None for anything (a webhook's answer).
Kept = dict[str, tuple[str, ...] | None]


@dataclass(frozen=True)
class ConditionSite:
    path: YamlPath  # of the condition's text
    site: str  # a key of SITE_ROOTS
    kept: Kept  # what `journey` holds when it is evaluated
    events: tuple[str, ...] = ()  # the event names `event` may be there


@dataclass(frozen=True)
class Lookup:
    """A key chain a condition reads, and where it is written."""

    site: ConditionSite
    chain: list[Any]  # ["event", "properties", "order_id"]
    line: int
    column: int


def kept_by(step: Step) -> Kept:
    """The `journey.*` keys a step keeps on the run, as its activity writes them."""
    if isinstance(step, WaitForStep) and step.wait_for.save_as:
        return {step.wait_for.save_as: SAVED_EVENT_KEYS}
    if isinstance(step, ActionStep):
        action = step.action
        if isinstance(action, IssueCouponAction):
            return dict.fromkeys(coupon_keys(action.save_as), None)
        if isinstance(action, AwardPointsAction):
            return dict.fromkeys(POINTS_KEYS, None)
        if isinstance(action, WebhookAction) and action.save_as:
            return {action.save_as: None}
    return {}


def journey_keys(
    source: Source, steps: list[tuple[YamlPath, Step]], before: YamlPath | None
) -> Kept:
    """What steps written before `before` keep (every step's, with None)."""
    limit = source.position(before) if before is not None else None
    kept: Kept = {}
    for path, step in steps:
        if limit is None or source.position(path) < limit:
            kept.update(kept_by(step))
    return kept


def condition_sites(
    journey: Journey, source: Source, steps: list[tuple[YamlPath, Step]]
) -> Iterator[ConditionSite]:
    """Every condition of a journey, with where it is and what it can see."""
    everything = journey_keys(source, steps, None)
    trigger = (journey.trigger.name,)
    if journey.trigger.where:
        yield ConditionSite(("trigger", "where"), "trigger.where", {}, trigger)
    if journey.entry.if_:
        yield ConditionSite(("entry", "if"), "entry.if", {}, trigger)
    if journey.goal is not None and journey.goal.where:
        goal = (journey.goal.event,)
        yield ConditionSite(("goal", "where"), "goal.where", everything, goal)
    for path, step in steps:
        kept = journey_keys(source, steps, path)
        if isinstance(step, WaitForStep) and step.wait_for.where:
            where = (*path, "wait_for", "where")
            yield ConditionSite(where, "wait_for.where", kept, step.wait_for.events)
        elif isinstance(step, BranchStep):
            for j, _case in enumerate(step.branch):
                yield ConditionSite((*path, "branch", j, "if"), "branch", kept, trigger)
        elif isinstance(step, ActionStep) and isinstance(step.action, AwardPointsAction):
            for k, _multiplier in enumerate(step.action.multipliers):
                where = (*path, "action", "multipliers", k, "if")
                yield ConditionSite(where, "multiplier", kept, trigger)


def condition_lookups(
    journey: Journey, source: Source, steps: list[tuple[YamlPath, Step]]
) -> Iterator[Lookup]:
    """Every key chain every condition of the journey reads, at its file position."""
    for site in condition_sites(journey, source, steps):
        text = text_at(source.data, site.path)
        if not isinstance(text, str):
            continue
        for chain, offset in lookups_in(text):
            line, column = source.text_position(site.path, offset)
            yield Lookup(site, chain, line, column)


def lookups_in(text: str, roots: tuple[str, ...] = ROOTS) -> Iterator[tuple[list[Any], int]]:
    """Each key chain a condition reads from `roots`, with its character offset in the
    stripped text; nothing for a condition that does not parse (the models report it)."""
    try:
        tree = parse(text, roots)
    except ConditionError:
        return
    lines = text.strip().splitlines()
    for chain, node in _chains(tree, roots):
        yield chain, _char_offset(lines, node.lineno, node.col_offset)


def check_condition_keys(
    journey: Journey, source: Source, steps: list[tuple[YamlPath, Step]], *, complete: bool = True
) -> list[Problem]:
    """Every lookup of a key its root never has, at the expression's file:line:column.

    Without `complete` (a step was set aside for a mistake of its own), what steps keep
    on the run is not known, so `journey.*` lookups are not checked."""
    problems = []
    for found in condition_lookups(journey, source, steps):
        chain, site = found.chain, found.site
        if not complete and chain[0] == "journey" and "journey" in SITE_ROOTS[site.site]:
            continue
        message = chain_problem(chain, site.site, site.kept, journey.trigger.identify)
        if message is not None:
            problems.append(Problem(source.file, found.line, found.column, message))
    return problems


def chain_problem(chain: list[Any], site: str, kept: Kept, identify: bool = False) -> str | None:
    """What is wrong with reading `chain` (["trigger", "product_id"]) at `site`, if anything.

    `identify`: the journey starts on an identify call, whose traits are the trigger's
    `properties` (so `trigger.traits.x` means `trigger.properties.x`).
    """
    root = chain[0]
    written = expression(chain)
    if root not in SITE_ROOTS[site]:
        *first, last = SITE_ROOTS[site]
        sees = f"{', '.join(first)} and {last}"
        if root == "trigger" and site == "trigger.where":
            # The same lookup on `event`, as it should be written (and corrected, if the
            # key is wrong there too: `trigger.product_id` is `event.properties.product_id`).
            fixed = ["event", *chain[1:]]
            meant = meant_chains(fixed, site, kept, identify)
            write = meant[0] if meant else expression(fixed)
            return (
                f"{written} is always null in trigger.where, which sees only {sees}: "
                f"the event being tested is the trigger, write {write}"
            )
        return (
            f"{written} is always null in {site}, which sees only {sees} "
            "(no step has kept anything on the run yet)"
        )
    if len(chain) < 2 or not isinstance(chain[1], str):
        return None
    key = chain[1]
    if root == "journey":
        if key in kept:
            inner = kept[key]
            if inner is None or len(chain) < 3 or not isinstance(chain[2], str):
                return None
            if chain[2] in inner:
                return None
            return unknown_key(chain[2], written, inner, free=("properties",), at=[root, key])
        if not kept:
            return (
                f"unknown key {key!r} in {written}: no step before this one keeps a value "
                "on the run (issue_coupon, award_points, and webhook or wait_for with save_as do)"
            )
        where = "the journey's steps keep" if site == "goal.where" else "earlier steps keep"
        return unknown_key(key, written, tuple(kept), lead=where, at=[root])
    fixed = record_keys(root)
    if key in fixed:
        return None
    return unknown_key(
        key,
        written,
        fixed,
        free=free_keys(root),
        at=[root],
        rest=chain[2:],
        identify=identify and refers_to_trigger(root, site),
    )


def meant_chains(
    chain: list[Any], site: str, kept: Kept, identify: bool = False
) -> list[str] | None:
    """None when `chain` is right at `site`; else what was probably meant, best first."""
    if chain_problem(chain, site, kept, identify) is None:
        return None
    if chain[0] in ("contact", "event", "trigger") and len(chain) > 1:
        return key_guesses(
            chain[1],
            record_keys(chain[0]),
            free=free_keys(chain[0]),
            at=[chain[0]],
            rest=chain[2:],
            identify=identify and refers_to_trigger(chain[0], site),
        )
    return []


def refers_to_trigger(root: str, site: str) -> bool:
    """Whether `root` is the run's trigger at `site` (`event` is, except where a `where:`
    tests another event: a goal's or a wait_for's)."""
    return root == "trigger" or (root == "event" and site not in EVENT_UNDER_TEST)


def unknown_key(
    key: str,
    written: str,
    valid: tuple[str, ...],
    *,
    free: tuple[str, ...] = (),
    at: list[str] | None = None,
    lead: str = "expected one of",
    rest: list[Any] | tuple[Any, ...] = (),
    identify: bool = False,
) -> str:
    """An unknown key, the valid ones, and what was probably meant (`key_guesses`)."""
    text = f"unknown key {key!r} in {written} ({lead}: {', '.join(valid)})"
    guesses = key_guesses(key, valid, free=free, at=at, rest=rest, identify=identify)
    if not guesses:
        return text
    if identify and key == "traits":
        return f"{text}; an identify call's traits are its properties: did you mean {guesses[0]}?"
    return f"{text}; did you mean {' or '.join(guesses)}?"


def key_guesses(
    key: str,
    valid: tuple[str, ...],
    *,
    free: tuple[str, ...] = (),
    at: list[str] | None = None,
    rest: list[Any] | tuple[Any, ...] = (),
    identify: bool = False,
) -> list[str]:
    """What a lookup of `key` (followed by `rest`) probably meant, best first: the same
    key in another case, the key another platform calls it by (`cart.items` is
    `cart.products`), an identify's traits under its properties, else a close spelling
    and the key under the root's free data (`trigger.properties.product_id` for
    `trigger.product_id`), the rest of the lookup kept."""
    prefix = at or []
    if key == "traits" and prefix[:1] in (["event"], ["trigger"]):
        # An identify call's traits are its properties; other events carry none.
        if identify:
            return [expression([*prefix, "properties", *rest])]
        return [expression(["contact", "traits", *rest])]
    same = next((c for c in valid if c.casefold() == key.casefold()), None)
    if same is not None:
        return [expression([*prefix, same, *rest])]
    synonym = KEY_SYNONYMS.get(key)
    if synonym in valid:
        return [expression([*prefix, synonym, *rest])]
    close = [c for c in [closest_name(key, valid)] if c is not None]
    guesses = [expression([*prefix, c, *rest]) for c in close]
    near = close and difflib.SequenceMatcher(None, key, close[0]).ratio() >= 0.85
    if free and not near:  # `product_id` is not `products`: free data comes first
        guesses.insert(0, expression([*prefix, free[0], key, *rest]))
    return guesses


def did_you_mean(name: str, known: Any) -> str | None:
    """The known name differing only in case, else the closest spelling, else None."""
    return closest_name(name, known)


def expression(chain: list[Any]) -> str:
    """`["event", "properties", "colour"]` as written: event.properties.colour."""
    text = str(chain[0])
    for part in chain[1:]:
        text += f".{part}" if isinstance(part, str) and part.isidentifier() else f"[{part!r}]"
    return text


def _chains(tree: ast.AST, roots: tuple[str, ...]) -> Iterator[tuple[list[Any], ast.expr]]:
    """Each lookup chain starting at a root (`trigger.properties.x`), outermost node."""
    if isinstance(tree, ast.Attribute | ast.Subscript):
        chain: list[Any] = []
        node: ast.AST = tree
        while True:
            if isinstance(node, ast.Attribute):
                chain.insert(0, node.attr)
                node = node.value
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                chain.insert(0, node.slice.value)
                node = node.value
            else:
                break
        if isinstance(node, ast.Name) and node.id in roots:
            yield [node.id, *chain], tree  # type: ignore[misc]
            return
        yield from _chains(node, roots)
        return
    if isinstance(tree, ast.Name) and tree.id in roots:
        return
    for child in ast.iter_child_nodes(tree):
        yield from _chains(child, roots)


def _char_offset(lines: list[str], lineno: int, col_offset: int) -> int:
    """ast's (line, UTF-8 byte column) as a character offset into the text."""
    before = sum(len(line) + 1 for line in lines[: lineno - 1])
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    return before + len(line.encode("utf-8")[:col_offset].decode("utf-8", errors="ignore"))


def text_at(data: Any, path: YamlPath) -> Any:
    """The raw value at `path` of YAML data, or None."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data
