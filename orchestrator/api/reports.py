"""What journeys did (admin key): the reporting model over HTTP.

- `GET /v1/journeys`: every deployed journey with its versions and headline numbers;
- `GET /v1/journeys/{id}/stats`: steps, messages and split variants (`journeys stats`);
- `GET /v1/contacts/{id}/timeline`: a contact's story (`journeys explain`).

`since`/`until` (YYYY-MM-DD, UTC) select the runs that entered in the period.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request

from ..analytics.stats import UnknownJourney, headlines, journey_stats
from ..analytics.story import DEFAULT_EVENTS, contact_story
from ..store.db import session_scope
from .context import api_context, authenticate
from .devices import check_contact_id
from .errors import ApiError

router = APIRouter(tags=["reports"])
MAX_EVENTS = 5000


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
    version: int | None = None,
) -> dict[str, Any]:
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    first, last = _period(since, until)

    def read() -> dict[str, Any]:
        with session_scope(ctx.engine) as session:
            return journey_stats(session, journey_id, first, last, version).to_json()

    try:
        return {"success": True, "stats": await ctx.db(read)}
    except UnknownJourney as exc:
        raise ApiError(404, str(exc), "journey_id") from None


@router.get("/v1/contacts/{contact_id}/timeline")
async def timeline(
    request: Request,
    contact_id: str,
    journey: str | None = None,
    events: int = DEFAULT_EVENTS,
) -> dict[str, Any]:
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    check_contact_id(contact_id)
    if not 0 <= events <= MAX_EVENTS:
        raise ApiError(400, f"events must be between 0 and {MAX_EVENTS}", "events")

    def read() -> dict[str, Any] | None:
        with session_scope(ctx.engine) as session:
            story = contact_story(session, contact_id, journey, events)
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
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a day as YYYY-MM-DD, not {text!r}", name) from None
