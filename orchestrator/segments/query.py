"""Compile a segment into one SQL `SELECT contacts.id` that runs on SQLite and PostgreSQL.

Every leaf becomes `contacts.id IN (SELECT contact_id FROM <table> WHERE <window>
GROUP BY contact_id HAVING <comparison>)`: one grouped pass over the rows of
the window, never a loop over contacts in Python. A comparison that zero rows
satisfy ("no order in 60 days": `exactly: 0`, `less_than: 3`) is turned around,
`NOT EXISTS (... WHERE contact_id = contacts.id ... HAVING NOT <comparison>)`, so
contacts with no rows at all are members too. Given contact ids, the subqueries are
limited to them as well, which the `(contact_id, ...)` indexes answer directly.

Windows end at `now` (passed in, so tests and scheduled runs control time):
`within: 30d` is `now - 30d <= placed_at <= now`.
"""

from __future__ import annotations

import calendar
import operator
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    String,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    null,
    or_,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import col, select

from ..feedback.own_events import INTERNAL_ONLY
from ..store.tables import ORIGIN_INTERNAL, Contact, Event, Message, Order
from .models import (
    DATE_OPERATORS,
    DAY_SECONDS,
    Condition,
    Count,
    EventCount,
    Messages,
    Opened,
    Orders,
    Spent,
    Trait,
)

OPENED_STATUSES = ("opened", "clicked")  # a click is an open the pixel may have missed

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "more_than": operator.gt,
    "at_least": operator.ge,
    "less_than": operator.lt,
    "at_most": operator.le,
    "exactly": operator.eq,
    "equals": operator.eq,
}


def members_query(
    condition: Condition, now: datetime, contact_ids: Collection[str] | None = None
) -> Select[tuple[str]]:
    """`SELECT contacts.id` of the contacts `condition` holds for at `now`.

    With `contact_ids`, only those contacts are considered (event-driven refresh).
    """
    ids = sorted(set(contact_ids)) if contact_ids is not None else None
    query = select(col(Contact.id)).where(condition_clause(condition, now, ids))
    if ids is not None:
        query = query.where(col(Contact.id).in_(ids))
    return query


def condition_clause(
    condition: Condition, now: datetime, ids: list[str] | None = None
) -> ColumnElement[bool]:
    """A boolean SQL expression over `contacts`, never NULL (so `not:` is plain NOT)."""
    kind, part = condition.kind(), condition.part()
    if kind == "all":
        return and_(*(condition_clause(c, now, ids) for c in part))
    if kind == "any":
        return or_(*(condition_clause(c, now, ids) for c in part))
    if kind == "not":
        return not_(condition_clause(part, now, ids))
    return _LEAVES[kind](part, now, ids)


# --- aggregates over the rows of a window ------------------------------------


def _window(column: Any, within: int | None, now: datetime) -> list[ColumnElement[bool]]:
    if within is None:
        return [column <= now]
    return [column >= now - timedelta(seconds=within), column <= now]


def _aggregate(
    contact_id: Any,
    filters: list[ColumnElement[bool]],
    aggregate: Any,
    comparison: tuple[str, float],
    ids: list[str] | None,
) -> ColumnElement[bool]:
    name, value = comparison
    compare = _OPERATORS[name]
    rows = select(contact_id).where(*filters)
    if ids is not None:
        rows = rows.where(contact_id.in_(ids))
    rows = rows.group_by(contact_id)
    if compare(0, value):  # contacts without any row are members: exclude the others
        # NOT EXISTS, never NOT IN (subquery): PostgreSQL plans the latter row by row
        # once the subquery outgrows work_mem (a quarter of a million recent buyers).
        others = rows.where(contact_id == col(Contact.id)).having(not_(compare(aggregate, value)))
        return ~others.exists()
    return col(Contact.id).in_(rows.having(compare(aggregate, value)))


