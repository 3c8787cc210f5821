"""The loyalty ledger: points earned, spent, expired and taken back, one row per change.

Rows are never updated, and a balance is their sum. Points are spent oldest first
(FIFO). When an earning reaches its `expires_at`, only what is left of it expires:
`balance` first writes one `expire` row for each earning that has run out, keyed
`expire:<earn row id>` so it is written once. A refund takes back what its order
earned (`reverse_order`). If those points were already spent, the balance goes
negative, and later earnings pay that debt first.

Every write locks the contact's ids (`identity.lock_ids`, the lock merges take), so
two redemptions at once cannot both spend the same balance, and a merge cannot move
rows while a balance is being decided.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from .identity import canonical_id, lock_ids
from .tables import LoyaltyEntry

KINDS = ("earn", "redeem", "expire", "reverse", "adjust")
MAX_POINTS = 1_000_000_000  # per entry: beyond any loyalty scheme, within a 32-bit column
EXPIRE_KEY = "expire:"
REVERSE_KEY = "reverse:"


class LoyaltyError(Exception):
    """A ledger change that cannot be made."""


class InsufficientPoints(LoyaltyError):
    """The contact has fewer points than a redemption asks for; nothing was written."""

    def __init__(self, contact_id: str, balance: int, wanted: int):
        super().__init__(
            f"contact {contact_id!r} has {balance} points, fewer than the {wanted} asked for"
        )
        self.contact_id, self.balance, self.wanted = contact_id, balance, wanted


class IdempotencyConflict(LoyaltyError, ValueError):
    """An idempotency key already used for a different change (another contact or amount)."""


def earn(
    session: Session,
    contact_id: str,
    points: int,
    *,
    idempotency_key: str,
    now: datetime,
    order_id: str | None = None,
    journey_id: str | None = None,
    expires_at: datetime | None = None,
    note: str | None = None,
) -> LoyaltyEntry:
    """Add points; a retry with the same `idempotency_key` returns the first row."""
    _check_points(points)
    _check_key(idempotency_key)
    if expires_at is not None and expires_at <= now:
        raise ValueError(f"expires_at {expires_at.isoformat()} is not after now: nothing to earn")
    owner = _lock(session, contact_id)
    found = _existing(session, idempotency_key)
    if found is not None:
        return _same(found, owner, "earn", points)
    entry = LoyaltyEntry(
        contact_id=owner,
        kind="earn",
        points=points,
        order_id=order_id,
        idempotency_key=idempotency_key,
        journey_id=journey_id,
        note=note[:500] if note else None,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    return entry


def redeem(
    session: Session,
    contact_id: str,
    points: int,
    *,
    idempotency_key: str,
    now: datetime,
    order_id: str | None = None,
) -> LoyaltyEntry:
    """Spend points; raises `InsufficientPoints` when the balance is lower.

    A retry with the same `idempotency_key` returns the first row, even if the
    balance has since dropped.
    """
    _check_points(points)
    _check_key(idempotency_key)
    owner = _lock(session, contact_id)
    found = _existing(session, idempotency_key)
    if found is not None:
        return _same(found, owner, "redeem", -points)
    available = _balance(session, owner, now)
    if available < points:
        raise InsufficientPoints(owner, available, points)
    entry = LoyaltyEntry(
        contact_id=owner,
        kind="redeem",
        points=-points,
        order_id=order_id,
        idempotency_key=idempotency_key,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    return entry


def balance(session: Session, contact_id: str, now: datetime) -> int:
    """The contact's points at `now`, after writing the expiries that are due."""
    return _balance(session, _lock(session, contact_id), now)


def balance_seen(session: Session, contact_id: str, now: datetime) -> int:
    """The balance `balance` would give, read without writing the expiries that are due
    (no write lock: `journeys explain` must not queue behind the workers)."""
    owner = canonical_id(session, contact_id)
    entries = list(session.exec(select(LoyaltyEntry).where(LoyaltyEntry.contact_id == owner)))
    lots = remaining_lots(entries)
    expired = sum(
        lot.left for lot in lots.values() if lot.expires_at is not None and lot.expires_at <= now
    )
    return sum(e.points for e in entries) - expired


