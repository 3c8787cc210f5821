"""A YAML file read for marketers: plain data plus the node behind every path.

Reading refuses what would hurt before anything is composed (size, anchors and
aliases, depth, node count) and what PyYAML would silently accept (duplicate keys,
merge keys), so every later problem can point at `file:line:column`. Journeys and
segments are both read this way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .problems import JourneyError, Problem, sorted_problems

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 50_000
MAX_DEPTH = 100
ALIAS_MESSAGE = "YAML anchors and aliases are not allowed in journeys"

YamlPath = tuple[Any, ...]


@dataclass
class Source:
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

    def text_position(self, path: YamlPath, offset: int) -> tuple[int, int]:
        """1-based (line, column) of the character at `offset` of a string value's stripped
        text: the part of a condition that is wrong, also in a folded `>-` block.

        The value's non-blank characters are the file's from the value on (folding only
        changes blanks), so the offset is found by counting them in the raw text.
        """
        found = self.nodes.get(path)
        node = found[1] if found else None
        mark = getattr(node, "start_mark", None)
        if not isinstance(node, yaml.ScalarNode) or getattr(mark, "buffer", None) is None:
            return self.position(path)
        wanted = sum(1 for c in node.value.strip()[:offset] if not c.isspace())
        raw: str = mark.buffer
        pointer = mark.pointer
        if node.style in (">", "|"):
            pointer = raw.find("\n", pointer) + 1  # past the `>-` header line
        elif node.style in ("'", '"'):
            pointer += 1
        line, column = mark.line + 1, mark.column + 1 + (pointer - mark.pointer)
        if node.style in (">", "|"):
            line, column = line + 1, 1
        seen = 0
        while pointer < len(raw):
            char = raw[pointer]
            if not char.isspace():
                if seen == wanted:
                    return line, column
                seen += 1
            if char == "\n":
                line, column = line + 1, 1
            else:
                column += 1
            pointer += 1
        return self.position(path)

    def at(self, mark: yaml.Mark | None, message: str) -> Problem:
        if mark is None:
            return Problem(self.file, 1, 1, message)
        return Problem(self.file, mark.line + 1, mark.column + 1, message)


def read_source(path: Path) -> Source:
    source = Source(file=str(path))
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
        raise JourneyError(sorted_problems(builder.problems, source.file))
    return source


def _scan(text: str, source: Source) -> None:
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


def _syntax_problem(exc: yaml.MarkedYAMLError, source: Source) -> Problem:
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.context and exc.context_mark is not None and exc.problem:
        mark = exc.context_mark
        message += f" ({exc.context} at line {mark.line + 1}, column {mark.column + 1})"
    if "\\t" in message:
        message += "; indent with spaces, not tabs"
    return source.at(exc.problem_mark or exc.context_mark, message)


class _Builder:
    """Plain data from a node tree, recording each path's nodes and key mistakes."""

    def __init__(self, source: Source) -> None:
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
                message = f"duplicate key {show(key)} (first defined on line {first_line[key]})"
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


def show(value: Any) -> str:
    """A value as the marketer wrote it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def kind_of(value: Any) -> str:
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
