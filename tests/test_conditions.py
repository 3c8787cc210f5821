"""The condition language of `if:` and `where:`: what it computes, and what it refuses.

Conditions come from YAML files anyone on the marketing team may edit, so
the safety table matters as much as the truth table: every escape hatch
Python offers must be refused when the journey is loaded, not when it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.dsl.conditions import ConditionError, evaluate, parse

CONTEXT: dict[str, Any] = {
    "contact": {
        "traits": {
            "first_name": "Ada",
            "country": "FR",
            "age": 36,
            "vip": True,
            "tags": ["beta", "newsletter"],
            "score": 7.5,
        },
    },
    "event": {
        "name": "Order Completed",
        "properties": {"total": 120, "currency": "EUR", "products": [{"sku": "A1"}, {"sku": "B2"}]},
    },
    "journey": {"vars": {"variant": "a"}},
}

TRUTH = [
    # equality and ordering
    ('contact.traits.country == "FR"', True),
    ('contact.traits.country != "FR"', False),
    ('contact.traits.country != "XX"', True),
    ("contact.traits.age < 40", True),
    ("contact.traits.age <= 36", True),
    ("contact.traits.age > 36", False),
    ("contact.traits.age >= 36", True),
    ("18 <= contact.traits.age < 65", True),
    ("contact.traits.score == 7.5", True),
    # membership
    ('"beta" in contact.traits.tags', True),
    ('"alpha" in contact.traits.tags', False),
    ('"alpha" not in contact.traits.tags', True),
    ('journey.vars.variant in ["a", "b"]', True),
    ('journey.vars.variant in ("c", "d")', False),
    ('"Ad" in contact.traits.first_name', True),
    ('"first_name" in contact.traits', True),
    ("1 in contact.traits.first_name", False),  # not a string: no match, no error
    # boolean logic
    ("contact.traits.vip and contact.traits.age > 30", True),
    ("contact.traits.vip and contact.traits.age > 50", False),
    ("contact.traits.age > 50 or contact.traits.vip", True),
    ("not contact.traits.vip", False),
    ("not contact.traits.missing", True),
    ("true and not false", True),
    ("True and not False", True),
    ("contact.traits.vip == true", True),
    # arithmetic
    ("event.properties.total * 2 == 240", True),
    ("event.properties.total + 30 == 150", True),
    ("event.properties.total - 20 == 100", True),
    ("event.properties.total / 4 == 30", True),
    ("event.properties.total % 7 == 1", True),
    ("-contact.traits.age < 0", True),
    ("event.properties.total / 0 == null", True),  # division by zero is null
    ("contact.traits.first_name + 1 == null", True),  # str + int is null
    # functions
    ("len(event.properties.products) > 1", True),
    ("len(contact.traits.first_name) == 3", True),
    ("len(contact.traits.age) == 0", True),  # len of a number is 0
    ('lower(contact.traits.country) == "fr"', True),
    ('upper(event.properties.currency) == "EUR"', True),
    ("lower(contact.traits.age) == 36", True),  # not a string: unchanged
    # missing keys are null, which equals only null and fails every ordering
    ("contact.traits.missing == null", True),
    ("contact.traits.missing.deeper == null", True),
    ('contact.traits.missing != "x"', True),
    ("contact.traits.missing > 0", False),
    ("contact.traits.missing < 0", False),
    ("not (contact.traits.missing <= 0)", True),
    ("event.properties.missing in [1, 2]", False),
    ("contact.nothing.traits.age == null", True),
    # type mismatches in ordering are false, never an error
    ('contact.traits.age < "40"', False),
    ('contact.traits.age > "40"', False),
    ("contact.traits.tags > 1", False),
    ('contact.traits.age == "36"', False),
    # list index and key subscripts
    ('event.properties.products[0].sku == "A1"', True),
    ("event.properties.products[5].sku == null", True),  # out of range is null
    ('event.properties["currency"] == "EUR"', True),
    ('contact["traits"]["age"] == 36', True),
    ('contact["__class__"] == null', True),  # a key lookup, never an attribute
    ("contact.traits.first_name[0] == null", True),  # strings are not indexable
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=t) for t, e in TRUTH])
def test_truth_table(text: str, expected: bool) -> None:
    assert evaluate(text, CONTEXT) is expected


def test_and_or_short_circuit_and_the_result_is_a_bool() -> None:
    assert evaluate("contact.traits.missing and len(contact.traits.missing.x) == 0", {}) is False
    assert evaluate("contact.traits.first_name or false", CONTEXT) is True


def test_empty_context_is_all_null() -> None:
    assert evaluate("contact.traits.country == null", {}) is True
    assert evaluate('contact.traits.country != "XX"', {}) is True


ONLY_FUNCTIONS = (
    "only the functions len, lower, upper, number, coalesce, today, date, days_since, "
    "days_until, years_since may be called"
)
SAFETY = [
    ("__import__('os')", ONLY_FUNCTIONS),
    ("__import__('os').system('id')", ONLY_FUNCTIONS),
    ("().__class__", "attribute '__class__' is not allowed"),
    ("contact.__class__", "attribute '__class__' is not allowed"),
    ("[].__class__.__mro__", "attribute '__mro__' is not allowed"),
    ("contact.traits.__dict__", "attribute '__dict__' is not allowed"),
    ("lower.__globals__", "attribute '__globals__' is not allowed"),
    ("contact._private", "attribute '_private' is not allowed"),
    ("lambda: 1", "lambda expressions are not allowed in conditions"),
    ("contact.x if contact.y else 1", "ifexp expressions are not allowed in conditions"),
    ("[t for t in contact.tags]", "listcomp expressions are not allowed in conditions"),
    ("{t for t in contact.tags}", "setcomp expressions are not allowed in conditions"),
    ("{k: 1 for k in contact}", "dictcomp expressions are not allowed in conditions"),
    ("any(t for t in contact.tags)", ONLY_FUNCTIONS),
    ('"{0.__globals__}".format(1)', ONLY_FUNCTIONS),
    ("contact.name.format_map(contact)", ONLY_FUNCTIONS),
    ('f"{contact}"', "joinedstr expressions are not allowed in conditions"),
    ("(x := 1)", "namedexpr expressions are not allowed in conditions"),
    ("getattr(contact, 'x')", ONLY_FUNCTIONS),
    ("open('/etc/passwd')", ONLY_FUNCTIONS),
    ("eval('1')", ONLY_FUNCTIONS),
    ("contact.items()", ONLY_FUNCTIONS),
    ("len(contact, 1)", "len() takes exactly one argument"),
    ("len(obj=contact)", ONLY_FUNCTIONS),
    ("9 ** 9 ** 9", "binop expressions are not allowed in conditions"),
    ("1 << 100000", "binop expressions are not allowed in conditions"),
    ("~1", "unaryop expressions are not allowed in conditions"),
    ("contact.tags[0:1]", "subscript expressions are not allowed in conditions"),
    ("contact.tags[contact.i]", "subscript expressions are not allowed in conditions"),
    ("{'a': 1}", "dict expressions are not allowed in conditions"),
    ("b'bytes'", "constant expressions are not allowed in conditions"),
    ("...", "constant expressions are not allowed in conditions"),
    ("await contact", "await expressions are not allowed in conditions"),
    (
        "os.system",
        "unknown name 'os': expected one of contact, event, trigger, journey or true, false, null",
    ),
    ("import os", "invalid condition 'import os': invalid syntax"),
    (
        "contact.x = 1",
        "invalid condition 'contact.x = 1': a single = does not compare; write == to test "
        "equality (contact.x == 1)",
    ),
    (
        'lower(contact.traits.tier) = "=gold" or event.name = "Order Completed"',
        'invalid condition \'lower(contact.traits.tier) = "=gold" or event.name = "Order '
        "Completed\"': a single = does not compare; write == to test equality "
        '(lower(contact.traits.tier) == "=gold" or event.name == "Order Completed")',
    ),
    ("contact.x = = 1", "invalid condition 'contact.x = = 1': invalid syntax"),
    ("contact; 1", "invalid condition 'contact; 1': invalid syntax"),
    ("x" * 1001, "condition is longer than 1000 characters"),
]


@pytest.mark.parametrize(("text", "message"), [pytest.param(t, m, id=t[:40]) for t, m in SAFETY])
def test_unsafe_conditions_are_refused_at_parse_time(text: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("contact.x == 1 and foo", 19),
        ("contact.x == 1 and len(contact, 1)", 19),
        ("contact.x = 1", 10),
        ("len(contact.tags) > 0 and contact.__class__", 26),
    ],
)
def test_errors_carry_the_column_of_the_offending_part(text: str, offset: int) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(text)
    assert caught.value.offset == offset


def test_unknown_root_name_is_refused() -> None:
    with pytest.raises(ConditionError, match="unknown name 'unknown_root_is_refused'"):
        parse("unknown_root_is_refused == null")


def test_a_parsed_condition_is_only_ever_interpreted() -> None:
    """Even a key named like a dunder is a dict lookup: no Python object is reachable."""
    context = {"contact": {"__class__": "plain data", "traits": {"__globals__": 1}}}
    assert evaluate('contact["__class__"] == "plain data"', context) is True
    assert evaluate('contact.traits["__globals__"] == 1', context) is True


def test_repetition_cannot_exhaust_memory() -> None:
    assert evaluate('"x" * 1000000000 == null', {}) is True
    assert evaluate("len([1] * 100000000) == 0", {}) is True
    assert evaluate('"ab" * 3 == "ababab"', {}) is True


def test_a_trait_cannot_turn_arithmetic_into_string_formatting() -> None:
    """A storefront sends traits; `%` on text would be Python's formatting operator, where
    twelve characters build a 100 MB string (or raise). Arithmetic is on numbers only."""
    context = {"contact": {"traits": {"score": "%0100000000d", "bad": "%y", "n": 7}}}
    assert evaluate("contact.traits.score % 2 == null", context) is True
    assert evaluate("contact.traits.bad % 2 == null", context) is True
    assert evaluate('contact.traits.score - 1 == null and "a" / 2 == null', context) is True
    assert evaluate("contact.traits.n % 2 == 1 and contact.traits.n * 2 == 14", context) is True


# --- dates ----------------------------------------------------------------------------

# 2027-02-28 11:30 UTC is already 1 March 00:30 in Auckland (UTC+13 in summer) and
# still 28 February 11:30 in Lisbon (UTC+0 in winter).
NOW = datetime(2027, 2, 28, 11, 30, tzinfo=UTC)


def in_zone(zone: str | None, **traits: Any) -> dict[str, Any]:
    return {"contact": {"timezone": zone, "traits": traits}}


@pytest.mark.parametrize(
    ("zone", "today"),
    [
        ("Pacific/Auckland", "2027-03-01"),
        ("Europe/Lisbon", "2027-02-28"),
        ("America/Los_Angeles", "2027-02-28"),  # 03:30 there
        (None, "2027-02-28"),  # no timezone: the default zone, UTC here
        ("Mars/Olympus_Mons", "2027-02-28"),  # not a zone: as if none
    ],
)
def test_today_is_the_date_in_the_contacts_own_timezone(zone: str | None, today: str) -> None:
    assert evaluate(f'today() == "{today}"', in_zone(zone), now=NOW)


def test_a_contact_without_a_timezone_gets_the_default_zone() -> None:
    assert evaluate(
        'today() == "2027-03-01"', in_zone(None), now=NOW, default_zone="Pacific/Auckland"
    )
    assert evaluate(
        'today() == "2027-02-28"',
        in_zone("Europe/Lisbon"),
        now=NOW,
        default_zone="Pacific/Auckland",
    )


@pytest.mark.parametrize(
    ("expression", "auckland", "lisbon"),
    [
        # Signed up at 23:30 UTC on the 20th: the 21st in Auckland, the 20th in Lisbon;
        # 8 days to Auckland's 1 March and to Lisbon's 28 February (February has 28).
        ("days_since(contact.traits.signed_up_at)", 8, 8),
        ("date(contact.traits.signed_up_at) == '2027-02-21'", True, False),
        ("days_until(contact.traits.trial_ends)", 0, 1),  # trial_ends: 2027-03-01
        ("contact.traits.trial_ends > today()", False, True),  # ISO text against a date
        ("date(contact.traits.trial_ends) <= today()", True, False),
        # Born on 29 February 2000: 27 on 28 February 2027, a year without a 29th.
        ("years_since(contact.traits.birthday)", 27, 27),
        # Born on 1 March 2000: 27 on Auckland's 1 March, still 26 on Lisbon's 28 February.
        ("years_since(contact.traits.born)", 27, 26),
        ("days_since(contact.traits.missing)", None, None),
        ("days_since(contact.traits.nonsense)", None, None),
        ("days_since(contact.traits.missing) > 3", False, False),
        ("contact.traits.nonsense < today()", False, False),
    ],
)
def test_date_functions_count_days_and_years_by_hand(
    expression: str, auckland: Any, lisbon: Any
) -> None:
    traits = {
        "signed_up_at": "2027-02-20T23:30:00Z",
        "trial_ends": "2027-03-01",
        "birthday": "2000-02-29",
        "born": "2000-03-01",
        "nonsense": "next tuesday",
    }
    if isinstance(auckland, bool) or auckland is None:
        for zone, expected in (("Pacific/Auckland", auckland), ("Europe/Lisbon", lisbon)):
            holds = evaluate(expression, in_zone(zone, **traits), now=NOW)
            assert holds is bool(expected), (zone, expression)
    else:
        for zone, expected in (("Pacific/Auckland", auckland), ("Europe/Lisbon", lisbon)):
            assert evaluate(f"{expression} == {expected}", in_zone(zone, **traits), now=NOW)


def test_a_29_february_birthday_counts_its_year_on_29_february_in_a_leap_year() -> None:
    leap_28 = datetime(2028, 2, 28, 12, tzinfo=UTC)
    leap_29 = datetime(2028, 2, 29, 12, tzinfo=UTC)
    context = in_zone("UTC", birthday="2000-02-29")
    assert evaluate("years_since(contact.traits.birthday) == 27", context, now=leap_28)
    assert evaluate("years_since(contact.traits.birthday) == 28", context, now=leap_29)


def test_a_timestamp_without_an_offset_is_utc_and_a_bare_date_is_that_date() -> None:
    context = in_zone("America/Los_Angeles", seen="2027-02-28T05:00:00", day="20270227")
    assert evaluate("date(contact.traits.seen) == '2027-02-27'", context, now=NOW)
    assert evaluate("days_since(contact.traits.day) == 1", context, now=NOW)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("today(1) == 1", "today() takes no arguments"),
        ('date("2027-02-30") < today()', "date('2027-02-30'): not a date; write it as YYYY-MM-DD"),
        ("days_since(30) > 1", "days_since(30): not a date"),
        ("days_since(contact.traits.a, 2) > 1", "days_since() takes exactly one argument"),
        ("days_sinse(contact.traits.a) > 1", "did you mean days_since()?"),
        (
            'years_since(contact.traits.born) >= "18"',
            "years_since() is a whole number: compare it with a number, such as 18, "
            "not the text '18'",
        ),
        (
            'today() >= "2027-02-30"',
            "today() is a date, and '2027-02-30' is not one: write dates as YYYY-MM-DD",
        ),
        (
            "today() + 1 > today()",
            "today() is a date, and dates are not added to or subtracted from: count days "
            "with days_since() or days_until()",
        ),
        (
            'days_since("2026-5-1") > 1',
            "days_since('2026-5-1'): not a date; write it as YYYY-MM-DD "
            '(days_since("2027-01-15"))',
        ),
        (
            'today() in ["2027-12-25", "christmas"]',
            "today() is a date, and 'christmas' is not one: write dates as YYYY-MM-DD",
        ),
        (
            "today() in [20271225]",
            'today() is a date: compare it with a date or ISO text such as "2027-01-15", '
            "not the number 20271225",
        ),
        (
            'days_until(contact.traits.renews) in ["1", "3"]',
            "days_until() is a whole number: compare it with a number, such as 1, not the text '1'",
        ),
        (
            "today() > 2027",
            'today() is a date: compare it with a date or ISO text such as "2027-01-15", '
            "not the number 2027; to count days, use days_since() or days_until()",
        ),
    ],
)
def test_date_mistakes_are_refused_with_what_to_write(expression: str, message: str) -> None:
    with pytest.raises(ConditionError) as raised:
        parse(expression)
    assert message in str(raised.value)


def test_timestamps_past_the_calendars_ends_are_no_dates_not_errors() -> None:
    """An exception here would fail the run's activity: a trait is anyone's to set."""
    for value in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"):
        context = in_zone("Pacific/Kiritimati", d=value)
        assert evaluate("days_since(contact.traits.d) == null", context, now=NOW)
        assert not evaluate("contact.traits.d < today()", context, now=NOW)
    assert evaluate(
        "days_until(contact.traits.d) > 2900000", in_zone(None, d="9999-12-31"), now=NOW
    )


@pytest.mark.parametrize("zone", ["America", "../../etc/passwd", "UTC\x00", "x" * 64])
def test_a_timezone_that_names_no_zone_is_the_default_one(zone: str) -> None:
    """Before dates, a bad zone could not break a condition; it must not now either."""
    context = in_zone(zone, tier="gold")
    assert evaluate('contact.traits.tier == "gold"', context, now=NOW)
    assert evaluate('today() == "2027-03-01"', context, now=NOW, default_zone="Pacific/Auckland")


def test_a_date_is_found_in_a_list_of_dates_and_texts() -> None:
    context = in_zone("Europe/Lisbon", holiday="2027-02-28")
    assert evaluate('today() in ["2027-02-28", "2027-12-25"]', context, now=NOW)
    assert not evaluate('today() not in ["2027-02-28"]', context, now=NOW)
    assert evaluate("date(contact.traits.holiday) in [today()]", context, now=NOW)
    assert not evaluate('today() in ["2027-12-25"]', context, now=NOW)
