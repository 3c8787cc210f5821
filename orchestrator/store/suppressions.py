"""The suppression list and channel opt-outs: who must not be messaged, and where.

Provider feedback (a 21610 from Twilio today; bounces, complaints and STOP
replies through webhooks) lands here, and the send policy reads it.

A row's address is the normalized address, or, once its contact was erased
(`orchestrator.services.privacy`), `sha256:<hex>` of it: the bounce or complaint keeps
being honoured without the plaintext address being kept. Every function here
matches both forms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..services.policy import normalize_address
from .consent import CONSENT_CHANNELS, set_consent
from .tables import Suppression

DIGEST_PREFIX = "sha256:"


def address_digest(channel: str, address: str) -> str:
    """The pseudonymous key of an address: `sha256:` and the hex digest of its normal form."""
    normal = normalize_address(channel, address)
    return DIGEST_PREFIX + hashlib.sha256(normal.encode()).hexdigest()


def _keys(channel: str, address: str) -> tuple[str, str]:
    return normalize_address(channel, address), address_digest(channel, address)


def _rows(session: Session, channel: str, addresses: Iterable[str]) -> list[Suppression]:
    keys = {k for a in addresses for k in _keys(channel, a)}
    if not keys:
        return []
    return list(
        session.exec(
            select(Suppression).where(
                Suppression.channel == channel, col(Suppression.address).in_(keys)
            )
        )
    )


def suppressed_addresses(session: Session, channel: str, found: list[str]) -> dict[str, str]:
    """{address: reason} for those of `found` that are suppressed on `channel`."""
    if not found:
        return {}
    by_key: dict[str, str] = {}
    for address in found:
        for key in _keys(channel, address):
            by_key.setdefault(key, address)
    return {by_key[row.address]: row.reason for row in _rows(session, channel, found)}


def suppress(
    session: Session,
    channel: str,
    address: str,
    reason: str,
    source: str,
    detail: str | None = None,
) -> None:
    """Add `address` to the list (idempotent: the first reason recorded stays)."""
    if _rows(session, channel, [address]):
        return  # listed already, maybe only as a digest: never add the plaintext back
    try:
        with session.begin_nested():
            session.add(
                Suppression(
                    channel=channel,
                    address=normalize_address(channel, address),
                    reason=reason[:32],
                    source=source[:64],
                    detail=(detail or "")[:500] or None,
                )
            )
    except IntegrityError:
        pass  # suppressed concurrently: same outcome


def unsuppress(session: Session, channel: str, address: str) -> bool:
    """Remove `address` (a START reply, an operator's decision); True if it was listed."""
    rows = _rows(session, channel, [address])
    for row in rows:
        session.delete(row)
    return bool(rows)


def pseudonymize(session: Session, channel: str, addresses: Iterable[str]) -> int:
    """Keep the suppressions of `addresses` as digests only (erasure); returns how many.

    The provider's `detail` goes too: bounce texts often quote the address.
    """
    changed = 0
    for address in set(addresses):
        if not address:
            continue
        plain, digest = _keys(channel, address)
        rows = _rows(session, channel, [address])
        hashed = next((r for r in rows if r.address == digest), None)
        for row in rows:
            if row.address != plain:
                continue
            if hashed is None:
                row.address, row.detail, hashed = digest, None, row
            else:  # both forms listed: the digest row already keeps it
                session.delete(row)
            changed += 1
    if changed:
        session.flush()
    return changed


def opt_out(session: Session, contact_id: str, channel: str, marketing_only: bool = False) -> None:
    """Record the contact's opt-out of `channel` (or of its marketing only)."""
    if channel not in CONSENT_CHANNELS:
        return
    set_consent(
        session,
        contact_id,
        channel,
        marketing=False,
        transactional=None if marketing_only else False,
    )