def reverse_order(
    session: Session, order_id: str, contact_id: str, fraction: float, now: datetime
) -> int:
    """Take back `fraction` (cumulative: 0.5 after a first half refund, 1.0 after the
    rest) of the points the order earned `contact_id` (or its other ids); returns the
    points this call took back.

    Only that contact's points: a refund is its sender's, and another contact's points
    for an order id (a second report of it, by mistake or on purpose) are not theirs to
    take. Idempotent per (order, contact, fraction): a repeated call takes nothing more.
    Taken back in all never exceeds what the order earned minus what of it expired unspent.
    """
    if not math.isfinite(fraction) or fraction < 0:
        raise ValueError(f"refund fraction must be between 0 and 1, got {fraction!r}")
    fraction = min(fraction, 1.0)
    owner = _lock(session, contact_id)
    earned_here = (LoyaltyEntry.order_id == order_id) & (LoyaltyEntry.contact_id == owner)
    first = session.exec(
        select(LoyaltyEntry.id).where(earned_here, LoyaltyEntry.kind == "earn").limit(1)
    ).first()
    if first is None:
        return 0  # the order earned this contact nothing
    digest = hashlib.sha256(owner.encode()).hexdigest()[:16]  # keys stay within 500
    key = f"{REVERSE_KEY}{order_id}:{fraction:.6f}:{digest}"
    if _existing(session, key) is not None:
        return 0
    _write_expiries(session, owner, now)
    totals = dict(
        session.exec(  # type: ignore[call-overload]
            select(LoyaltyEntry.kind, func.sum(LoyaltyEntry.points))
            .where(earned_here)
            .group_by(LoyaltyEntry.kind)
        ).all()
    )
    earned = int(totals.get("earn") or 0)
    expired = -int(totals.get("expire") or 0)
    reversed_ = -int(totals.get("reverse") or 0)
    target = min(math.floor(fraction * earned + 0.5), earned - expired)
    amount = target - reversed_
    if amount <= 0:
        return 0
    session.add(
        LoyaltyEntry(
            contact_id=owner,
            kind="reverse",
            points=-amount,
            order_id=order_id,
            idempotency_key=key,
            note=f"refund of {fraction:.0%} of order {order_id}"[:500],
            created_at=now,
        )
    )
    session.flush()
    return amount


def history(session: Session, contact_id: str, limit: int = 50) -> list[LoyaltyEntry]:
    """The contact's ledger, newest first."""
    owner = canonical_id(session, contact_id)
    query = (
        select(LoyaltyEntry)
        .where(LoyaltyEntry.contact_id == owner)
        .order_by(col(LoyaltyEntry.created_at).desc(), col(LoyaltyEntry.id).desc())
        .limit(limit)
    )
    return list(session.exec(query))


# --- the ledger's arithmetic -------------------------------------------------------


@dataclass
class _Lot:
    """What is left of one earning (or positive adjustment)."""

    entry_id: int
    order_id: str | None
    expires_at: datetime | None
    left: int

    def alive_at(self, moment: datetime) -> bool:
        return self.left > 0 and (self.expires_at is None or self.expires_at > moment)


def remaining_lots(entries: Iterable[LoyaltyEntry]) -> dict[int, _Lot]:
    """Replay the ledger in time order: what is left of each earning.

    Spending takes from the oldest earnings still alive at the moment of spending;
    a reversal takes from its own order's earnings first. What cannot be taken is
    debt, which the next earning pays first. An `expire` row empties its own earning.
    """
    lots: dict[int, _Lot] = {}
    debt = 0
    for entry in sorted(entries, key=lambda e: (e.created_at, e.id or 0)):
        if entry.points > 0:
            paid = min(debt, entry.points)
            debt -= paid
            lot = _Lot(entry.id or 0, entry.order_id, entry.expires_at, entry.points - paid)
            lots[lot.entry_id] = lot
            continue
        if entry.kind == "expire":
            expired = _expired_entry_id(entry.idempotency_key)
            if expired in lots:
                lots[expired].left = max(0, lots[expired].left + entry.points)
            continue
        need = -entry.points
        alive = [lot for lot in lots.values() if lot.alive_at(entry.created_at)]
        if entry.kind == "reverse":
            alive.sort(key=lambda lot: lot.order_id != entry.order_id)  # stable: FIFO within
        for lot in alive:
            taken = min(need, lot.left)
            lot.left -= taken
            need -= taken
            if need == 0:
                break
        debt += need
    return lots


