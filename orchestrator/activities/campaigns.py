"""Activities of `CampaignWorkflow`: open a dispatch, release its members, close it.

Each reads the campaign's state from the store when it runs: a campaign paused or
cancelled between two chunks releases no one more.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio import activity

from ..campaigns.dispatch import backlog, dispatch_id, member_zones, release
from ..campaigns.gate import campaign_status
from ..campaigns.timing import (
    CATCHUP,
    Wave,
    add_late,
    due_local,
    fire_zone,
    one_wave,
    plan_record,
    waves,
)
from ..dsl.models import Journey
from ..segments.membership import UnknownSegment, refresh
from ..store.db import session_scope
from ..store.tables import CampaignDispatch, utcnow
from ..store.versions import active_version
from ..workflows import types as t
from ..workflows.campaign import CLOSE_CAMPAIGN, OPEN_CAMPAIGN, RELEASE_CAMPAIGN

CHUNK = 2000  # members released by one statement
MAX_BACKLOG = 4000  # the router's unrouted events of a dispatch before releasing more
BACKLOG_WAIT = 2.0  # seconds before asking again when the router is behind
PAUSED_WAIT = 30.0  # seconds between looks at a paused campaign
PACE_WINDOW = 10.0  # a throttled campaign releases ~this many seconds' worth of sends a chunk


class CampaignActivities:
    """`default_timezone`: the zone of contacts without one, and of campaigns without one."""

    def __init__(self, engine: Engine, default_timezone: str = "UTC") -> None:
        self.engine = engine
        self.default_timezone = default_timezone

    @activity.defn(name=OPEN_CAMPAIGN)
    def open_campaign(self, req: t.OpenCampaignRequest) -> t.CampaignPlan:
        """The dispatch of this firing (the same one again for a repeated firing of the
        same minute: nobody is released twice), and its waves. A new dispatch refreshes
        the segment first (SQL, as its schedule does): who is in it now gets it."""
        with session_scope(self.engine) as session:
            active = active_version(session, req.journey_id)
            journey = Journey.model_validate(active.spec) if active is not None else None
            if active is None or journey is None or journey.trigger.schedule is None:
                return t.CampaignPlan(reason="the journey is retired or no longer a campaign")
            version = active.version
            trigger = journey.trigger
            if campaign_status(session, journey.id) == "cancelled":
                return t.CampaignPlan(reason="the campaign was cancelled")
            assert trigger.segment is not None
            due = due_local(trigger, datetime.fromisoformat(req.fired_at), self.default_timezone)
            dispatch = dispatch_id(journey.id, due)
            if session.get(CampaignDispatch, dispatch) is None:
                # Members as of now, not as of the segment's last scheduled refresh.
                try:
                    refresh(session, trigger.segment, utcnow())
                except UnknownSegment:
                    return t.CampaignPlan(reason=f"segment {trigger.segment} is not deployed")
            zone = None if trigger.local_time else fire_zone(trigger, self.default_timezone)
            if trigger.local_time:
                planned = waves(due, member_zones(session, trigger.segment), self.default_timezone)
            else:
                planned = one_wave(due, str(zone))
            # Fired late (a campaign sent once, whose schedule was made after its time):
            # zones whose time is more than CATCHUP past are not sent to late.
            fired = datetime.fromisoformat(req.fired_at)
            planned = [w for w in planned if w.at >= fired - CATCHUP]
            row = session.get(CampaignDispatch, dispatch)
            if row is None:
                row = CampaignDispatch(
                    id=dispatch,
                    journey_id=journey.id,
                    version=version,
                    segment=trigger.segment,
                    due=f"{due:%Y-%m-%d %H:%M}",
                    zone=zone,
                    throttle=trigger.rates(),
                )
            row.waves = max(row.waves, len(planned))
            if trigger.local_time and not row.plan:
                row.plan = plan_record(planned)
            session.add(row)
            return t.CampaignPlan(dispatch, [_wave(w) for w in planned])

    @activity.defn(name=RELEASE_CAMPAIGN)
    def release_campaign(self, req: t.ReleaseRequest) -> t.ReleaseResult:
        """The wave's next chunk of members, unless the campaign is paused or cancelled or
        the router has not caught up with the chunks before."""
        with session_scope(self.engine) as session:
            dispatch = session.get(CampaignDispatch, req.dispatch_id, with_for_update=True)
            if dispatch is None:
                return t.ReleaseResult("cancelled")
            status = campaign_status(session, dispatch.journey_id)
            if status == "cancelled" or dispatch.status == "cancelled":
                dispatch.status, dispatch.finished_at = "cancelled", utcnow()
                session.add(dispatch)
                return t.ReleaseResult("cancelled")
            if not _still_a_campaign(session, dispatch.journey_id):
                # Retired (its file removed) or now started another way: no run would
                # start on the members' events. What was released stays released.
                dispatch.status, dispatch.finished_at = "stopped", utcnow()
                session.add(dispatch)
                return t.ReleaseResult("cancelled")
            if status == "paused":
                return t.ReleaseResult("waiting", req.cursor, wait=PAUSED_WAIT)
            if backlog(session, dispatch.id) >= MAX_BACKLOG:
                return t.ReleaseResult("waiting", req.cursor, wait=BACKLOG_WAIT)
            # Paced to the fastest channel's throttle: sends on a slower one wait for their
            # slot on their run's timer (campaigns/gate.py), not for the release.
            rate = max(dispatch.throttle.values()) if dispatch.throttle else None
            limit = CHUNK if rate is None else max(1, min(CHUNK, int(rate * PACE_WINDOW)))
            wave = Wave(
                datetime.fromisoformat(req.wave.at),
                list(req.wave.zones),
                req.wave.unzoned,
                req.wave.everyone,
                req.wave.planned,
            )
            add_late(wave, dispatch.plan, req.index)
            done = release(session, dispatch, wave, req.cursor, limit)
            if done.done:
                dispatch.waves_done = max(dispatch.waves_done, req.index + 1)
            wait = 0.0 if rate is None or done.done else limit / rate
            return t.ReleaseResult(
                "released", done.cursor or req.cursor, done.done, wait, done.count
            )

    @activity.defn(name=CLOSE_CAMPAIGN)
    def close_campaign(self, dispatch_id: str) -> None:
        with session_scope(self.engine) as session:
            dispatch = session.get(CampaignDispatch, dispatch_id)
            if dispatch is not None and dispatch.status == "sending":
                dispatch.status, dispatch.finished_at = "done", utcnow()
                session.add(dispatch)


def _still_a_campaign(session: Session, journey_id: str) -> bool:
    active = active_version(session, journey_id)
    trigger = (active.spec or {}).get("trigger") if active is not None else None
    return isinstance(trigger, dict) and bool(trigger.get("schedule"))


def _wave(wave: Wave) -> t.CampaignWave:
    return t.CampaignWave(
        wave.at.astimezone(UTC).isoformat(), wave.zones, wave.unzoned, wave.everyone, wave.planned
    )