def _spent(spent: Spent, now: datetime, ids: list[str] | None) -> ColumnElement[bool]:
    filters = [
        *_window(col(Order.placed_at), spent.within, now),
        # Refunded by `now` means not spent; a refund recorded later does not rewrite the past.
        or_(col(Order.refunded_at).is_(None), col(Order.refunded_at) > now),
    ]
    if spent.currency:
        filters.append(func.upper(col(Order.currency)) == spent.currency)
    amount = func.coalesce(col(Order.revenue), col(Order.total), 0.0)
    return _aggregate(col(Order.contact_id), filters, func.sum(amount), spent.comparison(), ids)


def _orders(orders: Orders, now: datetime, ids: list[str] | None) -> ColumnElement[bool]:
    filters = _window(col(Order.placed_at), orders.within, now)
    return _count(col(Order.contact_id), filters, orders, ids)


def _event(event: EventCount, now: datetime, ids: list[str] | None) -> ColumnElement[bool]:
    filters = [
        col(Event.type) == "track",
        col(Event.name) == event.name,
        *_window(col(Event.timestamp), event.within, now),
    ]
    if event.name in INTERNAL_ONLY:
        # Only ours count (`Survey Answered`...): a client's stored before the API refused
        # such names must not put anyone in a segment (docs/ingestion.md).
        filters.append(col(Event.origin) == ORIGIN_INTERNAL)
    return _count(col(Event.contact_id), filters, event, ids)


def _messages(messages: Messages, now: datetime, ids: list[str] | None) -> ColumnElement[bool]:
    filters = [col(Message.sent_at).is_not(None), *_message_filters(messages, now)]
    return _count(col(Message.contact_id), filters, messages, ids)


def _opened(opened: Opened, now: datetime, ids: list[str] | None) -> ColumnElement[bool]:
    filters = [col(Message.status).in_(OPENED_STATUSES), *_message_filters(opened, now)]
    return _count(col(Message.contact_id), filters, opened, ids)


def _message_filters(leaf: Messages | Opened, now: datetime) -> list[ColumnElement[bool]]:
    filters = _window(col(Message.sent_at), leaf.within, now)
    if leaf.channel:
        filters.append(col(Message.channel) == leaf.channel)
    return filters


def _count(
    contact_id: Any, filters: list[ColumnElement[bool]], leaf: Count, ids: list[str] | None
) -> ColumnElement[bool]:
    return _aggregate(contact_id, filters, func.count(), leaf.comparison(), ids)


# --- traits --------------------------------------------------------------------


class starts_with_iso_date(FunctionElement[bool]):
    """Whether text starts with digits shaped as a date, `YYYY-MM-DD` (months 0x-1x,
    days 0x-3x; the calendar itself is checked by the caller's ranges). Compiled per
    database: SQLite's GLOB, PostgreSQL's regular expressions (LIKE's `_` would take
    `2026-05-%%` for a date)."""

    type = Boolean()
    name = "starts_with_iso_date"
    inherit_cache = True


