"""The condition language of `if:` and `where:` - a tiny, safe expression subset.

Marketers write Python-like expressions over four roots (`trigger` is the event
that started the run, so a goal can match the order of *that* cart)::

    contact.traits.country != "XX" and len(event.properties.products) > 1
    journey.vars.variant in ["a", "b"]
    event.properties.cart_id == trigger.properties.cart_id

Other places reuse the language over roots of their own (`roots=`): invariants
read `message`, `run`, `contact` and `order` (docs/invariants.md).

Dates: `today()` is the date in the contact's own timezone (`contact.timezone`, else
the default zone the caller passes) at the moment the caller passes (the workflow's
time, so a run that waited three days on the time-skipping server is three days on);
`date(x)` reads an ISO date or timestamp as a date in that zone; `days_since(x)`,
`days_until(x)` and `years_since(x)` count whole days and years. A date compares with
a date or with ISO text (`date(contact.traits.trial_ends) < "2027-01-01"`,
`contact.traits.trial_ends < today()`); what is not a date is `null`.

We parse with `ast` and *interpret* a whitelist of node types over plain
dicts; nothing is ever passed to `eval`, attribute access is a dict lookup
(never `getattr`), so there is no path to Python objects. A missing key is
`null`, which compares unequal to everything and fails every ordering.
"""

from __future__ import annotations

import ast
import calendar
import io
import operator
import tokenize
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from functools import cached_property, lru_cache
from typing import Any

from ..services.spelling import closest_name
from ..services.zones import zone_of

ROOTS = ("contact", "event", "trigger", "journey")
FUNCTIONS = {
    "len": lambda v: len(v) if isinstance(v, str | list | dict) else 0,
    "lower": lambda v: v.lower() if isinstance(v, str) else v,
    "upper": lambda v: v.upper() if isinstance(v, str) else v,
    "number": lambda v: _number(v),
}
# Functions of any number of arguments: the first that is not null.
VARIADIC = {"coalesce": lambda *vs: next((v for v in vs if v is not None), None)}
# Functions of the date in the contact's timezone: (clock, argument) -> value.
DATES: dict[str, Any] = {
    "date": lambda clock, v: clock.date_of(v),
    "days_since": lambda clock, v: _days(clock.date_of(v), clock.today),
    "days_until": lambda clock, v: _days(clock.today, clock.date_of(v)),
    "years_since": lambda clock, v: _years(clock.date_of(v), clock.today),
}
NO_ARGUMENTS: dict[str, Any] = {"today": lambda clock: clock.today}
_CLOCK = "$clock"  # where evaluate() puts the clock in the context: no name can reach it
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
def parse(text: str, roots: tuple[str, ...] = ROOTS, dates: bool = True) -> ast.expr:
    """The checked tree of `text`, whose names may be `roots` (and true, false, null);
    `dates=False` refuses the date functions (invariants: checked once the simulation
    is over, there is no one "today" to read)."""
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
    _check(tree, roots, dates)
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


