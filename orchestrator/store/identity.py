"""One person, several ids: resolving and merging contacts.

Segment sends an `anonymousId` before sign-in and a `userId` after; an
`alias` call (or an identify carrying both) says they are the same person.
The anonymous contact is folded into the identified one and its id is kept
as an alias, so runs started under the anonymous id still find the contact
and events sent later under it land on the right person.

Who may merge whom: a storefront's write key is public (web shops and apps ship
it), so it may fold in only a contact that was never identified: only ever sent
as an `anonymousId`, with no email, phone or order. Folding an identified contact
(a customer) into another hands over its coupons, points, orders and every later
message, so only an explicit `alias` sent with an admin key does it; a call that
merely carries both ids never does (`MergeRefused`, `is_identified`).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import text, update
from sqlmodel import Session, col, select

from .tables import (
    Contact,
    ContactAlias,
    Coupon,
    Event,
    JourneyRun,
    LoyaltyEntry,
    Message,
    Order,
    OrderLine,
    SegmentMember,
    utcnow,
)

# Rows that belong to a contact and move with it when it is merged into another.
HISTORY = (Event, JourneyRun, Message, Order, OrderLine, LoyaltyEntry, Coupon, SegmentMember)


# Unicode categories an id may not hold: controls (line breaks, ESC, BEL...), invisible
# formatting (zero-width, bidirectional overrides), line and paragraph separators.
UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


class MergeRefused(Exception):
    """A merge the caller may not make; `field` is the call's field that named the id."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def contact_id_problem(contact_id: str) -> str | None:
    """Why `contact_id` cannot be given to a new contact, or None.

    A contact's id is one segment of the API's URLs (`/v1/contacts/{id}`: export,
    erasure, points, push tokens), so it cannot hold `/` (a decoded `%2F` is a path
    separator to every router) nor be `.` or `..` (clients resolve those away). Ids are
    written to logs and shown in terminals (`journeys runs`), so they cannot hold a
    control or invisible character either: a line break forges a log line, an escape
    sequence runs in the terminal of whoever lists runs. The id itself is not quoted
    back then: it is what could do harm.
    """
    if "/" in contact_id or contact_id in (".", ".."):
        return (
            f"{contact_id!r} cannot be a contact id: ids go into URLs (/v1/contacts/{{id}}), "
            "so they may not contain '/' or be '.' or '..'; any other characters are "
            "allowed (but no control or invisible ones), 1 to 255 of them"
        )
    for position, char in enumerate(contact_id, 1):
        if unicodedata.category(char) in UNPRINTABLE:
            return (
                f"contains the control or invisible character U+{ord(char):04X} (character "
                f"{position}): ids are written to logs and shown in terminals, where it could "
                "forge a line or run an escape sequence; send the id without it"
            )
    return None


def canonical_id(session: Session, contact_id: str) -> str:
    # A column query, not session.get: a merge re-reads it after taking its locks.
    query = select(ContactAlias.contact_id).where(ContactAlias.alias_id == contact_id)
    return session.exec(query).first() or contact_id


def load_contact(session: Session, contact_id: str, for_update: bool = False) -> Contact | None:
    """The contact for an id or one of its aliases."""
    return session.get(Contact, canonical_id(session, contact_id), with_for_update=for_update)


def aliases_of(session: Session, contact_id: str) -> list[str]:
    rows = session.exec(select(ContactAlias.alias_id).where(ContactAlias.contact_id == contact_id))
    return list(rows)


def is_identified(session: Session, contact_id: str, contact: Contact | None) -> bool:
    """Whether `contact_id` (canonical; `contact` its row, None when it has none) is a
    customer: sent as a userId once, or holding an email, a phone or an order. Only
    contacts that are none of these are anonymous visitors a write key may merge."""
    if contact is not None and (not contact.anonymous or contact.email or contact.phone):
        return True
    return session.exec(select(Order.id).where(Order.contact_id == contact_id)).first() is not None


