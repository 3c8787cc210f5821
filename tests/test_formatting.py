"""Locale-aware filters, as a contact in that locale reads them.

How a locale writes numbers, money and dates is CLDR's decision and changes between
Babel releases (Babel 2.19 gave Serbian dinars two decimals; 2.17 changed Serbian short
dates), so the expectations here take CLDR's data from the installed Babel: the locale's
own group and decimal symbols, its currency symbols, a currency's minor unit, its month
names and named styles. What is ours is asserted exactly: the contact's timezone
(through explicit patterns, which CLDR does not change), decimal-safe amounts, the
locale and currency chosen, fallbacks and errors.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel import Locale, dates, numbers
from jinja2 import StrictUndefined, Undefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.rendering.formatting import Formats, filters

RU = Formats("ru", "RUB", "Europe/Moscow")
US = Formats("en_US", "USD", "America/New_York")
SR = Formats("sr_Latn", "RSD", "Europe/Belgrade")
AR = Formats("ar", "EGP", "Africa/Cairo")

# 21:30 UTC on Sunday 10 March 2024: past midnight in Moscow, EDT (just begun) in New York.
INSTANT = dt.datetime(2024, 3, 10, 21, 30, tzinfo=dt.UTC)
EPOCH = 1710106200
# A pattern with no words in it: the same in every CLDR release.
ISO = "yyyy-MM-dd HH:mm:ss xxx"


# --- what CLDR says, read from the installed Babel -----------------------------------


def written(locale: str, value: str, places: int) -> str:
    """`value` rounded to `places` and written with the locale's own group and decimal
    symbols (every locale here groups by three)."""
    pattern = numbers.parse_pattern(Locale.parse(locale).decimal_formats[None])
    assert pattern.grouping == (3, 3), f"{locale} does not group by three"
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-places))
    whole, _, fraction = str(rounded).partition(".")
    text = f"{int(whole):,}".replace(",", numbers.get_group_symbol(locale))
    return text + (numbers.get_decimal_symbol(locale) + fraction if fraction else "")


def only_spacing(text: str) -> bool:
    """Nothing but spaces (NBSP, narrow NBSP) and direction marks (RLM, ALM)."""
    return all(unicodedata.category(c) in ("Zs", "Cf") for c in text)


def assert_money(text: str, locale: str, value: str, currency: str) -> None:
    """The amount with the currency's minor unit in the locale's digits, its symbol for the
    currency, and nothing else a reader would see."""
    digits = written(locale, value, numbers.get_currency_precision(currency))
    symbol = numbers.get_currency_symbol(currency, locale)
    assert digits in text, f"{text!r} should hold {digits!r} ({locale}, {currency})"
    assert symbol in text, f"{text!r} should hold {symbol!r} ({locale}, {currency})"
    rest = text.replace(digits, "", 1).replace(symbol, "", 1)
    assert only_spacing(rest), f"{text!r}: unexpected {rest!r} besides amount and symbol"


def assert_percent(text: str, locale: str, whole: str) -> None:
    sign = Locale.parse(locale).number_symbols["latn"]["percentSign"]
    assert whole in text and sign in text, text
    assert only_spacing(text.replace(whole, "", 1).replace(sign, "", 1)), text


def month(locale: str, number: int) -> str:
    """The month's name as the locale writes it in a date ("марта", "mart")."""
    return Locale.parse(locale).months["format"]["wide"][number]


def styled(locale: str, wall: dt.datetime, style: str, kind: str = "datetime") -> str:
    """Babel's named `style` for this wall-clock time in `locale`: the expectation is the
    local time written out by hand, so the timezone conversion is checked, not copied."""
    zone = wall.tzinfo or dt.UTC
    if kind == "date":
        return dates.format_date(wall.date(), style, locale=locale)
    if kind == "time":
        return dates.format_time(wall, style, tzinfo=zone, locale=locale)
    return dates.format_datetime(wall, style, tzinfo=zone, locale=locale)


# --- money and numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "locale", "value", "currency"),
    [
        (US, "en_US", "1234.5", "USD"),
        (RU, "ru", "5000", "RUB"),
        (SR, "sr_Latn", "12500", "RSD"),
        (AR, "ar", "1234.5", "EGP"),
        (Formats("ar", "SAR"), "ar", "99", "SAR"),
    ],
)
def test_money_in_each_locale(formats: Formats, locale: str, value: str, currency: str) -> None:
    text = formats.money(value)
    assert_money(text, locale, value, currency)
    assert text == formats.money(Decimal(value)) == formats.money(float(value))


def test_each_locale_writes_money_its_own_way() -> None:
    assert RU.money(5000) != US.money(5000, "RUB")
    assert SR.money(12500) != US.money(12500, "RSD")
    assert AR.money(1234.5) != US.money(1234.5, "EGP")


def test_money_currency_argument_overrides_default() -> None:
    assert_money(RU.money("19.99", "EUR"), "ru", "19.99", "EUR")
    assert_money(US.money(5, "eur"), "en_US", "5", "EUR")
    assert_money(SR.money(Decimal("1234.56"), "EUR"), "sr_Latn", "1234.56", "EUR")
    assert "₽" not in RU.money("19.99", "EUR")


def test_money_is_decimal_safe() -> None:
    assert_money(US.money(0.1 + 0.2), "en_US", "0.30", "USD")
    assert US.number(0.1 + 0.2) == written("en_US", "0.3", 1)
    # Decimal(2.675) is 2.67499…; going through str() keeps the 2.675 the author wrote.
    assert_money(US.money(2.675), "en_US", "2.68", "USD")


