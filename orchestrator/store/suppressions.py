"""The suppression list and channel opt-outs: who must not be messaged, and where.

Provider feedback (a 21610 from Twilio today; bounces, complaints and STOP
replies through webhooks) lands here, and the send policy reads it.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ..policy import normalize_address
from .identity import load_contact
from .tables import Suppression, utcnow


def suppressed_addresses(session: Session, channel: str, found: list[str]) -> dict[str, str]:
    """{address: reason} for those of `found` that are suppressed on `channel`."""
    if not found:
        return {}
    keys = {normalize_address(channel, a): a for a in found}
    rows = session.exec(
        select(Suppression).where(
            Suppression.channel == channel,
            Suppression.address.in_(list(keys)),  # type: ignore[attr-defined]
        )
    )
    return {keys[row.address]: row.reason for row in rows}


def suppress(
    session: Session,
    channel: str,
    address: str,
    reason: str,
    source: str,
    detail: str | None = None,
) -> None:
    """Add `address` to the list (idempotent: the first reason recorded stays)."""
    key = normalize_address(channel, address)
    exists = session.exec(
        select(Suppression.id).where(Suppression.channel == channel, Suppression.address == key)
    ).first()
    if exists is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                Suppression(
                    channel=channel,
                    address=key,
                    reason=reason[:32],
                    source=source[:64],
                    detail=(detail or "")[:500] or None,
                )
            )
    except IntegrityError:
        pass  # suppressed concurrently: same outcome


def unsuppress(session: Session, channel: str, address: str) -> bool:
    """Remove `address` (a START reply, an operator's decision); True if it was listed."""
    row = session.exec(
        select(Suppression).where(
            Suppression.channel == channel,
            Suppression.address == normalize_address(channel, address),
        )
    ).first()
    if row is None:
        return False
    session.delete(row)
    return True


def opt_out(session: Session, contact_id: str, channel: str, marketing_only: bool = False) -> None:
    """Record the contact's opt-out of `channel` (or of its marketing only)."""
    contact = load_contact(session, contact_id, for_update=True)
    if contact is None:
        return
    consent = dict(contact.consent or {})
    entry = consent.get(channel)
    flags = dict(entry) if isinstance(entry, dict) else {}
    flags["marketing"] = False
    if not marketing_only:
        flags["transactional"] = False
    consent[channel] = flags
    contact.consent = consent
    contact.updated_at = utcnow()
