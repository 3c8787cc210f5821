"""The building blocks of a journey run, as a public Python API.

`JourneyBase` is what the YAML interpreter is made of, and what a developer
subclasses to write a journey by hand as a `@workflow.defn` class: it owns the
`event` and `engagement` signals (deduplicated by id), exit-on and goal
handling, durable waits, idempotent sends and actions, and the run record
in the store. Everything here is deterministic workflow code; the world is
reached only through activities, named in `types`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from . import types as t

SEEN_LIMIT = 2000
BOOKKEEPING = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1)),
}
LOCAL_BOOKKEEPING = "local-bookkeeping-activities"
# The entry records the first step too: one local activity (and store write) fewer per start.
ENTER_AT_FIRST_STEP = "enter-at-first-step"
SENDING = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=10), maximum_attempts=20),
}
# Sends since channel task queues: prepare (ledger, policy, render) on the journeys
# queue, then deliver on the channel's queue. Retry-After comes back as next_retry_delay.
CHANNEL_QUEUES = "channel-task-queues"
PREPARING = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=30),
}
# Transient failures retry for a time, not a number of attempts: a provider that keeps
# answering 429 (each answer an attempt) or a Twilio sender queue that stays full for
# hours must be waited out, not given up on after a few minutes of fast retries.
DELIVERY_DEADLINE = timedelta(hours=6)
DELIVERING = {
    # Covers the SDK's own timeout (10 s) and FCM's built-in retries (~7 s).
    "start_to_close_timeout": timedelta(seconds=60),
    "schedule_to_close_timeout": DELIVERY_DEADLINE,
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=10),
        maximum_attempts=0,  # unlimited, within DELIVERY_DEADLINE
        non_retryable_error_types=["PermanentSendError", "AcceptedUnrecorded"],
    ),
}
# Actions in the store (points, coupons, events) retry until the database is back: a
# customer's points must not be lost to an outage. Refusals (bad input) do not retry.
STORING = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(
        maximum_interval=timedelta(minutes=1), non_retryable_error_types=["ActionRefused"]
    ),
}
# Webhooks reach other systems: transient failures retry for an hour, then the step's
# on_failure runs. Refusals (4xx, bad configuration) do not retry.
ACTING = {
    "start_to_close_timeout": timedelta(seconds=90),
    "schedule_to_close_timeout": timedelta(hours=1),
    "retry_policy": RetryPolicy(
        maximum_interval=timedelta(minutes=5), non_retryable_error_types=["ActionRefused"]
    ),
}
# An engagement implies the weaker ones: a click means the email was opened.
IMPLIED_BY = {
    "delivered": {"delivered", "opened", "clicked", "replied"},
    "opened": {"opened", "clicked"},
}


class JourneyExit(Exception):
    """Leave the journey now: raised by `exit()` and by exit-on events."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ContinueAsNew(Exception):
    """History is long: the interpreter restarts the run where this wait is."""

    def __init__(self, deadline: datetime) -> None:
        super().__init__("continue as new")
        self.deadline = deadline


