"""A simulation's scenario: who the synthetic shoppers are and how they behave.

Every field has a default, so `journeys simulate JOURNEY` needs no file at all; a
journey's own scenario lives in `journeys/scenarios/<journey>.yaml` (the loader skips
that folder), and `--scenario FILE` names another. Probabilities are chances between 0
and 1; delays are a fixed duration (`3h`), uniform (`{min: 1h, max: 2d}`) or
exponential (`{mean: 6h}`). Mistakes are reported with file:line:column, as in journeys.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .durations import DurationError, parse_duration
from .problems import JourneyError
from .pydantic_errors import error_message
from .source import read_source, show

SCENARIOS_FOLDER = "scenarios"
MAX_CONTACTS = 100_000
MAX_DAYS = 366
MAX_PLANNED_ENTRIES = 1_000_000  # entry events a scenario may plan (memory, CI time)


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a chance between 0 and 1 (such as 0.25), not yes/no")
    return value


Chance = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, le=1)]
Weights = dict[str, Annotated[float, Field(ge=0)]]
DELAY_KEYS = ("fixed", "min", "max", "mean")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from None


class Delay(_Model):
    """How long after the message (or the entry) something happens."""

    fixed: int | None = None  # seconds
    min: int | None = None
    max: int | None = None
    mean: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return {"fixed": _seconds(value)}
        if isinstance(value, dict):
            return {
                k: _seconds(v) if k in ("fixed", "min", "max", "mean") else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> Delay:
        uniform = self.min is not None or self.max is not None
        shapes = sum((self.fixed is not None, uniform, self.mean is not None))
        if shapes != 1:
            raise ValueError("a delay is a duration (3h), {min: 1h, max: 2d} or {mean: 6h}")
        if uniform and (self.min is None or self.max is None or self.min > self.max):
            raise ValueError("a uniform delay needs min and max, with min no more than max")
        return self

    def draw(self, rng: random.Random) -> float:
        """Seconds."""
        if self.fixed is not None:
            return float(self.fixed)
        if self.mean is not None:
            return min(rng.expovariate(1 / max(self.mean, 1)), 30 * 86400.0)
        assert self.min is not None and self.max is not None
        return rng.uniform(self.min, self.max)


class Reaction(_Model):
    """A chance that something happens, and after how long."""

    chance: Chance = 0.0
    after: Delay = Delay(fixed=3600)


class Reply(Reaction):
    """An SMS reply: which texts, with their weights (STOP opts out, as on Twilio)."""

    texts: Weights = {"Thanks!": 1.0}


class Purchase(Reaction):
    """An order: its revenue is the cart's (from the catalogue) unless a range is given."""

    revenue: tuple[float, float] | None = None

    @field_validator("revenue")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 <= value[0] <= value[1]:
            raise ValueError("revenue is a range [lowest, highest], with 0 <= lowest <= highest")
        return value


class ChannelBehaviour(_Model):
    """What a recipient does with one message on this channel. Chances of open, click
    and buy are each of the message's recipients; a click implies the open."""

    delivered: Chance = 1.0
    bounced: Chance = 0.0
    opened: Reaction = Reaction()
    clicked: Reaction = Reaction()
    unsubscribed: Reaction = Reaction()
    replied: Reply = Reply()
    bought: Purchase = Purchase()


DEFAULT_BEHAVIOUR: dict[str, ChannelBehaviour] = {
    "email": ChannelBehaviour(
        delivered=0.98,
        bounced=0.01,
        opened=Reaction(chance=0.45, after=Delay(min=600, max=6 * 3600)),
        clicked=Reaction(chance=0.12, after=Delay(min=600, max=8 * 3600)),
        unsubscribed=Reaction(chance=0.005, after=Delay(fixed=1800)),
        bought=Purchase(chance=0.08, after=Delay(min=3600, max=2 * 86400)),
    ),
    "push": ChannelBehaviour(
        opened=Reaction(chance=0.2, after=Delay(min=60, max=3600)),
        bought=Purchase(chance=0.05, after=Delay(min=600, max=86400)),
    ),
    "sms": ChannelBehaviour(
        replied=Reply(chance=0.02, after=Delay(min=60, max=3600), texts={"STOP": 1, "Thanks": 1}),
        bought=Purchase(chance=0.06, after=Delay(min=600, max=86400)),
    ),
}