def merge_contacts(
    session: Session,
    previous_id: str,
    into_id: str,
    implicit: bool = False,
    identified_ok: bool = False,
) -> str:
    """Fold `previous_id` (and its aliases) into `into_id`; returns the surviving id.

    Traits already on the identified contact win; push tokens, consent opt-outs and
    history (events, runs, messages, orders, points, coupons, segment stays) move
    over. Merging twice is harmless.
    `implicit` (an identify or track carrying both ids, not an `alias` call) merges
    only an anonymous visitor (`is_identified` false) that belongs to no one else: on a
    shared computer the same anonymousId may come with a second userId, which must not
    swallow the first, and a call naming a customer's userId as its anonymousId must
    not either. An explicit alias of an identified contact raises `MergeRefused`
    unless `identified_ok` (the call came with an admin key).
    """
    for _ in range(5):
        previous, into = canonical_id(session, previous_id), canonical_id(session, into_id)
        lock_ids(session, {previous_id, into_id, previous, into})
        if (previous, into) == (canonical_id(session, previous_id), canonical_id(session, into_id)):
            break
    else:
        raise RuntimeError(f"contacts {previous_id!r} and {into_id!r} keep being merged")
    if previous == into:
        return into
    if implicit and previous != previous_id:
        return into  # the anonymousId already belongs to another identified contact
    old = session.get(Contact, previous, with_for_update=True)
    if (implicit or not identified_ok) and is_identified(session, previous, old):
        if implicit:
            return into  # the call is the userId's; the anonymousId's contact stays its own
        named = repr(previous_id) if previous == previous_id else f"{previous_id!r} (an id of it)"
        raise MergeRefused(
            "previousId",
            f"previousId {named} is an identified contact (it was sent as a userId, or has "
            "an email, a phone or orders): a write key merges only anonymous visitors into "
            "a userId. Merging two customers needs an admin key in the Authorization header "
            "(journeys keys create NAME --admin), sent from your server",
        )
    target = session.get(Contact, into, with_for_update=True)
    if target is None:
        target = Contact(id=into)
        session.add(target)
        session.flush()
    target.anonymous = False  # `into` is a userId
    if old is not None:
        _fold(old, target)
        session.delete(old)
    _close_duplicate_memberships(session, previous, into)
    for model in HISTORY:
        session.exec(  # type: ignore[call-overload]
            update(model).where(model.contact_id == previous).values(contact_id=into)  # type: ignore[attr-defined]
        )
    session.exec(  # type: ignore[call-overload]
        update(ContactAlias)
        .where(ContactAlias.contact_id == previous)  # type: ignore[arg-type]
        .values(contact_id=into)
    )
    session.add(ContactAlias(alias_id=previous, contact_id=into))
    session.flush()
    return into


def _close_duplicate_memberships(session: Session, previous: str, into: str) -> None:
    """A contact is in a segment once: where both ids are members, the merged id's stay ends."""
    current = select(SegmentMember.segment).where(
        SegmentMember.contact_id == into, col(SegmentMember.exited_at).is_(None)
    )
    session.exec(  # type: ignore[call-overload]
        update(SegmentMember)
        .where(
            col(SegmentMember.contact_id) == previous,
            col(SegmentMember.exited_at).is_(None),
            col(SegmentMember.segment).in_(current),
        )
        .values(exited_at=utcnow())
    )


def lock_ids(session: Session, ids: set[str]) -> None:
    """Serialize merges (and run entries) that touch the same ids, so each decides on
    what it will change.

    PostgreSQL: advisory locks, sorted so two merges over the same pair take them in
    the same order. SQLite: the database's single write lock, taken now by a write
    that changes nothing (pysqlite starts the transaction only at the first write).
    """
    if session.get_bind().dialect.name != "postgresql":
        session.execute(text("UPDATE contact_aliases SET alias_id = alias_id WHERE 0 = 1"))
        return
    for contact_id in sorted(ids):
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:id, 74))"), {"id": contact_id}
        )


def _fold(old: Contact, into: Contact) -> None:
    for column in ("email", "phone", "locale", "timezone"):
        if getattr(into, column) is None and getattr(old, column) is not None:
            setattr(into, column, getattr(old, column))
    into.traits = {**(old.traits or {}), **(into.traits or {})}
    moved = [t for t in old.push_tokens if t not in into.push_tokens]
    into.push_tokens = [*into.push_tokens, *moved]
    into.consent = _merge_consent(old.consent or {}, into.consent or {})
    into.updated_at = utcnow()


def _merge_consent(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """An opt-out given under either id stays: a merge never turns a refusal into consent."""
    merged: dict[str, Any] = {}
    for channel in {*old, *new}:
        a, b = old.get(channel), new.get(channel)
        if a is False or b is False:
            merged[channel] = False
        elif isinstance(a, dict) and isinstance(b, dict):
            flags = {**a, **b}
            for kind in {*a, *b}:
                if a.get(kind) is False or b.get(kind) is False:
                    flags[kind] = False
            merged[channel] = flags
        else:
            merged[channel] = b if channel in new else a
    return merged
