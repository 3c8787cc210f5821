"""The expression a missing value was written as, and where: `event.properties.colour`
at `templates/cart_reminder/email.html:12`, not `'dict object' has no attribute 'colour'`
somewhere inside the shared partial it was passed to.

`LoudUndefined` remembers the template line that produced the missing value; this
module reads that line's expressions back from the template to name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes
from jinja2.utils import missing

from .sandbox import LoudUndefined, MappingMethod


@dataclass(frozen=True)
class MissingValue:
    """A value a template used but the context lacked."""

    file: str | None
    line: int | None
    expression: str | None  # as written: event.properties.colour, item.colour, lead
    chain: tuple[Any, ...] = ()  # ("event", "properties", "colour"); () when not a lookup
    # `x.items` read the mapping's method although `x` has an 'items' key (`x['items']`).
    shadowed: bool = False

    def what(self) -> str:
        """What is missing, as a failed send records it: `undefined variable: event.x`."""
        if self.shadowed and self.chain:
            name = self.chain[-1]
            return (
                f"{self.expression} is the {name}() method every mapping has, not its {name!r} key"
            )
        return f"undefined variable: {self.expression or 'a value'}"

    def hint(self) -> str:
        """How to make real sends work: guard the value (never only sample data)."""
        if self.shadowed and self.chain:
            return f"write {_text(self.chain[:-1])}[{self.chain[-1]!r}] to read the key"
        what = self.expression or "the value"
        return (
            f"where it may be missing, guard it with `{{% if {what} is defined %}}` "
            f"or `{what} | default(…)`"
        )


def missing_value(
    env: Environment, undefined: LoudUndefined, context: dict[str, Any], message: str
) -> MissingValue:
    """Where `undefined` was produced and the expression written there."""
    file, line, _ = undefined.origin()
    if file is None or line is None:
        return MissingValue(None, None, None)
    # Jinja maps a frame to the last line it marked, which for `{% with %}` and
    # `{% set %}` targets can be a line above the expression: look there, then below.
    lookups = sorted((f for f in _lookups(env, file, undefined) if f[0] >= line), key=_line)
    if not lookups:
        return MissingValue(file, line, None)
    # Two lookups of the same name: the one whose container is the one that lacked
    # it, when that can be told from the top-level context.
    owner = undefined._undefined_obj
    shadowed = isinstance(undefined, MappingMethod) and undefined.has_key
    for found, chain in lookups:
        if owner is not missing and _resolve(chain[:-1], context) is owner:
            return MissingValue(file, found, _text(chain), chain, shadowed)
    found, chain = lookups[0]
    return MissingValue(file, found, _text(chain), chain, shadowed)


def _lookups(env: Environment, file: str, undefined: LoudUndefined) -> list[tuple[int, Any]]:
    """(line, chain) of every lookup in the template that could have produced it."""
    try:
        tree = env.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TemplateSyntaxError):
        return []
    name = undefined._undefined_name
    bare = undefined._undefined_obj is missing
    found: list[tuple[int, Any]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if isinstance(node, nodes.Name):
            hit = bare and node.name == name and node.ctx == "load"
        elif isinstance(node, nodes.Getattr):
            hit = not bare and node.attr == name
        else:
            hit = not bare and isinstance(node.arg, nodes.Const) and node.arg.value == name
        chain = _chain(node) if hit else None
        if chain is not None and (node.lineno, chain) not in found:
            found.append((node.lineno, chain))
    return found


def property_reads(env: Environment, file: Path, root: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, key) of each key a template reads right under `root` (("event",
    "properties")): `event.properties.price`, `event.properties["price"]` and
    `event.properties.get("price")`. Empty when the file cannot be read or parsed."""
    try:
        tree = env.parse(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TemplateSyntaxError):
        return []
    found: dict[tuple[int, str], None] = {}
    getters: set[int] = set()  # the `.get` of `x.get("a")`: a method, not a key
    for call in tree.find_all(nodes.Call):
        getter = call.node
        if isinstance(getter, nodes.Getattr) and getter.attr == "get":
            getters.add(id(getter))
            if _chain(getter.node) == root and call.args:
                arg = call.args[0]
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                    found[(call.lineno, arg.value)] = None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if chain is None or id(node) in getters or len(chain) != len(root) + 1:
            continue
        if chain[: len(root)] == root and isinstance(chain[-1], str):
            found[(node.lineno, chain[-1])] = None
    return sorted(found)


def _line(found: tuple[int, Any]) -> int:
    return found[0]


def _chain(node: nodes.Node) -> tuple[Any, ...] | None:
    """`event.properties.colour` as ("event", "properties", "colour"); None if not a plain
    lookup (a filter or call in the middle)."""
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        inner = _chain(node.node)
        return None if inner is None else (*inner, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner = _chain(node.node)
        return None if inner is None else (*inner, node.arg.value)
    return None


def _text(chain: tuple[Any, ...]) -> str:
    text = str(chain[0])
    for part in chain[1:]:
        text += f".{part}" if isinstance(part, str) and part.isidentifier() else f"[{part!r}]"
    return text


def _resolve(chain: tuple[Any, ...], context: dict[str, Any]) -> Any:
    value: Any = context
    for part in chain:
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value
