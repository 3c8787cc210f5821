"""The condition language of `if:` and `where:`: what it computes, and what it refuses.

Conditions come from YAML files anyone on the marketing team may edit, so
the safety table matters as much as the truth table: every escape hatch
Python offers must be refused when the journey is loaded, not when it runs.
"""

from __future__ import annotations

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


ONLY_FUNCTIONS = "only the functions len, lower, upper, number, coalesce may be called"
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
