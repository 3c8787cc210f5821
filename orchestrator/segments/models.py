"""The segment language: typed models of `journeys/segments.yaml`.

A segment is a named condition over a contact's traits and what they did in a
time window (orders, spend, events, messages). A condition is a mapping with
exactly one key: `all` / `any` (a list of conditions), `not` (one condition),
or a leaf (`spent`, `orders`, `event`, `messages`, `opened`, `trait`). Windows
are whole seconds, like journey durations, so a stored spec reads back the same.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from ..dsl.cron import check_cron
from ..dsl.durations import parse_duration

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
TRAIT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$"
LEAF_KINDS = ("spent", "orders", "event", "messages", "opened", "trait")
CONDITION_KINDS = ("all", "any", "not", *LEAF_KINDS)
DEFAULT_EVERY = 3600  # refresh hourly unless the segment says otherwise

Window = Annotated[int, BeforeValidator(parse_duration)]
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _attr(name: str) -> str:
    """The Python attribute of a YAML key that is a Python keyword (`in`, `not`)."""
    return f"{name}_" if name in ("in", "not") else name


def _exactly_one(model: BaseModel, names: tuple[str, ...], what: str) -> str:
    """The one key of `names` that is set; a ValueError naming them all otherwise."""
    found = [n for n in names if getattr(model, _attr(n), None) is not None]
    if len(found) != 1:
        got = ", ".join(found) if found else "none"
        raise ValueError(f"{what} needs exactly one of {', '.join(names)} (found: {got})")
    return found[0]


class Count(Model):
    """How many rows a leaf counts must be: exactly one comparison, whole numbers."""

    at_least: Annotated[int, Field(ge=0)] | None = None
    more_than: Annotated[int, Field(ge=0)] | None = None
    exactly: Annotated[int, Field(ge=0)] | None = None
    less_than: Annotated[int, Field(ge=1)] | None = None
    at_most: Annotated[int, Field(ge=0)] | None = None
    within: Window | None = None

    label: ClassVar[str] = "a count"

    @model_validator(mode="after")
    def _one_comparison(self) -> Count:
        _exactly_one(self, COUNT_COMPARISONS, self.label)
        return self

    def comparison(self) -> tuple[str, float]:
        name = _exactly_one(self, COUNT_COMPARISONS, self.label)
        return name, getattr(self, name)


COUNT_COMPARISONS = ("at_least", "more_than", "exactly", "less_than", "at_most")
AMOUNT_COMPARISONS = ("more_than", "at_least", "less_than", "at_most")


class Spent(Model):
    """Money spent on orders placed in the window, refunded orders left out."""

    more_than: Annotated[float, Field(ge=0)] | None = None
    at_least: Annotated[float, Field(ge=0)] | None = None
    less_than: Annotated[float, Field(gt=0)] | None = None
    at_most: Annotated[float, Field(ge=0)] | None = None
    within: Window | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @model_validator(mode="after")
    def _one_comparison(self) -> Spent:
        _exactly_one(self, AMOUNT_COMPARISONS, "spent")
        return self

    def comparison(self) -> tuple[str, float]:
        name = _exactly_one(self, AMOUNT_COMPARISONS, "spent")
        return name, getattr(self, name)


class Orders(Count):
    """Orders placed in the window (refunded ones too: the customer did order)."""

    label: ClassVar[str] = "orders"


class EventCount(Count):
    """`track` events with this name in the window."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    label: ClassVar[str] = "event"


class Messages(Count):
    """Messages sent to the contact in the window, on one channel or any."""

    channel: Literal["email", "sms", "push"] | None = None
    label: ClassVar[str] = "messages"


class Opened(Count):
    """Messages sent in the window that the contact opened (or clicked)."""

    channel: Literal["email", "push"] | None = None
    label: ClassVar[str] = "opened"


# Operators of trait dates, read as ISO text in UTC days.
DATE_OPERATORS = ("in_last", "in_next", "more_than_ago", "anniversary_in_next")
TRAIT_OPERATORS = (
    "equals",
    "not_equals",
    "in",
    "exists",
    "more_than",
    "at_least",
    "less_than",
    "at_most",
    *DATE_OPERATORS,
    "anniversary_today",
)
DAY_SECONDS = 86_400


MAX_DATE_DAYS = 36_600  # a hundred years: "customers for more than 5 years" is a window
_DAY_WINDOW = re.compile(r"^\s*(\d{1,6})\s*([dw])\s*$")


