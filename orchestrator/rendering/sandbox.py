"""A Jinja sandbox that also bounds time and memory, not only attribute access.

`ImmutableSandboxedEnvironment` stops templates from reaching Python internals
(`__class__`, `__globals__`, `str.format` tricks) and from mutating data. It
does not stop a template from burning a worker: `'x' * 10**9`, `9**9**9`,
nested loops or exponential recursive macros. This environment adds a budget
that every render runs under:

- a deadline, checked on every attribute and item lookup, call, filter and loop
  iteration (loops are wrapped at parse time, so even empty loop bodies count);
- size checks before a value is built: `*`, `**`, `+`, `%`, `~`, padding
  methods and filters, format-string widths (no widths taken from arguments),
  `join`/`replace`/`indent` results estimated from their inputs, containers
  weighed by their contents (`[long_string] * 600` is big, not 600 items),
  no `|sum` of lists (quadratic inside one C call, beyond the deadline's reach);
- missing variables fail even when printed through repr() (`LoudUndefined`);
- the output size, counted while it streams out (see `Renderer`).

Violations raise `TemplateLimitError` (a `SecurityError`), which the renderer
turns into a clear, non-retryable error.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, NoReturn

from jinja2 import (
    Environment,
    StrictUndefined,
    Undefined,
    UndefinedError,
    nodes,
    pass_eval_context,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

_MAPPING_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))
MAX_VALUE_CHARS = 256 * 1024  # the largest string or list a template may build
MAX_WIDTH = 10_000  # padding / batch sizes / format widths a template may ask for
MAX_INT_BITS = 4096  # the largest integer arithmetic may produce
WIDTH_FILTERS = ("center", "indent", "batch", "slice", "wordwrap", "truncate")
PADDING_METHODS = ("center", "ljust", "rjust", "zfill", "expandtabs")
_HIDDEN_WIDTH = re.compile(r"%[-#0 +]*(\*|\d*\.\*)|\{[^{}]*:[^{}]*\{")
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(\d+)|%[-#0 +]*\d*\.(\d+)|\{[^{}]*:[^{}]*?(\d+)[^{}]*\}")


class TemplateLimitError(SecurityError):
    """A template tried to use more time or memory than a message may take."""


@dataclass
class Limits:
    seconds: float = 2.0  # wall-clock time one part may take to render
    output_bytes: int = 512 * 1024  # the rendered size of one part


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(
                f"rendering took longer than {self.limits.seconds:g} s "
                "(a loop or recursive macro that runs too long?)"
            )


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextmanager
def budget(limits: Limits) -> Iterator[_Budget]:
    """Run the enclosed rendering under `limits`."""
    token = _budget.set(_Budget(limits))
    try:
        yield _budget.get()  # type: ignore[misc]
    finally:
        _budget.reset(token)


def tick() -> None:
    current = _budget.get()
    if current is not None:
        current.tick()


def _weight(value: Any, depth: int = 0) -> int:
    """About how many characters a value prints as: strings by length, containers by contents.

    Counting items alone is not enough: `[a] * 600` is a short list of a long string.
    Stops counting as soon as the limit is passed, so checking stays cheap.
    """
    if isinstance(value, str | bytes):
        return len(value)
    if depth >= 4 or not isinstance(value, list | tuple | set | frozenset | dict):
        return 1
    if len(value) > MAX_VALUE_CHARS:
        return len(value)
    total = len(value)
    items = value.items() if isinstance(value, dict) else ((v, None) for v in value)
    for first, second in items:
        total += _weight(first, depth + 1) + (_weight(second, depth + 1) if second else 0)
        if total > MAX_VALUE_CHARS:
            break
    return total


def _check_size(value: Any, what: str) -> Any:
    if _weight(value) > MAX_VALUE_CHARS:
        raise TemplateLimitError(f"{what} would be larger than {MAX_VALUE_CHARS} characters")
    return value


def _check_estimate(characters: int, what: str) -> None:
    """Refuse an operation whose result would pass the limit, before it is built."""
    if characters > MAX_VALUE_CHARS:
        raise TemplateLimitError(f"{what} would build more than {MAX_VALUE_CHARS} characters")


def _check_width(number: Any, what: str) -> None:
    if isinstance(number, int) and not isinstance(number, bool) and abs(number) > MAX_WIDTH:
        raise TemplateLimitError(f"{what} {number} is larger than the limit of {MAX_WIDTH}")


def _check_format_string(text: Any, what: str) -> None:
    if isinstance(text, str):
        if _HIDDEN_WIDTH.search(text):
            raise TemplateLimitError(
                f"{what}: widths taken from arguments (`%*d`, `{{:{{}}}}`) are not allowed"
            )
        for match in _WIDE_FORMAT.finditer(text):
            for group in match.groups():
                if group is not None:
                    _check_width(int(group), f"{what}: width")


def _sized(value: Any) -> int:
    return _weight(value) if isinstance(value, str | bytes | list | tuple) else 0


def _estimate(name: str, args: list[Any], kwargs: dict[str, Any]) -> int:
    """What a string-building filter or method would produce, from its arguments."""
    text = args[0] if args else None
    if name == "join" and isinstance(text, list | tuple | range):
        sep = args[1] if len(args) > 1 else kwargs.get("d", "")
        return _weight(list(text)) + _sized(sep) * len(text)
    if name == "replace" and isinstance(text, str) and len(args) >= 3:
        old, new = args[1], args[2]
        if isinstance(old, str) and isinstance(new, str):
            return len(text) + (text.count(old) if old else len(text) + 1) * len(new)
    if name == "indent" and isinstance(text, str):
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        if isinstance(width, str):
            return len(text) + (text.count("\n") + 1) * len(width)
    return 0


def _looped(items: Any) -> Iterator[Any]:
    for item in items:
        tick()
        yield item


@pass_eval_context
def _joined(eval_ctx: Any, parts: list[Any]) -> str:
    """The `~` operator, refusing to build a string past the limit."""
    tick()
    total = sum(len(p) if isinstance(p, str) else 32 for p in parts)
    if total > MAX_VALUE_CHARS:
        raise TemplateLimitError(f"'~' would build more than {MAX_VALUE_CHARS} characters")
    return (markup_join if eval_ctx.autoescape else str_join)(parts)


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        tick()
        # Jinja may pass the environment or a context first; then comes the filtered value.
        passed = 1 if args and isinstance(args[0], Environment | EvalContext | Context) else 0
        values = list(args[passed:])
        if name in WIDTH_FILTERS:
            for arg in [*values[1:], *kwargs.values()]:
                _check_width(arg, f"|{name}:")
        if name == "format":
            _check_format_string(next((a for a in values if isinstance(a, str)), None), "|format")
        if name == "join" and values and not hasattr(values[0], "__len__"):
            values[0] = list(values[0])  # a generator: join would read it all anyway
        if name == "sum" and not isinstance(kwargs.get("start", 0), int | float):
            raise TemplateLimitError("|sum: only numbers can be summed")
        _check_estimate(_estimate(name, values, kwargs), f"|{name}")
        return _check_size(func(*args[:passed], *values, **kwargs), f"|{name}")

    return guarded


class _Budgeted(NodeTransformer):
    """Routes every loop and every `~` through the budget checks above."""

    def __init__(self, environment: SafeEnvironment) -> None:
        self.environment = environment

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._filter(node.iter, "_looped", node)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._filter(nodes.List(node.nodes), "_joined", node)

    def _filter(self, value: nodes.Expr, name: str, like: nodes.Node) -> nodes.Filter:
        node = nodes.Filter(value, name, [], [], None, None)
        node.set_lineno(like.lineno)
        node.set_environment(self.environment)
        return node


class UndefinedUse(UndefinedError):
    """A missing value was used; `undefined` says where the expression was written."""

    def __init__(self, message: str | None, undefined: LoudUndefined) -> None:
        super().__init__(message)
        self.undefined = undefined


class LoudUndefined(StrictUndefined):
    """StrictUndefined also when printed through repr(): `{{ [x] }}`, `|pprint`, `{0!r}`.

    It remembers the template line that produced it: a value looked up in a message
    (`{% with items=event.properties.colours %}`) and used inside a shared partial
    was *written* in the message, and that is the line a marketer must fix.
    """

    __slots__ = ("_origin",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._origin: tuple[Any, int] | None = None
        frame = sys._getframe(1)
        for _ in range(8):  # the compiled template is a few calls up (getattr, sandbox)
            if frame is None:
                break
            template = frame.f_globals.get("__jinja_template__")
            if template is not None:
                self._origin = (template, frame.f_lineno)
                break
            frame = frame.f_back  # type: ignore[assignment]

    def origin(self) -> tuple[str | None, int | None, str | None]:
        """(file, line, Jinja name) of the template that produced this value, if known."""
        if self._origin is None:
            return None, None, None
        template, python_line = self._origin
        return template.filename, template.get_corresponding_lineno(python_line), template.name

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UndefinedUse(self._undefined_message, self)

    __repr__ = _fail_with_undefined_error  # type: ignore[assignment]


# Jinja binds the operators (`+`, `<`, `str()`, `len()`…) to its own failing method:
# point them at ours, so every use carries where the value came from.
for _name, _value in list(vars(Undefined).items()) + list(vars(StrictUndefined).items()):
    if _value is Undefined._fail_with_undefined_error and _name.startswith("__"):
        setattr(LoudUndefined, _name, LoudUndefined._fail_with_undefined_error)


class MappingMethod(LoudUndefined):
    """`cart.items`: a mapping's method (`items`, `keys`, `get`…) reached by a dotted name.

    Jinja reads `x.items` as the method, so `{% for i in cart.items %}` iterated a
    method ("'builtin_function_or_method' object is not iterable") where a key was
    meant. Called (`x.items()`, `x.get("a")`), it is the method; used any other way it
    is a missing value, reported by name and line like any other (`has_key`: the
    mapping has a key of that name, which `x['items']` reads).
    """

    __slots__ = ("_method", "has_key")
    # What the sandbox and Jinja's call machinery ask a callable (never undefined here).
    unsafe_callable = False
    alters_data = False
    jinja_pass_arg = None

    def __init__(self, method: Callable[..., Any], has_key: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._method = method
        self.has_key = has_key

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


class SafeEnvironment(ImmutableSandboxedEnvironment):
    """The environment every message template renders in."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Only data helpers; lipsum/cycler/joiner add nothing a message needs.
        self.globals = {"range": self.globals["range"], "namespace": self.globals["namespace"]}
        self.globals["dict"] = dict
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}
        self.filters["_looped"] = _looped
        self.filters["_joined"] = _joined

    def add_filters(self, filters: dict[str, Callable[..., Any]]) -> None:
        self.filters.update({name: _guarded_filter(name, f) for name, f in filters.items()})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Jinja has no public AST hook; this is the one place every template passes through.
        return _Budgeted(self).visit(super()._parse(source, name, filename))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        tick()
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(left.bit_length(), 1) * right > MAX_INT_BITS:
                raise TemplateLimitError(f"{left} ** {right} is too large a number")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(times, int) and _sized(seq) * times > MAX_VALUE_CHARS:
                    raise TemplateLimitError(
                        f"repeating a value {times} times would be larger than "
                        f"{MAX_VALUE_CHARS} characters"
                    )
            ints = isinstance(left, int) and isinstance(right, int)
            if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimitError("the product is too large a number")
        elif operator == "+":
            if _sized(left) + _sized(right) > MAX_VALUE_CHARS:
                raise TemplateLimitError(f"'+' would build more than {MAX_VALUE_CHARS} characters")
        elif operator == "%":
            _check_format_string(left, "'%' formatting")
        return _check_size(super().call_binop(context, operator, left, right), f"'{operator}'")

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        value = super().getattr(obj, attribute)
        mapping_method = attribute in _MAPPING_METHODS and not isinstance(value, Undefined)
        if isinstance(obj, dict) and mapping_method and callable(value):
            return MappingMethod(value, attribute in obj, obj=obj, name=attribute)
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        if isinstance(obj, dict) and isinstance(argument, str) and argument not in obj:
            # `cart['items']` is a key or nothing: never the mapping's method.
            return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_string(value.__self__, "str.format")
        return wrapped

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        owner, name = getattr(__obj, "__self__", None), getattr(__obj, "__name__", None)
        if isinstance(owner, str):
            if name in PADDING_METHODS:
                for arg in [*args, *kwargs.values()]:
                    _check_width(arg, f"{name}():")
            elif name == "join" and args:
                items = args[0] if isinstance(args[0], list | tuple | range) else list(args[0])
                args = (items, *args[1:])
                _check_estimate(_weight(list(items)) + len(owner) * len(items), "str.join()")
            elif name == "replace":
                _check_estimate(_estimate("replace", [owner, *args], kwargs), "str.replace()")
        return _check_size(super().call(__context, __obj, *args, **kwargs), "a call")


def iter_limited(chunks: Iterable[str], limits: Limits, what: str) -> str:
    """Join streamed output, stopping as soon as it passes the size limit."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        tick()
        size += len(chunk.encode("utf-8"))
        if size > limits.output_bytes:
            raise TemplateLimitError(
                f"{what} renders to more than {limits.output_bytes // 1024} KiB"
            )
        out.append(chunk)
    return "".join(out)
