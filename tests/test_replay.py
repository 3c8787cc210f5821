"""Replay recorded histories: a change to workflow code must not break running journeys.

`tests/histories/` holds histories recorded from the step-kind, cart and send-policy
tests (`JOURNEYS_RECORD_HISTORIES=<dir> pytest tests/test_step_kinds.py
tests/test_abandoned_cart.py tests/test_send_policy.py`), one generation per workflow
change, prefixed with its patch name (`local_bookkeeping__`, `channel_queues__`,
`enter_at_first_step__`); the unprefixed ones predate them all. `playbook__` ones come
from the shipped playbook journeys (`JOURNEYS_RECORD_HISTORIES=<dir> pytest
tests/test_playbook_journeys.py`): actions, keyed runs, waits on several events with
`save_as`. Every release must replay them all. The last two tests prove the check has
teeth: an unversioned behaviour change is caught, the same change behind
`workflow.patched` is not.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from old_workflows import marketing_request
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from orchestrator.dsl.models import STEP_KINDS
from orchestrator.workflows.journey import JourneyWorkflow
from orchestrator.workflows.types import JourneyInput

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def step_kinds(path: Path) -> set[str]:
    """The step kinds used by the journey a history ran."""
    history = json.loads(path.read_text())
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    found: set[str] = set()

    def walk(steps: list[Any]) -> None:
        for step in steps:
            found.update(k for k in step if k in STEP_KINDS and step[k] is not None)
            for key in ("then", "on_timeout", "else", "on_failure"):
                walk(step.get(key) or [])
            for case in (step.get("branch") or []) + (step.get("split") or []):
                walk(case.get("then") or [])

    walk(payload["journey"]["steps"])
    return found


def test_the_corpus_covers_every_step_kind() -> None:
    assert len(HISTORIES) >= 10
    covered = set().union(*(step_kinds(p) for p in HISTORIES))
    assert covered == set(STEP_KINDS)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    await Replayer(workflows=[JourneyWorkflow]).replay_workflow(load(path))


@workflow.defn(name="JourneyWorkflow")
class UnversionedEdit(JourneyWorkflow):
    """A 'harmless' optimisation: stop recording the current step in the store."""

    @workflow.run
    async def run(self, input: JourneyInput) -> str:
        return await super().run(input)

    async def at_step(self, step_id: str) -> None:
        await self.drain()


@workflow.defn(name="JourneyWorkflow")
class VersionedEdit(JourneyWorkflow):
    """The same change behind `workflow.patched`: old runs keep the old behaviour."""

    @workflow.run
    async def run(self, input: JourneyInput) -> str:
        return await super().run(input)

    async def at_step(self, step_id: str) -> None:
        if workflow.patched("skip-step-records"):
            await self.drain()
        else:
            await super().at_step(step_id)


# Before and after the switch of run bookkeeping to local activities (a patched change).
CART_HISTORIES = [p for p in HISTORIES if p.stem.endswith("abandoned_cart__cy")]


def activity_types(path: Path) -> list[str]:
    events = json.loads(path.read_text())["events"]
    return [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    ]


def generation(prefix: str) -> Path:
    return next(p for p in CART_HISTORIES if p.stem.startswith(prefix))


def local_activities_before_first_wait(path: Path) -> list[str]:
    """The local activities a run recorded before its first timer started."""
    found = []
    for e in json.loads(path.read_text())["events"]:
        if e["eventType"] == "EVENT_TYPE_TIMER_STARTED":
            break
        if e["eventType"] != "EVENT_TYPE_MARKER_RECORDED":
            continue
        details = e["markerRecordedEventAttributes"]["details"]
        for payload in details.get("data", {}).get("payloads", []):
            data = json.loads(base64.b64decode(payload["data"]))
            if isinstance(data, dict) and "activity_type" in data:
                found.append(data["activity_type"])
    return found


def test_the_corpus_holds_runs_from_each_generation() -> None:
    assert "record_step" in activity_types(generation("test_"))
    # Bookkeeping became local activities; sends were one activity each.
    assert activity_types(generation("local_bookkeeping")) == ["send_message", "send_message"]
    # Sends became prepare (journeys queue) + deliver (the channel's queue).
    assert activity_types(generation("channel_queues")) == [
        "prepare_message",
        "deliver_message",
        "prepare_message",
        "deliver_message",
    ]
    # The entry records the first step: the run goes from enter_run straight to its wait.
    before = local_activities_before_first_wait(generation("channel_queues"))
    assert before == ["enter_run", "record_step"]
    assert local_activities_before_first_wait(generation("enter_at_first_step")) == ["enter_run"]


def test_the_corpus_holds_runs_that_record_their_trail() -> None:
    trail = [p for p in HISTORIES if p.stem.startswith("trail__")]
    assert {"split", "branch", "wait_for", "send"} <= set().union(*map(step_kinds, trail))
    used = [name for path in trail for name in activity_types(path)]
    assert "prepare_message" in used and "deliver_message" in used


def test_the_corpus_holds_playbook_runs() -> None:
    playbook = [p for p in HISTORIES if p.stem.startswith("playbook__")]
    used = {name for path in playbook for name in activity_types(path)}
    assert {"run_action", "prepare_message", "deliver_message"} <= used
    markers = [
        base64.b64decode(payload.get("data", ""))
        for path in playbook
        for e in json.loads(path.read_text())["events"]
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
        for part in e["markerRecordedEventAttributes"]["details"].values()
        for payload in part.get("payloads", [])
    ]
    assert any(b'"save_event"' in data for data in markers)  # a local activity


@pytest.mark.parametrize("path", CART_HISTORIES, ids=lambda p: p.stem)
async def test_an_unversioned_change_is_caught(path: Path) -> None:
    result = await Replayer(workflows=[UnversionedEdit]).replay_workflow(
        load(path), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    assert (
        "Nondeterminism" in type(result.replay_failure).__name__
        or "nondetermin" in str(result.replay_failure).lower()
    )


@pytest.mark.parametrize("path", CART_HISTORIES, ids=lambda p: p.stem)
async def test_the_same_change_behind_patched_replays(path: Path) -> None:
    await Replayer(workflows=[VersionedEdit]).replay_workflow(load(path))


@workflow.defn(name="JourneyWorkflow")
class BookkeepingWithoutPatch(JourneyWorkflow):
    """The local-activity change as it would be without `workflow.patched`."""

    @workflow.run
    async def run(self, input: JourneyInput) -> str:
        return await super().run(input)

    async def _bookkeeping(self, name: str, arg: Any, result_type: type | None = None) -> Any:
        return await workflow.execute_local_activity(
            name, arg, result_type=result_type, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="JourneyWorkflow")
class ChannelQueuesWithoutPatch(JourneyWorkflow):
    """The prepare/deliver split as it would be without `workflow.patched`."""

    @workflow.run
    async def run(self, input: JourneyInput) -> str:
        return await super().run(input)

    async def send(self, step_id: str, channel: Any, template: str, *args: Any) -> Any:
        request = marketing_request(self, step_id, channel, template)
        return await self._prepare_and_deliver(request)


async def test_the_channel_queue_change_needed_its_patch() -> None:
    old = generation("local_bookkeeping")
    result = await Replayer(workflows=[ChannelQueuesWithoutPatch]).replay_workflow(
        load(old), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    await Replayer(workflows=[JourneyWorkflow]).replay_workflow(load(old))


async def test_the_bookkeeping_change_needed_its_patch() -> None:
    old = generation("test_")
    result = await Replayer(workflows=[BookkeepingWithoutPatch]).replay_workflow(
        load(old), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
