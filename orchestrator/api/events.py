"""Segment's HTTP Tracking API: `/v1/identify|track|page|screen|group|alias|batch`.

Limits as Segment's: 32 KB per call and per batch item, 500 KB per batch.
Errors are JSON `{"success": false, "error", "field"}`: 400 for a malformed
call (nothing of the batch is stored), 401 for a missing or wrong key, 403 for an
alias of a customer (an identified contact) sent without an admin key, 413
for a body too large, 429 with Retry-After when a key sends too fast, 503
with Retry-After when the database is busy.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from .body import parse_object, read_body
from .context import ApiContext, api_context, authenticate, is_admin_key
from .errors import ApiError
from .ingest import CallRefused
from .ratelimit import RateLimiter
from .segment import CALLS, AliasCall, FieldProblem, SegmentCall

MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_ITEMS = 2_500
OK = {"success": True}

router = APIRouter(prefix="/v1", tags=["events"])


def _schema(model: type[SegmentCall]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema(by_alias=True)}},
        }
    }


def _validate(model: type[SegmentCall], payload: dict[str, Any], where: str = "") -> SegmentCall:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        loc = cause.field.split(".") if isinstance(cause, FieldProblem) else first["loc"]
        field = ".".join(str(p) for p in (where, *loc) if p != "") or None
        message = first["msg"].removeprefix("Value error, ")
        raise ApiError(400, f"{where + ': ' if where else ''}{message}", field) from None


async def _limit(request: Request, ctx: ApiContext, key: str, cost: int) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is None and ctx.settings.ingest_rate_limit:
        rate = ctx.settings.ingest_rate_limit
        limiter = request.app.state.limiter = RateLimiter(rate, max(rate * 2, 1))
    if limiter is None:
        return
    wait = limiter.take(hashlib.sha256(key.encode()).hexdigest(), cost)
    if wait:
        after = RateLimiter.retry_after(wait)
        raise ApiError(
            429,
            f"too many calls for this write key; retry after {after} s",
            None,
            **{"Retry-After": after, "X-RateLimit-Reset": after},
        )


async def _store(ctx: ApiContext, key: str, calls: list[SegmentCall], batch: bool = False) -> None:
    """Commit the calls; an alias the key may not make is a 403 naming its field."""
    # Only an alias may merge customers, and only with an admin key: ask which key it
    # is just then (a lookup), not on every call.
    admin = any(isinstance(c, AliasCall) for c in calls) and await is_admin_key(ctx, key)
    try:
        new = await ctx.store(calls, admin)
    except CallRefused as refused:
        where = f"batch.{refused.index}." if batch else ""
        message = f"batch.{refused.index}: {refused.message}" if batch else refused.message
        raise ApiError(403, message, where + refused.field) from None
    if new:
        ctx.stored()


async def _ingest(request: Request, kind: str) -> dict[str, bool]:
    ctx = api_context(request)
    payload = parse_object(await read_body(request, MAX_CALL_BYTES))
    key = await authenticate(request, ctx, payload)
    call = _validate(CALLS[kind], payload)
    await _limit(request, ctx, key, 1)
    await _store(ctx, key, [call])
    return OK


@router.post("/identify", openapi_extra=_schema(CALLS["identify"]))
async def identify(request: Request) -> dict[str, bool]:
    """Who the person is: traits (email, phone, name, consent...) update the contact."""
    return await _ingest(request, "identify")


@router.post("/track", openapi_extra=_schema(CALLS["track"]))
async def track(request: Request) -> dict[str, bool]:
    """Something the person did: the events journeys start on, wait for and exit on."""
    return await _ingest(request, "track")


@router.post("/page", openapi_extra=_schema(CALLS["page"]))
async def page(request: Request) -> dict[str, bool]:
    return await _ingest(request, "page")


@router.post("/screen", openapi_extra=_schema(CALLS["screen"]))
async def screen(request: Request) -> dict[str, bool]:
    return await _ingest(request, "screen")


@router.post("/group", openapi_extra=_schema(CALLS["group"]))
async def group(request: Request) -> dict[str, bool]:
    return await _ingest(request, "group")


@router.post("/alias", openapi_extra=_schema(CALLS["alias"]))
async def alias(request: Request) -> dict[str, bool]:
    """`previousId` (an anonymousId) and `userId` are one person: their contacts merge."""
    return await _ingest(request, "alias")


BATCH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["batch"],
                    "properties": {
                        "batch": {"type": "array", "items": {"type": "object"}},
                        "context": {"type": "object"},
                        "integrations": {"type": "object"},
                        "sentAt": {"type": "string", "format": "date-time"},
                        "writeKey": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post("/batch", openapi_extra=BATCH_SCHEMA)
async def batch(request: Request) -> dict[str, bool]:
    """Many calls at once (what the server-side Segment clients send): all stored, or none."""
    ctx = api_context(request)
    payload = parse_object(await read_body(request, MAX_BATCH_BYTES))
    key = await authenticate(request, ctx, payload)
    items = payload.get("batch")
    if not isinstance(items, list):
        raise ApiError(400, "batch must be a list of calls", "batch")
    if len(items) > MAX_BATCH_ITEMS:
        raise ApiError(400, f"a batch holds at most {MAX_BATCH_ITEMS} calls", "batch")
    calls = [_batch_item(payload, item, i) for i, item in enumerate(items)]
    await _limit(request, ctx, key, max(len(calls), 1))
    if calls:
        await _store(ctx, key, calls, batch=True)
    return OK


def _batch_item(payload: dict[str, Any], item: Any, index: int) -> SegmentCall:
    where = f"batch.{index}"
    if not isinstance(item, dict):
        raise ApiError(400, f"{where}: each call must be a JSON object", where)
    if len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_CALL_BYTES:
        raise ApiError(413, f"{where}: a call is larger than {MAX_CALL_BYTES} bytes", where)
    kind = item.get("type")
    if kind not in CALLS:
        raise ApiError(
            400, f"{where}: type must be one of {', '.join(CALLS)}, got {kind!r}", f"{where}.type"
        )
    # The batch's context, integrations and sentAt apply to every call (the call's own win).
    merged = dict(item)
    for key in ("context", "integrations"):
        if isinstance(payload.get(key), dict):
            own = item.get(key) if isinstance(item.get(key), dict) else {}
            merged[key] = {**payload[key], **own}
    if "sentAt" in payload and "sentAt" not in item:
        merged["sentAt"] = payload["sentAt"]
    return _validate(CALLS[kind], merged, where)