def test_number_and_percent() -> None:
    for formats, locale in ((US, "en_US"), (RU, "ru")):
        most = numbers.parse_pattern(Locale.parse(locale).decimal_formats[None]).frac_prec[1]
        assert formats.number(1234.5678) == written(locale, "1234.5678", most)
    # decimals= pins the fraction digits and keeps the locale's symbols.
    assert RU.number(1234.5, decimals=2) == written("ru", "1234.5", 2)
    assert SR.number("1234.567", 2) == written("sr_Latn", "1234.567", 2)
    assert US.number(3, 0) == "3"
    assert_percent(US.percent(0.25), "en_US", "25")
    assert_percent(RU.percent("0.25"), "ru", "25")


# --- dates and times -----------------------------------------------------------------


def test_datetime_is_shown_in_the_contacts_timezone() -> None:
    # Moscow is UTC+3 (past midnight), New York on EDT since that morning, Belgrade CET.
    assert RU.datetime(INSTANT, ISO) == "2024-03-11 00:30:00 +03:00"
    assert US.datetime(INSTANT, ISO) == "2024-03-10 17:30:00 -04:00"
    assert SR.datetime(INSTANT, ISO) == "2024-03-10 22:30:00 +01:00"
    assert AR.time(INSTANT, "HH:mm") == "23:30"
    moscow = dt.datetime(2024, 3, 11, 0, 30)
    assert RU.datetime(INSTANT) == styled("ru", moscow, "medium")
    assert RU.datetime(INSTANT, "short") == styled("ru", moscow, "short")
    assert RU.date(INSTANT) == styled("ru", moscow, "medium", "date")
    assert RU.time(INSTANT) == styled("ru", moscow, "short", "time")
    new_york = dt.datetime(2024, 3, 10, 17, 30, tzinfo=ZoneInfo("America/New_York"))
    assert US.datetime(INSTANT) == styled("en_US", new_york, "medium")
    assert US.datetime(INSTANT, "long") == styled("en_US", new_york, "long")
    assert US.time(INSTANT) == styled("en_US", new_york, "short", "time")
    assert SR.datetime(INSTANT, "short") == styled(
        "sr_Latn", dt.datetime(2024, 3, 10, 22, 30), "short"
    )
    assert AR.time(INSTANT) == styled("ar", dt.datetime(2024, 3, 10, 23, 30), "short", "time")


def test_datetime_accepts_iso_strings_epochs_naive_and_dates() -> None:
    for value in (
        "2024-03-10T21:30:00Z",
        "2024-03-10T23:30:00+02:00",
        EPOCH,
        float(EPOCH),
        dt.datetime(2024, 3, 10, 21, 30),  # naive means UTC
    ):
        assert US.datetime(value, ISO) == "2024-03-10 17:30:00 -04:00", value
        assert US.datetime(value) == US.datetime(INSTANT), value
    # A bare date is a calendar day: no timezone shift, and midnight for datetime.
    assert US.date("2024-03-10", "yyyy-MM-dd") == "2024-03-10"
    assert RU.date("2024-03-10", "long") == styled("ru", dt.datetime(2024, 3, 10), "long", "date")
    assert US.date(dt.date(2024, 3, 10)) == styled(
        "en_US", dt.datetime(2024, 3, 10), "medium", "date"
    )
    assert US.datetime("2024-03-10", ISO) == "2024-03-10 00:00:00 -05:00"


def test_cldr_patterns() -> None:
    assert RU.date(INSTANT, "d MMMM y") == f"11 {month('ru', 3)} 2024"
    assert US.time(INSTANT, "HH:mm") == "17:30"


def test_locale_ids_with_either_separator() -> None:
    day = dt.datetime(2024, 3, 10)
    for spelled in ("sr-Latn-RS", "sr_Latn_RS"):
        serbian = Formats(spelled)
        long_date = serbian.date("2024-03-10", "long")
        assert long_date == styled("sr_Latn_RS", day, "long", "date")
        # Latin script, not Serbian's default Cyrillic.
        assert month("sr_Latn_RS", 3) in long_date
        assert not re.search("[\u0400-\u04ff]", long_date), long_date
        assert_money(serbian.money(1, "RSD"), "sr_Latn_RS", "1", "RSD")
    assert_money(Formats("en-US").money(1), "en_US", "1", "USD")


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
        "{{ share | percent }} / {{ 1234.5 | number(2) }} / {{ event.timestamp | time }} / "
        "{{ event.timestamp | datetime('yyyy-MM-dd HH:mm') }}"
    )
    out = template.render(
        message=MOSCOW,
        item={"price": 1234.5},
        total="99.9",
        event={"timestamp": "2024-03-10T21:30:00Z"},
        points=21,
        share=0.25,
    )
    # Each filter is the Formats method for the contact's locale, currency and timezone.
    assert out == (
        f"{RU.money(1234.5)} / {RU.money('99.9', 'EUR')} / {RU.datetime(INSTANT, 'short')} / "
        f"{RU.date(INSTANT, 'long')} / 21 балл / {RU.percent(0.25)} / {RU.number(1234.5, 2)} / "
        f"{RU.time(INSTANT)} / 2024-03-11 00:30"
    )
    assert RU.money(1234.5) != US.money(1234.5)


def test_filters_default_to_en_usd_utc(env: ImmutableSandboxedEnvironment) -> None:
    template = env.from_string("{{ 5 | money }} {{ 0 | datetime }} {{ 0 | datetime('HH:mm xxx') }}")
    default = Formats("en", "USD", "UTC")
    expected = f"{default.money(5)} {default.datetime(0)} 00:00 +00:00"
    assert_money(default.money(5), "en", "5", "USD")
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
