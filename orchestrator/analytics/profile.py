"""A contact as the dashboard's Contact page shows it: who they are, what they agreed to,
which of their addresses we must not use, their points and codes, and the journeys they
entered. The story itself (events, decisions, messages) is `story.contact_story`.

Read-only: the loyalty balance is `balance_seen` (no expiries written, no lock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ..store.consent import CONSENT_CHANNELS, ChannelConsent, effective_consent
from ..store.identity import aliases_of, canonical_id
from ..store.loyalty import balance_seen
from ..store.suppressions import suppressed_addresses
from ..store.tables import Contact, Coupon, JourneyRun, utcnow


@dataclass
class RunRow:
    journey_id: str
    version: int
    entry_seq: int
    status: str
    current_step: str | None
    exit_reason: str | None
    entered_at: datetime
    converted_at: datetime | None
    revenue: float | None


@dataclass
class CouponRow:
    code: str
    campaign: str
    value: str  # "10 %" or "500 EUR"
    issued_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    redeemed_order_id: str | None


@dataclass
class Profile:
    contact_id: str
    ids: list[str]  # its id first, then its aliases
    name: str | None  # from the traits (`name`, or `first_name` `last_name`), if any
    email: str | None
    phone: str | None
    locale: str | None
    timezone: str | None
    push_tokens: int
    anonymous: bool
    traits: dict[str, Any]
    created_at: datetime
    consent: list[ChannelConsent]
    # Per channel, whether the contact opted in to marketing explicitly (else it is what
    # the policy allows without asking, or an opt-out).
    asked: dict[str, bool]
    suppressions: list[tuple[str, str, str]]  # (channel, address, reason)
    points: int
    coupons: list[CouponRow] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)


def contact_profile(session: Session, contact_id: str, explicit_marketing: bool) -> Profile | None:
    """None when no such contact (or alias) exists: erased or never seen."""
    owner = canonical_id(session, contact_id)
    contact = session.get(Contact, owner)
    if contact is None:
        return None
    ids = [owner, *aliases_of(session, owner)]
    suppressions: list[tuple[str, str, str]] = []
    for channel, addresses in (
        ("email", [contact.email] if contact.email else []),
        ("sms", [contact.phone] if contact.phone else []),
        ("push", list(contact.push_tokens or [])),
    ):
        for address, reason in suppressed_addresses(session, channel, addresses).items():
            suppressions.append((channel, address, reason))
    runs = session.exec(
        select(JourneyRun)
        .where(col(JourneyRun.contact_id).in_(ids))
        .order_by(col(JourneyRun.entered_at).desc(), col(JourneyRun.id).desc())
    ).all()
    coupons = session.exec(
        select(Coupon).where(col(Coupon.contact_id).in_(ids)).order_by(col(Coupon.issued_at).desc())
    ).all()
    return Profile(
        contact_id=owner,
        ids=ids,
        name=_name(contact.traits or {}),
        email=contact.email,
        phone=contact.phone,
        locale=contact.locale,
        timezone=contact.timezone,
        push_tokens=len(contact.push_tokens or []),
        anonymous=contact.anonymous,
        traits=dict(contact.traits or {}),
        created_at=contact.created_at,
        consent=effective_consent(contact.consent or {}, explicit_marketing),
        asked={c: _opted_in(contact.consent or {}, c) for c in CONSENT_CHANNELS},
        suppressions=suppressions,
        points=balance_seen(session, owner, utcnow()),
        coupons=[_coupon(c) for c in coupons],
        runs=[
            RunRow(
                r.journey_id,
                r.version,
                r.entry_seq,
                r.status,
                r.current_step,
                r.exit_reason,
                r.entered_at,
                r.converted_at,
                r.revenue,
            )
            for r in runs
        ],
    )


def _coupon(c: Coupon) -> CouponRow:
    value = f"{c.value:g} %" if c.kind == "percent" else f"{c.value:g} {c.currency or ''}".strip()
    return CouponRow(
        c.code, c.campaign, value, c.issued_at, c.expires_at, c.redeemed_at, c.redeemed_order_id
    )


def _opted_in(consent: dict[str, Any], channel: str) -> bool:
    entry = consent.get(channel)
    return entry is True or (isinstance(entry, dict) and entry.get("marketing") is True)


def find_contact(session: Session, text: str) -> str | None:
    """The contact an operator typed: its id or an alias, else its email address."""
    owner = canonical_id(session, text)
    if session.get(Contact, owner) is not None:
        return owner
    if "@" in text:
        found = session.exec(
            select(Contact.id).where(func.lower(Contact.email) == text.strip().lower()).limit(1)
        ).first()
        return found
    return None


def _name(traits: dict[str, Any]) -> str | None:
    if isinstance(traits.get("name"), str) and traits["name"].strip():
        return str(traits["name"]).strip()
    parts = [traits.get(k) for k in ("first_name", "last_name")]
    found = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return found or None
