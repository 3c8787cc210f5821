"""The condition language of `if:` and `where:` - a tiny, safe expression subset.

Marketers write Python-like expressions over four roots (`trigger` is the event
that started the run, so a goal can match the order of *that* cart)::

    contact.traits.country != "XX" and len(event.properties.products) > 1
    journey.vars.variant in ["a", "b"]
    event.properties.cart_id == trigger.properties.cart_id

Other places reuse the language over roots of their own (`roots=`): invariants
read `message`, `run`, `contact` and `order` (docs/invariants.md).

We parse with `ast` and *interpret* a whitelist of node types over plain
dicts; nothing is ever passed to `eval`, attribute access is a dict lookup
(never `getattr`), so there is no path to Python objects. A missing key is
`null`, which compares unequal to everything and fails every ordering.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from functools import lru_cache
from typing import Any

ROOTS = ("contact", "event", "trigger", "journey")
FUNCTIONS = {
    "len": lambda v: len(v) if isinstance(v, str | list | dict) else 0,
    "lower": lambda v: v.lower() if isinstance(v, str) else v,
    "upper": lambda v: v.upper() if isinstance(v, str) else v,
    "number": lambda v: _number(v),
}
# Functions of any number of arguments: the first that is not null.
VARIADIC = {"coalesce": lambda *vs: next((v for v in vs if v is not None), None)}
CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
MAX_LENGTH = 1000
MAX_VALUE_SIZE = 10_000  # longest string or list arithmetic may build ("x" * 10**9 is refused)

_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: _contains(b, a),
    ast.NotIn: lambda a, b: not _contains(b, a),
}
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


class ConditionError(ValueError):
    """A condition that is not in the language; `offset` is its 0-based column."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def check_condition(text: str) -> str:
    """Pydantic validator: the text parses, else a ValueError saying why."""
    parse(text)
    return text


@lru_cache(maxsize=4096)
def parse(text: str, roots: tuple[str, ...] = ROOTS) -> ast.expr:
    """The checked tree of `text`, whose names may be `roots` (and true, false, null)."""
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"condition is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        compared = _with_double_equals(text.strip())
        if compared is not None:  # `tier = "gold"`: the comparison is `==`
            offset, fixed = compared
            raise ConditionError(
                f"invalid condition {text!r}: a single = does not compare; "
                f"write == to test equality ({fixed})",
                offset,
            ) from None
        raise ConditionError(
            f"invalid condition {text!r}: {exc.msg}", max((exc.offset or 1) - 1, 0)
        ) from None
    _check(tree, roots)
    return tree