class Product(_Model):
    product_id: str
    name: str
    price: Annotated[float, Field(ge=0)]
    category: str | None = None


DEFAULT_CATALOGUE = (
    Product(product_id="sku-101", name="Linen shirt", price=45, category="clothing"),
    Product(product_id="sku-102", name="Canvas sneakers", price=70, category="shoes"),
    Product(product_id="sku-103", name="Wool scarf", price=30, category="accessories"),
    Product(product_id="sku-104", name="Leather bag", price=120, category="accessories"),
    Product(product_id="sku-105", name="Rain jacket", price=95, category="clothing"),
)


class Entry(_Model):
    """An event that enters contacts into journeys. Without `properties`, a cart event
    carries one catalogue product (name, price, product_id, products, cart_id) and an
    `Order Completed` an order for one; `buys` is a purchase of the same cart that no
    message caused (the shoppers who would have bought anyway)."""

    event: Annotated[str, Field(min_length=1, max_length=200)]
    share: Chance = 1.0
    times: Annotated[int, Field(ge=1, le=50)] = 1
    properties: dict[str, Any] | None = None
    buys: Purchase = Purchase()


class Population(_Model):
    locales: Weights = {"en": 0.7, "ru": 0.3}
    timezones: Weights = {"Europe/London": 0.4, "Europe/Moscow": 0.3, "America/New_York": 0.3}
    # Share of contacts with an email address, an app install (push token), a phone.
    channels: dict[str, Chance] = {"email": 0.95, "push": 0.5, "sms": 0.4}
    # Share of those with the channel who said yes to marketing on it.
    consent: dict[str, Chance] = {"email": 0.9, "push": 0.9, "sms": 0.8}
    traits: dict[str, Weights] = {"tier": {"gold": 0.1, "silver": 0.3, "none": 0.6}}

    @field_validator("locales", "timezones")
    @classmethod
    def _some_weight(cls, weights: dict[str, float]) -> dict[str, float]:
        if not any(w > 0 for w in weights.values()):
            raise ValueError("give at least one a weight above 0, e.g. {en: 1}")
        return weights

    @field_validator("timezones")
    @classmethod
    def _zones(cls, zones: dict[str, float]) -> dict[str, float]:
        for name in zones:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin"
                ) from None
        return zones

    @field_validator("channels", "consent")
    @classmethod
    def _channel_names(cls, shares: dict[str, float]) -> dict[str, float]:
        return _known_channels(shares)


