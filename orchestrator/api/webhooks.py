"""Provider feedback over HTTP: SendGrid's Event Webhook and Twilio's messaging webhooks.

Every request is verified before its body is interpreted, and a request that fails
verification stores nothing. What a verified request reports is committed (events,
suppressions, consent: `orchestrator/feedback/recording.py`) before the 2xx, then
the router is woken. An endpoint whose secret is not configured answers 503 naming
the setting, so providers keep retrying until it is set; it never takes unsigned data.

Answers: 200 with `{"success": true, "stored", "duplicates", "ignored"}` (Twilio's
inbound endpoint answers empty TwiML instead), 400 for a body that is not the
provider's shape, 401 for a missing signature, 403 for a wrong or stale one, 413
for a body over the limit, 503 when not configured or the database is busy.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..feedback.recording import record_inbound_sms, record_message_feedback
from ..feedback.sendgrid_events import MalformedEvents, parse_events
from ..feedback.signatures import (
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    TWILIO_SIGNATURE,
    FormParams,
    SendGridVerifier,
    TwilioVerifier,
    WebhookConfigError,
    WebhookRejected,
)
from ..feedback.twilio_events import MissingParameter, inbound_sms, status_feedback
from ..feedback.types import Outcome
from .body import read_body
from .context import ApiContext, api_context
from .errors import ApiError

MAX_SENDGRID_BYTES = 1024 * 1024  # SendGrid posts batches of well under 1 MB
MAX_TWILIO_BYTES = 64 * 1024  # a form with one SMS (1,600 characters) and its media URLs
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class TwimlResponse(Response):
    media_type = "text/xml"


def _body(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}


SENDGRID_BODY = _body(
    "application/json",
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "event": {"type": "string"},
                "sg_event_id": {"type": "string"},
                "msg_id": {"type": "string"},
                "email": {"type": "string"},
                "timestamp": {"type": "integer"},
            },
        },
    },
)
TWILIO_FORM = {
    "type": "object",
    "required": ["MessageSid"],
    "properties": {
        name: {"type": "string"}
        for name in ("MessageSid", "MessageStatus", "ErrorCode", "From", "To", "Body")
    },
}
SIGNED = {
    400: {"description": "signed, but not the provider's shape (what is wrong is said)"},
    401: {"description": "the signature header is missing"},
    403: {"description": "the signature is wrong or its timestamp is stale"},
    413: {"description": "the body is over the endpoint's limit"},
    503: {"description": "the webhook's secret is not configured, or the database is busy"},
}


@router.post("/sendgrid", openapi_extra=SENDGRID_BODY, responses=SIGNED)
async def sendgrid_events(request: Request) -> dict[str, Any]:
    """SendGrid's signed Event Webhook: delivery, engagement, bounces, complaints."""
    ctx = api_context(request)
    verifier = _configured(
        lambda: SendGridVerifier(ctx.settings.sendgrid_webhook_public_key or ""),
        ctx.settings.sendgrid_webhook_public_key,
        "JOURNEYS_SENDGRID_WEBHOOK_PUBLIC_KEY (SendGrid > Settings > Mail Settings > "
        "Event Webhook > Signature Verification: the verification key)",
    )
    raw = await read_body(request, MAX_SENDGRID_BYTES)
    _verified(
        lambda: verifier.verify(
            raw,
            request.headers.get(SENDGRID_SIGNATURE, ""),
            request.headers.get(SENDGRID_TIMESTAMP, ""),
            time.time(),
            ctx.settings.webhook_max_age,
        )
    )
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON (SendGrid posts a JSON array)") from None
    try:
        parsed = parse_events(payload)
    except MalformedEvents as exc:
        raise ApiError(400, exc.message, exc.field) from None
    outcome = Outcome(ignored=parsed.ignored)
    if parsed.feedback:
        stored = await ctx.db(record_message_feedback, ctx.engine, parsed.feedback, "email")
        outcome = _plus(stored, parsed.ignored)
    return _answer(ctx, outcome)


