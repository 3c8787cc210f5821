"""Coupons and loyalty points for the storefront's checkout (write key).

- `GET /v1/coupons/{code}`: can this code be used (by this customer, on this cart)?
- `POST /v1/coupons/{code}/redeem`: use it on an order of the customer it names; the
  same order again is fine.
- `GET /v1/contacts/{id}/points`: balance and ledger.
- `POST /v1/contacts/{id}/points/redeem`: spend points on an order, once per order.

The coupon endpoints are throttled per key and per client address, a miss (an
unknown code, another customer's code) costing more than a hit (`coupon_limits.py`).
A coupon or points refusal answers with the usual error body plus `reason`
(`redeemed`, `expired`, `other_contact`, `below_minimum`, `unknown`,
`insufficient_points`, `order_already_redeemed`); see docs/loyalty-and-coupons.md.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Engine

from ..store import loyalty
from ..store.coupons import (
    CouponRejected,
    check_coupon,
    normalize_code,
    redeem_coupon,
)
from ..store.db import session_scope
from ..store.tables import LoyaltyEntry, utcnow
from .body import parse_object, read_body
from .context import api_context, authenticate
from .coupon_limits import throttled
from .devices import check_contact_id
from .errors import ApiError

router = APIRouter(tags=["commerce"])
Body = TypeVar("Body", bound=BaseModel)
MAX_BODY = 8 * 1024
MAX_HISTORY = 500
# A refused coupon: which status tells the shop what to do.
COUPON_STATUS = {
    "unknown": 404,
    "other_contact": 403,
    "redeemed": 409,
    "expired": 410,
    "below_minimum": 422,
}


class Refused(Exception):
    """A business refusal: an error body with a machine-readable `reason` (and extras)."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.reason, self.message, self.extra = status, reason, message, extra

    def response(self) -> JSONResponse:
        body = {
            "success": False,
            "error": self.message,
            "code": self.reason,
            "message": self.message,
            "reason": self.reason,
            **self.extra,
        }
        return JSONResponse(body, status_code=self.status)


