"""Segments on a real Temporal dev server: the schedule per segment, its refresh workflow,
the router's refresh after routing, and the journeys that `Segment Entered` starts."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import col, select
from temporalio.client import ScheduleCalendarSpec, ScheduleHandle, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from orchestrator.segments.schedules import schedule_id, sync_schedules
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Event, Order, SegmentDefinition
from tests.harness import Bench, tiny_templates, write_journey

VIP_WELCOME = """
    id: {journey}
    name: VIP welcome
    trigger:
      event: Segment Entered
      where: event.properties.segment == "{big}"
    steps:
      - send: {{ id: welcome, channel: email, template: vip_welcome }}
    """
SEGMENTS = """
    {big}:
      description: Spent more than 5,000 RUB in the last 30 days
      refresh: "0 * * * *"
      spent: {{ more_than: 5000, within: 30d, currency: RUB }}
    {regulars}:
      refresh: {{ every: 2h }}
      orders: {{ at_least: 1 }}
    """


@dataclass
class Stage:
    """A bench with a VIP journey started by entering segment `big`, and the segments
    `big` and `regulars`: named anew per test, as schedule ids are the whole server's."""

    bench: Bench
    journey: str
    big: str
    regulars: str

    @property
    def engine(self) -> Engine:
        return self.bench.engine

    def schedule(self, name: str) -> ScheduleHandle:
        return self.bench.client.get_schedule_handle(schedule_id(name))

    async def result(self, user: str) -> Any:
        """How the VIP journey ended for `user` (never a hung test: a deadline)."""
        return await asyncio.wait_for(self.bench.result(self.journey, user), timeout=30)

    def write_segments(self, text: str) -> None:
        names = {"big": self.big, "regulars": self.regulars}
        (self.bench.journeys_dir / "segments.yaml").write_text(
            textwrap.dedent(text).format(**names)
        )


