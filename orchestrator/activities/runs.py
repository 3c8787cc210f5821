"""Run records: entry (with re-entry rules), progress, conversion and the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import select
from temporalio import activity

from ..dsl.conditions import evaluate
from ..store.context import contact_context, event_context
from ..store.db import session_scope
from ..store.identity import load_contact, lock_ids
from ..store.tables import Event, JourneyRun, utcnow
from ..workflows import types as t


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class RunActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=t.ENTER_RUN, no_thread_cancel_exception=True)
    def enter_run(self, req: t.EnterRequest) -> t.EnterResult:
        """Apply re-entry and entry conditions, then record the run (idempotent per trigger)."""
        now = datetime.fromisoformat(req.now) if req.now else utcnow()
        with session_scope(self.engine) as session:
            runs = select(JourneyRun).where(JourneyRun.workflow_id == req.workflow_id)
            same = session.exec(runs.where(JourneyRun.trigger_event_id == req.trigger_event_id))
            if (existing := same.first()) is not None:
                # A retry of this activity continues the entry; a redelivered trigger
                # whose run already ended must not run the journey a second time.
                allowed = existing.status == "active"
                reason = None if allowed else "trigger already handled"
                return t.EnterResult(allowed, existing.entry_seq if allowed else 0, reason)
            previous = session.exec(runs.order_by(JourneyRun.entry_seq.desc())).first()  # type: ignore[attr-defined]
            if previous is not None:
                if req.re_entry == "never":
                    return t.EnterResult(False, 0, "already entered once (re_entry: never)")
                if req.re_entry == "after" and req.re_entry_after:
                    since = now - _aware(previous.entered_at)
                    if since < timedelta(seconds=req.re_entry_after):
                        return t.EnterResult(False, 0, "entered too recently (re_entry: after)")
            # Not while the contact is being merged: the run row must carry the merged id.
            lock_ids(session, {req.contact_id})
            contact = load_contact(session, req.contact_id)
            if contact is None:  # every event makes its contact: this one was erased
                return t.EnterResult(False, 0, "the contact no longer exists (erased)")
            if req.entry_if:
                trigger = event_context(session.get(Event, req.trigger_event_id))
                context = {
                    "contact": contact_context(contact, session),
                    "event": trigger,
                    "trigger": trigger,
                }
                if not evaluate(req.entry_if, context):
                    return t.EnterResult(False, 0, "entry condition is false")
            seq = previous.entry_seq + 1 if previous else 1
            session.add(
                JourneyRun(
                    workflow_id=req.workflow_id,
                    entry_seq=seq,
                    journey_id=req.journey_id,
                    version=req.version,
                    contact_id=contact.id,  # merged since the trigger? the contact's own id
                    trigger_event_id=req.trigger_event_id,
                    entered_at=now,
                    updated_at=now,
                )
            )
            return t.EnterResult(allowed=True, entry_seq=seq)

    @activity.defn(name=t.RECORD_STEP, no_thread_cancel_exception=True)
    def record_step(self, update: t.RunUpdate) -> None:
        with session_scope(self.engine) as session:
            run = self._run(session, update)
            if run is not None and run.status == "active":
                run.current_step = update.step_id
                run.updated_at = utcnow()

    @activity.defn(name=t.FINISH_RUN, no_thread_cancel_exception=True)
    def finish_run(self, update: t.RunUpdate) -> None:
        with session_scope(self.engine) as session:
            run = self._run(session, update)
            if run is not None and run.status == "active":
                run.status = update.status or "completed"
                run.exit_reason = update.reason
                run.exited_at = run.updated_at = utcnow()

    @activity.defn(name=t.RECORD_CONVERSION, no_thread_cancel_exception=True)
    def record_conversion(self, req: t.ConversionRequest) -> None:
        with session_scope(self.engine) as session:
            run = self._run(session, t.RunUpdate(req.workflow_id, req.entry_seq))
            event = session.get(Event, req.event_id)
            if run is None or run.converted_at is not None:
                return
            run.converted_at = event.timestamp if event else utcnow()
            props = event.properties if event else {}
            revenue = props.get("revenue", props.get("total"))
            run.revenue = float(revenue) if isinstance(revenue, int | float) else None
            run.updated_at = utcnow()

    @staticmethod
    def _run(session, update: t.RunUpdate) -> JourneyRun | None:  # type: ignore[no-untyped-def]
        query = select(JourneyRun).where(
            JourneyRun.workflow_id == update.workflow_id, JourneyRun.entry_seq == update.entry_seq
        )
        return session.exec(query).first()
