"""One Temporal Schedule per campaign journey: `campaign:<journey>` starts its dispatch.

Temporal keeps the clock, as for segments (segments/schedules.py): the schedule fires
whichever worker is up. A cron line is read in the campaign's zone (UTC+14 with
`local_time`: the first place the time comes; the dispatch then follows it round the
world); a date and time is a calendar entry of that one minute. Firings may overlap (a
daily campaign in local time has waves for 26 hours); a firing missed by more than
`CATCHUP` (Temporal was down) is not sent late. A paused campaign's schedule is paused,
a cancelled one's deleted; `sync_campaign_schedules` makes the schedules match the
deployed campaigns and their state, and every worker runs it as it does for segments.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import select
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from ..dsl.models import Journey, Trigger
from ..services.zones import zone_of
from ..store.db import session_scope
from ..store.tables import CampaignDispatch, JourneyVersion
from ..store.versions import active_versions
from ..workflows import types as t
from ..workflows.campaign import CAMPAIGN_WORKFLOW, campaign_workflow_id
from .dispatch import dispatch_id
from .gate import campaign_status
from .timing import CATCHUP, LOCAL, fire_zone, moment, once_due

SCHEDULE_PREFIX = "campaign:"

log = logging.getLogger(__name__)


def schedule_id(journey_id: str) -> str:
    return f"{SCHEDULE_PREFIX}{journey_id}"


def schedule_spec(trigger: Trigger, default_zone: str) -> ScheduleSpec:
    zone = fire_zone(trigger, default_zone)
    assert trigger.schedule is not None
    if trigger.recurring:
        return ScheduleSpec(cron_expressions=[trigger.schedule], time_zone_name=zone)
    # Once: the one moment the waves plan for, in UTC. A calendar entry in the zone never
    # comes when the clocks skip the time (02:30 on a spring-forward night), and comes
    # twice when they repeat it.
    due = moment(datetime.strptime(trigger.schedule, LOCAL), zone_of(zone))
    calendar = ScheduleCalendarSpec(
        second=[ScheduleRange(0)],
        minute=[ScheduleRange(due.minute)],
        hour=[ScheduleRange(due.hour)],
        day_of_month=[ScheduleRange(due.day)],
        month=[ScheduleRange(due.month)],
        year=[ScheduleRange(due.year)],
        day_of_week=[ScheduleRange(0, 6)],
    )
    return ScheduleSpec(calendars=[calendar], time_zone_name="UTC")


def schedule_for(journey: Journey, task_queue: str, default_zone: str, paused: bool) -> Schedule:
    trigger = journey.trigger
    return Schedule(
        action=ScheduleActionStartWorkflow(
            CAMPAIGN_WORKFLOW,
            t.CampaignInput(journey.id),
            id=campaign_workflow_id(journey.id),
            task_queue=task_queue,
        ),
        spec=schedule_spec(trigger, default_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=CATCHUP),
        state=ScheduleState(
            paused=paused,
            note=f"campaign {journey.id}: {trigger.campaign_text()}"
            + (" (paused: journeys campaigns resume)" if paused else ""),
        ),
    )


@dataclass
class CampaignSync:
    """What `sync_campaign_schedules` did, by journey."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    triggered: list[str] = field(default_factory=list)  # sent once, and late: fired now
    failed: dict[str, str] = field(default_factory=dict)


def late(journey: Journey, default_zone: str, now: datetime) -> bool:
    """A campaign sent once whose firing has passed, while it is still due for someone:
    before its last zone's moment (local time), or `CATCHUP` after its moment."""
    moments = once_due(journey.trigger, default_zone)
    return moments is not None and moments[0] < now < moments[1] + CATCHUP


async def sync_campaign_schedules(
    client: Client, engine: Engine, task_queue: str, default_zone: str = "UTC"
) -> CampaignSync:
    """Create or update the schedule of every deployed campaign (paused when it is);
    delete those of campaigns cancelled, retired, or no longer campaigns."""
    wanted, stopped = await asyncio.to_thread(_campaigns, engine)
    done = CampaignSync()
    now = datetime.now(UTC)
    for journey, status, dispatched in wanted:
        if status == "cancelled":
            continue
        schedule = schedule_for(journey, task_queue, default_zone, status == "paused")
        try:
            try:
                await client.create_schedule(schedule_id(journey.id), schedule)
                done.created.append(journey.id)
            except ScheduleAlreadyRunningError:

                def replace(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                    return ScheduleUpdate(schedule=new)

                await client.get_schedule_handle(schedule_id(journey.id)).update(replace)
                done.updated.append(journey.id)
            if status == "active" and not dispatched and late(journey, default_zone, now):
                # Its one firing has passed (the schedule was made, or unpaused, after
                # it) and would never come: now, for the members it is still due for.
                await client.get_schedule_handle(schedule_id(journey.id)).trigger()
                done.triggered.append(journey.id)
        except (RPCError, ValueError) as exc:
            if isinstance(exc, RPCError) and exc.status == RPCStatusCode.UNIMPLEMENTED:
                raise
            done.failed[journey.id] = str(exc)
            log.error("campaign %s: its schedule could not be synced: %s", journey.id, exc)
    for journey_id in stopped:
        try:
            await client.get_schedule_handle(schedule_id(journey_id)).delete()
            done.deleted.append(journey_id)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
    if done.created or done.deleted:
        log.info("campaign schedules: created %s, deleted %s", done.created, done.deleted)
    return done


def _campaigns(engine: Engine) -> tuple[list[tuple[Journey, str, bool]], list[str]]:
    """(deployed campaigns, their state, and for one sent once whether its dispatch is
    open; journeys that were campaigns and no longer send on a schedule: cancelled,
    retired, or now started another way)."""
    with session_scope(engine) as session:
        found = []
        for row in active_versions(session):
            journey = Journey.model_validate(row.spec)
            trigger = journey.trigger
            if trigger.schedule is not None:
                dispatched = not trigger.recurring and (
                    session.get(CampaignDispatch, dispatch_id(journey.id, trigger.schedule))
                    is not None
                )
                found.append((journey, campaign_status(session, journey.id), dispatched))
        live = {j.id for j, status, _ in found if status != "cancelled"}
        rows = session.exec(select(JourneyVersion.journey_id, JourneyVersion.spec)).all()
        ever = {
            journey_id
            for journey_id, spec in rows
            if isinstance((spec or {}).get("trigger"), dict) and spec["trigger"].get("schedule")
        }
        return found, sorted(set(ever) - live)
