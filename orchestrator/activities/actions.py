"""The `action` steps that change the world beyond the contact's traits.

`award_points` and `issue_coupon` write the loyalty ledger and the coupon table,
`track` stores an event other journeys react to, `webhook` calls another system.
Each is idempotent per (run, step): a retried activity finds what the first try
wrote. What an action produces is kept on the run (`journey.*`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..dsl.conditions import evaluate
from ..dsl.roots import COUPON_FIELDS, POINTS_KEYS, SAVED_EVENT_KEYS, coupon_keys
from ..services.webhook_calls import (
    WebhookAnswer,
    WebhookRefused,
    WebhookUnavailable,
    call_webhook,
    expand_url,
    secret_from,
)
from ..store import coupons, loyalty
from ..store.context import contact_context, event_context
from ..store.db import session_scope
from ..store.identity import load_contact
from ..store.orders import order_id_of, refunded_fraction
from ..store.run_data import RunDataTooLarge, run_data, save_run_data
from ..store.tables import ORIGIN_INTERNAL, Contact, Event, utcnow
from ..workflows import types as t

AMOUNT_FALLBACKS = {"revenue": ("revenue", "total", "subtotal")}


def _refused(message: str) -> ApplicationError:
    """Not retried: the step's on_failure runs."""
    return ApplicationError(message, type="ActionRefused", non_retryable=True)


# Makes a `webhook` action's call: (the step's spec, the signed document, idempotency key).
WebhookCaller = Callable[[dict[str, Any], dict[str, Any], str], WebhookAnswer]


def call_configured_webhook(
    spec: dict[str, Any], document: dict[str, Any], idempotency_key: str
) -> WebhookAnswer:
    """The real call, to the URL and with the secret the journey names."""
    return call_webhook(
        expand_url(spec["url"]),
        document,
        secret=secret_from(spec.get("secret_env") or "JOURNEYS_ACTIONS_SECRET"),
        idempotency_key=idempotency_key,
        timeout=float(spec.get("timeout") or 10),
    )


