"""Load journey YAML files into frozen, validated `Journey` models.

Marketers edit these files by hand, so every mistake comes back as a
`Problem` saying where (file:line:column) and what was expected, and all the
problems of a file are reported together. The steps, in order:

1. read the file (size cap) and scan its YAML *event stream*, refusing anchors
   and aliases before anything is composed, so an alias bomb never expands;
2. compose the node tree and build plain data, remembering the node behind
   every path so errors can point at it (duplicate keys are errors here,
   where PyYAML would silently keep the last one);
3. validate with the pydantic models and translate their errors;
4. give every step an id, then run the checks that span steps, templates
   and files (step ids, message references, timezones, journey ids).
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import zoneinfo
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from ..rendering import checks as message_checks
from ..rendering.renderer import Renderer
from .conditions import ConditionError
from .models import (
    CHANNELS,
    ID_PATTERN,
    STEP_KINDS,
    ActionStep,
    BranchCase,
    BranchStep,
    Journey,
    SendStep,
    SplitStep,
    SplitVariant,
    Step,
    UpdateContactAction,
    WaitForStep,
    WaitUntilStep,
)
from .problems import JourneyError, Problem

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 50_000
MAX_DEPTH = 100
SKIPPED_FILES = ("segments.yaml",)
ALIAS_MESSAGE = "YAML anchors and aliases are not allowed in journeys"

YamlPath = tuple[Any, ...]
Templates = Path | Renderer | None


@dataclass(frozen=True)
class LoadedJourney:
    """A validated journey with ids on every step, and the hash of its meaning."""

    journey: Journey
    path: Path
    spec_hash: str


def load_journey(path: Path, templates: Templates) -> LoadedJourney:
    """Load one journey file; raise JourneyError listing every problem found.

    `templates` (a folder, or a configured `Renderer`) is where messages live;
    every message a journey sends is rendered with sample data in each of its
    locales. None skips the template checks (e.g. validating YAML alone).
    """
    return _load(path, _renderer(templates))[0]


def load_journeys(
    paths: Iterable[Path], templates: Templates, segments: Collection[str] | None = None
) -> tuple[list[LoadedJourney], list[Problem]]:
    """Load files and directories of journeys; return the good ones and all problems.

    A directory contributes its `*.yaml`/`*.yml` files recursively, sorted,
    except `segments.yaml`. A journey id seen twice is a problem of the
    second file, which is then left out. With `segments` (the names segments.yaml
    defines), a trigger naming any other segment is a problem.
    """
    loaded: list[LoadedJourney] = []
    problems: list[Problem] = []
    owners: dict[str, LoadedJourney] = {}
    renderer = _renderer(templates)
    for file in _journey_files(paths):
        try:
            item, source = _load(file, renderer)
        except JourneyError as exc:
            problems.extend(exc.problems)
            continue
        wanted = item.journey.trigger.segment
        if segments is not None and wanted is not None and wanted not in segments:
            known = ", ".join(sorted(segments)) or "none"
            problems.append(
                source.problem(
                    ("trigger", "segment"),
                    f"unknown segment {wanted!r}: segments.yaml defines {known}",
                )
            )
            continue
        first = owners.setdefault(item.journey.id, item)
        if first is not item:
            problems.append(
                source.problem(
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
    for file in _journey_files(paths):
        try:
            names |= _templates_in(_read_source(file).data)
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


def _renderer(templates: Templates) -> Renderer | None:
    return Renderer(templates) if isinstance(templates, Path) else templates


def _load(path: Path, renderer: Renderer | None) -> tuple[LoadedJourney, _Source]:
    source = _read_source(path)
    try:
        journey = Journey.model_validate(source.data)
    except ValidationError as exc:
        raise JourneyError(_sorted(_translate_all(exc, source), source.file)) from None
    problems = _check_ids(journey, source)
    journey = journey.model_copy(update={"steps": _with_ids(journey.steps, ("steps",))})
    problems += _check_references(journey, source)
    problems += _check_timezones(journey, source)
    problems += _check_trait_names(journey, source)
    problems += bare_durations(source)
    if renderer is not None:
        problems += _check_templates(journey, source, renderer)
    if problems:
        raise JourneyError(_sorted(problems, source.file))
    return LoadedJourney(journey=journey, path=path, spec_hash=spec_hash(journey)), source


def _journey_files(paths: Iterable[Path]) -> Iterator[Path]:
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml")
                and p.name not in SKIPPED_FILES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.is_file()
            )
        else:
            found = [path]  # a missing file is reported when it is read
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


def _sorted(problems: list[Problem], file: str) -> list[Problem]:
    """Unique problems, by position; the journey file's own before its templates'."""
    unique = dict.fromkeys(problems)
    return sorted(unique, key=lambda p: (p.file != file, p.file, p.line, p.column))


# --- 1 and 2: YAML with locations ---------------------------------------------


@dataclass
class _Source:
    """A YAML file as plain data, plus the (key node, value node) behind every path."""

    file: str
    data: Any = None
    nodes: dict[YamlPath, tuple[yaml.Node | None, yaml.Node]] = field(default_factory=dict)

    def position(self, path: YamlPath, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of `path`, or of its nearest ancestor that exists.

        A mapping or list points at its key (`send:`), where the marketer looks
        for the block; a scalar points at the value itself.
        """
        while path not in self.nodes and path:
            path = path[:-1]
        if path not in self.nodes:
            return 1, 1
        key_node, node = self.nodes[path]
        mark = node.start_mark
        if key_node is not None and (key or not isinstance(node, yaml.ScalarNode)):
            mark = key_node.start_mark
        return mark.line + 1, mark.column + 1

    def problem(self, path: YamlPath, message: str, *, key: bool = False) -> Problem:
        line, column = self.position(path, key=key)
        return Problem(self.file, line, column, message)

    def at(self, mark: yaml.Mark | None, message: str) -> Problem:
        if mark is None:
            return Problem(self.file, 1, 1, message)
        return Problem(self.file, mark.line + 1, mark.column + 1, message)