def _check(node: ast.AST, roots: tuple[str, ...], dates: bool = True) -> None:
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
            _check(value, roots, dates)
        case ast.Subscript(value=value, slice=ast.Constant(value=key)) if isinstance(
            key, str | int
        ):
            _check(value, roots, dates)
        case ast.Compare(left=left, ops=ops, comparators=rest) if all(
            type(op) in _COMPARE for op in ops
        ):
            for child in (left, *rest):
                _check(child, roots, dates)
            _check_compared_kinds([left, *rest])
        case ast.BoolOp(values=values):
            for child in values:
                _check(child, roots, dates)
        case ast.UnaryOp(op=ast.Not() | ast.USub(), operand=operand):
            _check(operand, roots, dates)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _ARITHMETIC:
            _check(left, roots, dates)
            _check(right, roots, dates)
            for side in (left, right):
                called = _called(side)
                if called in _GIVES_DATE:
                    raise ConditionError(
                        f"{called}() is a date, and dates are not added to or subtracted "
                        "from: count days with days_since() or days_until() "
                        "(days_until(contact.traits.renews_on) <= 3)",
                        side.col_offset,
                    )
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            for child in elts:
                _check(child, roots, dates)
        case ast.Call(func=ast.Name(id=fn)) if not dates and fn in DATES | NO_ARGUMENTS:
            raise ConditionError(
                f"{fn}() cannot be used in an invariant: invariants are checked once the "
                "simulation is over, so there is no one 'today'; compare message.at or "
                'run.entered_at with a date instead (message.at >= "2027-01-15")',
                node.col_offset,
            )
        case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in FUNCTIONS | DATES:
            if len(args) != 1:
                raise ConditionError(f"{fn}() takes exactly one argument", node.col_offset)
            arg = args[0]
            if fn in DATES and isinstance(arg, ast.Constant) and not _date_text(arg.value):
                raise ConditionError(
                    f"{fn}({arg.value!r}): not a date; write it as YYYY-MM-DD "
                    f'({fn}("2027-01-15")), or pass a value such as contact.traits.birthday',
                    arg.col_offset,
                )
            _check(arg, roots, dates)
        case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in NO_ARGUMENTS:
            if args:
                raise ConditionError(f"{fn}() takes no arguments", node.col_offset)
        case ast.Call(func=ast.Name(id=fn), args=args, keywords=[]) if fn in VARIADIC:
            if not 1 <= len(args) <= 10:
                raise ConditionError(f"{fn}() takes 1 to 10 arguments", node.col_offset)
            for arg in args:
                _check(arg, roots, dates)
        case ast.Call(func=func):
            names = [*FUNCTIONS, *VARIADIC, *NO_ARGUMENTS, *DATES]
            called = func.id if isinstance(func, ast.Name) else None
            meant = closest_name(called, names) if called and called not in names else None
            hint = f"did you mean {meant}()? " if meant else ""
            raise ConditionError(
                f"{hint}only the functions {', '.join(names)} may be called", node.col_offset
            )
        case _:
            raise ConditionError(
                f"{type(node).__name__.lower()} expressions are not allowed in conditions",
                getattr(node, "col_offset", 0),
            )


# Functions whose value is a number of days or years, and those whose value is a date.
_COUNTS_DAYS = frozenset({"days_since", "days_until", "years_since"})
_GIVES_DATE = frozenset({"today", "date"})


