"""Run records: entry (with re-entry rules), progress, conversion and the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity

from ..analytics import trail
from ..analytics.attribution import attribute_conversion
from ..analytics.counts import JOURNEY, Cohort, bump, day_of
from ..dsl.conditions import evaluate
from ..dsl.models import Goal
from ..store.context import contact_context, event_context
from ..store.db import session_scope
from ..store.identity import load_contact, lock_ids
from ..store.tables import Event, JourneyRun, utcnow
from ..workflows import types as t

_FOREVER = 100 * 365 * 86400


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class RunActivities:
    """`default_timezone`: the zone of contacts without one, for `entry_if` dates."""

    def __init__(self, engine: Engine, default_timezone: str = "UTC") -> None:
        self.engine = engine
        self.default_timezone = default_timezone

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

            def refuse(code: str, reason: str) -> t.EnterResult:
                trail.record_refusal(
                    session,
                    req.workflow_id,
                    req.trigger_event_id,
                    req.journey_id,
                    req.version,
                    req.contact_id,
                    code,
                    reason,
                    now,
                )
                return t.EnterResult(False, 0, reason)

            if previous is not None:
                if req.re_entry == "never":
                    return refuse("re_entry", "already entered once (re_entry: never)")
                if req.re_entry == "after" and req.re_entry_after:
                    since = now - _aware(previous.entered_at)
                    if since < timedelta(seconds=req.re_entry_after):
                        return refuse("re_entry", "entered too recently (re_entry: after)")
            # Not while the contact is being merged: the run row must carry the merged id.
            lock_ids(session, {req.contact_id})
            contact = load_contact(session, req.contact_id)
            if contact is None:  # every event makes its contact: this one was erased
                # Counted, not written to the trail: the row would name the erased person.
                bump(session, Cohort(req.journey_id, req.version, day_of(now)), "refused:erased")
                return t.EnterResult(False, 0, "the contact no longer exists (erased)")
            if req.entry_if:
                trigger_event = event_context(session.get(Event, req.trigger_event_id))
                context = {
                    "contact": contact_context(contact, session),
                    "event": trigger_event,
                    "trigger": trigger_event,
                }
                zone = self.default_timezone
                if not evaluate(req.entry_if, context, now=now, default_zone=zone):
                    return refuse("entry_if", f"entry condition is false: {req.entry_if}")
            seq = previous.entry_seq + 1 if previous else 1
            run = JourneyRun(
                workflow_id=req.workflow_id,
                entry_seq=seq,
                journey_id=req.journey_id,
                version=req.version,
                contact_id=contact.id,  # merged since the trigger? the contact's own id
                trigger_event_id=req.trigger_event_id,
                entered_at=now,
                updated_at=now,
            )
            session.add(run)
            trail.record(
                session,
                run,
                trail.ENTERED,
                now,
                outcome=f"entry {seq}",
                reason="first entry" if seq == 1 else f"entry {seq} (re_entry: {req.re_entry})",
                detail={"trigger_event_id": req.trigger_event_id},
                counters=[(JOURNEY, "entered")],
            )
            if req.first_step is not None:
                run.current_step = req.first_step
                trail.record(
                    session,
                    run,
                    trail.STEP,
                    now,
                    req.first_step,
                    counters=[(req.first_step, "reached")],
                )
            return t.EnterResult(allowed=True, entry_seq=seq)

    @activity.defn(name=t.RECORD_STEP, no_thread_cancel_exception=True)
    def record_step(self, update: t.RunUpdate) -> None:
        """The step the run is on, and the decisions taken since the last record."""
        with session_scope(self.engine) as session:
            run = self._run(session, update)
            if run is None:
                return
            at = _when(update)
            _record_decisions(session, run, update.decisions)
            if run.status == "active" and update.step_id is not None:
                run.current_step = update.step_id
                run.updated_at = utcnow()
                trail.record(
                    session,
                    run,
                    trail.STEP,
                    at,
                    update.step_id,
                    counters=[(update.step_id, "reached")],
                )

    @activity.defn(name=t.FINISH_RUN, no_thread_cancel_exception=True)
    def finish_run(self, update: t.RunUpdate) -> None:
        with session_scope(self.engine) as session:
            run = self._run(session, update)
            if run is None:
                return
            _record_decisions(session, run, update.decisions)
            if run.status == "active":
                status = update.status or "completed"
                run.status = status
                run.exit_reason = update.reason
                run.exited_at = run.updated_at = utcnow()
                counters = [(JOURNEY, f"finished:{status}")]
                if update.reason:
                    counters.append((JOURNEY, f"exit:{update.reason}"))
                trail.record(
                    session,
                    run,
                    trail.EXIT,
                    _when(update),
                    outcome=status,
                    reason=update.reason or "reached the end of the journey",
                    counters=counters,
                )

    @activity.defn(name=t.RECORD_CONVERSION, no_thread_cancel_exception=True)
    def record_conversion(self, req: t.ConversionRequest) -> None:
        """The run saw its goal event: the same attribution the router applies to every
        goal event (one run per journey converts, once, with the order's revenue)."""
        with session_scope(self.engine) as session:
            run = self._run(session, t.RunUpdate(req.workflow_id, req.entry_seq))
            event = session.get(Event, req.event_id)
            if run is None or event is None:
                return
            at = datetime.fromisoformat(req.now) if req.now else None
            # A Python journey has no deployed goal: the run checked its own window.
            own = (
                run.journey_id,
                Goal.model_construct(
                    event=event.name or "", within=_FOREVER, where=None, after="entry"
                ),
            )
            attribute_conversion(
                session,
                event,
                {run.journey_id},
                at,
                unlisted=own,
                default_zone=self.default_timezone,
            )

    @staticmethod
    def _run(session, update: t.RunUpdate) -> JourneyRun | None:  # type: ignore[no-untyped-def]
        query = select(JourneyRun).where(
            JourneyRun.workflow_id == update.workflow_id, JourneyRun.entry_seq == update.entry_seq
        )
        return session.exec(query).first()


def _when(update: t.RunUpdate) -> datetime:
    return datetime.fromisoformat(update.at) if update.at else utcnow()


def _record_decisions(session: Session, run: JourneyRun, decisions: list[t.Decision]) -> None:
    for d in decisions:
        at = datetime.fromisoformat(d.at)
        trail.record_decision(session, run, d.kind, d.step_id, d.outcome, d.reason, d.detail, at)
