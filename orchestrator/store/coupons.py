"""Promo coupons: unique single-use codes issued to one contact, checked and redeemed.

Codes look like `WELCOME-7KQ2MX9R`: the campaign's prefix and 8 characters drawn
with `secrets` from 31 letters and digits (0, O, 1, I and L are left out because
people misread them), about 40 bits, so codes cannot be guessed. Codes are stored
upper-case and matched case-insensitively.

Redeeming is single use and idempotent per order: the same order redeeming again
gets the same answer; another order is refused. A code belongs to the contact it was
issued to: only an order of that contact (or one of its aliases) may use it, unless
it was issued `shareable` (a code meant to be passed on). A coupon issued by a
journey run (`workflow_id`, `entry_seq`) marks that run converted when it is redeemed.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from .identity import canonical_id, lock_ids
from .tables import Coupon, JourneyRun

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
CODE_LENGTH = 8
PREFIX = re.compile(r"^[A-Z0-9]{1,20}$")
MAX_ATTEMPTS = 10  # a collision at 31**8 codes is rare; ten in a row means something broke
REASONS = ("unknown", "expired", "redeemed", "other_contact", "below_minimum")

Reason = Literal["unknown", "expired", "redeemed", "other_contact", "below_minimum"]


class CouponRejected(Exception):
    """The coupon cannot be redeemed; `reason` is one of `REASONS`."""

    def __init__(self, reason: Reason, code: str, message: str):
        super().__init__(message)
        self.reason, self.code, self.message = reason, code, message


@dataclass(frozen=True)
class CouponCheck:
    """Whether a code can be used now, and what the shop should show about it."""

    code: str
    valid: bool
    reason: Reason | None
    campaign: str | None = None
    kind: str | None = None
    value: float | None = None
    currency: str | None = None
    minimum_order: float | None = None
    expires_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return found


def normalize_code(code: str) -> str:
    return code.strip().upper()


def issue_coupon(
    session: Session,
    contact_id: str,
    *,
    campaign: str,
    prefix: str,
    kind: Literal["percent", "amount"],
    value: float,
    idempotency_key: str,
    now: datetime,
    currency: str | None = None,
    minimum_order: float | None = None,
    expires_at: datetime | None = None,
    journey_id: str | None = None,
    workflow_id: str | None = None,
    entry_seq: int | None = None,
    shareable: bool = False,
) -> Coupon:
    """A new code for the contact; a retry with the same `idempotency_key` returns the
    coupon issued the first time. `shareable`: any customer may use it (once), not
    only this contact."""
    prefix = prefix.strip().upper()
    _check_issue(campaign, prefix, kind, value, idempotency_key, now, minimum_order, expires_at)
    owner = canonical_id(session, contact_id)
    # Serializes issues for one contact: two retries of one step cannot both insert.
    lock_ids(session, {contact_id, owner})
    found = session.exec(select(Coupon).where(Coupon.idempotency_key == idempotency_key)).first()
    if found is not None:
        return found
    for _ in range(MAX_ATTEMPTS):
        code = f"{prefix}-{''.join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))}"
        if session.get(Coupon, code) is None:
            break
    else:
        raise RuntimeError(f"no free coupon code after {MAX_ATTEMPTS} tries for {prefix!r}")
    coupon = Coupon(
        code=code,
        campaign=campaign,
        contact_id=owner,
        kind=kind,
        value=float(value),
        currency=currency.strip().upper()[:8] if currency else None,
        minimum_order=minimum_order,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
        journey_id=journey_id,
        workflow_id=workflow_id,
        entry_seq=entry_seq,
        shareable=shareable,
        issued_at=now,
    )
    session.add(coupon)
    session.flush()
    return coupon


def check_coupon(
    session: Session,
    code: str,
    *,
    now: datetime,
    contact_id: str | Sequence[str] | None = None,
    order_total: float | None = None,
) -> CouponCheck:
    """Whether `code` can be used by `contact_id` on an order of `order_total` at `now`.

    Without a contact the owner is not checked: the answer is whether its owner could
    use it. Several ids (a userId and an anonymousId not merged yet) pass if one does.
    """
    coupon = session.get(Coupon, normalize_code(code))
    if coupon is None:
        return CouponCheck(normalize_code(code), False, "unknown")
    return _check(session, coupon, now, _ids(contact_id), order_total)


def redeem_coupon(
    session: Session,
    code: str,
    *,
    order_id: str,
    now: datetime,
    contact_id: str | Sequence[str],
    revenue: float | None = None,
    order_total: float | None = None,
) -> Coupon:
    """Use the coupon on `order_id` of `contact_id`; raises `CouponRejected` with the
    reason it cannot be.

    The order's contact is required: a code issued to one contact is theirs (and their
    aliases') only, unless it is shareable. Several ids (a userId and an anonymousId
    not merged yet) pass if one of them owns it. `order_total` (the amount the minimum
    applies to) is checked against `minimum_order` when given; `revenue` is what the
    conversion is credited with. Redeeming again for the same order returns the coupon
    unchanged.
    """
    if not order_id:
        raise ValueError("order_id is required to redeem a coupon")
    ids = _ids(contact_id)
    if not ids:
        raise ValueError("the order's contact id is required to redeem a coupon")
    coupon = session.get(Coupon, normalize_code(code), with_for_update=True)
    if coupon is None:
        raise CouponRejected("unknown", normalize_code(code), f"no coupon {code!r}")
    if coupon.redeemed_order_id == order_id:
        return coupon
    check = _check(session, coupon, now, ids, order_total)
    if check.reason is not None:
        raise CouponRejected(check.reason, coupon.code, _explain(check.reason, coupon))
    # Conditional, so two orders racing for one code cannot both win (also on SQLite,
    # where the row lock above is a no-op).
    won = session.execute(
        update(Coupon)
        .where(col(Coupon.code) == coupon.code, col(Coupon.redeemed_at).is_(None))
        .values(redeemed_at=now, redeemed_order_id=order_id, redeemed_revenue=revenue)
        .execution_options(synchronize_session=False)
    )
    session.refresh(coupon)
    if won.rowcount != 1:  # type: ignore[attr-defined]
        if coupon.redeemed_order_id == order_id:
            return coupon
        raise CouponRejected("redeemed", coupon.code, _explain("redeemed", coupon))
    _attribute(session, coupon, now, revenue)
    return coupon


def _check(
    session: Session,
    coupon: Coupon,
    now: datetime,
    contact_ids: tuple[str, ...],
    order_total: float | None,
) -> CouponCheck:
    reason: Reason | None = None
    if coupon.redeemed_at is not None:
        reason = "redeemed"
    elif coupon.expires_at is not None and coupon.expires_at <= now:
        reason = "expired"
    elif not owned_by(session, coupon, contact_ids):
        reason = "other_contact"
    elif (
        order_total is not None
        and coupon.minimum_order is not None
        and order_total < coupon.minimum_order
    ):
        reason = "below_minimum"
    return CouponCheck(
        code=coupon.code,
        valid=reason is None,
        reason=reason,
        campaign=coupon.campaign,
        kind=coupon.kind,
        value=coupon.value,
        currency=coupon.currency,
        minimum_order=coupon.minimum_order,
        expires_at=coupon.expires_at,
    )


def owned_by(session: Session, coupon: Coupon, contact_ids: tuple[str, ...]) -> bool:
    """Whether one of `contact_ids` may use the coupon: its owner or an alias of them,
    anyone for a shareable code; with no ids, the owner is not asked about."""
    if coupon.shareable or not contact_ids:
        return True
    return any(canonical_id(session, i) == coupon.contact_id for i in contact_ids)


def _ids(contact_id: str | Sequence[str] | None) -> tuple[str, ...]:
    if contact_id is None:
        return ()
    found = (contact_id,) if isinstance(contact_id, str) else tuple(contact_id)
    return tuple(dict.fromkeys(i for i in found if i))


def _explain(reason: Reason, coupon: Coupon) -> str:
    if reason == "redeemed":
        return f"coupon {coupon.code} was already used on order {coupon.redeemed_order_id}"
    if reason == "expired" and coupon.expires_at is not None:
        return f"coupon {coupon.code} expired at {coupon.expires_at.isoformat()}"
    if reason == "other_contact":
        return f"coupon {coupon.code} was issued to another customer"
    if reason == "below_minimum" and coupon.minimum_order is not None:
        currency = f" {coupon.currency}" if coupon.currency else ""
        return f"coupon {coupon.code} needs an order of at least {coupon.minimum_order:g}{currency}"
    return f"coupon {coupon.code} cannot be used ({reason})"


def _attribute(session: Session, coupon: Coupon, now: datetime, revenue: float | None) -> None:
    """The journey run that issued the coupon converted: the first conversion counts."""
    if coupon.workflow_id is None or coupon.entry_seq is None:
        return
    run = session.exec(
        select(JourneyRun)
        .where(
            JourneyRun.workflow_id == coupon.workflow_id,
            JourneyRun.entry_seq == coupon.entry_seq,
        )
        .with_for_update()
    ).first()
    if run is None or run.converted_at is not None:
        return
    run.converted_at = now
    run.revenue = revenue
    run.updated_at = now
    session.add(run)
    session.flush()


def _check_issue(
    campaign: str,
    prefix: str,
    kind: str,
    value: float,
    key: str,
    now: datetime,
    minimum_order: float | None,
    expires_at: datetime | None,
) -> None:
    if not campaign or len(campaign) > 63:
        raise ValueError("campaign must be 1 to 63 characters")
    if not PREFIX.match(prefix):
        raise ValueError(f"coupon prefix {prefix!r} must be 1 to 20 letters or digits (A-Z, 0-9)")
    if kind not in ("percent", "amount"):
        raise ValueError(f"coupon kind must be 'percent' or 'amount', got {kind!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"coupon value must be a number, got {value!r}")
    if value <= 0 or (kind == "percent" and value > 100):
        raise ValueError(
            f"coupon value {value!r} is out of range: a percent is above 0 and at most 100, "
            "an amount above 0"
        )
    if minimum_order is not None and not (math.isfinite(minimum_order) and minimum_order >= 0):
        raise ValueError(f"minimum_order must be 0 or more, got {minimum_order!r}")
    if expires_at is not None and expires_at <= now:
        raise ValueError(f"expires_at {expires_at.isoformat()} is not after now")
    if not key or len(key) > 500:
        raise ValueError("idempotency_key must be 1 to 500 characters")
