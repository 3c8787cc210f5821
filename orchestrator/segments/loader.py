"""Load `journeys/segments.yaml` into validated `Segment` models, with located problems.

The file is read like a journey (size cap, no anchors or aliases, duplicate keys
refused; see `orchestrator.dsl.source`), then each segment is validated on its
own so that every mistake in the file comes back at once as
`file:line:column: problem`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

# The journey loader's YAML reading and wording, shared so both files read alike.
from ..dsl.loader import bare_durations
from ..dsl.problems import JourneyError, Problem
from ..dsl.pydantic_errors import error_message
from ..dsl.source import Source, kind_of, read_source, show
from .models import CONDITION_KINDS, NAME_PATTERN, Condition, Segment

SEGMENTS_FILE = "segments.yaml"
NAME_TEXT = (
    "lowercase letters, digits and underscores, starting with a letter, at most 63 characters"
)


class SegmentError(JourneyError):
    """A segments file that cannot be loaded; `problems` says every reason, with locations."""


@dataclass(frozen=True)
class LoadedSegment:
    """A validated segment, and the hash of its meaning (comments and layout don't count)."""

    name: str
    segment: Segment
    spec_hash: str
    path: Path

    @property
    def spec(self) -> dict[str, Any]:
        return spec_of(self.segment)


def spec_of(segment: Segment) -> dict[str, Any]:
    """The stored form of a segment: JSON, windows in seconds; reads back the same model."""
    return segment.model_dump(mode="json", by_alias=True, exclude_none=True)


def spec_hash(segment: Segment) -> str:
    text = json.dumps(spec_of(segment), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def load_segments(path: Path) -> tuple[list[LoadedSegment], list[Problem]]:
    """The segments of `path` and every problem found; a missing file has no segments.

    Segments with problems are left out, so callers that need all or nothing
    check the problems first.
    """
    if not path.exists():
        return [], []
    try:
        if _is_empty(path):
            return [], []
        source = read_source(path)
    except JourneyError as exc:
        return [], exc.problems
    if not isinstance(source.data, dict):
        message = (
            f"expected a mapping of segment names to segments, got {kind_of(source.data)}; "
            "e.g.\nbig_spenders:\n  spent: { more_than: 5000, within: 30d }"
        )
        return [], [source.problem((), message)]
    loaded, problems = [], []
    for name, raw in source.data.items():
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
            problems.append(
                source.problem(
                    (name,), f"invalid segment name {show(name)}: expected {NAME_TEXT}", key=True
                )
            )
            continue
        try:
            segment = Segment.model_validate(raw)
        except ValidationError as exc:
            problems += [_translate(error, name, source) for error in exc.errors()]
            continue
        loaded.append(LoadedSegment(name, segment, spec_hash(segment), path))
    problems += bare_durations(source)
    unique = sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))
    return loaded, unique


def load_segments_or_raise(path: Path) -> list[LoadedSegment]:
    """Like `load_segments`, but any problem raises SegmentError listing them all."""
    loaded, problems = load_segments(path)
    if problems:
        raise SegmentError(problems)
    return loaded


def _is_empty(path: Path) -> bool:
    """A file of comments only: no segments yet, which is fine (unlike a journey)."""
    try:
        return yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader) is None
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False  # read_source reports it, with its position


def _translate(error: Any, name: str, source: Source) -> Problem:
    """A pydantic error as a marketer-readable problem at the key it is about."""
    loc = tuple(error["loc"])
    path = (name, *loc)
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    label = _label(name, loc[:-1])
    if kind == "extra_forbidden":
        model, keys = _keys_of(loc[:-1])
        expected = ", ".join(keys)
        if model is Condition:
            message = f"unknown condition {show(loc[-1])} (expected one of: {expected})"
        else:
            message = f"unknown key {show(loc[-1])} in {label} (expected one of: {expected})"
        return source.problem(path, message, key=True)
    if kind == "missing":
        return source.problem(path, f"missing required key {show(loc[-1])} in {label}")
    field = str(loc[-1]) if loc and isinstance(loc[-1], str) else _label(name, loc)
    message = error_message(kind, error["msg"], ctx, value, field)
    if kind == "string_pattern_mismatch" and field == "name" and "trait" in loc:
        message = (
            f"invalid trait name {show(value)}: expected letters, digits, '_' and '-', "
            "starting with a letter or '_' (nested traits are not supported)"
        )
    elif kind == "string_pattern_mismatch" and field == "currency":
        message = f"invalid currency {show(value)}: expected a three-letter code such as RUB"
    elif message.startswith("a condition needs") and not loc:
        message = f"segment {name!r} " + message.removeprefix("a condition ")
    elif kind == "model_type" and not loc:
        message = f"segment {name!r} must be a mapping with a condition such as `all:`"
    return source.problem(path, message, key=_is_block(source, path))


def _is_block(source: Source, path: tuple[Any, ...]) -> bool:
    node = source.nodes.get(path, (None, None))[1]
    return isinstance(node, yaml.MappingNode | yaml.SequenceNode)


def _label(name: str, loc: tuple[Any, ...]) -> str:
    """What a marketer calls the mapping at `loc`: "spent", "segment 'big_spenders'"."""
    for element in reversed(loc):
        if isinstance(element, str):
            return element
    return f"segment {name!r}" if not loc else "condition"


def _keys_of(loc: tuple[Any, ...]) -> tuple[type[BaseModel], list[str]]:
    """The model at `loc` and the keys it accepts, walking the models along the loc."""
    model: type[BaseModel] = Segment
    for element in loc:
        if isinstance(element, int):
            continue
        info = next(
            (i for n, i in model.model_fields.items() if element in (n, i.alias)),
            None,
        )
        if info is None:
            break
        model = _model_in(info.annotation) or Condition
    names = [info.alias or n for n, info in model.model_fields.items()]
    if model is Segment or model is Condition:
        names = [n for n in names if n not in CONDITION_KINDS] + list(CONDITION_KINDS)
    return model, names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X | None`, `list[X] | None` or `Annotated[...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    meta_origin = getattr(annotation, "__origin__", None)
    if meta_origin is not None and meta_origin is not annotation:
        return _model_in(meta_origin)
    return None
