"""Delivers stored events to Temporal: the events table is a transactional outbox.

The API only commits events; a router turns each unrouted event into
`signal_with_start` for journeys it triggers and `signal` for runs that may
listen for it (exit-on, goal, wait_for), then marks it routed. While Temporal
is unreachable events stay unrouted and are retried, so an outage delays
journeys but loses nothing.

Several routers may share one database (one in every `journeys worker`, or
`journeys router` processes). Each *claims* a batch before delivering it: it
writes its name and a deadline into the rows (`lease_owner`, `lease_until`), and
the others skip leased rows until the lease runs out, which is how the events of
a router that died are taken over. A contact whose events are leased by one
router is skipped by the others altogether, so a contact's events reach
Temporal in the order they were stored, whichever router delivers them. Claims
are short transactions, serialized between routers (PostgreSQL: an advisory
lock and `FOR UPDATE SKIP LOCKED`; SQLite: `BEGIN IMMEDIATE`, its single writer);
deliveries run in parallel. An event is marked routed only after its delivery;
workflows dedupe by event id, so the redelivery that follows a crash between
the two is harmless.

An event whose routing fails for a reason of its own (not an outage:
`route_failures.py`) has its attempts counted in the store; after
JOURNEYS_DEAD_LETTER_AFTER of them it becomes a dead letter (`store/dead_letters.py`)
and stops holding back its contact's later events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, or_, text, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ..analytics.attribution import attribute_conversion, goal_event_names
from ..analytics.counts import FOLD_AFTER_DAYS, fold_shards
from ..analytics.message_counts import count_engagement
from ..dsl.conditions import evaluate
from ..dsl.models import IDENTIFY, Journey, WaitForStep
from ..feedback.own_events import INTERNAL_ONLY
from ..observability import ids, tracing
from ..segments.membership import Change, refresh_for_events
from ..store.audiences import AUDIENCE_OF, CATALOG_EVENT, fan_out
from ..store.backlog import routing_backlog
from ..store.context import contact_context, event_context
from ..store.date_plans import DATE_PLAN_EVENT
from ..store.db import session_scope
from ..store.dead_letters import forget, not_dead, record_failure
from ..store.engagement import ENGAGEMENT_EVENTS, record_engagement
from ..store.identity import aliases_of
from ..store.message_requests import EVENT_TYPE as MESSAGE_EVENT
from ..store.message_requests import requested
from ..store.orders import order_id_of, run_key
from ..store.tables import ORIGIN_INTERNAL, Contact, ContactAlias, Event, JourneyRun, utcnow
from ..store.versions import live_versions, specs_of
from ..workflows.date_trigger import DATE_TRIGGER_WORKFLOW, date_workflow_id
from ..workflows.journey import workflow_id
from ..workflows.kit import JourneyBase
from ..workflows.types import (
    MESSAGE_WORKFLOW,
    DateTriggerInput,
    EngagementSignal,
    EventSignal,
    JourneyInput,
    MessageInput,
)
from .route_failures import error_text, is_outage

log = logging.getLogger(__name__)

BATCH = 200
CONCURRENCY = 32
LEASE = 30.0  # seconds a claim stays with its router (JOURNEYS_ROUTER_LEASE)
RPC_TIMEOUT = timedelta(seconds=10)
# A claim starts deliveries only while this much of its lease is left, so a call in
# flight ends before another router may take the events over.
LEASE_MARGIN = RPC_TIMEOUT.total_seconds() + 2
FOLD_EVERY = 3600.0  # seconds between folds of the journey counters (`counts.fold_shards`)
FOLD_BATCH = 5000
DEAD_LETTER_AFTER = 5  # failed attempts of its own before an event is a dead letter
# After a failed attempt the event (and so its contact) stays leased for the router's
# interval, doubled at each attempt up to this: a passing fault gets time to pass.
FAILURE_PAUSE_MAX = 60.0
MAX_PAUSE = 2.0  # longest wait between attempts while Temporal or the database is down
WARN_EVERY = 10.0  # seconds between warnings while it stays down
# Arbitrary, fixed 64-bit key: PostgreSQL routers take their claims one at a time on it.
_CLAIM_LOCK_KEY = 0x6A6F75726E657972  # "journeyr"


@dataclass(frozen=True)
class Deployed:
    """A journey version, parsed once: the active one starts runs; every version whose
    runs may be in flight hears the events they listen for."""

    journey: Journey
    version: int
    spec: dict[str, Any]
    listens: frozenset[str]


@dataclass(frozen=True)
class Listeners:
    """The runs in flight of one journey (any of its versions, retired or not) that may
    react to `events`, found the way the versions' `one_run_per` says."""

    journey_id: str
    one_run_per: str | None
    events: frozenset[str]
    # The active version's trigger: an open run gets that event by signal-with-start.
    started_by: str | None = None


