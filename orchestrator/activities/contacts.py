"""Activities that read or change the contact: conditions, local time, updates."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from temporalio import activity

from ..dsl.conditions import evaluate
from ..dsl.models import WEEKDAYS
from ..services.zones import zone_named
from ..store.context import contact_context, event_context
from ..store.db import session_scope
from ..store.identity import load_contact
from ..store.run_data import run_data
from ..store.tables import Event, utcnow
from ..workflows import types as t


def next_occurrence(now: datetime, at: str, weekdays: list[str] | None, zone: ZoneInfo) -> datetime:
    """The first local `at` (HH:MM) strictly after `now` on an allowed weekday, in UTC."""
    local_now = now.astimezone(zone)
    hour, minute = (int(x) for x in at.split(":"))
    day = local_now.date()
    for _ in range(8):
        candidate = datetime.combine(day, time(hour, minute), tzinfo=zone)
        allowed = weekdays is None or WEEKDAYS[candidate.weekday()] in weekdays
        if candidate > local_now and allowed:
            return candidate.astimezone(UTC)
        day += timedelta(days=1)
    raise ValueError(f"no weekday allowed in {weekdays}")


def _zone(*names: str | None) -> ZoneInfo:
    for name in names:
        zone = zone_named(name)
        if zone is not None:
            return zone
        if name:
            activity.logger.warning("unknown timezone %r, falling back", name)
    return ZoneInfo("UTC")


class ContactActivities:
    """`default_timezone`: the zone of contacts without one, for the date functions."""

    def __init__(self, engine: Engine, default_timezone: str = "UTC") -> None:
        self.engine = engine
        self.default_timezone = default_timezone

    @activity.defn(name=t.CHECK_CONDITION, no_thread_cancel_exception=True)
    def check_condition(self, req: t.ConditionRequest) -> bool:
        with session_scope(self.engine) as session:
            trigger = session.get(Event, req.trigger_event_id) if req.trigger_event_id else None
            event = session.get(Event, req.event_id) if req.event_id else trigger
            context = {
                "contact": contact_context(load_contact(session, req.contact_id), session),
                "event": event_context(event),
                "trigger": event_context(trigger),
                "journey": {
                    **run_data(session, req.workflow_id, req.entry_seq),
                    **req.journey,
                },
            }
        now = datetime.fromisoformat(req.now) if req.now else utcnow()
        return evaluate(req.expression, context, now=now, default_zone=self.default_timezone)

    @activity.defn(name=t.NEXT_LOCAL_TIME, no_thread_cancel_exception=True)
    def next_local_time(self, req: t.LocalTimeRequest) -> str:
        with session_scope(self.engine) as session:
            contact = load_contact(session, req.contact_id)
            zone = _zone(contact.timezone if contact else None, req.default_timezone)
        now = datetime.fromisoformat(req.now)
        return next_occurrence(now, req.time, req.weekdays, zone).isoformat()

    @activity.defn(name=t.UPDATE_CONTACT, no_thread_cancel_exception=True)
    def update_contact(self, req: t.UpdateContactRequest) -> None:
        """Set, increment or unset traits; tag and untag. Increments apply once per run
        and step."""
        with session_scope(self.engine) as session:
            contact = load_contact(session, req.contact_id, for_update=True)
            if contact is None:
                return
            traits = dict(contact.traits or {})
            applied = list(traits.get("_applied_actions", []))
            traits.update(req.set)
            for key in req.unset:
                traits.pop(key, None)
            if req.tag or req.untag:
                held = traits.get("tags")
                tags = [x for x in held if isinstance(x, str)] if isinstance(held, list) else []
                tags += [x for x in req.tag if x not in tags]
                traits["tags"] = [x for x in tags if x not in req.untag]
            if req.increment and req.idempotency_key not in applied:
                for key, amount in req.increment.items():
                    current = traits.get(key)
                    base = current if isinstance(current, int | float) else 0
                    traits[key] = base + amount
                applied = [*applied[-49:], req.idempotency_key]
                traits["_applied_actions"] = applied
            contact.traits = traits
            contact.updated_at = utcnow()
