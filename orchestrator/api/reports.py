"""What journeys did (admin key): the reporting model over HTTP.

- `GET /v1/journeys`: every deployed journey with its versions and headline numbers;
- `GET /v1/journeys/{id}/stats`: steps, messages and split variants (`journeys stats`);
- `GET /v1/contacts/{id}/timeline`: a contact's story (`journeys explain`).

`since`/`until` (YYYY-MM-DD, UTC) select the runs that entered in the period.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from fastapi import APIRouter, Request

from ..analytics.stats import UnknownJourney, headlines, journey_exists, journey_stats
from ..analytics.story import DEFAULT_EVENTS, MAX_EVENTS, contact_story
from ..store.db import session_scope
from .context import api_context, authenticate
from .devices import check_contact_id
from .errors import ApiError

router = APIRouter(tags=["reports"])
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@router.get("/v1/journeys")
async def journeys(
    request: Request, since: str | None = None, until: str | None = None
) -> dict[str, Any]:
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    first, last = _period(since, until)

    def read() -> list[dict[str, Any]]:
        with session_scope(ctx.engine) as session:
            return [h.to_json() for h in headlines(session, first, last)]

    return {"success": True, "journeys": await ctx.db(read)}


@router.get("/v1/journeys/{journey_id}/stats")
async def stats(
    request: Request,
    journey_id: str,
    since: str | None = None,
    until: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    first, last = _period(since, until)
    number = _number(version, "version", 1, 10**9) if version is not None else None

    def read() -> dict[str, Any]:
        with session_scope(ctx.engine) as session:
            return journey_stats(session, journey_id, first, last, number).to_json()

    try:
        return {"success": True, "stats": await ctx.db(read)}
    except UnknownJourney as exc:
        raise ApiError(404, str(exc), "journey_id") from None


@router.get("/v1/contacts/{contact_id}/timeline")
async def timeline(
    request: Request,
    contact_id: str,
    journey: str | None = None,
    events: str | None = None,
) -> dict[str, Any]:
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    check_contact_id(contact_id)
    count = _number(events, "events", 0, MAX_EVENTS) if events is not None else DEFAULT_EVENTS

    def read() -> dict[str, Any] | None:
        with session_scope(ctx.engine) as session:
            if journey is not None and not journey_exists(session, journey):
                raise ApiError(404, f"no journey {journey!r} was ever deployed", "journey")
            story = contact_story(session, contact_id, journey, count)
        return story.to_json() if story.exists or story.moments else None

    found = await ctx.db(read)
    if found is None:
        raise ApiError(404, f"no contact with id {contact_id!r} (or it was erased)")
    return {"success": True, **found}


def _period(since: str | None, until: str | None) -> tuple[date | None, date | None]:
    first, last = _day(since, "since"), _day(until, "until")
    if first and last and first > last:
        raise ApiError(400, f"since {first} is after until {last}", "since")
    return first, last


def _day(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        if not _DAY.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a day as YYYY-MM-DD, not {text!r}", name) from None


def _number(text: str, name: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}", name)
    return int(text)