class ActionActivities:
    """`webhooks` makes the `webhook` action's calls: a simulation answers them itself."""

    def __init__(
        self,
        engine: Engine,
        webhooks: WebhookCaller = call_configured_webhook,
        default_timezone: str = "UTC",
    ) -> None:
        self.engine = engine
        self.webhooks = webhooks
        self.default_timezone = default_timezone  # of contacts without one (date functions)

    @activity.defn(name=t.RUN_ACTION, no_thread_cancel_exception=True)
    def run_action(self, req: t.ActionRequest) -> t.ActionResult:
        kind = req.action.get("type")
        if kind == "webhook":
            return self._webhook(req)
        now = datetime.fromisoformat(req.now) if req.now else utcnow()
        try:
            with session_scope(self.engine) as session:
                # The ledger and coupons take the contact's advisory lock themselves, first,
                # as merges do: a row lock taken here before it would invert that order.
                contact = load_contact(session, req.contact_id)
                if contact is None:
                    raise _refused(f"contact {req.contact_id!r} no longer exists (erased)")
                if kind == "award_points":
                    values = self._award_points(session, req, contact, now)
                elif kind == "issue_coupon":
                    values = self._issue_coupon(session, req, contact, now)
                elif kind == "track":
                    values = self._track(session, req, contact, now)
                else:
                    raise _refused(
                        f"unknown action type {kind!r}: this worker is older than the journey"
                    )
                save_run_data(session, req.workflow_id, req.entry_seq, values)
        except ValueError as exc:  # bad input (a reused key, too much data): no retry helps
            raise _refused(f"{kind} in step {req.step_id}: {exc}") from None
        return t.ActionResult(ok=True, saved=sorted(values))

    @activity.defn(name=t.SAVE_EVENT, no_thread_cancel_exception=True)
    def save_event(self, req: t.SaveEventRequest) -> None:
        with session_scope(self.engine) as session:
            event = event_context(session.get(Event, req.event_id))
            kept = {k: event.get(k) for k in SAVED_EVENT_KEYS}
            save_run_data(session, req.workflow_id, req.entry_seq, {req.key: kept})

    # --- the actions ------------------------------------------------------------------

    def _award_points(
        self, session: Session, req: t.ActionRequest, contact: Contact, now: datetime
    ) -> dict[str, Any]:
        spec = req.action
        context = _context(session, req, contact)
        trigger = context["trigger"].get("properties") or {}
        if spec.get("points") is not None:
            base = float(spec["points"])
        else:
            base = _amount(trigger, spec.get("of") or "revenue") * float(spec.get("per") or 1)
        for multiplier in spec.get("multipliers") or []:
            zone = self.default_timezone
            if evaluate(multiplier["if"], context, now=now, default_zone=zone):
                base *= float(multiplier["times"])
        points = math.floor(base + 1e-9)
        order_id = order_id_of(trigger)
        if points > 0:
            expire_after = spec.get("expire_after")
            loyalty.earn(
                session,
                contact.id,
                points,
                idempotency_key=_key(req),
                now=now,
                order_id=order_id,
                journey_id=req.journey_id,
                expires_at=now + timedelta(seconds=expire_after) if expire_after else None,
                note=f"journey {req.journey_id}, step {req.step_id}",
            )
            if order_id is not None:  # refunded before the points were given: take them back
                refunded = refunded_fraction(session, order_id, contact.id)
                if refunded:
                    loyalty.reverse_order(session, order_id, contact.id, refunded, now)
        earned, balance = POINTS_KEYS
        return {earned: max(points, 0), balance: loyalty.balance(session, contact.id, now)}

    def _issue_coupon(
        self, session: Session, req: t.ActionRequest, contact: Contact, now: datetime
    ) -> dict[str, Any]:
        spec = req.action
        expires_in = spec.get("expires_in")
        coupon = coupons.issue_coupon(
            session,
            contact.id,
            campaign=spec["campaign"],
            prefix=spec["prefix"],
            kind=spec["discount"]["kind"],
            value=float(spec["discount"]["value"]),
            idempotency_key=_key(req),
            now=now,
            currency=spec.get("currency"),
            minimum_order=spec.get("minimum_order"),
            expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
            journey_id=req.journey_id,
            workflow_id=req.workflow_id,
            entry_seq=req.entry_seq,
            shareable=bool(spec.get("shareable")),  # absent in journeys deployed before it
        )
        value = coupon.value
        fields = {
            "code": coupon.code,
            "campaign": coupon.campaign,
            "kind": coupon.kind,
            "value": int(value) if float(value).is_integer() else value,
            "currency": coupon.currency,
            "minimum_order": coupon.minimum_order,
            "expires_at": coupon.expires_at.isoformat() if coupon.expires_at else None,
        }
        # The keys `journeys validate` lets conditions and templates read: one definition.
        keys = coupon_keys(spec.get("save_as") or "coupon")
        return dict(zip(keys, (fields[f] for f in COUPON_FIELDS), strict=True))

    def _track(
        self, session: Session, req: t.ActionRequest, contact: Contact, now: datetime
    ) -> dict[str, Any]:
        spec = req.action
        message_id = "journey:" + hashlib.sha256(_key(req).encode()).hexdigest()[:40]
        ours = select(Event.id).where(
            Event.origin == ORIGIN_INTERNAL, Event.message_id == message_id
        )
        if session.exec(ours).first() is None:
            session.add(
                Event(
                    message_id=message_id,
                    origin=ORIGIN_INTERNAL,
                    type="track",
                    name=spec["event"],
                    contact_id=contact.id,
                    properties=dict(spec.get("properties") or {}),
                    context={"journey": {"id": req.journey_id, "step": req.step_id}},
                    timestamp=now,
                    received_at=now,
                )
            )
        return {}

    def _webhook(self, req: t.ActionRequest) -> t.ActionResult:
        spec = req.action
        with session_scope(self.engine) as session:
            contact = load_contact(session, req.contact_id)
            if contact is None:
                raise _refused(f"contact {req.contact_id!r} no longer exists (erased)")
            context = _context(session, req, contact)
        document = {
            "journey": {
                "id": req.journey_id,
                "step": req.step_id,
                "workflow_id": req.workflow_id,
                "entry": req.entry_seq,
            },
            "contact": {k: v for k, v in context["contact"].items() if k != "consent"},
            "trigger": context["trigger"],
            "data": context["journey"],
            "payload": spec.get("payload") or {},
        }
        try:
            answer = self.webhooks(spec, document, _key(req))
        except WebhookRefused as exc:
            raise _refused(str(exc)) from None
        except WebhookUnavailable as exc:
            raise ApplicationError(
                str(exc),
                type="WebhookUnavailable",
                next_retry_delay=timedelta(seconds=exc.retry_after) if exc.retry_after else None,
            ) from None
        saved: list[str] = []
        if spec.get("save_as"):
            answer_data = answer.body if answer.body is not None else {"status": answer.status}
            with session_scope(self.engine) as session:
                try:
                    save_run_data(
                        session, req.workflow_id, req.entry_seq, {spec["save_as"]: answer_data}
                    )
                except RunDataTooLarge as exc:  # the call succeeded: never make it again
                    activity.logger.warning("webhook %s answered, not kept: %s", req.step_id, exc)
                    return t.ActionResult(ok=True, error=str(exc))
            saved.append(spec["save_as"])
        return t.ActionResult(ok=True, saved=saved)


def _context(session: Session, req: t.ActionRequest, contact: Contact) -> dict[str, Any]:
    trigger = (
        event_context(session.get(Event, req.trigger_event_id)) if req.trigger_event_id else {}
    )
    return {
        "contact": contact_context(contact, session),
        "event": trigger,
        "trigger": trigger,
        "journey": run_data(session, req.workflow_id, req.entry_seq),
    }


def _key(req: t.ActionRequest) -> str:
    return f"{req.workflow_id}:{req.step_id}:{req.entry_seq}"


def _amount(properties: dict[str, Any], name: str) -> float:
    for key in AMOUNT_FALLBACKS.get(name, (name,)):
        value = properties.get(key)
        if isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return max(number, 0.0)
    return 0.0