@compiles(starts_with_iso_date, "postgresql")
def _iso_date_postgresql(element: starts_with_iso_date, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = element.clauses.clauses
    return f"({compiler.process(text, **kw)} ~ '^[0-9]{{4}}-[01][0-9]-[0-3][0-9]')"


@compiles(starts_with_iso_date, "sqlite")
def _iso_date_sqlite(element: starts_with_iso_date, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = element.clauses.clauses
    return f"({compiler.process(text, **kw)} GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]*')"


class json_kind(FunctionElement[str]):
    """The JSON type of `traits[key]`: number, string, boolean, null, object, array;
    NULL when the key is absent. Compiled per database (`json_typeof` / `json_type`)."""

    type = String()
    name = "json_kind"
    inherit_cache = True


@compiles(json_kind, "postgresql")
def _json_kind_postgresql(element: json_kind, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, _path = element.clauses.clauses
    return (
        f"json_typeof({compiler.process(column, **kw)} -> "
        f"CAST({compiler.process(key, **kw)} AS TEXT))"
    )


@compiles(json_kind, "sqlite")
def _json_kind_sqlite(element: json_kind, compiler: SQLCompiler, **kw: Any) -> str:
    column, _key, path = element.clauses.clauses
    kind = f"json_type({compiler.process(column, **kw)}, {compiler.process(path, **kw)})"
    return (
        f"(CASE {kind} WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' "
        f"WHEN 'text' THEN 'string' WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' "
        f"ELSE {kind} END)"
    )


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "string"


def _typed(name: str, kind: str) -> ColumnElement[Any]:
    """`traits[name]` as a SQL value of `kind`, NULL when it holds another JSON type.

    The CASE guards the CAST: PostgreSQL would fail on CAST('gold' AS FLOAT), SQLite
    would quietly make it 0.0; neither must decide membership.
    """
    traits = col(Contact.traits)
    element = traits[name]
    value = {
        "number": element.as_float(),
        "string": element.as_string(),
        "boolean": element.as_boolean(),
    }[kind]
    return case((_json_kind(name) == kind, value), else_=null())


def _trait(trait: Trait, now: datetime, ids: list[str] | None) -> ColumnElement[bool]:
    op, value = trait.operator()
    if op in DATE_OPERATORS or op == "anniversary_today":
        return _trait_date(trait.name, op, value, now)
    if op == "exists":
        present = _definitely(_json_kind(trait.name).in_(_PRESENT))
        return present if value else not_(present)
    if op == "not_equals":
        return not_(_definitely(_typed(trait.name, _kind_of(value)) == value))
    if op == "in":
        return or_(*(_definitely(_typed(trait.name, _kind_of(v)) == v) for v in value))
    kind = "number" if op != "equals" else _kind_of(value)
    return _definitely(_OPERATORS[op](_typed(trait.name, kind), value))


_PRESENT = ("number", "string", "boolean", "object", "array")  # not absent, not JSON null


def _trait_date(name: str, op: str, window: Any, now: datetime) -> ColumnElement[bool]:
    """A trait holding an ISO date or timestamp, compared by its date (its first ten
    characters, `YYYY-MM-DD`, as text: ISO dates sort as they read) with today in UTC.

    Anniversaries compare its month and day (`MM-DD`) with those of the days in the
    window, listed here; a 29 February is due on 28 February of a year without one.
    """
    text = _typed(name, "string")
    day = func.substr(text, 1, 10)
    month, day_of_month = func.substr(text, 6, 2), func.substr(text, 9, 2)
    is_date = and_(  # not `0000-00-00`, the null date of many exports
        starts_with_iso_date(text),
        func.substr(text, 1, 4) != "0000",
        month.between("01", "12"),
        day_of_month.between("01", "31"),
    )
    today = now.astimezone(UTC).date()
    days = 0 if op == "anniversary_today" else window // DAY_SECONDS
    if op == "in_last":
        clause = and_(day >= (today - timedelta(days=days)).isoformat(), day <= today.isoformat())
    elif op == "in_next":
        clause = and_(day >= today.isoformat(), day <= (today + timedelta(days=days)).isoformat())
    elif op == "more_than_ago":
        clause = day < (today - timedelta(days=days)).isoformat()
    else:  # anniversary_in_next, anniversary_today (a window of no days after today)
        month_days: set[str] = set()
        for ahead in range(min(days, 366) + 1):
            date = today + timedelta(days=ahead)
            month_days.add(date.strftime("%m-%d"))
            if (date.month, date.day) == (2, 28) and not calendar.isleap(date.year):
                month_days.add("02-29")
        clause = func.substr(text, 6, 5).in_(sorted(month_days))
    return _definitely(and_(is_date, clause))


def holds_iso_date(name: str) -> ColumnElement[bool]:
    """`traits[name]` is text starting with an ISO date (what a date trigger reads)."""
    return _definitely(starts_with_iso_date(_typed(name, "string")))


def _json_kind(name: str) -> json_kind:
    path = f'$."{name}"'  # SQLite's JSON path; names are plain words (models.TRAIT_PATTERN)
    return json_kind(col(Contact.traits), literal(name, String()), literal(path, String()))


def _definitely(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """NULL (the trait is absent or of another type) as false."""
    return func.coalesce(clause, false())


_LEAVES: dict[str, Callable[[Any, datetime, list[str] | None], ColumnElement[bool]]] = {
    "spent": _spent,
    "orders": _orders,
    "event": _event,
    "messages": _messages,
    "opened": _opened,
    "trait": _trait,
}
