"""Locale-aware filters: exact Babel 2.18 output, as a contact in that locale would read it.

Babel separates groups and units with non-breaking spaces (NBSP U+00A0, narrow NBSP U+202F)
and wraps Arabic amounts in right-to-left marks (U+200F); the strings below spell them out.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from jinja2 import StrictUndefined, Undefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.rendering.formatting import Formats, filters

NBSP = "\u00a0"
NNBSP = "\u202f"
RLM = "\u200f"
YEAR = f"{NNBSP}г."  # noqa: RUF001 - Cyrillic: the abbreviation of "year"

RU = Formats("ru", "RUB", "Europe/Moscow")
US = Formats("en_US", "USD", "America/New_York")
SR = Formats("sr_Latn", "RSD", "Europe/Belgrade")
AR = Formats("ar", "EGP", "Africa/Cairo")

# 21:30 UTC on Sunday 10 March 2024: past midnight in Moscow, EDT (just begun) in New York.
INSTANT = dt.datetime(2024, 3, 10, 21, 30, tzinfo=dt.UTC)
EPOCH = 1710106200


def test_money_in_each_locale() -> None:
    assert US.money(1234.5) == "$1,234.50"
    assert RU.money(5000) == f"5{NBSP}000,00{NBSP}₽"
    # RSD has no minor unit in CLDR, so dinars are whole and grouped with dots.
    assert SR.money("12500") == f"12.500{NBSP}RSD"
    assert AR.money(Decimal("1234.5")) == f"{RLM}1,234.50{NBSP}ج.م.{RLM}"
    assert Formats("ar", "SAR").money(99) == f"{RLM}99.00{NBSP}ر.س.{RLM}"


def test_money_currency_argument_overrides_default() -> None:
    assert RU.money("19.99", "EUR") == f"19,99{NBSP}€"
    assert US.money(5, "eur") == "€5.00"
    assert SR.money(Decimal("1234.56"), "EUR") == f"1.234,56{NBSP}€"


def test_money_is_decimal_safe() -> None:
    assert US.money(0.1 + 0.2) == "$0.30"
    assert US.number(0.1 + 0.2) == "0.3"
    # Decimal(2.675) is 2.67499…; going through str() keeps the 2.675 the author wrote.
    assert US.money(2.675) == "$2.68"


def test_number_and_percent() -> None:
    assert US.number(1234.5678) == "1,234.568"
    assert RU.number(1234.5678) == f"1{NBSP}234,568"
    assert RU.number(1234.5, decimals=2) == f"1{NBSP}234,50"
    assert SR.number("1234.567", 2) == "1.234,57"
    assert US.number(3, 0) == "3"
    assert US.percent(0.25) == "25%"
    assert RU.percent("0.25") == f"25{NBSP}%"


def test_datetime_is_shown_in_the_contacts_timezone() -> None:
    assert RU.datetime(INSTANT) == f"11 мар. 2024{YEAR}, 00:30:00"
    assert RU.datetime(INSTANT, "short") == "11.03.2024, 00:30"
    assert RU.date(INSTANT) == f"11 мар. 2024{YEAR}"
    assert RU.time(INSTANT) == "00:30"
    assert US.datetime(INSTANT) == f"Mar 10, 2024, 5:30:00{NNBSP}PM"
    assert US.datetime(INSTANT, "long") == f"March 10, 2024, 5:30:00{NNBSP}PM EDT"
    assert US.time(INSTANT) == f"5:30{NNBSP}PM"
    assert SR.datetime(INSTANT, "short") == "10. 3. 2024. 22:30"
    assert AR.time(INSTANT) == "11:30 م"


def test_datetime_accepts_iso_strings_epochs_naive_and_dates() -> None:
    expected = f"Mar 10, 2024, 5:30:00{NNBSP}PM"
    assert US.datetime("2024-03-10T21:30:00Z") == expected
    assert US.datetime("2024-03-10T23:30:00+02:00") == expected
    assert US.datetime(EPOCH) == expected
    assert US.datetime(float(EPOCH)) == expected
    assert US.datetime(dt.datetime(2024, 3, 10, 21, 30)) == expected  # naive means UTC
    # A bare date is a calendar day: no timezone shift, and midnight for datetime.
    assert RU.date("2024-03-10", "long") == f"10 марта 2024{YEAR}"
    assert US.date(dt.date(2024, 3, 10)) == "Mar 10, 2024"
    assert US.datetime("2024-03-10") == f"Mar 10, 2024, 12:00:00{NNBSP}AM"


def test_cldr_patterns() -> None:
    assert RU.date(INSTANT, "d MMMM y") == "11 марта 2024"
    assert US.time(INSTANT, "HH:mm") == "17:30"


def test_locale_ids_with_either_separator() -> None:
    assert Formats("sr-Latn-RS").date("2024-03-10", "long") == "10. mart 2024."
    assert Formats("sr_Latn_RS").money(1, "RSD") == f"1{NBSP}RSD"
    assert Formats("en-US").money(1) == "$1.00"


def test_plural_russian() -> None:
    forms = {"one": "балл", "few": "балла", "many": "баллов", "other": "балла"}
    words = {n: RU.plural(n, **forms) for n in (1, 2, 5, 21, 11)}
    assert words == {1: "балл", 2: "балла", 5: "баллов", 21: "балл", 11: "баллов"}
    assert RU.plural(1.5, **forms) == "балла"


def test_plural_english_and_serbian() -> None:
    assert US.plural(1, one="point", other="points") == "point"
    assert US.plural(2, one="point", other="points") == "points"
    assert US.plural("0", one="point", other="points") == "points"
    forms = {"one": "poen", "few": "poena", "other": "poena"}
    assert [SR.plural(n, **forms) for n in (1, 3, 21, 11)] == ["poen", "poena", "poen", "poena"]


def test_plural_arabic_has_six_categories() -> None:
    forms = {c: c for c in ("zero", "one", "two", "few", "many", "other")}
    got = [AR.plural(n, **forms) for n in (0, 1, 2, 3, 11, 100)]
    assert got == ["zero", "one", "two", "few", "many", "other"]


def test_plural_missing_category_falls_back_to_other() -> None:
    assert RU.plural(5, one="балл", other="баллов") == "баллов"
    with pytest.raises(ValueError, match="'many' or 'other'"):
        RU.plural(5, one="балл", few="балла")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: US.money("abc"), "money: 'abc' is not a number"),
        (lambda: US.money(float("nan")), "money: nan is not a number"),
        (lambda: US.number(True), "number: True is not a number"),
        (lambda: US.percent(None), "percent: None is not a number"),
        (lambda: US.number(1, -1), "number: decimals must be a whole number >= 0, not -1"),
        (lambda: US.money(1, "EUT"), "unknown currency code 'EUT'"),
        (lambda: US.date("yesterday"), "date: 'yesterday' is not an ISO-8601 date or time"),
        (lambda: US.time(1e20), "time: 1e+20 is not a valid epoch timestamp"),
        (lambda: US.datetime([2024]), "datetime: [2024] is not a date"),
        (lambda: Formats("en", "XYZ"), "unknown currency code 'XYZ'"),
        (lambda: Formats("en", timezone="Mars/Olympus"), "unknown timezone 'Mars/Olympus'"),
        (lambda: Formats("xx"), "unknown locale 'xx'"),
        (lambda: Formats("en-"), "unknown locale 'en-'"),
    ],
)
def test_bad_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@pytest.fixture
def env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    env.filters.update(filters())
    return env


MOSCOW = {"locale": "ru", "currency": "RUB", "timezone": "Europe/Moscow"}


def test_filters_in_a_sandboxed_template(env: ImmutableSandboxedEnvironment) -> None:
    template = env.from_string(
        "{{ item.price | money }} / {{ total | money('EUR') }} / "
        "{{ event.timestamp | datetime('short') }} / {{ event.timestamp | date('long') }} / "
        "{{ points | number }} "
        "{{ points | plural(one='балл', few='балла', many='баллов', other='балла') }} / "
        "{{ share | percent }} / {{ 1234.5 | number(2) }} / {{ event.timestamp | time }}"
    )
    out = template.render(
        message=MOSCOW,
        item={"price": 1234.5},
        total="99.9",
        event={"timestamp": "2024-03-10T21:30:00Z"},
        points=21,
        share=0.25,
    )
    assert out == (
        f"1{NBSP}234,50{NBSP}₽ / 99,90{NBSP}€ / 11.03.2024, 00:30 / 11 марта 2024{YEAR} / "
        f"21 балл / 25{NBSP}% / 1{NBSP}234,50 / 00:30"
    )


def test_filters_default_to_en_usd_utc(env: ImmutableSandboxedEnvironment) -> None:
    template = env.from_string("{{ 5 | money }} {{ 0 | datetime }}")
    expected = f"$5.00 Jan 1, 1970, 12:00:00{NNBSP}AM"
    assert template.render() == expected
    assert template.render(message={"locale": None, "currency": None}) == expected


def test_filters_reject_bad_settings(env: ImmutableSandboxedEnvironment) -> None:
    with pytest.raises(ValueError, match="unknown timezone 'Moscow'"):
        env.from_string("{{ 0 | date }}").render(message={"timezone": "Moscow"})


@pytest.mark.parametrize(
    "source",
    [
        "{{ missing | money }}",
        "{{ missing | number(2) }}",
        "{{ missing | date }}",
        "{{ missing | plural(other='x') }}",
        "{{ 1 | money(missing) }}",
    ],
)
def test_strict_undefined_is_not_formatted(env: ImmutableSandboxedEnvironment, source: str) -> None:
    with pytest.raises(UndefinedError):
        env.from_string(source).render(message=MOSCOW)


def test_lenient_undefined_still_raises() -> None:
    with pytest.raises(UndefinedError):
        RU.money(Undefined(name="price"))
