"""Locale-aware Jinja filters: money, numbers, dates and plural word forms via Babel.

Templates must not hand-format `$1,234.50`: a Russian contact expects `1 234,50 ₽`, shown in
their own timezone, with the plural form their language needs ("21 балл", "5 баллов").
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache, wraps
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError, dates, numbers
from jinja2 import Undefined, pass_context
from jinja2.runtime import Context

from ..services.zones import zone_named

__all__ = ["Formats", "filters"]


def _defined(value: Any) -> Any:
    """Raise UndefinedError for Jinja `Undefined`, so a missing variable never renders as ""."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def _decimal(what: str, value: Any) -> Decimal:
    """Go through str() so 0.1 + 0.2 keeps its shortest repr, not the binary float's digits."""
    value = _defined(value)
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        result = None
    if result is None or not result.is_finite() or isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a number")
    return result


@dataclass(frozen=True)
class Formats:
    """How one contact wants values shown: locale, default currency and timezone."""

    locale: str
    currency: str = "USD"
    timezone: str = "UTC"
    _locale: Locale = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Fail when the contact's settings are read, not halfway through a template.
        try:  # Accept BCP 47 ("sr-Latn-RS") as well as Babel's "sr_Latn_RS".
            parsed = Locale.parse(str(self.locale).replace("-", "_"))
        except (ValueError, TypeError, UnknownLocaleError):
            raise ValueError(f"unknown locale {self.locale!r}") from None
        zone = zone_named(str(self.timezone))
        if zone is None:
            raise ValueError(f"unknown timezone {self.timezone!r}")
        object.__setattr__(self, "_locale", parsed)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "currency", _currency(self.currency))

    def money(self, value: Any, currency: str | None = None) -> str:
        code = self.currency if currency is None else _currency(currency)
        return _money(_decimal("money", value), code, self._locale)

    def number(self, value: Any, decimals: int | None = None) -> str:
        amount = _decimal("number", value)
        if decimals is None:
            return numbers.format_decimal(amount, locale=self._locale)
        if not isinstance(decimals, int) or isinstance(decimals, bool) or decimals < 0:
            raise ValueError(f"number: decimals must be a whole number >= 0, not {decimals!r}")
        # Keep the locale's grouping and separators; only pin the fraction digits.
        pattern = copy.copy(numbers.parse_pattern(self._locale.decimal_formats[None]))
        pattern.frac_prec = (decimals, decimals)
        return pattern.apply(amount, self._locale)

    def percent(self, value: Any) -> str:
        return numbers.format_percent(_decimal("percent", value), locale=self._locale)

    def date(self, value: Any, format: str = "medium") -> str:
        when = self._when("date", value)
        day = when.date() if isinstance(when, dt.datetime) else when
        return dates.format_date(day, format, locale=self._locale)

    def datetime(self, value: Any, format: str = "medium") -> str:
        when = self._instant("datetime", value)
        return dates.format_datetime(when, format, tzinfo=self._zone, locale=self._locale)

    def time(self, value: Any, format: str = "short") -> str:
        when = self._instant("time", value)
        return dates.format_time(when, format, tzinfo=self._zone, locale=self._locale)

    def plural(self, n: Any, **forms: str) -> str:
        """Pick the CLDR form of a word for `n`; "other" stands in for forms not given."""
        n = _defined(n)
        count = n if isinstance(n, int | float) and not isinstance(n, bool) else None
        category = self._locale.plural_form(_decimal("plural", n) if count is None else count)
        if category in forms:
            return forms[category]
        if "other" in forms:
            return forms["other"]
        raise ValueError(f"plural: no {category!r} or 'other' form given for {n!r}")

    def _when(self, what: str, value: Any) -> dt.datetime | dt.date:
        """A date as is, or a datetime in this contact's zone; naive datetimes are UTC."""
        value = _defined(value)
        if isinstance(value, str):
            with suppress(ValueError):  # date-only: a calendar day, no timezone shift
                return dt.date.fromisoformat(value.strip())
            try:
                value = dt.datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{what}: {value!r} is not an ISO-8601 date or time") from None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            try:
                value = dt.datetime.fromtimestamp(value, tz=dt.UTC)
            except (OverflowError, OSError, ValueError):
                raise ValueError(f"{what}: {value!r} is not a valid epoch timestamp") from None
        if isinstance(value, dt.datetime):
            aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
            return aware.astimezone(self._zone)
        if isinstance(value, dt.date):
            return value
        raise ValueError(f"{what}: {value!r} is not a date, time or timestamp")

    def _instant(self, what: str, value: Any) -> dt.datetime:
        """Like `_when`, but a bare date means its midnight in the contact's zone."""
        when = self._when(what, value)
        if isinstance(when, dt.datetime):
            return when
        return dt.datetime.combine(when, dt.time(), tzinfo=self._zone)


@lru_cache(maxsize=8192)
def _money(amount: Decimal, currency: str, locale: Locale) -> str:
    """Babel's currency formatting (~80 µs a call, a tenth of a cart email's render);
    prices repeat across a shop's messages, so each (amount, currency, locale) once."""
    return numbers.format_currency(amount, currency, locale=locale)


def _currency(code: Any) -> str:
    """Babel prints unknown codes verbatim; catch typos like "EUT" instead."""
    normalized = str(_defined(code)).strip().upper()
    if not numbers.is_currency(normalized):
        raise ValueError(f"unknown currency code {code!r}")
    return normalized


@lru_cache(maxsize=256)
def _formats(locale: str, currency: str, timezone: str) -> Formats:
    return Formats(locale, currency, timezone)


def _filter(method: Callable[..., str]) -> Callable[..., str]:
    """Wrap a Formats method as a filter that reads the contact's settings from `message`."""

    @pass_context
    @wraps(method)
    def apply(context: Context, value: Any, *args: Any, **kwargs: Any) -> str:
        message = context.get("message")
        settings: Mapping[str, Any] = message if isinstance(message, Mapping) else {}
        formats = _formats(
            str(settings.get("locale") or "en"),
            str(settings.get("currency") or "USD"),
            str(settings.get("timezone") or "UTC"),
        )
        return method(formats, value, *args, **kwargs)

    return apply


def filters() -> dict[str, Callable[..., str]]:
    """Jinja filters named money, number, percent, date, datetime, time, plural."""
    names = ("money", "number", "percent", "date", "datetime", "time", "plural")
    return {name: _filter(getattr(Formats, name)) for name in names}