class Scenario(_Model):
    contacts: Annotated[int, Field(ge=1, le=MAX_CONTACTS)] = 300
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 30
    seed: int = 1
    # When simulated time starts (UTC). Default: the next Monday, 00:00 UTC.
    start: datetime | None = None
    # Entries are spread evenly over this first part of the period (default: half of
    # it), so the later runs have time to play out; `1h` makes them nearly all at once.
    entries_over: int | None = None  # seconds
    population: Population = Population()
    catalogue: Annotated[list[Product], Field(min_length=1, max_length=10_000)] = list(
        DEFAULT_CATALOGUE
    )
    # The currency of carts and orders (ISO 4217); default: none named, as most shops send.
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    # default: each journey's own trigger event
    entries: Annotated[list[Entry], Field(max_length=20)] | None = None
    behaviour: dict[str, ChannelBehaviour] = {}
    # Each order is delivered (`Order Delivered`) with this chance, after this long.
    deliveries: Reaction = Reaction(chance=0.95, after=Delay(min=2 * 86400, max=5 * 86400))
    # Per step id, per channel: what recipients do with that one message.
    steps: dict[str, dict[str, ChannelBehaviour]] = {}

    @model_validator(mode="after")
    def _bounded(self) -> Scenario:
        planned = self.contacts * sum(e.times for e in self.entries or [])
        if planned > MAX_PLANNED_ENTRIES:
            raise ValueError(
                f"the entries plan {planned:,} events (contacts x times): at most "
                f"{MAX_PLANNED_ENTRIES:,}; fewer contacts or fewer times"
            )
        return self

    @field_validator("entries_over", mode="before")
    @classmethod
    def _entries_over(cls, value: Any, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        seconds = _seconds(value)
        days = info.data.get("days")
        if isinstance(days, int) and seconds > days * 86400:
            raise ValueError(f"entries_over is longer than the {days} days simulated")
        return seconds

    @field_validator("behaviour")
    @classmethod
    def _behaviour_channels(cls, value: dict[str, ChannelBehaviour]) -> dict[str, Any]:
        return _known_channels(value)

    @field_validator("steps")
    @classmethod
    def _step_channels(cls, value: dict[str, dict[str, Any]]) -> dict[str, Any]:
        for by_channel in value.values():
            _known_channels(by_channel)
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)  # 00:00 UTC
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start needs a timezone, e.g. 2027-01-04T00:00:00Z")
        return value.astimezone(UTC) if value is not None else None

    def behaviour_for(self, step: str, channel: str) -> ChannelBehaviour:
        own = self.steps.get(step, {}).get(channel)
        if own is not None:
            return own
        return self.behaviour.get(channel) or DEFAULT_BEHAVIOUR.get(channel) or ChannelBehaviour()


def _known_channels(by_channel: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(by_channel) - {"email", "push", "sms"})
    if unknown:
        raise ValueError(f"unknown channel {unknown[0]!r}: expected email, push or sms")
    return by_channel


def load_scenario(path: Path) -> Scenario:
    """The scenario in `path`; JourneyError listing every problem with its position."""
    try:
        source = read_source(path)
    except JourneyError as exc:
        if any(p.message.startswith("the file is empty") for p in exc.problems):
            return Scenario()  # comments only: every default
        raise
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise JourneyError([source.problem((), "expected a mapping (contacts:, days:, ...)")])
    bare = list(_bare_numbers(data, ()))
    if bare:
        raise JourneyError(
            [
                source.problem(
                    path, f"duration {value!r} has no unit: write {value}m, {value}h or {value}d"
                )
                for path, value in bare
            ]
        )
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
            kind = error["type"]
            if kind == "extra_forbidden":
                message = f"unknown key {show(loc[-1])}"
            elif kind == "missing":
                message = f"missing required key {show(loc[-1])}"
            else:
                field = str(loc[-1]) if loc else "scenario"
                message = error_message(
                    kind, error["msg"], error.get("ctx") or {}, error["input"], field
                )
            problems.append(source.problem(loc, message, key=kind == "extra_forbidden"))
        raise JourneyError(sorted(set(problems), key=lambda p: (p.line, p.column))) from None


def _bare_numbers(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Durations written as plain numbers (`after: 10`): 10 what? (0 is fine.)"""
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, key)
            timed = key in ("after", "entries_over") or (
                key in DELAY_KEYS and path and path[-1] == "after"
            )
            if timed and _number(value) and value != 0:
                yield here, value
            yield from _bare_numbers(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _bare_numbers(value, (*path, index))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def scenario_for(journeys_dir: Path, journey_ids: list[str]) -> tuple[Scenario, Path | None]:
    """The scenario of the first journey that has one in `journeys/scenarios/`, else
    the defaults."""
    for journey_id in journey_ids:
        for suffix in (".yaml", ".yml"):
            path = journeys_dir / SCENARIOS_FOLDER / f"{journey_id}{suffix}"
            if path.is_file():
                return load_scenario(path), path
    return Scenario(), None