def _with_double_equals(text: str) -> tuple[int, str] | None:
    """When `text` parses once every lone `=` (outside strings) is `==`: the offset of
    the first, and the text so corrected."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    lines = text.splitlines(keepends=True)
    starts = [sum(len(line) for line in lines[:i]) for i in range(len(lines))]
    found = [
        starts[t.start[0] - 1] + t.start[1]
        for t in tokens
        if t.type == tokenize.OP and t.string == "="
    ]
    if not found:
        return None
    fixed = text
    for offset in reversed(found):
        fixed = fixed[:offset] + "==" + fixed[offset + 1 :]
    try:
        ast.parse(fixed, mode="eval")
    except SyntaxError:
        return None
    return found[0], fixed


def _check(node: ast.AST, roots: tuple[str, ...]) -> None:
    match node:
        case ast.Constant(value=v) if isinstance(v, str | int | float | bool) or v is None:
            pass
        case ast.Name(id=name):
            if name not in roots and name not in CONSTANTS:
                raise ConditionError(
                    f"unknown name {name!r}: expected one of {', '.join(roots)} "
                    "or true, false, null",
                    node.col_offset,
                )
        case ast.Attribute(value=value, attr=attr):
            if attr.startswith("_"):
                raise ConditionError(f"attribute {attr!r} is not allowed", node.col_offset)
            _check(value, roots)
        case ast.Subscript(value=value, slice=ast.Constant(value=key)) if isinstance(
            key, str | int
        ):
            _check(value, roots)
        case ast.Compare(left=left, ops=ops, comparators=rest) if all(
            type(op) in _COMPARE for op in ops
        ):
            for child in (left, *rest):
                _check(child, roots)
        case ast.BoolOp(values=values):
            for child in values:
                _check(child, roots)
        case ast.UnaryOp(op=ast.Not() | ast.USub(), operand=operand):
            _check(operand, roots)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _ARITHMETIC:
            _check(left, roots)
            _check(right, roots)
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            for child in elts:
                _check(child, roots)
        case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in FUNCTIONS:
            if len(args) != 1:
                raise ConditionError(f"{fn}() takes exactly one argument", node.col_offset)
            _check(args[0], roots)
        case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in VARIADIC:
            if not 1 <= len(args) <= 10:
                raise ConditionError(f"{fn}() takes 1 to 10 arguments", node.col_offset)
            for arg in args:
                _check(arg, roots)
        case ast.Call():
            raise ConditionError(
                f"only the functions {', '.join([*FUNCTIONS, *VARIADIC])} may be called",
                node.col_offset,
            )
        case _:
            raise ConditionError(
                f"{type(node).__name__.lower()} expressions are not allowed in conditions",
                getattr(node, "col_offset", 0),
            )


def evaluate(text: str, context: dict[str, Any], roots: tuple[str, ...] = ROOTS) -> bool:
    """Evaluate `text` over `context` ({"contact": {...}, "event": {...}, ...})."""
    return bool(_eval(parse(text, roots), context))


def _eval(node: ast.AST, ctx: dict[str, Any]) -> Any:
    match node:
        case ast.Constant(value=v):
            return v
        case ast.Name(id=name):
            return CONSTANTS[name] if name in CONSTANTS else ctx.get(name)
        case ast.Attribute(value=value, attr=attr):
            return _lookup(_eval(value, ctx), attr)
        case ast.Subscript(value=value, slice=ast.Constant(value=key)):
            return _lookup(_eval(value, ctx), key)
        case ast.BoolOp(op=ast.And(), values=values):
            result: Any = True
            for child in values:
                result = _eval(child, ctx)
                if not result:
                    return result
            return result
        case ast.BoolOp(values=values):
            result = False
            for child in values:
                result = _eval(child, ctx)
                if result:
                    return result
            return result
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _eval(operand, ctx)
        case ast.UnaryOp(operand=operand):
            value = _eval(operand, ctx)
            return -value if _is_number(value) else None
        case ast.Compare(left=left, ops=ops, comparators=rest):
            current = _eval(left, ctx)
            for op, right_node in zip(ops, rest, strict=True):
                right = _eval(right_node, ctx)
                try:
                    ok = _COMPARE[type(op)](current, right)
                except TypeError:
                    ok = False
                if not ok:
                    return False
                current = right
            return True
        case ast.BinOp(left=left, op=op, right=right):
            a, b = _eval(left, ctx), _eval(right, ctx)
            if _too_big(a, b):
                return None
            if not _arithmetic_ok(op, a, b):
                return None
            try:
                return _ARITHMETIC[type(op)](a, b)
            except (TypeError, ValueError, ZeroDivisionError, OverflowError, MemoryError):
                return None
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_eval(child, ctx) for child in elts]
        case ast.Call(func=ast.Name(id=fn), args=args) if fn in VARIADIC:
            return VARIADIC[fn](*(_eval(arg, ctx) for arg in args))
        case ast.Call(func=ast.Name(id=fn), args=[arg]):
            return FUNCTIONS[fn](_eval(arg, ctx))
    raise ConditionError(f"cannot evaluate {type(node).__name__}")  # unreachable after parse


def _number(value: Any) -> int | float | None:
    """A number from a number or numeric text (" 9 ", "9.5"); null otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and len(value) <= 50:
        try:
            number = float(value.strip().rstrip("."))
        except ValueError:
            return None
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return int(number) if number.is_integer() else number
    return None


def _lookup(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    if (
        isinstance(container, list)
        and isinstance(key, int)
        and -len(container) <= key < len(container)
    ):
        return container[key]
    return None


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | dict):
        return item in container
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _arithmetic_ok(op: ast.operator, a: Any, b: Any) -> bool:
    """`+` joins numbers, texts or lists; `*` repeats a text or list a number of times;
    `-`, `/` and `%` take numbers only: on text, `%` is Python's string formatting, where
    a trait such as "%0100000000d" would build 100 MB."""
    if _is_number(a) and _is_number(b):
        return True
    if isinstance(op, ast.Add):
        return True
    return isinstance(op, ast.Mult) and _is_number(a) != _is_number(b)


def _too_big(a: Any, b: Any) -> bool:
    """Would `a + b` or `a * b` build a string or list past MAX_VALUE_SIZE?"""
    sized = [len(v) for v in (a, b) if isinstance(v, str | list)]
    counts = [v for v in (a, b) if isinstance(v, int) and not isinstance(v, bool)]
    if not sized:
        return False
    if counts:
        return sized[0] * max(counts[0], 0) > MAX_VALUE_SIZE
    return sum(sized) > MAX_VALUE_SIZE
