"""Transactional messages (server or admin key): one template to one contact, now.

- `POST /v1/messages`: `{"template", "userId" | "anonymousId", "channel", "properties",
  "idempotencyKey"}` answers `202` with the message id and its status URL once the
  message and its request are committed (`store/message_requests.py`); the same key again
  answers `200` with the first message;
- `GET /v1/messages/{id}`: where a message (transactional or a journey's) stands: status,
  channel, each step of its timeline, why it was not sent. Never its content or address.

Order confirmations, password resets and shipping updates go through the rendering, the
send ledger, the suppression list and the provider adapters journey messages use.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from channels.email import address_problem

from ..rendering.catalog import CHANNELS, message_names
from ..rendering.catalog import Message as MessageFolder
from ..services.spelling import closest_name
from ..store.db import session_scope
from ..store.message_requests import KeyReused, MessageRequest, UnknownContact, request_message
from ..store.tables import Message
from .body import parse_object, read_body
from .context import api_context, authenticate
from .errors import ApiError

router = APIRouter(prefix="/v1/messages", tags=["messages"])

MAX_BODY = 64 * 1024
FIELDS = ("template", "userId", "anonymousId", "channel", "to", "properties", "idempotencyKey")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
CHOICES = (*CHANNELS, "preferred")
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,255}")


@router.post("", status_code=202)
async def send_message(request: Request) -> JSONResponse:
    """Send one named template to one contact now; 202 with the message id and status URL."""
    ctx = api_context(request)
    payload = parse_object(await read_body(request, MAX_BODY))
    await authenticate(request, ctx, payload, kind="server")
    asked = _parse(payload, request.headers.get("idempotency-key"))
    _check_template(ctx.settings.templates_dir, asked)
    try:
        accepted = await ctx.db(request_message, ctx.engine, asked)
    except UnknownContact:
        field = "userId" if "userId" in payload else "anonymousId"
        raise ApiError(
            404,
            f"no contact with {field} {asked.contact_id!r}: send an identify with their email "
            "or phone first (POST /v1/identify), then the message",
            field,
        ) from None
    except KeyReused as exc:
        raise ApiError(409, str(exc), "idempotencyKey") from None
    if accepted.created:
        ctx.stored()  # the router starts the message's workflow now, not at its next tick
    url = f"/v1/messages/{accepted.message_id}"
    return JSONResponse(
        {
            "success": True,
            "id": accepted.message_id,
            "status": accepted.status,
            "status_url": url,
            "duplicate": not accepted.created,
        },
        status_code=202 if accepted.created else 200,
        headers={"Location": url},
    )


@router.get("/{message_id}")
async def message_status(request: Request, message_id: str) -> dict[str, Any]:
    """Where a message stands: status, channel, timeline; 404 for an unknown id."""
    ctx = api_context(request)
    await authenticate(request, ctx, kind="server")
    if len(message_id) > 36:
        raise ApiError(404, f"no message {message_id[:40]!r}…", "id")
    found = await ctx.db(_status, ctx.engine, message_id)
    if found is None:
        raise ApiError(404, f"no message {message_id!r} (erased, or never sent)", "id")
    return {"success": True, "message": found}


def _parse(payload: dict[str, Any], header_key: str | None) -> MessageRequest:
    unknown = [name for name in payload if name not in FIELDS and name != "writeKey"]
    if unknown:
        guess = closest_name(unknown[0], list(FIELDS), key=str.casefold)
        hint = f"; did you mean {guess!r}?" if guess else f"; expected {', '.join(FIELDS)}"
        raise ApiError(400, f"unknown field {unknown[0]!r}{hint}", unknown[0])
    template = payload.get("template")
    if not isinstance(template, str) or not template:
        raise ApiError(
            400, "template is required: the name of a folder under templates/", "template"
        )
    if not _TEMPLATE_NAME.fullmatch(template):
        raise ApiError(
            400,
            f"template {template[:100]!r} is no message name: letters, digits, _ and -, "
            "as the folder under templates/ is named",
            "template",
        )
    ids = [name for name in ("userId", "anonymousId") if payload.get(name) not in (None, "")]
    if len(ids) != 1:
        raise ApiError(
            400,
            "name the contact with userId (or anonymousId), exactly one of them",
            "userId",
        )
    contact = payload[ids[0]]
    if isinstance(contact, int | float) and not isinstance(contact, bool):
        contact = str(contact)  # Segment clients send numeric ids too
    if not isinstance(contact, str) or len(contact) > 255 or "\x00" in contact:
        raise ApiError(400, f"{ids[0]} must be text of 1 to 255 characters", ids[0])
    # null is "not sent", as for anonymousId and idempotencyKey: many serializers write it.
    channel = _channel(payload["channel"] if payload.get("channel") is not None else "email")
    properties = payload["properties"] if payload.get("properties") is not None else {}
    if not isinstance(properties, dict):
        raise ApiError(
            400, "properties must be an object: the template reads event.properties", "properties"
        )
    to = _to(payload.get("to"), channel)
    return MessageRequest(contact, template, channel, properties, _key(payload, header_key), to)


def _to(value: Any, channel: str | list[str]) -> str | None:
    """The address the back end vouches for (its own account record), or None: then the
    message goes to the contact's address on file, which a write key may change."""
    if value is None:
        return None
    if channel not in ("email", "sms"):
        raise ApiError(
            400,
            "to needs channel email or sms (one channel: the address is for it)",
            "to",
        )
    if not isinstance(value, str) or not value.strip():
        raise ApiError(
            400, f"to must be an {'email address' if channel == 'email' else 'E.164 number'}", "to"
        )
    value = value.strip()
    if channel == "email" and (problem := address_problem(value)):
        raise ApiError(400, f"to is not one email address: {problem}", "to")
    if channel == "sms" and not _E164.fullmatch(value):
        raise ApiError(
            400,
            f"to is not a phone number in E.164 form (like +381601234567): {value[:40]!r}",
            "to",
        )
    return value