def _read_source(path: Path) -> _Source:
    source = _Source(file=str(path))
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise JourneyError([source.at(None, f"cannot read the file: {exc.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        message = f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB"
        raise JourneyError([source.at(None, message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line, column = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        problem = Problem(source.file, line, column, "the file is not UTF-8 text")
        raise JourneyError([problem]) from None
    try:
        _scan(text, source)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise JourneyError([_syntax_problem(exc, source)]) from None
    if root is None:
        message = "the file is empty: expected a journey with id, name, trigger and steps"
        raise JourneyError([source.at(None, message)])
    builder = _Builder(source)
    source.data = builder.build(root, ())
    if builder.problems:
        raise JourneyError(_sorted(builder.problems, source.file))
    return source


def _scan(text: str, source: _Source) -> None:
    """Refuse anchors, aliases, too many or too deeply nested nodes, without composing."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise JourneyError([source.at(event.start_mark, ALIAS_MESSAGE)])
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                message = f"the YAML is nested more than {MAX_DEPTH} levels deep"
                raise JourneyError([source.at(event.start_mark, message)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                message = f"the file has more than {MAX_NODES} YAML nodes"
                raise JourneyError([source.at(event.start_mark, message)])


def _syntax_problem(exc: yaml.MarkedYAMLError, source: _Source) -> Problem:
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.context and exc.context_mark is not None and exc.problem:
        mark = exc.context_mark
        message += f" ({exc.context} at line {mark.line + 1}, column {mark.column + 1})"
    if "\\t" in message:
        message += "; indent with spaces, not tabs"
    return source.at(exc.problem_mark or exc.context_mark, message)


class _Builder:
    """Plain data from a node tree, recording each path's nodes and key mistakes."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: YamlPath, key: yaml.Node | None = None) -> Any:
        self.source.nodes[path] = (key, node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._refuse(key_node, "a key must be a plain word, not a list or mapping")
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._refuse(key_node, "YAML merge keys (<<) are not allowed in journeys")
                continue
            key = self._scalar(key_node)
            if key in first_line:
                message = f"duplicate key {_show(key)} (first defined on line {first_line[key]})"
                self._refuse(key_node, message)
                continue
            first_line[key] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*path, key), key_node)
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self._scalars.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            self._refuse(node, f"invalid value: {exc.problem}")
            return None

    def _refuse(self, node: yaml.Node, message: str) -> None:
        self.problems.append(self.source.at(node.start_mark, message))


# --- 3: pydantic errors as marketer-readable problems ------------------------

_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}
IDENTIFIER_TEXT = (
    "lowercase letters, digits and underscores, starting with a letter, at most 63 characters"
)
_PATTERNS = {
    "[a-z][a-z0-9_]{0,62}": IDENTIFIER_TEXT,  # ids, also inside the step id pattern
    "[a-z0-9][a-z0-9_\\-]*": "lowercase letters, digits, '_' and '-'",  # template names
}
_ITEM_LABELS: dict[type[BaseModel], str] = {
    Journey: "the journey",
    BranchCase: "branch case",
    SplitVariant: "split variant",
}


@dataclass
class _Place:
    """Where a pydantic `loc` lands: in the raw data and in the models."""

    path: YamlPath  # the deepest raw node the loc reaches
    model: type[BaseModel] | None  # the model at the end of the loc, if any
    label: str  # that model as a marketer calls it: "send", "wait step"
    field: str  # the last field name on the way: "channel"


def _translate_all(exc: ValidationError, source: _Source) -> list[Problem]:
    """One problem per error; of a plain union's alternatives keep the one that got furthest."""
    best: dict[Any, tuple[int, Problem]] = {}
    for i, error in enumerate(exc.errors(include_url=False)):
        path, problem = _translate(error, source)
        group = _union_prefix(error["loc"])
        key = i if group is None else group
        if key not in best or len(path) > best[key][0]:
            best[key] = (len(path), problem)
    return [problem for _, problem in best.values()]


def _union_prefix(loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The loc up to a non-discriminated union's member label ("literal[...]"), if any."""
    for i, element in enumerate(loc):
        if isinstance(element, str) and "[" in element:
            return loc[:i]
    return None


def _translate(error: ErrorDetails, source: _Source) -> tuple[YamlPath, Problem]:
    loc, kind, ctx, value = error["loc"], error["type"], error.get("ctx") or {}, error["input"]
    place = _locate(loc, source.data)
    path = place.path
    if kind == "extra_forbidden":
        parent = _locate(loc[:-1], source.data)
        expected = ", ".join(_field_names(parent.model)) if parent.model else ""
        message = f"unknown key {_show(loc[-1])} in {parent.label} (expected one of: {expected})"
        return path, source.problem(path, message, key=True)
    if kind == "missing":
        parent = _locate(loc[:-1], source.data)
        return path, source.problem(
            path, f"missing required key {_show(loc[-1])} in {parent.label}"
        )
    if kind == "unknown_step_kind":
        path, message = _step_kind_message(value, path)
        return path, source.problem(path, message, key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_key = ctx["discriminator"].strip("'")
        tags = ", ".join(re.findall(r"'([^']*)'", ctx.get("expected_tags", "")))
        if kind == "union_tag_not_found":
            message = f"missing required key {tag_key!r} in {place.field}"
        else:
            message = f"invalid value {_show(ctx['tag'])} for {tag_key} (expected one of: {tags})"
            path = (*path, tag_key) if (*path, tag_key) in source.nodes else path
        return path, source.problem(path, message)
    line, column = source.position(path)
    message = _message(kind, error["msg"], ctx, value, place.field)
    if isinstance(ctx.get("error"), ConditionError):
        column += _condition_shift(source, path, ctx["error"].offset)
    return path, Problem(source.file, line, column, message)


def _message(kind: str, text: str, ctx: dict[str, Any], value: Any, name: str) -> str:
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_kind_of(value)}"
    if kind == "literal_error":
        expected = ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
        return f"invalid value {_show(value)} for {name} (expected one of: {expected})"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(Value error|Assertion failed), ", "", text)
    if kind == "string_pattern_mismatch":
        wanted = next(
            (text for key, text in _PATTERNS.items() if key in ctx["pattern"]),
            f"text matching {ctx['pattern']}",
        )
        return f"invalid {name} {_show(value)}: expected {wanted}"
    if kind == "too_short":
        n = ctx["min_length"]
        return f"{name} needs at least {n} {'item' if n == 1 else 'items'}, got {len(value)}"
    if kind == "too_long":
        return f"{name} has more than {ctx['max_length']} items"
    if kind == "string_too_short":
        return f"{name} must not be empty"
    if kind == "string_too_long":
        return f"{name} is longer than {ctx['max_length']} characters"
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        return f"{name} must be {words} {ctx[bound]}, got {_show(value)}"
    return text


def _step_kind_message(value: Any, path: YamlPath) -> tuple[YamlPath, str]:
    """Say which kind key is wrong or doubled, pointing at that key when there is one."""
    kinds = ", ".join(STEP_KINDS)
    if isinstance(value, dict):
        found = [k for k in value if k in STEP_KINDS]
        if len(found) > 1:
            message = f"a step must have exactly one kind key, found: {', '.join(found)}"
            return (*path, found[1]), message
        unknown = [k for k in value if k not in ("id", "then", "on_timeout", "else", "on_failure")]
        if unknown:
            return (*path, unknown[0]), (
                f"unknown step kind {_show(unknown[0])} (expected one of: {kinds})"
            )
        return path, f"a step needs a kind key (expected one of: {kinds})"
    if isinstance(value, str):
        return path, f"unknown step kind {_show(value)} (expected one of: {kinds})"
    return path, f"expected a step (a mapping with one of: {kinds}), got {_kind_of(value)}"


def _condition_shift(source: _Source, path: YamlPath, offset: int) -> int:
    """Columns from a one-line condition's value start to the offending character."""
    node = source.nodes.get(path, (None, None))[1]
    if not isinstance(node, yaml.ScalarNode) or node.start_mark.line != node.end_mark.line:
        return 0
    quote = 1 if node.style in ("'", '"') else 0
    return quote + len(node.value) - len(node.value.lstrip()) + offset


def _locate(loc: tuple[Any, ...], data: Any) -> _Place:
    """Walk `loc` through the models and the raw data side by side.

    The models tell a field key (a level in the data) from a union tag such as
    `wait` or `update_contact` (no level of its own), which a data-only walk
    cannot do when a tag and a key share a name (`- wait: 1h` + `id: X`).
    """
    tp: Any = Journey
    node, path = data, ()
    label, name = _ITEM_LABELS[Journey], ""
    tag_next: str | None = None
    for element in loc:
        tp = _unwrap(tp)
        if tag_next:  # a discriminated field names the member (its tag) before its keys
            if _is_union(tp):
                tp, label = _by_discriminator(tp, tag_next, element), name or label
            tag_next = None
            continue
        if _is_union(tp):
            tp = _member(tp, element)
            if _is_model(_unwrap(tp)) and element in STEP_KINDS:
                label = f"{element} step"
            if tp is not None:
                continue
        elif _is_model(tp):
            info = _field_info(tp, element)
            tp = info.annotation if info else None
            discriminator = info.discriminator if info is not None else None
            tag_next = discriminator if isinstance(discriminator, str) else None
            name = str(element) if info else name
            label = str(element) if _is_model(_unwrap(tp)) else label
        else:
            tp = get_args(tp)[-1] if get_origin(tp) in (list, dict) else None
        if _is_model(_unwrap(tp)):
            label = _ITEM_LABELS.get(_unwrap(tp), label)
        child = _child(node, element)
        if child is not _ABSENT:
            node, path = child, (*path, element)
        elif tp is not None:
            node = _ABSENT  # a level the data lacks: stay at the deepest node found
    model = _unwrap(tp)
    return _Place(path, model if _is_model(model) else None, label, name)


_ABSENT = object()


def _child(node: Any, element: Any) -> Any:
    if isinstance(node, dict) and _hashable(element) and element in node:
        return node[element]
    if isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
        return node[element]
    return _ABSENT


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None))


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional; stop at a real union or a plain type."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif _is_union(tp) and type(None) in get_args(tp):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _by_discriminator(union: Any, field: str, tag: Any) -> Any:
    """The member of `union` whose `field` is the literal `tag` (`type: award_points`)."""
    for member in get_args(union):
        model = _unwrap(member)
        info = _field_info(model, field) if _is_model(model) else None
        if info is not None and tag in get_args(info.annotation):
            return member
    return None


def _member(union: Any, tag: Any) -> Any:
    """The member a pydantic loc tag names: by `Tag`, or by a label like "list[...]"."""
    for member in get_args(union):
        if get_origin(member) is Annotated and any(
            isinstance(m, Tag) and m.tag == tag for m in get_args(member)[1:]
        ):
            return member
        plain = get_origin(_unwrap(member)) or _unwrap(member)
        if isinstance(tag, str) and tag.split("[")[0] == _type_label(plain):
            return member
    return None


def _type_label(tp: Any) -> str:
    if tp is Literal:
        return "literal"
    return getattr(tp, "__name__", "").lower()


def _field_info(model: type[BaseModel], key: Any) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _show(value: Any) -> str:
    """A value as the marketer wrote it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _kind_of(value: Any) -> str:
    match value:
        case None:
            return "nothing"
        case bool():
            return "true/false"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "a mapping"
    return f"a {type(value).__name__}"


# --- 4: step ids and cross-step checks ----------------------------------------


def _iter_steps(steps: list[Step], path: YamlPath) -> Iterator[tuple[YamlPath, Step]]:
    """Every step with its YAML path, parents before their children."""
    for i, step in enumerate(steps):
        here = (*path, i)
        yield here, step
        for sub, children in _nested(step):
            yield from _iter_steps(children, (*here, *sub))


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


def _check_ids(journey: Journey, source: _Source) -> list[Problem]:
    """Step ids are unique within the journey; a send's two ids agree."""
    problems = []
    first_line: dict[str, int] = {}
    for path, step in _iter_steps(journey.steps, ("steps",)):
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


def _check_references(journey: Journey, source: _Source) -> list[Problem]:
    """`wait_for.message` names a send step written before it in the file."""
    sends: dict[str, tuple[int, int]] = {}
    waits: list[tuple[YamlPath, str]] = []
    for path, step in _iter_steps(journey.steps, ("steps",)):
        if isinstance(step, SendStep):
            sends.setdefault(step.id or "", source.position(path))
        elif isinstance(step, WaitForStep) and step.wait_for.message is not None:
            waits.append((path, step.wait_for.message))
    problems = []
    for path, message_id in waits:
        here = source.position(path)
        earlier = [n for n, where in sends.items() if where < here and re.match(ID_PATTERN, n)]
        if message_id in earlier:
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


DURATION_KEYS = frozenset({"wait", "timeout", "within", "expire_after", "expires_in", "every"})


def bare_durations(source: _Source) -> list[Problem]:
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


def _check_trait_names(journey: Journey, source: _Source) -> list[Problem]:
    """Traits starting with "_" are the orchestrator's bookkeeping: not for journeys."""
    problems = []
    for path, step in _iter_steps(journey.steps, ("steps",)):
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


def _check_timezones(journey: Journey, source: _Source) -> list[Problem]:
    problems = []
    for path, step in _iter_steps(journey.steps, ("steps",)):
        if isinstance(step, WaitUntilStep) and step.wait_until.timezone is not None:
            name = step.wait_until.timezone
            try:
                zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                message = (
                    f"unknown timezone {name!r}: expected an IANA name such as "
                    "Europe/Paris, America/New_York or UTC"
                )
                problems.append(source.problem((*path, "wait_until", "timezone"), message))
    return problems


def _check_templates(journey: Journey, source: _Source, renderer: Renderer) -> list[Problem]:
    """Each send's message exists, has the parts its channels need, and renders."""
    problems: list[Problem] = []
    wanted: dict[str, set[str]] = {}
    for path, step in _iter_steps(journey.steps, ("steps",)):
        if not isinstance(step, SendStep):
            continue
        name, channel = step.send.template, step.send.channel
        message = renderer.message(name)
        where = (*path, "send", "template")
        if not message.exists():
            message_text = f"template {name!r} not found: no folder {message.folder}/"
            problems.append(source.problem(where, message_text))
            continue
        default = message.variants()[0]
        if channel == "preferred":
            usable = [c for c in CHANNELS if default.complete(c)]
            if not usable:
                problems.append(
                    source.problem(
                        where,
                        f"template {name!r} has no complete channel for channel preferred: "
                        f"{message.folder}/ needs email.subject with email.html or "
                        "email.text, or push.title with push.body, or sms.body",
                    )
                )
        else:
            usable = [channel] if isinstance(channel, str) else list(channel)
            for c in usable:
                if not default.complete(c):
                    problems.append(
                        source.problem(
                            where,
                            f"template {name!r} has no complete {c} part: missing "
                            f"{' and '.join(default.missing(c))} in {message.folder}/",
                        )
                    )
        wanted.setdefault(name, set()).update(c for c in usable if default.complete(c))
    for name, channels in wanted.items():
        problems += message_checks.check_message(
            renderer, name, channels, journey.trigger.name, journey.id
        )
    return problems
