"""Export and erasure of a contact's personal data (admin key): GDPR access and erasure.

`GET /v1/contacts/{id}` returns everything stored about the contact; `DELETE`
stops its journeys in Temporal and erases it (`orchestrator.services.privacy`). Both
accept the contact's id or any of its aliases.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.exc import OperationalError

from ..services.privacy import TemporalUnavailable, erase_contact, export_contact
from .context import api_context, authenticate
from .devices import check_contact_id
from .errors import ApiError

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
RETRY_ERASURE_AFTER = "30"  # seconds: Temporal restarts and failovers take about that


@router.get("/{contact_id}")
async def export(request: Request, contact_id: str) -> dict[str, Any]:
    """The contact, its aliases, events, messages (with status timelines) and journey runs."""
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    check_contact_id(contact_id)
    found = await ctx.db(export_contact, ctx.engine, contact_id)
    if found is None:
        raise ApiError(404, f"no contact with id {contact_id!r} (or it was erased)")
    return {"success": True, **found}


@router.delete("/{contact_id}")
async def erase(request: Request, contact_id: str) -> dict[str, Any]:
    """Stop the contact's journeys, then erase its personal data. Repeating it is harmless:
    an id with nothing left to erase answers 200 with `found: false`."""
    ctx = api_context(request)
    await authenticate(request, ctx, kind="admin")
    check_contact_id(contact_id)
    try:
        result = await erase_contact(ctx.engine, ctx.client, contact_id)
    except TemporalUnavailable as exc:
        raise ApiError(503, str(exc), **{"Retry-After": RETRY_ERASURE_AFTER}) from exc
    except OperationalError as exc:  # e.g. SQLite "database is locked": nothing committed
        raise ApiError(
            503,
            f"database busy, nothing was erased; retry later: {exc.orig}",
            None,
            **{"Retry-After": "1"},
        ) from exc
    return {"success": True, **result.as_dict()}