def _balance(session: Session, owner: str, now: datetime) -> int:
    _write_expiries(session, owner, now)
    total = session.exec(
        select(func.coalesce(func.sum(LoyaltyEntry.points), 0)).where(
            LoyaltyEntry.contact_id == owner
        )
    ).one()
    return int(total)


def _write_expiries(session: Session, owner: str, now: datetime) -> None:
    """One `expire` row for each earning past its `expires_at` with points left."""
    due = list(
        session.exec(
            select(LoyaltyEntry.id).where(
                LoyaltyEntry.contact_id == owner,
                LoyaltyEntry.points > 0,
                col(LoyaltyEntry.expires_at).is_not(None),
                col(LoyaltyEntry.expires_at) <= now,
            )
        )
    )
    if not due:
        return
    keys = {f"{EXPIRE_KEY}{entry_id}" for entry_id in due}
    done = set(
        session.exec(
            select(LoyaltyEntry.idempotency_key).where(col(LoyaltyEntry.idempotency_key).in_(keys))
        )
    )
    if len(done) == len(keys):
        return
    entries = session.exec(select(LoyaltyEntry).where(LoyaltyEntry.contact_id == owner))
    lots = remaining_lots(entries)
    for entry_id in sorted(due):  # type: ignore[type-var]
        lot = lots.get(entry_id or 0)
        if f"{EXPIRE_KEY}{entry_id}" in done or lot is None or lot.left <= 0:
            continue
        assert lot.expires_at is not None
        session.add(
            LoyaltyEntry(
                contact_id=owner,
                kind="expire",
                points=-lot.left,
                order_id=lot.order_id,
                idempotency_key=f"{EXPIRE_KEY}{entry_id}",
                note=f"unspent points of entry {entry_id} expired",
                # Dated when they expired, so the history reads in the order things happened.
                created_at=lot.expires_at,
            )
        )
    session.flush()


def _expired_entry_id(key: str) -> int | None:
    suffix = key.removeprefix(EXPIRE_KEY)
    return int(suffix) if key.startswith(EXPIRE_KEY) and suffix.isdigit() else None


# --- checks and locks ------------------------------------------------------------------


def _lock(session: Session, contact_id: str) -> str:
    """Lock the contact's ids for this transaction; returns its canonical id."""
    if not contact_id or len(contact_id) > 255:
        raise ValueError("contact id must be 1 to 255 characters")
    for _ in range(5):
        owner = canonical_id(session, contact_id)
        lock_ids(session, {contact_id, owner})
        if canonical_id(session, contact_id) == owner:  # no merge moved it meanwhile
            return owner
    raise RuntimeError(f"contact {contact_id!r} keeps being merged")


def _existing(session: Session, key: str) -> LoyaltyEntry | None:
    query = select(LoyaltyEntry).where(LoyaltyEntry.idempotency_key == key)
    return session.exec(query).first()


def _same(found: LoyaltyEntry, owner: str, kind: str, points: int) -> LoyaltyEntry:
    if (found.contact_id, found.kind, found.points) != (owner, kind, points):
        raise IdempotencyConflict(
            f"idempotency key {found.idempotency_key!r} was already used to {found.kind} "
            f"{abs(found.points)} points for contact {found.contact_id!r}: use a new key "
            "for a different change"
        )
    return found


def _check_points(points: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int):
        raise ValueError(f"points must be a whole number, got {points!r}")
    if not 0 < points <= MAX_POINTS:
        raise ValueError(f"points must be between 1 and {MAX_POINTS}, got {points}")


def _check_key(key: str) -> None:
    if not key or len(key) > 500:
        raise ValueError("idempotency_key must be 1 to 500 characters")
    if key.startswith((EXPIRE_KEY, REVERSE_KEY)):
        raise ValueError(
            f"idempotency keys starting with {EXPIRE_KEY!r} or {REVERSE_KEY!r} are the ledger's own"
        )