@dataclass
class Claim:
    """Events leased to one router, oldest first, with the other ids of their contacts."""

    events: list[Event]
    aliases: dict[str, list[str]] = field(default_factory=dict)
    deliver_until: float = 0.0  # time.monotonic() after which no new delivery starts


def listened_events(journey: Journey) -> frozenset[str]:
    """Event names a running run of `journey` may react to (besides its trigger)."""
    names = set(journey.exit_on)
    if journey.goal:
        names.add(journey.goal.event)

    def walk(steps: Iterable[Any]) -> None:
        for step in steps:
            if isinstance(step, WaitForStep):
                names.update(step.wait_for.events)
            for attr in ("then", "on_timeout", "else_", "on_failure"):
                walk(getattr(step, attr, []) or [])
            for case in getattr(step, "branch", None) or getattr(step, "split", None) or []:
                walk(case.then)

    walk(journey.steps)
    return frozenset(names)


def router_name() -> str:
    """Unique per router process and start: host, pid and a random suffix (≤ 64 chars)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class Router:
    def __init__(
        self,
        client: Client,
        engine: Engine,
        task_queue: str,
        interval: float = 1.0,
        history_limit: int = 10_000,
        python_journeys: Iterable[type[JourneyBase]] = (),
        lease: float = LEASE,
        name: str | None = None,
        default_timezone: str = "UTC",
        dead_letter_after: int = DEAD_LETTER_AFTER,
    ) -> None:
        self.client = client
        self.dead_letter_after = dead_letter_after  # 0: retry for ever
        self.default_timezone = default_timezone  # of contacts without one: dates in `where:`
        self.engine = engine
        self.task_queue = task_queue
        self.interval = interval
        self.history_limit = history_limit
        self.lease = lease
        self.name = name or router_name()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._journeys: list[Deployed] = []  # the active versions: what starts runs
        self._listeners: list[Listeners] = []
        self._parsed: dict[int, Deployed] = {}  # by version row id: specs never change
        self._goal_events: frozenset[str] = frozenset()  # any version's goal, for attribution
        self._folded_at = 0.0
        self.python_journeys = list(python_journeys)
        self._loaded_at = 0.0
        self.routed = 0  # events this router delivered and marked routed
        # Engagement events that named no message of ours or someone else's message.
        self.engagement_ignored = 0
        # Client events named like ours (`Segment Entered`...), stored before the API
        # refused them: delivered to no journey.
        self.reserved_ignored = 0
        self.dead_lettered = 0  # events this router gave up on

    def wake(self) -> None:
        """Called after a commit so the next sweep starts now, not at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the sweep in progress (its deliveries marked, the rest released), then end."""
        self._stopped.set()
        self._wake.set()

    async def run(self) -> None:
        """Sweep until stopped; while Temporal or the database is down, retry with backoff."""
        failures, warned = 0, -WARN_EVERY
        while not self._stopped.is_set():
            try:
                if failures and not await self._temporal_reachable():
                    raise ConnectionError("Temporal health check failed")
                while await self.sweep() == BATCH and not self._stopped.is_set():
                    pass
                if failures:
                    log.warning("routing resumed after %d failed attempt(s)", failures)
                failures = 0
            except Exception as exc:
                failures += 1
                pause = min(max(self.interval, 0.5) * 2 ** (failures - 1), MAX_PAUSE)
                if time.monotonic() - warned >= WARN_EVERY:
                    warned = time.monotonic()
                    await self._report_pause(exc, failures)
                with contextlib.suppress(TimeoutError):  # wake-ups are no use until it is back
                    await asyncio.wait_for(self._stopped.wait(), timeout=pause)
                continue
            if time.monotonic() - self._folded_at > FOLD_EVERY:
                await asyncio.to_thread(self._fold)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()

    def _fold(self) -> None:
        """Fold the journey counters of past days into one shard each (`counts.fold_shards`),
        a batch at a time; a failure is logged and tried again at the next fold."""
        self._folded_at = time.monotonic()
        before = (utcnow() - timedelta(days=FOLD_AFTER_DAYS)).date().isoformat()
        try:
            for _ in range(100):
                with session_scope(self.engine) as session:
                    if fold_shards(session, before, FOLD_BATCH) < FOLD_BATCH:
                        return
        except Exception:
            log.warning("folding the journey counters failed; trying again later", exc_info=True)

    async def sweep(self) -> int:
        """Claim one batch of unrouted events, oldest first, and deliver it; returns how many."""
        claim = await asyncio.to_thread(self.claim)
        return await self.deliver(claim)

    async def deliver(self, claim: Claim) -> int:
        """Route a claim's events: each contact's in order, contacts in parallel.

        Delivered events are marked routed, the others released for the next claim, also
        when delivery fails or is cancelled; the first failure is then raised.
        """
        if not claim.events:
            return 0
        await asyncio.to_thread(self._refresh)
        gate = asyncio.Semaphore(CONCURRENCY)
        by_contact: dict[str, list[Event]] = {}
        for event in claim.events:
            by_contact.setdefault(event.contact_id, []).append(event)
        delivered: list[int] = []
        paused: dict[int, float] = {}  # failed events: seconds before their next attempt

        async def route_contact(batch: list[Event]) -> None:
            for event in batch:
                async with gate:
                    if time.monotonic() > claim.deliver_until:
                        return  # the lease is running out: leave the rest to the next claim
                    aliases = claim.aliases.get(event.contact_id, [])
                    try:
                        with traced(event):
                            await self.route(event, aliases)
                    except Exception as exc:
                        if not await self._own_failure(exc):
                            raise  # an outage: counts against no event
                        attempts = await self._count_failure(event, aliases, exc)
                        if attempts:
                            paused[event.id or 0] = self._failure_pause(attempts)
                            return  # the contact's later events wait behind it
                        continue  # a dead letter now: the contact moves on without it
                delivered.append(event.id or 0)

        try:
            results = await asyncio.gather(
                *(route_contact(b) for b in by_contact.values()), return_exceptions=True
            )
        finally:
            await asyncio.to_thread(self._settle, claim, delivered, paused)
            self.routed += len(delivered)
        done = set(delivered)
        await self._refresh_segments([e for e in claim.events if e.id in done])
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(claim.events)

    async def _own_failure(self, exc: Exception) -> bool:
        """Whether a failure is the event's own (counted) rather than an outage: by its
        kind (`route_failures.is_outage`), and only while Temporal answers."""
        return not is_outage(exc) and await self._temporal_reachable()

    def _failure_pause(self, attempts: int) -> float:
        return min(max(self.interval, 0.01) * 2 ** (attempts - 1), FAILURE_PAUSE_MAX)

    async def _count_failure(self, event: Event, aliases: Sequence[str], exc: Exception) -> int:
        """Count one failed attempt in the store: the attempts so far, 0 when the event
        is a dead letter now."""
        error = error_text(exc, (event.contact_id, *aliases))
        attempt = await asyncio.to_thread(
            record_failure, self.engine, event.id or 0, error, self.dead_letter_after
        )
        if attempt.dead:
            self.dead_lettered += 1
            log.error(
                "event %s (%s %s) is a dead letter after %d failed attempts; the contact's "
                "later events are routed without it (journeys events dead-letter list): %s",
                event.id,
                event.type,
                event.name or "",
                attempt.attempts,
                error,
            )
        else:
            limit = self.dead_letter_after or "unlimited"
            log.warning(
                "event %s (%s %s) failed to route, attempt %d of %s, retried in %.3g s; the "
                "contact's later events wait: %s",
                event.id,
                event.type,
                event.name or "",
                attempt.attempts,
                limit,
                self._failure_pause(attempt.attempts),
                error,
            )
        return 0 if attempt.dead else attempt.attempts

    async def _refresh_segments(self, events: list[Event]) -> None:
        """Re-evaluate the segments routed events may change, for their contacts only.

        The `Segment Entered` / `Segment Exited` events it stores go out with the next
        sweep. A failure is logged, not raised: routing goes on, and the segment's
        scheduled refresh catches up.
        """
        relevant = [e for e in events if e.type in ("track", "identify")]
        if not relevant:
            return
        try:
            changes = await asyncio.to_thread(self._segment_changes, relevant)
        except Exception:
            log.exception("segment refresh after routing failed; the scheduled refresh catches up")
            return
        if any(change.entered or change.exited for change in changes.values()):
            self.wake()

    def _segment_changes(self, events: list[Event]) -> dict[str, Change]:
        with session_scope(self.engine) as session:
            if self.engine.dialect.name == "postgresql":
                # A scheduled refresh of a big segment holds its lock for a while: do not
                # hold up routing behind it (it fails, is logged; the schedule catches up).
                session.exec(text("SET LOCAL lock_timeout = '2s'"))  # type: ignore[call-overload]
            return refresh_for_events(session, events, utcnow())

    async def route(self, event: Event, aliases: Sequence[str] | None = None) -> None:
        """Deliver one event. `aliases`: the contact's other ids (looked up when None)."""
        if event.type == MESSAGE_EVENT and event.origin == ORIGIN_INTERNAL:
            await self._send_message(event)
            return
        if event.type == CATALOG_EVENT:
            await self._fan_out(event)
            return
        if event.type == DATE_PLAN_EVENT and event.origin == ORIGIN_INTERNAL:
            await self._plan_date(str(event.name), event.contact_id)
            return
        if event.type == "identify":
            for deployed in self._journeys:  # the date (or the contact's zone) may have changed
                trait = deployed.journey.trigger.trait
                if trait is not None and (
                    trait in (event.properties or {}) or (event.context or {}).get("timezone")
                ):
                    await self._plan_date(deployed.journey.id, event.contact_id)
            name = IDENTIFY  # journeys with `trigger: {identify: true}` start on it
        elif event.type == "track" and event.name:
            name = event.name
        else:
            return
        if event.type == "track" and name in INTERNAL_ONLY and event.origin != ORIGIN_INTERNAL:
            # Only we record these names (segment entries, survey answers, provider
            # reports; `$identify` is an identify call's): a client's would start, wake,
            # end or convert runs as if it were ours.
            self.reserved_ignored += 1
            log.warning(
                "event %s: a client event named %r, which only the orchestrator records, "
                "stored before the API refused such names; delivered to no journey",
                event.id,
                name,
            )
            return
        signal = EventSignal(event_id=event.id or 0, name=name)
        for deployed in self._journeys:
            journey = deployed.journey
            if name != journey.trigger.name:
                continue
            if not journey.trigger.accepts_segment(event.properties or {}):
                continue
            if (journey.trigger.date or journey.trigger.schedule) is not None and (
                (event.properties or {}).get("journey") != journey.id
            ):
                continue  # another date journey's date, another campaign's member
            copy_for = (
                (event.context or {}).get(AUDIENCE_OF) if event.origin == ORIGIN_INTERNAL else None
            )
            if (journey.trigger.audience is not None) != (copy_for is not None):
                continue  # audience journeys start on their copies only, others never do
            if copy_for is not None and copy_for != journey.id:
                continue
            if journey.trigger.where and not await asyncio.to_thread(
                self._holds, journey.trigger.where, event
            ):
                continue
            await self._start(
                "JourneyWorkflow",
                workflow_id(journey.id, event.contact_id, _run_key(journey, event)),
                JourneyInput(
                    journey=deployed.spec,
                    version=deployed.version,
                    contact_id=event.contact_id,
                    trigger=signal,
                    history_limit=self.history_limit,
                ),
            )
        for listeners in self._listeners:
            if name in listeners.events and name != listeners.started_by:
                aliases = await self._aliases(event, aliases)
                for wid in await self._listening_runs(listeners, event, aliases):
                    await self._signal(wid, "event", signal)
        for cls in self.python_journeys:
            if name == cls.trigger_event:
                await self._start(
                    _workflow_name(cls),
                    workflow_id(cls.journey_id, event.contact_id),
                    JourneyInput(
                        journey={}, version=0, contact_id=event.contact_id, trigger=signal
                    ),
                )
            elif name in {*cls.listens, *cls.exit_on, cls.goal_event}:
                aliases = await self._aliases(event, aliases)
                for contact_id in (event.contact_id, *aliases):
                    await self._signal(workflow_id(cls.journey_id, contact_id), "event", signal)
        if name in ENGAGEMENT_EVENTS:
            await self._engagement(event, ENGAGEMENT_EVENTS[name])
        if name in self._goal_events and event.type == "track":
            await asyncio.to_thread(self._attribute, event)

    def _attribute(self, event: Event) -> None:
        """Goal events convert runs whether or not they are still running.

        A failure is logged, not raised: an event that cannot be attributed must not hold
        back the contact's later events (a database outage fails routing itself anyway).
        """
        try:
            with session_scope(self.engine) as session:
                attribute_conversion(session, event, default_zone=self.default_timezone)
        except OperationalError:
            raise  # the database is down or busy: retry the event with the others
        except Exception:
            log.exception("event %s: attributing the conversion failed; routed anyway", event.id)

    async def _aliases(self, event: Event, known: Sequence[str] | None) -> Sequence[str]:
        """Runs started under an id later merged into this contact (an anonymousId) keep that
        id as their workflow id: they hear the contact's events too."""
        if known is not None:
            return known
        return await asyncio.to_thread(self._load_aliases, event.contact_id)

    async def _listening_runs(
        self, listeners: Listeners, event: Event, aliases: Sequence[str]
    ) -> list[str]:
        """The runs of a journey an event of the contact may concern: the one per contact,
        or with `one_run_per`, every active run of the contact (one per order...), and the
        run the event's own key names even when it has not recorded its entry yet."""
        ids = [event.contact_id, *aliases]
        journey_id, name = listeners.journey_id, listeners.one_run_per
        if name is None:
            return [workflow_id(journey_id, c) for c in ids]
        runs = set(await asyncio.to_thread(self._active_runs, journey_id, ids))
        key = order_id_of(event.properties or {}, name)
        if key is not None:
            runs.update(workflow_id(journey_id, c, key) for c in ids)
        return sorted(runs)

    def _active_runs(self, journey_id: str, contact_ids: list[str]) -> list[str]:
        with session_scope(self.engine) as session:
            query = select(JourneyRun.workflow_id).where(
                JourneyRun.journey_id == journey_id,
                col(JourneyRun.contact_id).in_(contact_ids),
                JourneyRun.status == "active",
            )
            return sorted(set(session.exec(query)))

    async def _engagement(self, event: Event, kind: str) -> None:
        props = event.properties or {}
        message_id = props.get("message_id") or props.get("email_id")
        if not isinstance(message_id, str):
            return
        message = await asyncio.to_thread(
            record_engagement, self.engine, message_id, kind, event, count_engagement
        )
        if message is None:  # not ours, or not this contact's: nothing to tell any run
            self.engagement_ignored += 1
            return
        workflow, step_id, entry_seq = message
        signal = EngagementSignal(
            signal_id=f"e{event.id}", step_id=step_id, kind=kind, entry_seq=entry_seq
        )
        await self._signal(workflow, "engagement", signal)

    async def _fan_out(self, event: Event) -> None:
        """A catalogue event: its copy for each member of each audience journey it starts."""
        for deployed in self._journeys:
            journey = deployed.journey
            if journey.trigger.audience is None or journey.trigger.event != event.name:
                continue
            added = await asyncio.to_thread(self._store_copies, journey, event)
            log.info(
                "catalogue event %s (%s): %d contact(s) for %s",
                event.id,
                event.name,
                added,
                journey.id,
            )
            if added:
                self.wake()

    def _store_copies(self, journey: Journey, event: Event) -> int:
        with session_scope(self.engine) as session:
            return fan_out(session, journey, event)

    async def _plan_date(self, journey_id: str, contact_id: str) -> None:
        """Start the contact's date watch for a journey, or make the running one plan again."""
        wid = date_workflow_id(journey_id, contact_id)
        try:
            await self.client.start_workflow(
                DATE_TRIGGER_WORKFLOW,
                DateTriggerInput(journey_id, contact_id),
                id=wid,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal="recheck",
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:  # a concurrent start won: make it plan again
            handle = self.client.get_workflow_handle(wid)
            with contextlib.suppress(RPCError):  # ended meanwhile: the next identify starts it
                await handle.signal("recheck", rpc_timeout=RPC_TIMEOUT)

    async def _send_message(self, event: Event) -> None:
        """A transactional message (`POST /v1/messages`): start its own workflow, once."""
        message = requested(event)
        # A redelivery after a crash finds it started (or done): never a second send.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.client.start_workflow(
                MESSAGE_WORKFLOW,
                MessageInput(
                    message_id=message.message_id,
                    contact_id=event.contact_id,
                    template=event.name or "",
                    channel=message.channel,
                    request_event_id=event.id or 0,
                    to=message.to,
                ),
                id=message.workflow_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                rpc_timeout=RPC_TIMEOUT,
            )

    async def _start(self, workflow: str, wid: str, run_input: JourneyInput) -> None:
        """Signal-with-start: a new run if none is open, else the trigger as a signal."""
        try:
            await self.client.start_workflow(
                workflow,
                run_input,
                id=wid,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal="event",
                start_signal_args=[run_input.trigger],
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            # A concurrent start won (the time-skipping test server answers so under a
            # burst of signal-with-starts): the trigger still belongs to the open run.
            await self._signal(wid, "event", run_input.trigger)

    async def _signal(self, wid: str, name: str, arg: Any) -> None:
        try:
            await self.client.get_workflow_handle(wid).signal(name, arg, rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise

    # --- while something is down ---------------------------------------------

    async def _temporal_reachable(self) -> bool:
        """Whether the frontend answers at all (the call every client makes on connecting)."""
        try:
            await self.client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=3)
            )
            return True
        except RPCError as exc:  # it answered, if only to refuse
            return exc.status not in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
        except Exception:
            return False

    async def _report_pause(self, exc: Exception, failures: int) -> None:
        """A warning saying what is down and how much is waiting (every WARN_EVERY s); the
        exception's text scrubbed as a dead letter's (a driver may quote a row's values)."""
        reason = error_text(exc)
        retrying = f"retrying every {MAX_PAUSE:.0f} s ({failures} failed attempt(s) so far)"
        if isinstance(exc, SQLAlchemyError):
            log.warning("routing paused, the database is unavailable (%s); %s", reason, retrying)
            return
        try:
            backlog = await asyncio.to_thread(routing_backlog, self.engine)
            waiting = (
                f"{backlog.backlog} events waiting, the oldest for {backlog.lag_seconds:.0f} s"
            )
        except SQLAlchemyError as db_exc:
            waiting = f"backlog unknown ({type(db_exc).__name__})"
        if await self._temporal_reachable():
            log.warning("routing paused (%s); %s; %s", reason, waiting, retrying)
        else:
            address = self.client.service_client.config.target_host
            log.warning(
                "routing paused, Temporal is unreachable at %s (%s); %s; %s",
                address,
                reason,
                waiting,
                retrying,
            )

    # --- store access (run in threads) ------------------------------------

    def claim(self) -> Claim:
        """Lease the next batch to this router: the oldest unrouted events that no live
        lease holds, of contacts none of whose unrouted events another router holds."""
        with session_scope(self.engine) as session:  # a cheap read first: idle sweeps lock nothing
            if not session.exec(self._claimable(utcnow()).limit(1)).first():
                return Claim([])
        with self.engine.begin() as connection:
            self._lock_claims(connection)
            started, now = time.monotonic(), utcnow()  # once the lock is ours
            query = self._claimable(now).limit(BATCH)
            if connection.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=Event)  # type: ignore[arg-type]
            ids = list(connection.execute(query).scalars())
            if ids:
                connection.execute(
                    update(Event)
                    .where(col(Event.id).in_(ids))
                    .values(lease_owner=self.name, lease_until=now + timedelta(seconds=self.lease))
                )
        if not ids:
            return Claim([])
        with session_scope(self.engine) as session:
            events = list(
                session.exec(select(Event).where(col(Event.id).in_(ids)).order_by(col(Event.id)))
            )
            for event in events:
                session.expunge(event)
            contacts = {e.contact_id for e in events}
            aliases: dict[str, list[str]] = {}
            rows = session.exec(
                select(ContactAlias.alias_id, ContactAlias.contact_id).where(
                    col(ContactAlias.contact_id).in_(contacts)
                )
            )
            for alias_id, contact_id in rows:
                aliases.setdefault(contact_id, []).append(alias_id)
        margin = min(LEASE_MARGIN, self.lease / 2)
        return Claim(events, aliases, started + self.lease - margin)

    def _claimable(self, now: datetime) -> Select[Any]:
        busy = aliased(Event)
        leased_contacts = select(busy.contact_id).where(
            col(busy.routed_at).is_(None), col(busy.lease_until) >= now
        )
        return (
            select(Event.id)
            .where(
                col(Event.routed_at).is_(None),
                or_(col(Event.lease_until).is_(None), col(Event.lease_until) < now),
                col(Event.contact_id).not_in(leased_contacts),
                not_dead(),
            )
            # Oldest first, ordered as the (routed_at, id) index is: PostgreSQL would
            # otherwise walk the primary key past every routed row (0.5 s per million).
            .order_by(col(Event.routed_at), col(Event.id))
        )

    def _lock_claims(self, connection: Connection) -> None:
        """One claim at a time, whichever router: the pick and the lease are one step."""
        if connection.dialect.name == "postgresql":
            # Without it, two claims could each see the other's contact as free (neither
            # committed yet) and split one contact's events between two routers.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK_KEY})
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before reading

    def _load_aliases(self, contact_id: str) -> list[str]:
        with session_scope(self.engine) as session:
            return aliases_of(session, contact_id)

    def _settle(
        self, claim: Claim, delivered: list[int], paused: dict[int, float] | None = None
    ) -> None:
        """Mark what was delivered routed; release the rest of the claim, except that an
        event that failed stays leased for its pause (holding its contact back with it)."""
        done = sorted(set(delivered))
        paused = paused or {}
        rest = [e.id for e in claim.events if e.id not in set(done) and e.id not in paused]
        with session_scope(self.engine) as session:
            now = utcnow()
            for event_id, pause in paused.items():
                session.exec(  # type: ignore[call-overload]
                    update(Event)
                    .where(
                        col(Event.id) == event_id,
                        col(Event.lease_owner) == self.name,
                        col(Event.routed_at).is_(None),
                    )
                    .values(lease_until=now + timedelta(seconds=pause))
                )
            if done:
                session.exec(  # type: ignore[call-overload]
                    update(Event)
                    .where(col(Event.id).in_(done))
                    .values(routed_at=utcnow(), lease_owner=None, lease_until=None)
                )
                forget(session, done)
            if rest:
                session.exec(  # type: ignore[call-overload]
                    update(Event)
                    .where(
                        col(Event.id).in_(rest),
                        col(Event.lease_owner) == self.name,
                        col(Event.routed_at).is_(None),
                    )
                    .values(lease_owner=None, lease_until=None)
                )

    def _refresh(self) -> None:
        """Which versions start runs and which runs hear events, from the store.

        The active versions start runs. Every version whose runs may still be in flight
        (older versions, retired journeys: `live_versions`) hears the events they wait
        for, so a retired journey's runs still exit, convert and move on, and finish.
        """
        loaded = self._journeys or self._listeners  # nothing deployed yet: look every time
        if time.monotonic() - self._loaded_at < self.interval and loaded:
            return
        with session_scope(self.engine) as session:
            live = live_versions(session)
            new = specs_of(session, (v.id for v in live if v.id not in self._parsed))
            self._goal_events = goal_event_names(session)
        numbers = {v.id: v.version for v in live}
        for row_id, spec in new.items():
            journey = Journey.model_validate(spec)
            self._parsed[row_id] = Deployed(
                journey, numbers[row_id], spec, listened_events(journey)
            )
        starting: list[Deployed] = []
        groups: dict[tuple[str, str | None], set[str]] = {}
        for version in live:
            deployed = self._parsed[version.id]
            if version.starts:
                starting.append(deployed)
            key = (version.journey_id, deployed.journey.entry.one_run_per)
            groups.setdefault(key, set()).update(deployed.listens)
        triggers = {d.journey.id: d.journey.trigger.name for d in starting}
        self._journeys = starting
        self._listeners = [
            Listeners(journey_id, one_run_per, frozenset(events), triggers.get(journey_id))
            for (journey_id, one_run_per), events in groups.items()
            if events
        ]
        self._loaded_at = time.monotonic()

    def _holds(self, expression: str, event: Event) -> bool:
        with session_scope(self.engine) as session:
            contact = session.get(Contact, event.contact_id)
            return evaluate(
                expression,
                {"contact": contact_context(contact, session), "event": event_context(event)},
                now=utcnow(),
                default_zone=self.default_timezone,
            )


@contextlib.contextmanager
def traced(event: Event) -> Iterator[None]:
    """An event's delivery: a span in the trace of the request that stored it (the
    `traceparent` the API put in its context), and its id on the router's log lines."""
    parent = (event.context or {}).get(tracing.TRACEPARENT)
    with (
        tracing.span(
            "RouteEvent",
            kind="consumer",
            traceparent=parent if isinstance(parent, str) else None,
            attributes={
                "journeys.event.id": event.id,
                "journeys.event.type": event.type,
                "journeys.event.name": event.name,
            },
        ),
        ids.working_on(event_id=event.id),
    ):
        yield


def _run_key(journey: Journey, event: Event) -> str | None:
    """The trigger's `one_run_per` value; None (one run per contact) without `one_run_per`.

    A trigger that lacks the property (an order sent without its id) is a run of its
    own, keyed by the event: every order gets its thank-you.
    """
    name = journey.entry.one_run_per
    return None if name is None else run_key(name, event)


def _workflow_name(cls: type[JourneyBase]) -> str:
    definition = getattr(cls, "__temporal_workflow_definition", None)
    return definition.name if definition is not None else cls.__name__
