"""Runs in flight across the upgrade to channel queues: sends already made replay the
old way, every send made after the upgrade takes the new path (policy, channel queue)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from harness import Bench, write_journey
from old_workflows import BeforeChannelQueues
from temporalio.api.enums.v1 import EventType

from orchestrator.processes.worker import build_worker


async def test_a_run_that_sent_before_the_upgrade_sends_the_rest_through_channel_queues(
    ts_env, sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    templates = tmp_path / "templates"
    for name in ("first", "second"):
        (templates / name).mkdir(parents=True)
        (templates / name / "email.subject").write_text(name)
        (templates / name / "email.text").write_text(f"{name} body")
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    write_journey(
        bench.journeys_dir,
        "two_step",
        textwrap.dedent(
            """
            id: two_step
            name: Two steps
            trigger: { event: Start }
            steps:
              - send: { id: first, channel: email, template: first }
              - wait_for: { event: Go, timeout: 30d }
              - send: { id: second, channel: email, template: second }
            """
        ),
    )
    bench.deploy()
    old = build_worker(
        bench.client,
        bench.engine,
        bench.settings,
        {"email": bench_console(bench)},
        workflows=[BeforeChannelQueues],
        max_cached_workflows=0,
    )
    async with old:
        await bench.identify("ann", email="ann@example.com")
        await bench.track("ann", "Start")
        await until_sent(bench, "first")
    # The upgrade: new code, no cache, so the run is rebuilt from its history.
    async with bench.worker(max_cached_workflows=0):
        await bench.track("ann", "Go")
        assert await bench.result("two_step", "ann") == "completed"

    history = await bench.handle("two_step", "ann").fetch_history()
    activities = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert activities == ["send_message", "prepare_message", "deliver_message"]
    assert [m.status for m in bench.messages("ann")] == ["sent", "sent"]


def bench_console(bench: Bench) -> Any:
    from channels.console import ConsoleChannel

    return ConsoleChannel(stream=bench.console)


async def until_sent(bench: Bench, step: str) -> None:
    import asyncio

    for _ in range(200):
        if any(m.step_id == step and m.status == "sent" for m in bench.messages()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{step} was never sent")
