"""The send activity: ledger first, then choose a channel, render, deliver, record.

The `messages` row is the outbox and the send ledger at once. It is keyed by
`workflow_id:step_id:entry_seq` (never the Run ID, which changes on retry and
continue-as-new), so a retried activity returns the stored result instead of
calling the provider twice.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from channels.base import Channel, OutgoingMessage
from channels.errors import PermanentChannelError, TransientChannelError

from ..links import MessageLinks
from ..rendering import Renderer, RenderError
from ..store.context import cart_context, contact_context, event_context, journey_context
from ..store.db import session_scope
from ..store.tables import Contact, Event, JourneyRun, Message, utcnow
from ..workflows import types as t

DONE = {"sent", "delivered", "opened", "clicked", "replied"}


def recipient(contact: Contact, channel: str) -> str | None:
    """The contact's address on `channel`, or None when they cannot be reached there."""
    if channel == "email":
        return contact.email
    if channel == "sms":
        return contact.phone
    if channel == "push":
        return contact.push_tokens[-1] if contact.push_tokens else None
    return None


def candidates(choice: str | list[str], contact: Contact) -> list[str]:
    if isinstance(choice, list):
        return choice
    if choice == "preferred":
        preferred = (contact.traits or {}).get("preferred_channel")
        rest = [c for c in ("email", "push", "sms") if c != preferred]
        return [preferred, *rest] if preferred in ("email", "push", "sms") else rest
    return [choice]


class SendActivities:
    def __init__(
        self,
        engine: Engine,
        renderer: Renderer,
        adapters: dict[str, Channel],
        links: MessageLinks,
    ) -> None:
        self.engine = engine
        self.renderer = renderer
        self.adapters = adapters  # logical channel -> adapter instance
        self.links = links

    @activity.defn(name=t.SEND_MESSAGE)
    def send_message(self, req: t.SendRequest) -> t.SendResult:
        key = f"{req.workflow_id}:{req.step_id}:{req.entry_seq}"
        with session_scope(self.engine) as session:
            row = session.exec(select(Message).where(Message.idempotency_key == key)).first()
            if row is not None and row.status in DONE:
                return t.SendResult(row.id, "sent", row.channel)
            if row is not None and row.status == "failed":
                return t.SendResult(row.id, "failed", row.channel, row.error)
            if row is None:
                row = self._prepare(session, req, key)
            message_id, status = row.id, row.status
            outgoing = OutgoingMessage(
                message_id=row.id,
                channel=row.channel,
                to=row.recipient or "",
                content=dict(row.content),
                category=row.category,
                metadata={"journey": req.journey_id, "step": req.step_id},
            )
        if status == "failed":
            error = self._error_of(message_id)
            raise ApplicationError(error, type="PermanentSendError", non_retryable=True)
        adapter = self.adapters[outgoing.channel]
        try:
            receipt = adapter.send(outgoing)
        except TransientChannelError as exc:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
            raise ApplicationError(
                str(exc), type="TransientChannelError", next_retry_delay=delay
            ) from exc
        except PermanentChannelError as exc:
            self._mark(message_id, "failed", error=str(exc))
            raise ApplicationError(str(exc), type="PermanentSendError", non_retryable=True) from exc
        self._mark(message_id, "sent", provider_id=receipt.provider_message_id)
        return t.SendResult(message_id, "sent", outgoing.channel)

    def _prepare(self, session: Any, req: t.SendRequest, key: str) -> Message:
        """Choose the channel and render; a row that cannot be sent is stored as failed."""
        contact = session.get(Contact, req.contact_id)
        trigger = session.get(Event, req.trigger_event_id) if req.trigger_event_id else None
        row = Message(
            id=str(uuid.uuid4()),
            idempotency_key=key,
            workflow_id=req.workflow_id,
            entry_seq=req.entry_seq,
            step_id=req.step_id,
            journey_id=req.journey_id,
            contact_id=req.contact_id,
            channel=candidates(req.channel, contact)[0] if contact else "email",
            adapter="",
            template=req.template,
            category=req.category,
        )
        try:
            if contact is None:
                raise RenderError(f"contact {req.contact_id!r} does not exist")
            channel, to = self._choose(req.channel, contact, req.template)
            run = session.exec(
                select(JourneyRun).where(
                    JourneyRun.workflow_id == req.workflow_id,
                    JourneyRun.entry_seq == req.entry_seq,
                )
            ).first()
            context = {
                "contact": contact_context(contact),
                "event": event_context(trigger),
                "cart": cart_context(session, contact.id, trigger),
                "journey": journey_context(run, req.journey_id, req.step_id),
                "message": {"id": row.id, "channel": channel, **self.links.for_message(row.id)},
            }
            row.channel, row.recipient = channel, to
            row.adapter = self.adapters[channel].name
            rendered = self.renderer.render(req.template, channel, context)
            row.content, row.locale = rendered.parts, rendered.locale
        except RenderError as exc:
            row.status, row.error = "failed", str(exc)
        row.timeline = [{"status": row.status, "at": utcnow().isoformat()}]
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # a concurrent attempt wrote the ledger row first
            session.rollback()
            raise ApplicationError("send ledger race, retrying", type="LedgerRace") from None
        return row

    def _choose(self, choice: str | list[str], contact: Contact, template: str) -> tuple[str, str]:
        reasons = []
        for channel in candidates(choice, contact):
            to = recipient(contact, channel)
            if to is None:
                reasons.append(f"no {channel} address")
            elif not self.renderer.has_channel(template, channel):
                reasons.append(f"template has no {channel} version")
            else:
                return channel, to
        raise RenderError("contact cannot be reached: " + "; ".join(reasons))

    def _mark(self, message_id: str, status: str, **fields: Any) -> None:
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id)
            if row is None:
                return
            row.status = status
            if "provider_id" in fields:
                row.provider_message_id = fields["provider_id"]
                row.sent_at = utcnow()
            if "error" in fields:
                row.error = fields["error"]
            row.timeline = [*row.timeline, {"status": status, "at": utcnow().isoformat()}]

    def _error_of(self, message_id: str) -> str:
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id)
            return (row.error if row else None) or "message cannot be sent"