def _whole_days(value: Any) -> int:
    """A date window in seconds, as other windows, but of whole days (`30d`, `2w`,
    `1825d`: up to a hundred years, not 366 days as event windows): trait dates have no
    time of day. A stored spec's seconds read back the same."""
    match = _DAY_WINDOW.match(value) if isinstance(value, str) else None
    if match is not None:
        days = int(match[1]) * (7 if match[2] == "w" else 1)
    elif isinstance(value, int) and not isinstance(value, bool) and value % DAY_SECONDS == 0:
        days = value // DAY_SECONDS  # seconds, as stored
    elif isinstance(value, int) and not isinstance(value, bool):  # written without a unit
        raise ValueError(  # the loader's own wording, so the two read as one problem
            f"invalid duration {value}: add its unit, e.g. {value}d, {value}h or "
            f"{value}m (s, m, h, d or w)"
        )
    else:
        parse_duration(value)  # says what is wrong with the text, if it is no duration
        raise ValueError(f"a date window is whole days, such as 7d, 30d or 2w; got {value!r}")
    if not 1 <= days <= MAX_DATE_DAYS:
        raise ValueError(
            f"a date window is 1 to {MAX_DATE_DAYS} days (a hundred years); got {value!r}"
        )
    return days * DAY_SECONDS


DayWindow = Annotated[int, BeforeValidator(_whole_days)]


class Trait(Model):
    """A contact trait compared with a value; numbers compare as numbers. Dates (ISO
    text: `2026-05-17`, `2026-05-17T10:00:00Z`) compare with today, in UTC days."""

    name: Annotated[str, Field(pattern=TRAIT_PATTERN)]
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: Annotated[list[Scalar], Field(min_length=1, max_length=1000)] | None = Field(
        default=None, alias="in"
    )
    exists: StrictBool | None = None
    more_than: StrictInt | StrictFloat | None = None
    at_least: StrictInt | StrictFloat | None = None
    less_than: StrictInt | StrictFloat | None = None
    at_most: StrictInt | StrictFloat | None = None
    in_last: DayWindow | None = None  # the date is in the last N days, today included
    in_next: DayWindow | None = None  # the date is in the next N days, today included
    more_than_ago: DayWindow | None = None  # the date is more than N days before today
    anniversary_in_next: DayWindow | None = None  # its day of the year, today or in N days
    anniversary_today: StrictBool | None = None  # its day of the year is today

    @field_validator("anniversary_today")
    @classmethod
    def _only_true(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError(
                "anniversary_today takes true only; for everyone else, wrap the "
                "condition in not: (not: { trait: { name: birthday, anniversary_today: true } })"
            )
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> Trait:
        _exactly_one(self, TRAIT_OPERATORS, "trait")
        return self

    def operator(self) -> tuple[str, Any]:
        name = _exactly_one(self, TRAIT_OPERATORS, "trait")
        return name, getattr(self, _attr(name))


class Condition(Model):
    """Exactly one of: all, any, not, or a leaf condition."""

    all: Annotated[list[Condition], Field(min_length=1)] | None = None
    any: Annotated[list[Condition], Field(min_length=1)] | None = None
    not_: Condition | None = Field(default=None, alias="not")
    spent: Spent | None = None
    orders: Orders | None = None
    event: EventCount | None = None
    messages: Messages | None = None
    opened: Opened | None = None
    trait: Trait | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        self.kind()
        return self

    def kind(self) -> str:
        return _exactly_one(self, CONDITION_KINDS, "a condition")

    def part(self) -> Any:
        """The value under this condition's one key."""
        return getattr(self, _attr(self.kind()))

    def leaves(self) -> list[tuple[str, Any]]:
        """Every leaf condition inside, as (kind, model)."""
        kind, part = self.kind(), self.part()
        if kind in ("all", "any"):
            return [leaf for child in part for leaf in child.leaves()]
        if kind == "not":
            return part.leaves()
        return [(kind, part)]


def _refresh(value: Any) -> Any:
    """`refresh: "0 * * * *"` is a cron line; `refresh: {every: 1h}` an interval."""
    if isinstance(value, str):
        return {"cron": value}
    if isinstance(value, dict):
        return value
    raise ValueError(
        'refresh must be a cron line such as "0 * * * *" (UTC) or a mapping such as `every: 1h`'
    )


class Refresh(Model):
    """When the schedule re-evaluates the segment: a cron line (UTC) or an interval."""

    cron: str | None = None
    every: Window | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            check_cron(value)
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: int | None) -> int | None:
        if value is not None and value < 60:
            raise ValueError("refresh every must be at least 1m")
        return value

    @model_validator(mode="after")
    def _one(self) -> Refresh:
        _exactly_one(self, ("cron", "every"), "refresh")
        return self


class Segment(Condition):
    """One named segment: a condition, with a description and a refresh schedule."""

    description: Annotated[str, Field(max_length=500)] | None = None
    refresh: Annotated[Refresh, BeforeValidator(_refresh)] | None = None

    def every_seconds(self) -> int | None:
        """The refresh interval, when the schedule is one (the default: hourly)."""
        if self.refresh is None:
            return DEFAULT_EVERY
        return self.refresh.every


Condition.model_rebuild()
Segment.model_rebuild()