class JourneyBase:
    """Signals, waits, sends and run records shared by every journey workflow.

    Subclasses set `journey_id`, `exit_on` and (optionally) `goal_event`,
    `goal_within` (seconds) and `goal_where`, then call `enter()` first and
    `finish()` last (or use `run_journey()`, which does both).
    """

    journey_id: str = ""
    trigger_event: str = ""  # for hand-written journeys: the event that starts a run
    listens: tuple[str, ...] = ()  # ...and the other events its runs wait for
    exit_on: tuple[str, ...] = ()
    goal_event: str | None = None
    goal_within: int | None = None
    goal_where: str | None = None
    history_limit: int = 10_000
    resumable: bool = False  # only the interpreter knows how to resume a wait

    def __init__(self) -> None:
        self.contact_id = ""
        self.workflow_id = workflow.info().workflow_id
        self.trigger_event_id: int | None = None
        self.state = t.RunState(entry_seq=0)
        self._seen: set[str] = set()
        # Events handled since the last wait ended: a wait_for that follows counts them,
        # because to the marketer the steps in between (sends, actions) take no time.
        self._recent: list[t.EventSignal] = []
        self._since = workflow.now()
        # Decisions since the last record: the next step's record (or the exit's) carries
        # them to the trail, so the trail costs no extra command in the history.
        self._decisions: list[t.Decision] = []
        # The step the entry already recorded: its `at_step` only drains.
        self._recorded_step: str | None = None

    # --- signals -----------------------------------------------------------

    @workflow.signal
    def event(self, signal: t.EventSignal) -> None:
        if self._first_time(f"e{signal.event_id}"):
            signal.received_at = signal.received_at or workflow.now().isoformat()
            self.state.pending.append(signal)

    @workflow.signal
    def engagement(self, signal: t.EngagementSignal) -> None:
        if signal.entry_seq and signal.entry_seq != self.state.entry_seq:
            return  # about a message an earlier entry of this contact sent
        if self._first_time(signal.signal_id):
            kinds = self.state.engagements.setdefault(signal.step_id, [])
            if signal.kind not in kinds:
                kinds.append(signal.kind)

    def _first_time(self, signal_id: str) -> bool:
        if signal_id in self._seen:
            return False
        self._seen.add(signal_id)
        self.state.seen.append(signal_id)
        if len(self.state.seen) > SEEN_LIMIT:
            self._seen.discard(self.state.seen.pop(0))
        return True

    # --- lifecycle ---------------------------------------------------------

    async def enter(
        self,
        contact_id: str,
        trigger: t.EventSignal,
        version: int = 0,
        re_entry: str = "always",
        re_entry_after: int | None = None,
        entry_if: str | None = None,
        state: t.RunState | None = None,
        first_step: str | None = None,
    ) -> bool:
        """Record the entry (or resume one after continue-as-new); False = not allowed.

        With `first_step`, the entry also records that the run is on it, and the
        step's own `at_step` skips its record (runs entered before this change, whose
        histories hold that record, replay the old way)."""
        self.contact_id = contact_id
        self.trigger_event_id = trigger.event_id
        self._first_time(f"e{trigger.event_id}")
        # signal-with-start also delivers the trigger as a signal: it is not news
        self.state.pending = [s for s in self.state.pending if s.event_id != trigger.event_id]
        if state is not None:  # continuing as new: keep what arrived before run() began
            early, self.state = self.state, state
            self._seen = set(state.seen)
            for signal in early.pending:
                self.event(signal)
            for step_id, kinds in early.engagements.items():
                known = self.state.engagements.setdefault(step_id, [])
                known.extend(k for k in kinds if k not in known)
            return True
        if first_step is not None and not workflow.patched(ENTER_AT_FIRST_STEP):
            first_step = None
        result: t.EnterResult = await self._bookkeeping(
            t.ENTER_RUN,
            t.EnterRequest(
                workflow_id=self.workflow_id,
                journey_id=self.journey_id,
                version=version,
                contact_id=contact_id,
                trigger_event_id=trigger.event_id,
                re_entry=re_entry,
                re_entry_after=re_entry_after,
                entry_if=entry_if,
                now=workflow.now().isoformat(),
                first_step=first_step,
            ),
            t.EnterResult,
        )
        self._recorded_step = first_step
        self.state.entry_seq = result.entry_seq
        self.state.entered_at = workflow.now().isoformat()
        return result.allowed

    async def finish(self, status: str, reason: str | None = None) -> None:
        await self._record(
            t.RunUpdate(self.workflow_id, self.state.entry_seq, None, status, reason)
        )

    def decide(
        self,
        kind: str,
        step_id: str,
        outcome: str,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Note a decision for the run's trail (`branch`, `split`, `wait`, `send`)."""
        now = workflow.now().isoformat()
        self._decisions.append(t.Decision(kind, step_id, outcome, now, reason, detail or {}))

    async def run_journey(
        self, contact_id: str, trigger: t.EventSignal, body: Callable[[], Awaitable[None]]
    ) -> str:
        """Enter, run `body`, and record how the run ended; returns the final status."""
        if not await self.enter(contact_id, trigger):
            return "skipped"
        try:
            await body()
            await self.drain()
            status, reason = "completed", None
        except JourneyExit as done:
            status, reason = done.status, done.reason
        await self.finish(status, reason)
        return status

    def exit(self, reason: str = "exit step") -> None:
        raise JourneyExit("exited", reason)

    # --- steps -------------------------------------------------------------

    async def at_step(self, step_id: str) -> None:
        """Handle what arrived meanwhile, then record the step the run is on."""
        await self.drain()
        recorded, self._recorded_step = self._recorded_step, None
        if step_id != recorded:  # else the entry recorded it
            await self._record(t.RunUpdate(self.workflow_id, self.state.entry_seq, step_id))

    async def sleep(self, seconds: float, deadline: datetime | None = None) -> None:
        """A durable timer that still reacts to exit-on and goal events."""
        end = deadline or workflow.now() + timedelta(seconds=seconds)
        await self._wait_until(end, matcher=None)

    async def sleep_until(self, end: datetime) -> None:
        await self._wait_until(end, matcher=None)

    async def wait_for_event(
        self,
        name: str | Sequence[str],
        timeout: float,
        where: str | None = None,
        deadline: datetime | None = None,
    ) -> t.EventSignal | None:
        """The first `name` event (or any of several names, matching `where`) before the
        timeout, or None."""
        matched: list[t.EventSignal] = []
        names = (name,) if isinstance(name, str) else tuple(name)

        async def matcher(signal: t.EventSignal) -> bool:
            if signal.name in names and (where is None or await self.check(where, signal.event_id)):
                matched.append(signal)
            return bool(matched)

        end = deadline or workflow.now() + timedelta(seconds=timeout)
        earlier, self._recent = self._recent, []
        for signal in earlier:
            arrived = datetime.fromisoformat(signal.received_at or "")
            if arrived >= self._since and await matcher(signal):
                return signal
        await self._wait_until(end, matcher=matcher)
        return matched[0] if matched else None

    async def wait_for_engagement(
        self, step_id: str, kind: str, timeout: float, deadline: datetime | None = None
    ) -> bool:
        """True once the message sent at `step_id` was `kind` (or stronger)."""
        wanted = IMPLIED_BY.get(kind, {kind})

        def engaged() -> bool:
            return bool(wanted.intersection(self.state.engagements.get(step_id, [])))

        end = deadline or workflow.now() + timedelta(seconds=timeout)
        await self._wait_until(end, matcher=None, until=engaged)
        return engaged()

    async def send(
        self,
        step_id: str,
        channel: str | list[str],
        template: str,
        category: str = "marketing",
        policy: dict[str, Any] | None = None,
        sender: dict[str, Any] | None = None,
    ) -> t.SendResult:
        """Deliver once per (run, step), even across retries and crashes.

        The result's status is `sent`, or why not: `failed` (render error or the
        provider refused for good), `suppressed` (consent, suppression list) or
        `skipped` (frequency cap). Quiet hours and `when_capped: defer` hold the
        send on a durable timer here, still reacting to exit and goal events.
        """
        request = t.SendRequest(
            workflow_id=self.workflow_id,
            entry_seq=self.state.entry_seq,
            step_id=step_id,
            journey_id=self.journey_id,
            contact_id=self.contact_id,
            channel=channel,
            template=template,
            category=category,
            trigger_event_id=self.trigger_event_id,
            policy=policy or {},
            sender=sender or {},
        )
        # Per send, not per run: `patched` keeps its first answer for the whole run, so a
        # run that sent before the upgrade would otherwise send everything the old way.
        if workflow.patched(CHANNEL_QUEUES) or workflow.patched(f"{CHANNEL_QUEUES}:{step_id}"):
            result = await self._prepare_and_deliver(request)
            if result.status != "sent":  # `wait_for: {message: ..., engagement: failed}`
                kinds = self.state.engagements.setdefault(step_id, [])
                if "failed" not in kinds:
                    kinds.append("failed")
        else:
            result = await self._activity_send(t.SEND_MESSAGE, request, SENDING)
        if result.message_id:
            self.state.sent[step_id] = result.message_id
        self.decide(
            "send",
            step_id,
            result.status,
            result.error,
            {"message_id": result.message_id, "channel": result.channel},
        )
        return result

    async def _prepare_and_deliver(self, request: t.SendRequest) -> t.SendResult:
        while True:
            request.now = workflow.now().isoformat()
            prepared = await self._activity_send(t.PREPARE_MESSAGE, request, PREPARING)
            if prepared.status == "deferred" and prepared.retry_at:
                request.deferrals += 1
                await self.sleep_until(datetime.fromisoformat(prepared.retry_at))
                continue
            if prepared.status != "ready" or not prepared.message_id or not prepared.channel:
                return prepared
            result = await self._deliver(request, prepared)
            if result.status == "deferred" and result.retry_at:  # quiet hours began meanwhile
                request.deferrals += 1
                await self.sleep_until(datetime.fromisoformat(result.retry_at))
                continue
            return result

    async def _deliver(self, request: t.SendRequest, prepared: t.SendResult) -> t.SendResult:
        async def give_up(req: t.GiveUpRequest) -> None:
            await self._bookkeeping(t.GIVE_UP_MESSAGE, req)

        return await deliver_prepared(request, prepared, give_up)

    async def _activity_send(
        self, name: str, arg: Any, options: dict[str, Any], task_queue: str | None = None
    ) -> t.SendResult:
        """A send activity whose failure (after its retries) is a `failed` result."""
        try:
            return await workflow.execute_activity(
                name, arg, result_type=t.SendResult, task_queue=task_queue, **options
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise  # the run is being cancelled: not a failed send
            cause = exc.cause
            workflow.logger.warning("send %s failed: %s", name, cause)
            return t.SendResult(message_id=None, status="failed", error=str(cause))

    async def update_contact(
        self,
        step_id: str,
        set: dict[str, Any] | None = None,
        increment: dict[str, float] | None = None,
        unset: list[str] | None = None,
        tag: list[str] | None = None,
        untag: list[str] | None = None,
    ) -> None:
        await workflow.execute_activity(
            t.UPDATE_CONTACT,
            t.UpdateContactRequest(
                contact_id=self.contact_id,
                idempotency_key=f"{self.workflow_id}:{step_id}:{self.state.entry_seq}",
                set=set or {},
                increment=increment or {},
                unset=unset or [],
                tag=tag or [],
                untag=untag or [],
            ),
            **BOOKKEEPING,
        )

    async def act(self, step_id: str, action: dict[str, Any]) -> t.ActionResult:
        """Run an `award_points`, `issue_coupon`, `webhook` or `track` action once per
        (run, step). What it produces is stored on the run (`journey.*`); a failure
        after the retries is a result with `ok=False`, not an exception."""
        request = t.ActionRequest(
            workflow_id=self.workflow_id,
            entry_seq=self.state.entry_seq,
            step_id=step_id,
            journey_id=self.journey_id,
            contact_id=self.contact_id,
            trigger_event_id=self.trigger_event_id,
            action=action,
            now=workflow.now().isoformat(),
        )
        try:
            options = ACTING if action.get("type") == "webhook" else STORING
            return await workflow.execute_activity(
                t.RUN_ACTION, request, result_type=t.ActionResult, **options
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.warning("action %s failed: %s", step_id, exc.cause)
            return t.ActionResult(ok=False, error=str(exc.cause))

    async def save_event(self, key: str, event_id: int) -> None:
        """Keep an event on the run as `journey.<key>`, for later conditions and templates."""
        await self._bookkeeping(
            t.SAVE_EVENT, t.SaveEventRequest(self.workflow_id, self.state.entry_seq, key, event_id)
        )

    async def check(self, expression: str, event_id: int | None = None) -> bool:
        """Evaluate a condition in an activity, so traits never enter the history."""
        return await self._bookkeeping(
            t.CHECK_CONDITION,
            t.ConditionRequest(
                expression=expression,
                contact_id=self.contact_id,
                trigger_event_id=self.trigger_event_id,
                event_id=event_id,
                workflow_id=self.workflow_id,
                entry_seq=self.state.entry_seq,
                now=workflow.now().isoformat(),
            ),
            bool,
        )

    async def drain(self) -> None:
        """Process events that arrived while the run was busy (exit, goal)."""
        await self._process_pending(matcher=None)

    # --- internals ---------------------------------------------------------

    async def _wait_until(
        self,
        end: datetime,
        matcher: Callable[[t.EventSignal], Awaitable[bool]] | None,
        until: Callable[[], bool] | None = None,
    ) -> None:
        await self._wait_loop(end, matcher, until)
        # Not in `finally`: when a cached run is evicted its coroutine is closed
        # mid-wait, outside the workflow event loop, where workflow.now() fails.
        self._since = workflow.now()
        self._recent = []

    async def _wait_loop(
        self,
        end: datetime,
        matcher: Callable[[t.EventSignal], Awaitable[bool]] | None,
        until: Callable[[], bool] | None,
    ) -> None:
        while True:
            if until is not None and until():
                return
            remaining = (end - workflow.now()).total_seconds()
            if remaining <= 0:
                return
            if self.resumable and self._history_is_long():
                raise ContinueAsNew(end)
            try:
                await workflow.wait_condition(
                    lambda: bool(self.state.pending) or (until is not None and until()),
                    timeout=timedelta(seconds=remaining),
                )
            except TimeoutError:
                return
            if await self._process_pending(matcher):
                return

    async def _process_pending(
        self, matcher: Callable[[t.EventSignal], Awaitable[bool]] | None
    ) -> bool:
        matched = False
        while self.state.pending:
            signal = self.state.pending.pop(0)
            if signal.name in self.exit_on:
                await self._maybe_convert(signal)
                raise JourneyExit("exited", f"event: {signal.name}")
            await self._maybe_convert(signal)
            if matcher is not None and not matched:
                matched = await matcher(signal)
            elif matcher is None:
                self._recent = [*self._recent[-99:], signal]
        return matched

    async def _maybe_convert(self, signal: t.EventSignal) -> None:
        if self.state.converted or signal.name != self.goal_event:
            return
        if self.goal_within is not None and self.state.entered_at is not None:
            entered = datetime.fromisoformat(self.state.entered_at)
            if workflow.now() - entered > timedelta(seconds=self.goal_within):
                return
        if self.goal_where and not await self.check(self.goal_where, signal.event_id):
            return
        self.state.converted = True
        await self._bookkeeping(
            t.RECORD_CONVERSION,
            t.ConversionRequest(
                self.workflow_id, self.state.entry_seq, signal.event_id, workflow.now().isoformat()
            ),
        )

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.history_limit
        )

    async def _record(self, update: t.RunUpdate) -> None:
        update.at = workflow.now().isoformat()
        update.decisions, self._decisions = self._decisions, []
        await self._bookkeeping(t.RECORD_STEP if update.status is None else t.FINISH_RUN, update)

    async def _bookkeeping(self, name: str, arg: Any, result_type: type | None = None) -> Any:
        """Short store reads and writes run as local activities: no server round trip.

        Runs started before this change recorded them as regular activities; the
        patch marker keeps replaying those histories exactly as they were.
        """
        if workflow.patched(LOCAL_BOOKKEEPING):
            return await workflow.execute_local_activity(
                name, arg, result_type=result_type, **BOOKKEEPING
            )
        return await workflow.execute_activity(name, arg, result_type=result_type, **BOOKKEEPING)


async def deliver_prepared(
    request: t.SendRequest,
    prepared: t.SendResult,
    give_up: Callable[[t.GiveUpRequest], Awaitable[None]],
) -> t.SendResult:
    """Deliver a prepared message on its channel's task queue (the provider's quota);
    when transient failures outlast DELIVERY_DEADLINE, `give_up` settles the ledger row."""
    assert prepared.message_id is not None and prepared.channel is not None
    try:
        return await workflow.execute_activity(
            t.DELIVER_MESSAGE,
            t.DeliverRequest(
                prepared.message_id,
                (request.sender or {}).get(prepared.channel) or {},
                request.policy,
            ),
            result_type=t.SendResult,
            task_queue=t.channel_queue(workflow.info().task_queue, prepared.channel),
            **DELIVERING,
        )
    except ActivityError as exc:
        if is_cancelled_exception(exc):
            raise
        cause = exc.cause
        kind = getattr(cause, "type", None)
        if kind == "AcceptedUnrecorded":  # the provider has it: never send it again
            return t.SendResult(prepared.message_id, "sent", prepared.channel)
        if kind != "PermanentSendError":  # DELIVERY_DEADLINE passed in transient errors
            await give_up(
                t.GiveUpRequest(
                    prepared.message_id,
                    f"gave up after {DELIVERY_DEADLINE.total_seconds() / 3600:g} h of "
                    f"retries (the provider may have accepted one): {cause}",
                )
            )
        # The send activity logged the failure at WARNING, with journey and contact.
        workflow.logger.info("send %s failed: %s", request.step_id, cause)
        return t.SendResult(prepared.message_id, "failed", prepared.channel, str(cause))
