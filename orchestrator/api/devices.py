"""Push tokens of a contact: the app registers a token at start-up and removes it at sign-out.

(Tokens also arrive in any call's `context.device.token`; dead tokens are removed
when FCM reports them.)
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Engine

from ..store.db import session_scope
from ..store.identity import canonical_id, contact_id_problem
from ..store.tables import Contact, utcnow
from .body import parse_object, read_body
from .context import api_context, authenticate
from .errors import ApiError
from .ingest import MAX_PUSH_TOKENS as MAX_TOKENS

router = APIRouter(prefix="/v1/contacts", tags=["devices"])


class PushToken(BaseModel):
    token: str = Field(min_length=1, max_length=4096)


@router.post(
    "/{contact_id}/push-tokens",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PushToken.model_json_schema()}},
        }
    },
)
async def add_push_token(request: Request, contact_id: str) -> dict[str, bool]:
    """Register a device token (FCM registration token) for the contact."""
    ctx = api_context(request)
    payload = parse_object(await read_body(request, 8 * 1024))
    await authenticate(request, ctx, payload)
    try:
        token = PushToken.model_validate(payload).token
    except ValidationError as exc:
        raise ApiError(400, exc.errors()[0]["msg"], "token") from None
    check_contact_id(contact_id)
    if problem := contact_id_problem(contact_id):  # it may create the contact
        raise ApiError(400, problem, "contact_id")
    await ctx.db(_add, ctx.engine, contact_id, token)
    return {"success": True}


@router.delete("/{contact_id}/push-tokens/{token}")
async def remove_push_token(request: Request, contact_id: str, token: str) -> dict[str, bool]:
    """Forget a device token (sign-out, app uninstalled); unknown tokens are fine."""
    ctx = api_context(request)
    await authenticate(request, ctx)
    check_contact_id(contact_id)
    await ctx.db(_remove, ctx.engine, contact_id, token)
    return {"success": True}


def check_contact_id(contact_id: str) -> None:
    if not contact_id.strip() or len(contact_id) > 255 or "\x00" in contact_id:
        raise ApiError(400, "contact id must be 1 to 255 characters, without NUL", "contact_id")


def _add(engine: Engine, contact_id: str, token: str) -> None:
    with session_scope(engine) as session:
        cid = canonical_id(session, contact_id)
        contact = session.get(Contact, cid, with_for_update=True)
        if contact is None:
            # An app may register its token before anyone signs in: a contact holding only
            # a device token is still an anonymous visitor (mergeable at sign-in), exactly
            # as the id was before this call. Any call naming it as a userId changes that.
            contact = Contact(id=cid, anonymous=True)
            session.add(contact)
        tokens = [t for t in contact.push_tokens or [] if t != token]
        contact.push_tokens = [*tokens, token][-MAX_TOKENS:]
        contact.updated_at = utcnow()


def _remove(engine: Engine, contact_id: str, token: str) -> None:
    with session_scope(engine) as session:
        contact = session.get(Contact, canonical_id(session, contact_id), with_for_update=True)
        if contact is not None and token in (contact.push_tokens or []):
            contact.push_tokens = [t for t in contact.push_tokens if t != token]
            contact.updated_at = utcnow()
