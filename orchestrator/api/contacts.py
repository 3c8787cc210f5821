"""Export and erasure of a contact's personal data (admin key): GDPR access and erasure.

`GET /v1/contacts/{id}` returns everything stored about the contact; `DELETE`
stops its journeys in Temporal and erases it (`orchestrator.services.privacy`). Both
accept the contact's id or any of its aliases.

`GET|DELETE /v1/contacts?id=…` do the same for any id at all: an id no URL path can
carry (a `/`, which ingest refuses now but stored before) must stay erasable.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..services.privacy import (
    ErasureIncomplete,
    StoreBusy,
    TemporalUnavailable,
    erase_contact,
    export_contact,
)
from .context import api_context, authenticate
from .devices import check_contact_id
from .errors import ApiError

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
RETRY_ERASURE_AFTER = "30"  # seconds: Temporal restarts and failovers take about that


@router.get("/{contact_id}")
async def export(request: Request, contact_id: str) -> dict[str, Any]:
    """The contact, its aliases, events, messages (with status timelines) and journey runs."""
    return await _export(request, contact_id)


@router.get("")
async def export_by_query(request: Request, id: str | None = None) -> dict[str, Any]:
    """`GET /v1/contacts/{id}` for an id given as `?id=`: any id, also one with `/`."""
    return await _export(request, id)


@router.delete("/{contact_id}")
async def erase(request: Request, contact_id: str) -> dict[str, Any]:
    """Stop the contact's journeys, then erase its personal data. Repeating it is harmless:
    an id with nothing left to erase answers 200 with `found: false`."""
    return await _erase(request, contact_id)


@router.delete("")
async def erase_by_query(request: Request, id: str | None = None) -> dict[str, Any]:
    """`DELETE /v1/contacts/{id}` for an id given as `?id=`: any id, also one with `/`."""
    return await _erase(request, id)


def _given(contact_id: str | None) -> str:
    """The id of the call (None: `?id=` was left out), checked."""
    if contact_id is None:
        raise ApiError(400, "id is required: /v1/contacts?id=<contact id>", "id")
    check_contact_id(contact_id)
    return contact_id


async def _export(request: Request, asked: str | None) -> dict[str, Any]:
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    contact_id = _given(asked)
    found = await ctx.db(export_contact, ctx.engine, contact_id)
    if found is None:
        raise ApiError(404, f"no contact with id {contact_id!r} (or it was erased)")
    return {"success": True, **found}


async def _erase(request: Request, asked: str | None) -> dict[str, Any]:
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    contact_id = _given(asked)
    try:
        result = await erase_contact(ctx.engine, ctx.client, contact_id, ctx.python_journeys)
    except TemporalUnavailable as exc:
        raise ApiError(503, str(exc), **{"Retry-After": RETRY_ERASURE_AFTER}) from exc
    except (StoreBusy, ErasureIncomplete) as exc:  # says what was done; the driver's text is logged
        raise ApiError(503, str(exc), None, **{"Retry-After": "1"}) from exc
    return {"success": True, **result.as_dict()}
