"""One Temporal Schedule per active segment: `segment:<name>` starts a refresh on its `refresh:`.

Temporal keeps the clock: schedules fire whichever worker is up, a missed
firing is not run twice, and a refresh still running when the next is due
makes the next one skip (overlap policy SKIP). `sync_schedules` makes the
schedules match the deployed segments; every worker calls it at start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import select
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from ..store.db import session_scope
from ..store.tables import SegmentDefinition
from ..workflows.segment_refresh import SegmentRefreshInput, SegmentRefreshWorkflow
from .models import Segment

log = logging.getLogger(__name__)

SCHEDULE_PREFIX = "segment:"


def schedule_id(name: str) -> str:
    return f"{SCHEDULE_PREFIX}{name}"


def schedule_for(name: str, segment: Segment, task_queue: str) -> Schedule:
    """The schedule of one segment: its cron line or interval (hourly by default)."""
    if segment.refresh is not None and segment.refresh.cron is not None:
        spec = ScheduleSpec(cron_expressions=[segment.refresh.cron])
    else:
        every = segment.every_seconds() or 3600
        spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every))])
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SegmentRefreshWorkflow.run,
            SegmentRefreshInput(name=name),
            id=f"segment-refresh:{name}",
            task_queue=task_queue,
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=segment.description or f"refresh segment {name}"),
    )


@dataclass
class ScheduleSync:
    """What `sync_schedules` did, by segment name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> why


async def sync_schedules(client: Client, engine: Engine, task_queue: str) -> ScheduleSync:
    """Create or update the schedule of every active segment; delete removed segments' ones.

    A new schedule runs once at once, and so does one whose segment changed since its
    last refresh: members follow the new definition without waiting for the next due
    time. Safe to run from several workers at once (a refresh still running makes the
    extra ones skip).
    """
    rows = await asyncio.to_thread(_definitions, engine)
    done = ScheduleSync()
    for name, spec, active, stale in rows:
        try:
            await _sync_one(client, name, spec, active, stale, task_queue, done)
        except (RPCError, ValueError) as exc:  # one bad schedule must not stop the others
            if isinstance(exc, RPCError) and exc.status == RPCStatusCode.UNIMPLEMENTED:
                raise  # a server without schedules: none of them will work
            done.failed[name] = str(exc)
            log.error("segment %s: its schedule could not be synced: %s", name, exc)
    if done.created or done.deleted:
        log.info(
            "segment schedules: created %s, updated %d, deleted %s",
            done.created,
            len(done.updated),
            done.deleted,
        )
    return done


async def _sync_one(
    client: Client,
    name: str,
    spec: dict[str, object],
    active: bool,
    stale: bool,
    task_queue: str,
    done: ScheduleSync,
) -> None:
    if not active:
        if await _delete(client, name):
            done.deleted.append(name)
        return
    schedule = schedule_for(name, Segment.model_validate(spec), task_queue)
    try:
        await client.create_schedule(schedule_id(name), schedule, trigger_immediately=True)
        done.created.append(name)
    except ScheduleAlreadyRunningError:
        paused = await _update(client, name, schedule)
        done.updated.append(name)
        if stale and not paused:
            await client.get_schedule_handle(schedule_id(name)).trigger()


async def _update(client: Client, name: str, schedule: Schedule) -> bool:
    """Replace the schedule's spec and action, keeping an operator's pause (and its note);
    returns whether the schedule is paused."""
    paused = False

    def replace(current: ScheduleUpdateInput) -> ScheduleUpdate:
        nonlocal paused
        state = current.description.schedule.state
        paused = state.paused
        if paused:  # paused in the Temporal UI or CLI: a worker restart must not resume it
            kept = dataclasses.replace(schedule.state, paused=True, note=state.note)
            return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=kept))
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(schedule_id(name)).update(replace)
    return paused


async def _delete(client: Client, name: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id(name)).delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def _definitions(engine: Engine) -> list[tuple[str, dict[str, object], bool, bool]]:
    """(name, spec, active, stale): stale when deployed after its last refresh."""
    with session_scope(engine) as session:
        rows = session.exec(select(SegmentDefinition).order_by("name")).all()
        return [
            (
                row.name,
                row.spec,
                row.active,
                row.refreshed_at is None or row.deployed_at > row.refreshed_at,
            )
            for row in rows
        ]