def _called(node: ast.AST) -> str | None:
    """The function `node` calls by name (`today` of `today()`), if it is such a call."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _check_compared_kinds(operands: list[ast.expr]) -> None:
    """A count of days compared with text, or a date with a number, never holds: say so
    (`days_until(x) <= "3"`, `today() > 2027`, `today() in ["2027-13-01"]`)."""
    called = [(name, node) for node in operands if (name := _called(node)) is not None]
    # The items of a literal list count too: `today() in ["christmas"]` never holds either.
    items = [e for n in operands if isinstance(n, ast.List | ast.Tuple | ast.Set) for e in n.elts]
    constants = [n.value for n in [*operands, *items] if isinstance(n, ast.Constant)]
    for name, node in called:
        if name in _COUNTS_DAYS and any(isinstance(c, str) for c in constants):
            text = next(c for c in constants if isinstance(c, str))
            number = _number(text)
            raise ConditionError(
                f"{name}() is a whole number: compare it with a number, such as "
                f"{number if number is not None else 3}, not the text {text!r}",
                node.col_offset,
            )
        numbers = [c for c in constants if isinstance(c, int | float) and not isinstance(c, bool)]
        not_dates = [c for c in constants if isinstance(c, str) and not _date_text(c)]
        if name in _GIVES_DATE and not_dates:
            raise ConditionError(
                f"{name}() is a date, and {not_dates[0]!r} is not one: write dates as "
                'YYYY-MM-DD ("2027-01-15")',
                node.col_offset,
            )
        if name in _GIVES_DATE and numbers:
            raise ConditionError(
                f"{name}() is a date: compare it with a date or ISO text such as "
                f'"2027-01-15", not the number {numbers[0]!r}; to count days, use '
                "days_since() or days_until()",
                node.col_offset,
            )


def evaluate(
    text: str,
    context: dict[str, Any],
    roots: tuple[str, ...] = ROOTS,
    *,
    now: datetime | None = None,
    default_zone: str | None = None,
    dates: bool = True,
) -> bool:
    """Evaluate `text` over `context` ({"contact": {...}, "event": {...}, ...}).

    `now` (default: the wall clock) and the contact's timezone, else `default_zone`
    (else UTC), are what `today()` and the other date functions read.
    """
    contact = context.get("contact")
    named = contact.get("timezone") if isinstance(contact, dict) else None
    clock = Clock(now or datetime.now(UTC), (named, default_zone))
    return bool(_eval(parse(text, roots, dates), {**context, _CLOCK: clock}))


@dataclass(frozen=True)
class Clock:
    """The moment a condition is evaluated at, and the zones its dates are read in (the
    contact's, the default): looked up only when a date function runs."""

    now: datetime
    zone_names: tuple[str | None, ...]

    @cached_property
    def zone(self) -> tzinfo:
        return zone_of(*self.zone_names)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.zone).date()

    def date_of(self, value: Any) -> date | None:
        """A date from ISO text (a date, or a timestamp read in this zone) or a date."""
        if isinstance(value, datetime):
            return self._local_date(value)
        if isinstance(value, date):
            return value
        if not isinstance(value, str) or not 8 <= len(value.strip()) <= 40:
            return None
        text = value.strip()
        try:
            return date.fromisoformat(text)  # a date alone is that date in any zone
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return self._local_date(moment)

    def _local_date(self, moment: datetime) -> date | None:
        """Its date in this zone; None past the calendar's ends (0001-01-01T00:00+05:00)."""
        try:
            return _aware(moment).astimezone(self.zone).date()
        except (OverflowError, ValueError):
            return None


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
                a, b = _as_dates(current, right, ctx)
                try:
                    ok = _COMPARE[type(op)](a, b)
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
        case ast.Call(func=ast.Name(id=fn), args=[]) if fn in NO_ARGUMENTS:
            return NO_ARGUMENTS[fn](ctx[_CLOCK])
        case ast.Call(func=ast.Name(id=fn), args=[arg]) if fn in DATES:
            return DATES[fn](ctx[_CLOCK], _eval(arg, ctx))
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


def _aware(moment: datetime) -> datetime:
    """A timestamp without an offset is UTC, as Segment's are."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _date_text(value: Any) -> bool:
    return Clock(datetime.now(UTC), ("UTC",)).date_of(value) is not None


def _as_dates(a: Any, b: Any, ctx: dict[str, Any]) -> tuple[Any, Any]:
    """A date compared with text compares with the date the text holds (or with null)."""
    a_date, b_date = type(a) is date, type(b) is date
    if a_date == b_date:
        return a, b
    clock: Clock = ctx[_CLOCK]
    if a_date and isinstance(b, list):  # `today() in ["2027-12-25", "2027-12-26"]`
        return a, [v if type(v) is date else clock.date_of(v) for v in b]
    return (a, clock.date_of(b)) if a_date else (clock.date_of(a), b)


def _days(start: date | None, end: date | None) -> int | None:
    return (end - start).days if start is not None and end is not None else None


def _years(start: date | None, end: date | None) -> int | None:
    """Whole years from `start` to `end`; a 29 February counts its year on 28 February
    of a year that has no 29th."""
    if start is None or end is None:
        return None
    years = end.year - start.year
    leap_day = (start.month, start.day) == (2, 29) and not calendar.isleap(end.year)
    month_day = (2, 28) if leap_day else (start.month, start.day)
    if (end.month, end.day) < month_day:
        years -= 1
    return years