@router.post(
    "/twilio/status",
    openapi_extra=_body("application/x-www-form-urlencoded", TWILIO_FORM),
    responses=SIGNED,
)
async def twilio_status(request: Request) -> dict[str, Any]:
    """Twilio's status callback for an SMS we sent: delivered, undelivered, failed."""
    ctx = api_context(request)
    params = await _twilio_params(request, ctx)
    try:
        feedback = status_feedback(params)
    except MissingParameter as exc:
        raise ApiError(400, exc.message, exc.field) from None
    if feedback is None:
        return _answer(ctx, Outcome(ignored=1))
    # Our own id, put in the callback URL at send time (signed with it by Twilio).
    ours = request.query_params.get("msg_id")
    if ours and len(ours) <= 36:
        feedback = dataclasses.replace(feedback, message_id=ours)
    return _answer(ctx, await ctx.db(record_message_feedback, ctx.engine, [feedback], "sms"))


@router.post(
    "/twilio/inbound",
    openapi_extra=_body("application/x-www-form-urlencoded", TWILIO_FORM),
    response_class=TwimlResponse,
    responses={200: {"description": "empty TwiML: we send no reply of our own"}, **SIGNED},
)
async def twilio_inbound(request: Request) -> TwimlResponse:
    """An SMS to one of our numbers: STOP / START / HELP, or a reply journeys can wait for."""
    ctx = api_context(request)
    params = await _twilio_params(request, ctx)
    try:
        sms = inbound_sms(params)
    except MissingParameter as exc:
        raise ApiError(400, exc.message, exc.field) from None
    outcome = await ctx.db(record_inbound_sms, ctx.engine, sms)
    if outcome.stored:
        ctx.stored()
    # Empty TwiML: no reply of ours. Twilio itself answers STOP, START and HELP.
    return TwimlResponse(EMPTY_TWIML)


# --- helpers --------------------------------------------------------------------------


async def _twilio_params(request: Request, ctx: ApiContext) -> FormParams:
    """The verified form parameters of a Twilio webhook."""
    token = ctx.settings.twilio_auth_token
    verifier = _configured(
        lambda: TwilioVerifier(token or ""),
        token,
        "TWILIO_AUTH_TOKEN (Twilio Console > Account > API keys & tokens: the Auth Token)",
    )
    raw = await read_body(request, MAX_TWILIO_BYTES)
    params = _form(raw)
    _verified(
        lambda: verifier.verify(
            public_url(ctx, request), params, request.headers.get(TWILIO_SIGNATURE, "")
        )
    )
    return params


def public_url(ctx: ApiContext, request: Request) -> str:
    """The URL Twilio called: JOURNEYS_PUBLIC_URL + path + query, whatever proxy is between.

    The Host and scheme we see behind a proxy are not what Twilio signed, so they are
    not used; the path and the raw query are.
    """
    base = ctx.settings.resolved_public_url.rstrip("/")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{base}{request.url.path}" + (f"?{query}" if query else "")


def _form(raw: bytes) -> FormParams:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the form body is not UTF-8 (Twilio posts UTF-8 forms)") from None
    params = FormParams()
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=1000)
    except ValueError:
        raise ApiError(400, "the form has more than 1000 fields") from None
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def _configured(build: Any, secret: str | None, setting: str) -> Any:
    if not secret:
        raise ApiError(503, f"this webhook is not configured: set {setting}")
    try:
        return build()
    except WebhookConfigError as exc:
        raise ApiError(503, f"this webhook is misconfigured: {exc}") from None


def _verified(check: Any) -> None:
    try:
        check()
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.message) from None


def _plus(outcome: Outcome, ignored: int) -> Outcome:
    outcome.ignored += ignored
    return outcome


def _answer(ctx: ApiContext, outcome: Outcome) -> dict[str, Any]:
    if outcome.stored:
        ctx.stored()
    return outcome.as_json()
