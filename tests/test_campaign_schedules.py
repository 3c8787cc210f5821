"""Campaign schedules on a real Temporal dev server (it has the Schedules API): one per
campaign journey, its times in the right zone, paused and deleted with the campaign,
and a firing that sends the campaign to the segment's members."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from sqlalchemy import Engine
from temporalio.client import ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from orchestrator.campaigns.control import change
from orchestrator.campaigns.schedules import schedule_id, sync_campaign_schedules
from orchestrator.segments.membership import refresh
from orchestrator.store.db import session_scope
from orchestrator.store.tables import utcnow
from tests.harness import Bench, tiny_templates, write_journey

SEGMENTS = """
{segment}:
  refresh: {{ every: 1h }}
  trait: {{ name: newsletter, equals: true }}
"""
CAMPAIGN = """
id: {journey}
name: Campaign
trigger: {{ schedule: "{when}", segment: {segment}{extra} }}
steps:
  - send: {{ id: news, channel: email, template: hello }}
"""


@pytest_asyncio.fixture
async def bench(
    dev_env: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> AsyncIterator[Bench]:
    templates = tiny_templates(tmp_path / "templates", ("hello",))
    bench = Bench(dev_env, engine, tmp_path / "journeys", templates)
    yield bench
    for journey in getattr(bench, "campaigns", []):
        try:
            await dev_env.client.get_schedule_handle(schedule_id(journey)).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise


def deploy(bench: Bench, when: str, extra: str = "") -> str:
    """A campaign journey and its segment, named anew: schedule ids are the server's."""
    suffix = uuid.uuid4().hex[:6]
    journey, segment = f"news_{suffix}", f"subscribers_{suffix}"
    write_journey(
        bench.journeys_dir,
        journey,
        CAMPAIGN.format(journey=journey, segment=segment, when=when, extra=extra),
    )
    (bench.journeys_dir / "segments.yaml").write_text(
        textwrap.dedent(SEGMENTS.format(segment=segment))
    )
    bench.deploy()
    bench.campaigns = [*getattr(bench, "campaigns", []), journey]  # type: ignore[attr-defined]
    bench.segment = segment  # type: ignore[attr-defined]
    return journey


async def test_a_local_time_campaign_fires_first_where_ten_comes_first(bench: Bench) -> None:
    journey = deploy(bench, "2030-01-15 10:00", ", local_time: true")
    client, queue = bench.client, bench.task_queue
    done = await sync_campaign_schedules(client, bench.engine, queue)
    assert done.created == [journey]
    described = await client.get_schedule_handle(schedule_id(journey)).describe()
    # 10:00 on 15 January at UTC+14 (Kiribati, the first zone to reach it): 20:00 UTC the
    # day before; the members' own 10:00 follow from there (test_campaigns.py).
    assert described.info.next_action_times[:2] == [datetime(2030, 1, 14, 20, tzinfo=UTC)]
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.ALLOW_ALL
    assert described.schedule.action.task_queue == queue  # type: ignore[attr-defined]
    again = await sync_campaign_schedules(client, bench.engine, queue)
    assert (again.created, again.updated) == ([], [journey])


async def test_a_cron_campaign_in_its_timezone_paused_and_cancelled(bench: Bench) -> None:
    journey = deploy(bench, "0 10 * * 1", ", timezone: Europe/Moscow")
    client, queue = bench.client, bench.task_queue
    await sync_campaign_schedules(client, bench.engine, queue)
    handle = client.get_schedule_handle(schedule_id(journey))
    times = (await handle.describe()).info.next_action_times
    assert times and all((t.weekday(), t.hour, t.minute) == (0, 7, 0) for t in times)  # UTC+3
    with session_scope(bench.engine) as session:
        change(session, journey, "pause")
    await sync_campaign_schedules(client, bench.engine, queue)
    state = (await handle.describe()).schedule.state
    assert state.paused and "journeys campaigns resume" in (state.note or "")
    with session_scope(bench.engine) as session:
        change(session, journey, "cancel")
    done = await sync_campaign_schedules(client, bench.engine, queue)
    assert done.deleted == [journey]
    try:
        await handle.describe()
        raise AssertionError("the cancelled campaign's schedule is still there")
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND


