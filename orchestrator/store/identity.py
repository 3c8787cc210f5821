"""One person, several ids: resolving and merging contacts.

Segment sends an `anonymousId` before sign-in and a `userId` after; an
`alias` call (or an identify carrying both) says they are the same person.
The anonymous contact is folded into the identified one and its id is kept
as an alias, so runs started under the anonymous id still find the contact
and events sent later under it land on the right person.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from .tables import Contact, ContactAlias, Event, JourneyRun, Message, utcnow


def canonical_id(session: Session, contact_id: str) -> str:
    alias = session.get(ContactAlias, contact_id)
    return alias.contact_id if alias is not None else contact_id


def load_contact(session: Session, contact_id: str, for_update: bool = False) -> Contact | None:
    """The contact for an id or one of its aliases."""
    return session.get(Contact, canonical_id(session, contact_id), with_for_update=for_update)


def aliases_of(session: Session, contact_id: str) -> list[str]:
    rows = session.exec(select(ContactAlias.alias_id).where(ContactAlias.contact_id == contact_id))
    return list(rows)


def merge_contacts(session: Session, previous_id: str, into_id: str) -> str:
    """Fold `previous_id` (and its aliases) into `into_id`; returns the surviving id.

    Traits already on the identified contact win; push tokens, consent opt-outs and
    history (events, runs, messages) move over. Merging twice is harmless.
    """
    into_id = canonical_id(session, into_id)
    previous_id = canonical_id(session, previous_id)
    if previous_id == into_id:
        return into_id
    into = session.get(Contact, into_id, with_for_update=True)
    if into is None:
        into = Contact(id=into_id)
        session.add(into)
        session.flush()
    old = session.get(Contact, previous_id, with_for_update=True)
    if old is not None:
        _fold(old, into)
        session.delete(old)
    for model in (Event, JourneyRun, Message):
        session.exec(  # type: ignore[call-overload]
            update(model).where(model.contact_id == previous_id).values(contact_id=into_id)  # type: ignore[attr-defined]
        )
    session.exec(  # type: ignore[call-overload]
        update(ContactAlias)
        .where(ContactAlias.contact_id == previous_id)  # type: ignore[arg-type]
        .values(contact_id=into_id)
    )
    if session.get(ContactAlias, previous_id) is None:
        session.add(ContactAlias(alias_id=previous_id, contact_id=into_id))
    session.flush()
    return into_id


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
