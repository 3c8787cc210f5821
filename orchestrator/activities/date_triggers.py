"""Activities of `DateTriggerWorkflow`: when a contact's date is due, and firing it.

Both read everything from the store at the moment they run (the journey's active
version, the contact's trait and zone): a plan made in March still holds in December
only if the birthday, the zone and the journey still say so.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity

from ..dsl.models import DATE_REACHED, Journey
from ..services.occurrences import date_value, next_occurrence
from ..services.zones import zone_of
from ..store.db import session_scope
from ..store.identity import load_contact
from ..store.tables import ORIGIN_INTERNAL, Event
from ..store.versions import active_version
from ..workflows import types as t
from ..workflows.date_trigger import FIRE_DATE, PLAN_DATE


class DateTriggerActivities:
    """`default_timezone`: the zone of contacts without one."""

    def __init__(self, engine: Engine, default_timezone: str = "UTC") -> None:
        self.engine = engine
        self.default_timezone = default_timezone

    @activity.defn(name=PLAN_DATE)
    def plan_date(self, req: t.DatePlanRequest) -> t.DatePlan:
        with session_scope(self.engine) as session:
            return self._plan(session, req.journey_id, req.contact_id, req.after)

    @activity.defn(name=FIRE_DATE)
    def fire_date(self, req: t.DateFireRequest) -> t.DatePlan:
        """Store `Date Reached` if the date still falls at `req.at`; `reason` is `once`
        for a one-time date (its workflow ends), else None."""
        due = datetime.fromisoformat(req.at)
        with session_scope(self.engine) as session:
            journey = _active_journey(session, req.journey_id)
            plan = self._plan(
                session, req.journey_id, req.contact_id, (due - timedelta(seconds=1)).isoformat()
            )
            if journey is None or plan.at is None or plan.at != req.at:
                return t.DatePlan(reason="moved or gone: planned again")
            contact = load_contact(session, req.contact_id)
            assert contact is not None  # the plan found it
            key = _fired_key(req.journey_id, contact.id, req.day)
            known = select(Event.id).where(Event.origin == ORIGIN_INTERNAL, Event.message_id == key)
            if session.exec(known).first() is None:
                trait = journey.trigger.trait or ""
                try:
                    with session.begin_nested():
                        session.add(
                            Event(
                                message_id=key,
                                origin=ORIGIN_INTERNAL,
                                type="track",
                                name=DATE_REACHED,
                                contact_id=contact.id,
                                properties={
                                    "journey": req.journey_id,
                                    "trait": trait,
                                    "date": str((contact.traits or {}).get(trait)),
                                    "day": req.day,
                                },
                                context={},
                                timestamp=due,
                                received_at=due,
                            )
                        )
                except IntegrityError:
                    pass  # a repeated firing: the first one stored it
            return t.DatePlan(
                plan.at, plan.day, "once" if journey.trigger.every == "once" else None
            )

    def _plan(self, session: Session, journey_id: str, contact_id: str, after: str) -> t.DatePlan:
        journey = _active_journey(session, journey_id)
        if journey is None or journey.trigger.trait is None:
            return t.DatePlan(reason="the journey is retired or no longer starts on a date")
        contact = load_contact(session, contact_id)
        if contact is None:
            return t.DatePlan(reason="the contact no longer exists")
        trigger = journey.trigger
        zones = (contact.timezone, self.default_timezone)
        value = date_value((contact.traits or {}).get(trigger.trait), zones)
        if value is None:
            return t.DatePlan(reason=f"no date in traits.{trigger.trait}")
        found = next_occurrence(
            value,
            trigger.every,
            trigger.at,
            trigger.offset,
            zone_of(*zones),
            datetime.fromisoformat(after),
        )
        if found is None:
            return t.DatePlan(reason="the date has passed")
        return t.DatePlan(found.at.isoformat(), found.day.isoformat())


def _fired_key(journey_id: str, contact_id: str, day: str) -> str:
    """`date:{journey}:{contact}:{day}`; a contact id too long for the column's 255
    characters is replaced by its digest (a failing insert would retry for ever)."""
    key = f"date:{journey_id}:{contact_id}:{day}"
    if len(key) <= 255:
        return key
    digest = hashlib.sha256(contact_id.encode()).hexdigest()
    return f"date:{journey_id}:#{digest}:{day}"


def _active_journey(session: Session, journey_id: str) -> Journey | None:
    row = active_version(session, journey_id)
    return Journey.model_validate(row.spec) if row is not None else None