def _channel(value: Any) -> str | list[str]:
    listed = value if isinstance(value, list) else [value]
    if not listed or not all(isinstance(v, str) for v in listed):
        raise ApiError(400, f"channel must be one of {', '.join(CHOICES)}, or a list", "channel")
    if isinstance(value, list) and "preferred" in listed:
        raise ApiError(
            400,
            "preferred cannot be in a list: send channel preferred alone, or list the "
            "channels to try in order",
            "channel",
        )
    for each in listed:
        if each not in CHOICES:
            guess = closest_name(each, list(CHOICES), key=str.casefold)
            hint = f"did you mean {guess!r}?" if guess else f"expected {', '.join(CHOICES)}"
            raise ApiError(400, f"unknown channel {each[:40]!r}: {hint}", "channel")
    if isinstance(value, list) and len(set(listed)) != len(listed):
        raise ApiError(400, "channel lists a channel twice", "channel")
    return list(listed) if isinstance(value, list) else value


def _key(payload: dict[str, Any], header: str | None) -> str | None:
    body = payload.get("idempotencyKey")
    if body is not None and not isinstance(body, str):
        raise ApiError(400, "idempotencyKey must be text", "idempotencyKey")
    if body is not None and header is not None and body != header:
        raise ApiError(
            400,
            "the Idempotency-Key header and idempotencyKey in the body differ: send one",
            "idempotencyKey",
        )
    key = body if body is not None else header
    if key is not None and not _PRINTABLE.fullmatch(key):
        raise ApiError(
            400,
            "idempotencyKey must be 1 to 255 printable ASCII characters without spaces, "
            "e.g. order-1042-confirmation",
            "idempotencyKey",
        )
    return key


def _check_template(templates_dir: Any, asked: MessageRequest) -> None:
    """Refuse a template this API's checkout does not have, or not for the channel asked.

    An API process deployed without the templates folder skips the check: the worker
    then records the failure, shown at the status URL.
    """
    if not message_names(templates_dir):
        return
    folder = MessageFolder(templates_dir, asked.template)
    if not folder.exists():
        guess = folder.meant()
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise ApiError(400, f"unknown template {asked.template!r}{hint}", "template")
    has = folder.channels()
    wanted = asked.channel if isinstance(asked.channel, list) else [asked.channel]
    if ("preferred" in wanted and has) or any(c in has for c in wanted):
        return
    raise ApiError(
        400,
        f"template {asked.template!r} has no {' or '.join(wanted)} version "
        f"(it has: {', '.join(has) or 'none complete'})",
        "channel",
    )


def _status(engine: Engine, message_id: str) -> dict[str, Any] | None:
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        if row is None:
            return None
        return {
            "id": row.id,
            "status": row.status,
            "channel": row.channel,
            "template": row.template,
            "category": row.category,
            "journey": row.journey_id or None,
            "contact_id": row.contact_id,
            "locale": row.locale,
            "error": row.error,
            "created_at": row.created_at.isoformat(),
            "queued_at": row.queued_at.isoformat() if row.queued_at else None,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "timeline": [
                {
                    k: v
                    for k, v in entry.items()
                    if k in ("status", "at", "check", "result", "detail")
                }
                for entry in row.timeline
            ],
        }