async def test_a_firing_sends_the_campaign_to_the_members(bench: Bench) -> None:
    journey = deploy(bench, "0 10 * * *", ", timezone: UTC")
    for user, subscribed in (("ann", True), ("bob", True), ("cat", False)):
        await bench.identify(user, email=f"{user}@example.com", newsletter=subscribed)
    await bench.route_all()
    with session_scope(bench.engine) as session:
        refresh(session, bench.segment, utcnow())  # type: ignore[attr-defined]
    async with bench.worker():  # its start creates the schedule
        handle = bench.client.get_schedule_handle(schedule_id(journey))
        for _ in range(100):
            try:
                await handle.describe()
                break
            except RPCError:
                await asyncio.sleep(0.1)
        await handle.trigger()  # "send now": the firing's minute is the dispatch's
        for _ in range(200):
            await bench.route_all()
            if len([m for m in bench.messages() if m.status == "sent"]) == 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(m.contact_id for m in bench.messages() if m.status == "sent") == [
            "ann",
            "bob",
        ]


async def test_a_campaign_sent_once_whose_schedule_came_after_its_time_fires_then(
    bench: Bench,
) -> None:
    """A schedule made after its one calendar time never fires (Temporal does not catch
    up on times before a schedule existed): a campaign deployed a minute before its time
    (workers sync every five minutes), one in local time deployed after 10:00 came at
    UTC+14 (`validate` is silent until it came at UTC-12), or one paused over its time
    and resumed, was silently sent to no one. The sync fires it itself while it is still
    due somewhere, once: not again when its dispatch is open. Zones more than an hour
    past are not sent to late."""
    from zoneinfo import ZoneInfo

    from temporalio.testing import ActivityEnvironment

    from orchestrator.activities.campaigns import CampaignActivities
    from orchestrator.store.tables import CampaignDispatch
    from orchestrator.workflows import types as t

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # 10:00 came at UTC+14 a day ago; at UTC-12 it is two hours away.
    local = (now.astimezone(ZoneInfo("Etc/GMT+12")) + timedelta(hours=2)).replace(tzinfo=None)
    times = {
        "local": (f"{local:%Y-%m-%d %H:%M}", ", local_time: true"),
        "minute": (f"{now - timedelta(minutes=2):%Y-%m-%d %H:%M}", ", timezone: UTC"),
        "hours": (f"{now - timedelta(hours=2):%Y-%m-%d %H:%M}", ", timezone: UTC"),
    }
    suffix = uuid.uuid4().hex[:6]
    segment = f"subscribers_{suffix}"
    ids = {}
    for name, (when, extra) in times.items():
        ids[name] = f"{name}_{suffix}"
        write_journey(
            bench.journeys_dir,
            ids[name],
            CAMPAIGN.format(journey=ids[name], segment=segment, when=when, extra=extra),
        )
    (bench.journeys_dir / "segments.yaml").write_text(
        textwrap.dedent(SEGMENTS.format(segment=segment))
    )
    bench.deploy()
    bench.campaigns = list(ids.values())  # type: ignore[attr-defined]
    client, queue = bench.client, bench.task_queue
    done = await sync_campaign_schedules(client, bench.engine, queue)
    assert sorted(done.triggered) == sorted([ids["local"], ids["minute"]])
    for name in ("local", "minute"):
        info = (await client.get_schedule_handle(schedule_id(ids[name])).describe()).info
        assert info.num_actions == 1, name
    with session_scope(bench.engine) as session:  # its workflow opened the dispatch
        session.add(
            CampaignDispatch(
                id=f"{ids['local']}@{local:%Y-%m-%dT%H:%M}", journey_id=ids["local"],
                version=1, segment=segment, due=f"{local:%Y-%m-%d %H:%M}", throttle={},
            )
        )  # fmt: skip
    again = await sync_campaign_schedules(client, bench.engine, queue)
    assert again.triggered == [ids["minute"]]  # its workflow has not run: no worker here
    for user, zone in (("kiri", "Pacific/Kiritimati"), ("baker", "Etc/GMT+12"), ("joe", None)):
        context = {"timezone": zone} if zone else {}
        await bench.identify(user, email=f"{user}@example.com", newsletter=True, context=context)
    await bench.route_all()
    plan = ActivityEnvironment().run(
        CampaignActivities(bench.engine).open_campaign,
        t.OpenCampaignRequest(ids["local"], now.isoformat()),
    )
    # Kiritimati's 10:00 was a day ago, the default zone's (UTC) ten hours ago: left out.
    assert [(w.zones, w.unzoned) for w in plan.waves] == [(["Etc/GMT+12"], False)]
