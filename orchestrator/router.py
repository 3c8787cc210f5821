"""Delivers stored events to Temporal: the events table is a transactional outbox.

The API only commits events; the router turns each unrouted event into
`signal_with_start` for journeys it triggers and `signal` for runs that may
listen for it (exit-on, goal, wait_for), then marks it routed. While
Temporal is unreachable events stay unrouted and are retried on the next
sweep, so an outage delays journeys but loses nothing. Workflows dedupe by
event id, so a redelivery after a crash is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import select
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from .dsl.conditions import evaluate
from .dsl.models import Journey, WaitForStep
from .store.context import contact_context, event_context
from .store.db import session_scope
from .store.engagement import ENGAGEMENT_EVENTS, record_engagement
from .store.tables import Contact, Event, JourneyVersion, utcnow
from .store.versions import active_versions
from .workflows.journey import workflow_id
from .workflows.kit import JourneyBase
from .workflows.types import EngagementSignal, EventSignal, JourneyInput

log = logging.getLogger(__name__)

BATCH = 200
CONCURRENCY = 32


@dataclass(frozen=True)
class Deployed:
    """An active journey version, parsed once."""

    journey: Journey
    version: int
    spec: dict[str, Any]
    listens: frozenset[str]


def listened_events(journey: Journey) -> frozenset[str]:
    """Event names a running run of `journey` may react to (besides its trigger)."""
    names = set(journey.exit_on)
    if journey.goal:
        names.add(journey.goal.event)

    def walk(steps: Iterable[Any]) -> None:
        for step in steps:
            if isinstance(step, WaitForStep) and step.wait_for.event:
                names.add(step.wait_for.event)
            for attr in ("then", "on_timeout", "else_", "on_failure"):
                walk(getattr(step, attr, []) or [])
            for case in getattr(step, "branch", None) or getattr(step, "split", None) or []:
                walk(case.then)

    walk(journey.steps)
    return frozenset(names)


class Router:
    def __init__(
        self,
        client: Client,
        engine: Engine,
        task_queue: str,
        interval: float = 1.0,
        history_limit: int = 10_000,
        python_journeys: Iterable[type[JourneyBase]] = (),
    ) -> None:
        self.client = client
        self.engine = engine
        self.task_queue = task_queue
        self.interval = interval
        self.history_limit = history_limit
        self._wake = asyncio.Event()
        self._journeys: list[Deployed] = []
        self.python_journeys = list(python_journeys)
        self._loaded_at = 0.0
        self.routed = 0

    def wake(self) -> None:
        """Called after a commit so the next sweep starts now, not at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.sweep() == BATCH:
                    pass
            except Exception as exc:  # Temporal or the database is down: retry later
                log.warning("routing paused: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()

    async def sweep(self) -> int:
        """Route one batch of unrouted events, oldest first; returns how many."""
        events = await asyncio.to_thread(self._unrouted)
        if not events:
            return 0
        await asyncio.to_thread(self._refresh)
        gate = asyncio.Semaphore(CONCURRENCY)
        # Events of one contact stay in order; different contacts go in parallel.
        by_contact: dict[str, list[Event]] = {}
        for event in events:
            by_contact.setdefault(event.contact_id, []).append(event)

        async def route_contact(batch: list[Event]) -> list[int]:
            done = []
            for event in batch:
                async with gate:
                    await self.route(event)
                done.append(event.id)
            return done

        results = await asyncio.gather(
            *(route_contact(b) for b in by_contact.values()), return_exceptions=True
        )
        routed = [i for r in results if isinstance(r, list) for i in r]
        await asyncio.to_thread(self._mark_routed, routed)
        self.routed += len(routed)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return len(events)

    async def route(self, event: Event) -> None:
        if event.type != "track" or not event.name:
            return
        signal = EventSignal(event_id=event.id or 0, name=event.name)
        for deployed in self._journeys:
            journey = deployed.journey
            wid = workflow_id(journey.id, event.contact_id)
            if event.name == journey.trigger.event:
                if journey.trigger.where and not await asyncio.to_thread(
                    self._holds, journey.trigger.where, event
                ):
                    continue
                await self._start(
                    "JourneyWorkflow",
                    wid,
                    JourneyInput(
                        journey=deployed.spec,
                        version=deployed.version,
                        contact_id=event.contact_id,
                        trigger=signal,
                        history_limit=self.history_limit,
                    ),
                )
            elif event.name in deployed.listens:
                await self._signal(wid, "event", signal)
        for cls in self.python_journeys:
            wid = workflow_id(cls.journey_id, event.contact_id)
            if event.name == cls.trigger_event:
                await self._start(
                    _workflow_name(cls),
                    wid,
                    JourneyInput(
                        journey={}, version=0, contact_id=event.contact_id, trigger=signal
                    ),
                )
            elif event.name in {*cls.listens, *cls.exit_on, cls.goal_event}:
                await self._signal(wid, "event", signal)
        if event.name in ENGAGEMENT_EVENTS:
            await self._engagement(event, ENGAGEMENT_EVENTS[event.name])

    async def _engagement(self, event: Event, kind: str) -> None:
        props = event.properties or {}
        message_id = props.get("message_id") or props.get("email_id")
        if not isinstance(message_id, str):
            return
        message = await asyncio.to_thread(record_engagement, self.engine, message_id, kind, event)
        if message is None:
            return
        workflow, step_id, entry_seq = message
        signal = EngagementSignal(
            signal_id=f"e{event.id}", step_id=step_id, kind=kind, entry_seq=entry_seq
        )
        await self._signal(workflow, "engagement", signal)

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
            )
        except WorkflowAlreadyStartedError:
            # A concurrent start won (the time-skipping test server answers so under a
            # burst of signal-with-starts): the trigger still belongs to the open run.
            await self._signal(wid, "event", run_input.trigger)

    async def _signal(self, wid: str, name: str, arg: Any) -> None:
        try:
            await self.client.get_workflow_handle(wid).signal(name, arg)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise

    # --- store access (run in threads) ------------------------------------

    def _unrouted(self) -> list[Event]:
        with session_scope(self.engine) as session:
            query = select(Event).where(Event.routed_at.is_(None)).order_by(Event.id).limit(BATCH)  # type: ignore[union-attr]
            events = list(session.exec(query))
            for event in events:
                session.expunge(event)
            return events

    def _mark_routed(self, ids: list[int]) -> None:
        if not ids:
            return
        with session_scope(self.engine) as session:
            session.exec(update(Event).where(Event.id.in_(ids)).values(routed_at=utcnow()))  # type: ignore[union-attr,call-overload]

    def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self.interval and self._journeys:
            return
        with session_scope(self.engine) as session:
            rows: list[JourneyVersion] = active_versions(session)
            deployed = []
            for row in rows:
                journey = Journey.model_validate(row.spec)
                deployed.append(Deployed(journey, row.version, row.spec, listened_events(journey)))
        self._journeys = deployed
        self._loaded_at = time.monotonic()

    def _holds(self, expression: str, event: Event) -> bool:
        with session_scope(self.engine) as session:
            contact = session.get(Contact, event.contact_id)
            return evaluate(
                expression, {"contact": contact_context(contact), "event": event_context(event)}
            )


def _workflow_name(cls: type[JourneyBase]) -> str:
    definition = getattr(cls, "__temporal_workflow_definition", None)
    return definition.name if definition is not None else cls.__name__