@pytest_asyncio.fixture
async def stage(
    dev_env: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> AsyncIterator[Stage]:
    suffix = uuid.uuid4().hex[:6]
    # Workflow and schedule ids are the whole server's: new ones for every test.
    names = {"big": f"big_spenders_{suffix}", "regulars": f"regulars_{suffix}"}
    journey = f"vip_welcome_{suffix}"
    journeys = tmp_path / "journeys"
    write_journey(journeys, journey, textwrap.dedent(VIP_WELCOME).format(journey=journey, **names))
    templates = tiny_templates(tmp_path / "templates", ("vip_welcome",))
    stage = Stage(Bench(dev_env, engine, journeys, templates), journey, **names)
    stage.write_segments(SEGMENTS)
    stage.bench.deploy()
    yield stage
    for name in (stage.big, stage.regulars):
        try:
            await stage.schedule(name).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still false after {timeout} s")
        await asyncio.sleep(0.1)
    return result


def place_order(engine: Engine, order_id: str, contact_id: str, revenue: float) -> None:
    with session_scope(engine) as session:
        session.add(
            Order(
                order_id=order_id,
                contact_id=contact_id,
                revenue=revenue,
                currency="RUB",
                placed_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )


def entered(engine: Engine) -> list[tuple[str, str]]:
    """(contact, segment) of every Segment Entered event, oldest first."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Event.contact_id, Event.properties)
            .where(Event.name == "Segment Entered", Event.type == "track")
            .order_by(col(Event.id))
        ).all()
        return [(c, p["segment"]) for c, p in rows]


def refreshed(engine: Engine, name: str) -> datetime | None:
    with session_scope(engine) as session:
        row = session.get(SegmentDefinition, name)
        return row.refreshed_at if row else None


def hourly(calendar: ScheduleCalendarSpec) -> bool:
    """`0 * * * *` as the server keeps it: second 0, minute 0, every hour."""
    ranges = [(r.start, r.end) for r in (*calendar.second, *calendar.minute, *calendar.hour)]
    return ranges == [(0, 0), (0, 0), (0, 23)]


async def test_the_schedule_refreshes_and_starts_the_journey_for_new_members_only(
    stage: Stage,
) -> None:
    bench = stage.bench
    for user in ("ann", "bob"):
        await bench.identify(user, email=f"{user}@example.com")
    async with bench.worker():  # its start creates the schedules, each run once at once
        await eventually(lambda: refreshed(stage.engine, stage.big))
        await eventually(lambda: refreshed(stage.engine, stage.regulars))
        assert entered(stage.engine) == []  # nobody has ordered yet

        described = await stage.schedule(stage.big).describe()
        assert [hourly(c) for c in described.schedule.spec.calendars] == [True]
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert described.schedule.action.task_queue == bench.task_queue  # type: ignore[attr-defined]
        assert described.schedule.state.note == "Spent more than 5,000 RUB in the last 30 days"
        regulars = await stage.schedule(stage.regulars).describe()
        assert [i.every for i in regulars.schedule.spec.intervals] == [timedelta(hours=2)]

        place_order(stage.engine, "o1", "ann", 6000)
        place_order(stage.engine, "o2", "bob", 1000)
        await stage.schedule(stage.big).trigger()
        await eventually(lambda: entered(stage.engine))
        assert entered(stage.engine) == [("ann", stage.big)]

        await bench.router.sweep()  # routes the stored Segment Entered event
        assert await stage.result("ann") == "completed"
        assert [(r.journey_id, r.contact_id) for r in bench.runs()] == [(stage.journey, "ann")]
        assert [m.contact_id for m in bench.messages()] == ["ann"]

        before = refreshed(stage.engine, stage.big)
        await stage.schedule(stage.big).trigger()  # nothing changed: nobody enters twice
        await eventually(lambda: refreshed(stage.engine, stage.big) != before)
        assert entered(stage.engine) == [("ann", stage.big)]


async def test_sync_updates_schedules_and_deletes_those_of_removed_segments(
    stage: Stage, dev_env: WorkflowEnvironment
) -> None:
    client, queue = dev_env.client, stage.bench.task_queue
    first = await sync_schedules(client, stage.engine, queue)
    assert (first.created, first.updated) == ([stage.big, stage.regulars], [])
    again = await sync_schedules(client, stage.engine, queue)
    assert (again.created, again.updated) == ([], [stage.big, stage.regulars])

    stage.write_segments(
        """
        {big}:
          refresh: {{ every: 30m }}
          spent: {{ more_than: 5000, within: 30d, currency: RUB }}
        """
    )
    stage.bench.deploy()
    done = await sync_schedules(client, stage.engine, queue)
    assert (done.updated, done.deleted) == ([stage.big], [stage.regulars])
    described = await stage.schedule(stage.big).describe()
    assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=30)]
    with pytest.raises(RPCError) as caught:
        await stage.schedule(stage.regulars).describe()
    assert caught.value.status == RPCStatusCode.NOT_FOUND


async def test_a_schedule_an_operator_paused_stays_paused_across_worker_starts(
    stage: Stage, dev_env: WorkflowEnvironment
) -> None:
    client, queue = dev_env.client, stage.bench.task_queue
    await sync_schedules(client, stage.engine, queue)
    await stage.schedule(stage.big).pause(note="paused during the migration -- ops")
    stage.write_segments(  # a changed definition would otherwise trigger a refresh at once
        """
        {big}:
          spent: {{ more_than: 9000, within: 30d, currency: RUB }}
        {regulars}:
          orders: {{ at_least: 1 }}
        """
    )
    stage.bench.deploy()
    done = await sync_schedules(client, stage.engine, queue)
    assert stage.big in done.updated and done.failed == {}
    described = await stage.schedule(stage.big).describe()
    state = described.schedule.state
    assert (state.paused, state.note) == (True, "paused during the migration -- ops")

    def started(info: Any) -> int:  # runs started, or skipped as one was still running
        return info.num_actions + info.num_actions_skipped_overlap

    # Only the start at creation: the changed definition did not trigger a paused schedule,
    # while the same sync triggered the one that is not paused (never refreshed yet).
    assert started(described.info) == 1
    assert started((await stage.schedule(stage.regulars).describe()).info) == 2


async def test_an_order_event_moves_its_contact_in_at_once(stage: Stage) -> None:
    bench = stage.bench
    for user in ("ann", "bob"):
        await bench.identify(user, email=f"{user}@example.com")
    async with bench.worker():
        await eventually(lambda: refreshed(stage.engine, stage.big))
        await eventually(lambda: refreshed(stage.engine, stage.regulars))
        place_order(stage.engine, "o1", "ann", 6000)
        place_order(stage.engine, "o2", "bob", 6000)  # qualifies, but no event says so yet
        # Routing ann's `Order Completed` re-evaluates, for ann only, the segments it may change.
        await bench.track("ann", "Order Completed", order_id="o3", revenue=1, currency="RUB")
        assert entered(stage.engine) == [("ann", stage.big), ("ann", stage.regulars)]
        await bench.router.sweep()
        assert await stage.result("ann") == "completed"
        assert [r.contact_id for r in bench.runs() if r.journey_id == stage.journey] == ["ann"]