def _id_text(value: Any) -> Any:
    """Shops send order ids as numbers too: keep them as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


class CouponRedemption(BaseModel):
    """The order a code is used on, and whose order it is (Segment's ids)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    order_id: str = Field(min_length=1, max_length=255)
    user_id: str | None = Field(default=None, alias="userId", min_length=1, max_length=255)
    anonymous_id: str | None = Field(
        default=None, alias="anonymousId", min_length=1, max_length=255
    )
    contact_id: str | None = Field(default=None, min_length=1, max_length=255)  # older name
    revenue: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    order_total: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("order_id", "user_id", "anonymous_id", "contact_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return _id_text(value)

    @property
    def customer_ids(self) -> list[str]:
        return [i for i in (self.user_id, self.contact_id, self.anonymous_id) if i]


class PointsRedemption(BaseModel):
    model_config = ConfigDict(extra="ignore")

    points: int = Field(gt=0, le=loyalty.MAX_POINTS, strict=True)
    order_id: str = Field(min_length=1, max_length=255)

    @field_validator("order_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return _id_text(value)


# --- coupons --------------------------------------------------------------------------


@router.get("/v1/coupons/{code}")
async def get_coupon(
    request: Request, code: str, contact_id: str | None = None, order_total: str | None = None
) -> dict[str, Any]:
    """Whether the code can be used now; `valid: false` says why (`reason`)."""
    ctx = api_context(request)
    key = await authenticate(request, ctx)
    # A web shop's write key is public: guessing is slowed per key and per address.
    with throttled(request, ctx.settings, key) as outcome:
        _check_code(code)
        total = _number(order_total, "order_total") if order_total not in (None, "") else None
        if contact_id is not None:
            check_contact_id(contact_id)
        found = await ctx.db(_check, ctx.engine, code, contact_id, total)
        outcome.reason = found["reason"]
        if found["reason"] == "unknown":
            raise ApiError(404, f"no coupon {normalize_code(code)!r}", "code")
        return {"success": True, **found}


@router.post("/v1/coupons/{code}/redeem", response_model=None)
async def redeem(request: Request, code: str) -> dict[str, Any] | JSONResponse:
    """Use the coupon on an order. The same order again answers the same; another is 409."""
    ctx = api_context(request)
    payload = parse_object(await read_body(request, MAX_BODY))
    key = await authenticate(request, ctx, payload)
    with throttled(request, ctx.settings, key) as outcome:
        _check_code(code)
        body = _validated(CouponRedemption, payload)
        if not body.customer_ids:
            raise ApiError(
                400,
                "userId or anonymousId is required: the customer whose order this is (a "
                "code can be used only by the customer it was issued to, unless it is "
                "shareable)",
                "userId",
            )
        try:
            return {"success": True, **await ctx.db(_redeem, ctx.engine, code, body)}
        except Refused as refused:
            outcome.reason = refused.reason
            return refused.response()


# --- points -----------------------------------------------------------------------------


@router.get("/v1/contacts/{contact_id}/points")
async def points(request: Request, contact_id: str, limit: str | None = None) -> dict[str, Any]:
    """The balance now (expired points taken off) and the newest ledger entries.

    An admin key: a storefront's write key can be public (apps ship it), and a
    customer's points are theirs to see and spend, through the shop's server.
    """
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    check_contact_id(contact_id)
    count = 50 if limit in (None, "") else _number(limit, "limit")
    if not float(count).is_integer() or not 1 <= count <= MAX_HISTORY:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_HISTORY}", "limit")
    return {"success": True, **await ctx.db(_points, ctx.engine, contact_id, int(count))}


@router.post("/v1/contacts/{contact_id}/points/redeem", response_model=None)
async def redeem_points(request: Request, contact_id: str) -> dict[str, Any] | JSONResponse:
    """Spend points on an order; once per order (a retry answers the same)."""
    ctx = api_context(request)
    payload = parse_object(await read_body(request, MAX_BODY))
    await authenticate(request, ctx, payload, kind="admin")
    check_contact_id(contact_id)
    body = _validated(PointsRedemption, payload)
    try:
        return {"success": True, **await ctx.db(_spend, ctx.engine, contact_id, body)}
    except Refused as refused:
        return refused.response()


# --- store work (in a thread) --------------------------------------------------------


def _check(
    engine: Engine, code: str, contact_id: str | None, total: float | None
) -> dict[str, Any]:
    with session_scope(engine) as session:
        found = check_coupon(session, code, now=utcnow(), contact_id=contact_id, order_total=total)
        return found.as_dict()


def _redeem(engine: Engine, code: str, body: CouponRedemption) -> dict[str, Any]:
    with session_scope(engine) as session:
        try:
            coupon = redeem_coupon(
                session,
                code,
                order_id=body.order_id,
                now=utcnow(),
                contact_id=body.customer_ids,
                revenue=body.revenue,
                order_total=body.order_total if body.order_total is not None else body.revenue,
            )
        except CouponRejected as exc:
            raise Refused(COUPON_STATUS[exc.reason], exc.reason, exc.message) from exc
        return {
            "code": coupon.code,
            "redeemed_at": _time(coupon.redeemed_at),
            "order_id": coupon.redeemed_order_id,
        }


def _points(engine: Engine, contact_id: str, limit: int) -> dict[str, Any]:
    with session_scope(engine) as session:
        now = utcnow()
        total = loyalty.balance(session, contact_id, now)
        entries = loyalty.history(session, contact_id, limit)
        return {"balance": total, "entries": [entry_json(e) for e in entries]}


def _spend(engine: Engine, contact_id: str, body: PointsRedemption) -> dict[str, Any]:
    with session_scope(engine) as session:
        now = utcnow()
        try:
            entry = loyalty.redeem(
                session,
                contact_id,
                body.points,
                idempotency_key=f"points-redeem:{body.order_id}",
                now=now,
                order_id=body.order_id,
            )
        except loyalty.InsufficientPoints as exc:
            raise Refused(409, "insufficient_points", str(exc), balance=exc.balance) from exc
        except loyalty.IdempotencyConflict as exc:
            raise Refused(
                409,
                "order_already_redeemed",
                f"order {body.order_id!r} already spent points "
                "(another amount or another customer); one redemption per order",
            ) from exc
        return {
            "balance": loyalty.balance(session, contact_id, now),
            "entry": entry_json(entry),
        }


def entry_json(entry: LoyaltyEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "points": entry.points,
        "order_id": entry.order_id,
        "journey_id": entry.journey_id,
        "note": entry.note,
        "expires_at": _time(entry.expires_at),
        "created_at": _time(entry.created_at),
    }


# --- input checks ----------------------------------------------------------------------


def _validated(model: type[Body], payload: dict[str, Any]) -> Body:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise ApiError(400, f"{field}: {error['msg']}" if field else error["msg"], field) from None


def _check_code(code: str) -> None:
    if not code.strip() or len(code) > 64 or "\x00" in code:
        raise ApiError(400, "coupon code must be 1 to 64 characters", "code")


def _number(text: str | None, field: str) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise ApiError(400, f"{field} must be a number, got {text!r}", field) from None
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"{field} must be a number of 0 or more, got {text!r}", field)
    return value


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
