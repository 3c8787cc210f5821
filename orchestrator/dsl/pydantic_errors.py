"""pydantic's validation errors as a marketer reads them: where, and what was expected.

Each error's `loc` is walked through the journey models and the raw YAML side by
side, so the problem points at the key the marketer wrote and names the block
("send", "wait step") and the keys it allows.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from .conditions import ConditionError
from .models import STEP_KINDS, BranchCase, Invariant, Journey, SplitVariant
from .problems import Problem
from .source import Source, YamlPath, kind_of, show

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
    Invariant: "invariant",
    SplitVariant: "split variant",
}


@dataclass
class _Place:
    """Where a pydantic `loc` lands: in the raw data and in the models."""

    path: YamlPath  # the deepest raw node the loc reaches
    model: type[BaseModel] | None  # the model at the end of the loc, if any
    label: str  # that model as a marketer calls it: "send", "wait step"
    field: str  # the last field name on the way: "channel"


def translate_errors(
    exc: ValidationError, source: Source, model: type[BaseModel] = Journey
) -> list[Problem]:
    """One problem per error; of a plain union's alternatives keep the one that got furthest.

    `model` is what the file holds: a journey, or another file of the language
    (`invariants.yaml`)."""
    best: dict[Any, tuple[int, Problem]] = {}
    for i, error in enumerate(exc.errors(include_url=False)):
        path, problem = _translate(error, source, model)
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


def _translate(
    error: ErrorDetails, source: Source, model: type[BaseModel]
) -> tuple[YamlPath, Problem]:
    loc, kind, ctx, value = error["loc"], error["type"], error.get("ctx") or {}, error["input"]
    place = _locate(loc, source.data, model)
    path = place.path
    if kind == "extra_forbidden":
        parent = _locate(loc[:-1], source.data, model)
        expected = ", ".join(_field_names(parent.model)) if parent.model else ""
        message = f"unknown key {show(loc[-1])} in {parent.label} (expected one of: {expected})"
        return path, source.problem(path, message, key=True)
    if kind == "missing":
        parent = _locate(loc[:-1], source.data, model)
        return path, source.problem(path, f"missing required key {show(loc[-1])} in {parent.label}")
    if kind == "unknown_step_kind":
        path, message = _step_kind_message(value, path)
        return path, source.problem(path, message, key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_key = ctx["discriminator"].strip("'")
        tags = ", ".join(re.findall(r"'([^']*)'", ctx.get("expected_tags", "")))
        if kind == "union_tag_not_found":
            message = f"missing required key {tag_key!r} in {place.field}"
        else:
            message = f"invalid value {show(ctx['tag'])} for {tag_key} (expected one of: {tags})"
            path = (*path, tag_key) if (*path, tag_key) in source.nodes else path
        return path, source.problem(path, message)
    line, column = source.position(path)
    message = error_message(kind, error["msg"], ctx, value, place.field)
    if kind == "string_type":
        message += _unquoted_time(source, path)
    if isinstance(ctx.get("error"), ConditionError):
        column += _condition_shift(source, path, ctx["error"].offset)
    return path, Problem(source.file, line, column, message)


def error_message(kind: str, text: str, ctx: dict[str, Any], value: Any, name: str) -> str:
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {kind_of(value)}"
    if kind == "literal_error":
        expected = ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
        return f"invalid value {show(value)} for {name} (expected one of: {expected})"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(Value error|Assertion failed), ", "", text)
    if kind == "string_pattern_mismatch":
        wanted = next(
            (text for key, text in _PATTERNS.items() if key in ctx["pattern"]),
            f"text matching {ctx['pattern']}",
        )
        return f"invalid {name} {show(value)}: expected {wanted}"
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
        return f"{name} must be {words} {ctx[bound]}, got {show(value)}"
    return text


def _unquoted_time(source: Source, path: YamlPath) -> str:
    """YAML 1.1 reads an unquoted `10:00` as the number 600 (base 60), `09:00` as text:
    say so, or `at: 10:00` is only "expected a string, got a number"."""
    found = source.nodes.get(path)
    node = found[1] if found else None
    if (
        isinstance(node, yaml.ScalarNode)
        and node.style is None
        and re.fullmatch(r"[0-9]{1,2}:[0-9]{2}", node.value)
    ):
        return f': YAML reads {node.value} without quotes as a number; write "{node.value}"'
    return ""


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
                f"unknown step kind {show(unknown[0])} (expected one of: {kinds})"
            )
        return path, f"a step needs a kind key (expected one of: {kinds})"
    if isinstance(value, str):
        return path, f"unknown step kind {show(value)} (expected one of: {kinds})"
    return path, f"expected a step (a mapping with one of: {kinds}), got {kind_of(value)}"


def _condition_shift(source: Source, path: YamlPath, offset: int) -> int:
    """Columns from a one-line condition's value start to the offending character."""
    node = source.nodes.get(path, (None, None))[1]
    if not isinstance(node, yaml.ScalarNode) or node.start_mark.line != node.end_mark.line:
        return 0
    quote = 1 if node.style in ("'", '"') else 0
    return quote + len(node.value) - len(node.value.lstrip()) + offset


def raw_path(loc: tuple[Any, ...], data: Any) -> YamlPath:
    """The path in the YAML data of the deepest node a pydantic error's `loc` reaches."""
    return _locate(loc, data).path


def _locate(loc: tuple[Any, ...], data: Any, model: type[BaseModel] = Journey) -> _Place:
    """Walk `loc` through the models and the raw data side by side.

    The models tell a field key (a level in the data) from a union tag such as
    `wait` or `update_contact` (no level of its own), which a data-only walk
    cannot do when a tag and a key share a name (`- wait: 1h` + `id: X`).
    """
    tp: Any = model
    node, path = data, ()
    label, name = _ITEM_LABELS.get(model, "the file"), ""
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
