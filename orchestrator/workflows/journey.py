"""`JourneyWorkflow`: one generic workflow that interprets a frozen journey version.

One run per (journey, contact): workflow id `journey:{journey_id}:{contact_id}`.
The spec travels in the input, so editing the YAML never changes a run in
flight. Position in the journey is a cursor (a path of list indices and
branch names), which is what lets a long-waiting run continue-as-new and
resume exactly at the wait it was in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # Not `from . import types`: the sandbox would re-import the module (a fresh copy
    # of every dataclass in it) for each new run, because this package itself is not passed
    # through; an absolute dotted import is.
    import orchestrator.workflows.types as t

    from ..dsl import models as m
    from ..dsl.durations import format_duration
    from .kit import ContinueAsNew, JourneyBase, JourneyExit


def workflow_id(journey_id: str, contact_id: str, run_key: str | None = None) -> str:
    """`journey:{journey}:{contact}`, and `:{key}` for journeys with `one_run_per`."""
    base = f"journey:{journey_id}:{contact_id}"
    if run_key is None:
        return base
    if len(run_key) > 100 or not run_key.isprintable() or ":" in run_key:
        run_key = "h" + hashlib.sha256(run_key.encode()).hexdigest()[:32]
    return f"{base}:{run_key}"


def split_bucket(journey_id: str, step_id: str, contact_id: str, total: int) -> int:
    """A stable number in [0, total) per contact: the same person always gets the same variant."""
    digest = hashlib.sha256(f"{journey_id}:{step_id}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow(JourneyBase):
    resumable = True

    def __init__(self) -> None:
        super().__init__()
        self._position: list[Any] = []
        self._deadline: datetime | None = None
        self._policy: dict[str, Any] = {}
        self._sender: dict[str, Any] = {}

    @workflow.run
    async def run(self, input: t.JourneyInput) -> str:
        spec = m.Journey.model_validate(input.journey)
        self.journey_id = spec.id
        self.exit_on = tuple(spec.exit_on)
        if spec.goal is not None:
            self.goal_event, self.goal_within = spec.goal.event, spec.goal.within
            if spec.goal.after != "entry":  # the store measures from the last message
                self.goal_within = None
            self.goal_where = spec.goal.where
        self.history_limit = input.history_limit
        self._policy = spec.policy.model_dump(mode="json")
        self._sender = spec.sender.model_dump(mode="json", by_alias=True, exclude_none=True)
        entered = await self.enter(
            input.contact_id,
            input.trigger,
            version=input.version,
            re_entry=spec.entry.re_entry.mode,
            re_entry_after=spec.entry.re_entry.after,
            entry_if=spec.entry.if_,
            state=input.state,
            first_step=spec.steps[0].id if spec.steps else None,
        )
        if not entered:
            return "skipped"
        resume: list[Any] | None = None
        if input.state is not None:
            resume = list(input.state.cursor)
            if input.state.deadline:
                self._deadline = datetime.fromisoformat(input.state.deadline)
        try:
            await self._run_list(spec.steps, [], resume)
            await self.drain()
            status, reason = "completed", None
        except JourneyExit as done:
            status, reason = done.status, done.reason
        except ContinueAsNew as pause:
            self.state.cursor = list(self._position)
            self.state.deadline = pause.deadline.isoformat()
            workflow.continue_as_new(
                t.JourneyInput(
                    journey=input.journey,
                    version=input.version,
                    contact_id=input.contact_id,
                    trigger=input.trigger,
                    state=self.state,
                    history_limit=input.history_limit,
                )
            )
        await self.finish(status, reason)
        return status

    @workflow.query
    def position(self) -> list[Any]:
        return self._position

    async def _run_list(
        self, steps: list[Any], prefix: list[Any], resume: list[Any] | None
    ) -> None:
        start = resume[0] if resume else 0
        for index in range(start, len(steps)):
            here = resume[1:] if resume and index == start else None
            await self._run_step(steps[index], [*prefix, index], here)

    async def _run_step(self, step: Any, path: list[Any], resume: list[Any] | None) -> None:
        """Run one step; `resume` is the rest of the cursor when continuing inside it."""
        self._position = path
        if resume is None:
            await self.at_step(step.id)
        deadline = self._take_deadline() if resume == [] else None
        match step:
            case m.WaitStep():
                await self.sleep(step.wait, deadline=deadline)
            case m.WaitUntilStep():
                await self.sleep_until(deadline or await self._next_local_time(step.wait_until))
            case m.WaitForStep():
                await self._wait_for(step, path, resume, deadline)
            case m.BranchStep():
                await self._branch(step, path, resume)
            case m.SplitStep():
                await self._split(step, path, resume)
            case m.SendStep():
                await self._send(step, path, resume)
            case m.ActionStep():
                await self._action(step, path, resume)
            case m.ExitStep():
                raise JourneyExit("exited", step.exit.reason or f"exit step {step.id}")

    async def _wait_for(
        self,
        step: m.WaitForStep,
        path: list[Any],
        resume: list[Any] | None,
        deadline: datetime | None,
    ) -> None:
        if resume:  # continuing inside the branch that was already taken
            branch = resume[0]
            await self._run_list(getattr(step, branch), [*path, branch], resume[1:])
            return
        spec = step.wait_for
        if spec.event is not None:
            signal = await self.wait_for_event(
                spec.events, spec.timeout, spec.where, deadline=deadline
            )
            hit = signal is not None
            if signal is not None:
                self.decide(
                    "wait",
                    step.id,
                    f"event:{signal.name}",
                    f"{signal.name} arrived",
                    {"event_id": signal.event_id},
                )
                if spec.save_as:
                    await self.save_event(spec.save_as, signal.event_id)
            else:
                names = " or ".join(spec.events)
                self.decide(
                    "wait", step.id, "timeout", f"no {names} within {format_duration(spec.timeout)}"
                )
        else:
            assert spec.message is not None
            hit = await self.wait_for_engagement(
                spec.message, spec.engagement, spec.timeout, deadline=deadline
            )
            what = f"message {spec.message} {spec.engagement}"
            if hit:
                self.decide("wait", step.id, f"engaged:{spec.engagement}", what)
            else:
                self.decide(
                    "wait", step.id, "timeout", f"not {what} within {format_duration(spec.timeout)}"
                )
        branch = "then" if hit else "on_timeout"
        await self._run_list(getattr(step, branch), [*path, branch], None)

    async def _send(self, step: m.SendStep, path: list[Any], resume: list[Any] | None) -> None:
        if resume:  # continuing inside on_failure
            await self._run_list(step.on_failure, [*path, "on_failure"], resume[1:])
            return
        assert step.id is not None
        spec = step.send
        result = await self.send(
            step.id, spec.channel, spec.template, spec.category, self._policy, self._sender
        )
        if result.status != "sent" and step.on_failure:
            await self._run_list(step.on_failure, [*path, "on_failure"], None)

    async def _action(self, step: m.ActionStep, path: list[Any], resume: list[Any] | None) -> None:
        if resume:  # continuing inside on_failure
            await self._run_list(step.on_failure, [*path, "on_failure"], resume[1:])
            return
        assert step.id is not None
        action = step.action
        if isinstance(action, m.UpdateContactAction):
            await self.update_contact(
                step.id, action.set, action.increment, action.unset, action.tag, action.untag
            )
            return
        result = await self.act(step.id, action.model_dump(mode="json", by_alias=True))
        if not result.ok and step.on_failure:
            await self._run_list(step.on_failure, [*path, "on_failure"], None)

    async def _branch(self, step: m.BranchStep, path: list[Any], resume: list[Any] | None) -> None:
        if resume:
            if resume[0] == "else":
                await self._run_list(step.else_, [*path, "else"], resume[1:])
            else:
                case = resume[1]
                await self._run_list(step.branch[case].then, [*path, "branch", case], resume[2:])
            return
        for case_index, case in enumerate(step.branch):
            if await self.check(case.if_):
                self.decide("branch", step.id, f"case {case_index + 1}", f"{case.if_} is true")
                await self._run_list(case.then, [*path, "branch", case_index], None)
                return
        self.decide("branch", step.id, "else", "no case's condition is true")
        await self._run_list(step.else_, [*path, "else"], None)

    async def _split(self, step: m.SplitStep, path: list[Any], resume: list[Any] | None) -> None:
        if resume:
            variant = resume[1]
            await self._run_list(step.split[variant].then, [*path, "split", variant], resume[2:])
            return
        total = sum(v.weight for v in step.split)
        bucket = split_bucket(self.journey_id, step.id, self.contact_id, total)
        for variant_index, variant in enumerate(step.split):
            if bucket < variant.weight:
                why = f"weight {variant.weight} of {total}, drawn from the contact's id"
                self.decide("split", step.id, variant.variant, why)
                await self._run_list(variant.then, [*path, "split", variant_index], None)
                return
            bucket -= variant.weight

    async def _next_local_time(self, spec: m.WaitUntilSpec) -> datetime:
        iso: str = await self._bookkeeping(
            t.NEXT_LOCAL_TIME,
            t.LocalTimeRequest(
                contact_id=self.contact_id,
                now=workflow.now().isoformat(),
                time=spec.time,
                weekdays=spec.weekdays,
                default_timezone=spec.timezone,
            ),
            str,
        )
        return datetime.fromisoformat(iso)

    def _take_deadline(self) -> datetime | None:
        deadline, self._deadline = self._deadline, None
        return deadline


__all__ = ["JourneyWorkflow", "split_bucket", "workflow_id"]
