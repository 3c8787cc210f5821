"""Builds the Temporal workers that run journeys and deliver messages, and connects.

One process polls the journeys queue (workflows, policy, rendering) and one
queue per channel (`journeys-email`, `journeys-push`, `journeys-sms`), whose
activity rate limit is enforced by the Temporal server across every worker:
that is how a provider's quota holds however many workers run.
`JOURNEYS_WORKER_QUEUES` splits them over processes when needed.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client, TLSConfig
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from channels.base import Channel
from channels.errors import ChannelConfigError
from channels.registry import adapter_class

from ..activities.actions import ActionActivities, WebhookCaller, call_configured_webhook
from ..activities.campaigns import CampaignActivities
from ..activities.contacts import ContactActivities
from ..activities.date_triggers import DateTriggerActivities
from ..activities.runs import RunActivities
from ..activities.segments import SegmentActivities
from ..activities.sending import SendActivities
from ..campaigns.schedules import sync_campaign_schedules
from ..observability import tracing
from ..observability.temporal_metrics import sdk_runtime
from ..rendering import Renderer
from ..segments.schedules import sync_schedules
from ..services.links import MessageLinks
from ..settings import Settings
from ..workflows.campaign import CampaignWorkflow
from ..workflows.date_trigger import DateTriggerWorkflow
from ..workflows.journey import JourneyWorkflow
from ..workflows.kit import JourneyBase
from ..workflows.segment_refresh import SegmentRefreshWorkflow
from ..workflows.transactional import TransactionalMessageWorkflow
from ..workflows.types import channel_queue


def python_journeys(settings: Settings) -> list[type[JourneyBase]]:
    """Hand-written journeys named in JOURNEYS_PYTHON_JOURNEYS ("package.module:Class")."""
    found = []
    if settings.python_journeys and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # modules next to journeys/, like a project's own
    for path in settings.python_journeys:
        module_name, _, attr = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"JOURNEYS_PYTHON_JOURNEYS: cannot import {path!r} ({exc}); "
                "expected 'package.module:ClassName' importable from the working directory"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, JourneyBase) and cls.trigger_event):
            raise ValueError(
                f"JOURNEYS_PYTHON_JOURNEYS: {path!r} must be a JourneyBase workflow class "
                "with journey_id and trigger_event set"
            )
        found.append(cls)
    return found


def channel_adapters(settings: Settings, channels: list[str] | None = None) -> dict[str, Channel]:
    """The configured adapter of each logical channel; one instance per adapter name.

    Built at start-up, so a missing credential or package stops the worker with
    the adapter's message, instead of failing the first send.
    """
    instances: dict[str, Channel] = {}
    built: dict[str, Channel] = {}
    for channel in channels if channels is not None else ["email", "push", "sms"]:
        name = settings.adapter_for(channel)
        cls = adapter_class(name)
        if channel not in cls.serves:
            raise ChannelConfigError(
                f"JOURNEYS_{channel.upper()}_CHANNEL={name}: the {name!r} adapter serves "
                f"{', '.join(cls.serves) or 'no channel'}, not {channel}"
            )
        if name not in instances:
            instances[name] = cls.from_settings(settings)
        built[channel] = instances[name]
    return built


async def connect(settings: Settings, address: str | None = None, lazy: bool = False) -> Client:
    """Connect to Temporal (TLS and API key from settings, as Temporal Cloud needs);
    `lazy`: at the first call instead of now, so an unreachable server is no start-up error."""
    tls: bool | TLSConfig = settings.temporal_tls
    if settings.temporal_tls_cert or settings.temporal_tls_ca:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes()
            if settings.temporal_tls_cert
            else None,
            client_private_key=settings.temporal_tls_key.read_bytes()
            if settings.temporal_tls_key
            else None,
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes()
            if settings.temporal_tls_ca
            else None,
        )
    if settings.temporal_api_key and tls is False:
        tls = True
    return await Client.connect(
        address or settings.temporal_address or f"127.0.0.1:{settings.temporal_port}",
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key,
        tls=tls,
        lazy=lazy,
        # Tracing (OTEL_*) and the SDK's metrics: the workers built on this client too.
        interceptors=tracing.client_interceptors(),
        runtime=sdk_runtime(settings.temporal_metrics_address),
    )


class WorkerGroup:
    """The workers of one process, started and stopped together (`async with`)."""

    def __init__(
        self,
        workers: list[Worker],
        on_start: list[Callable[[], Awaitable[asyncio.Task[None] | None]]] | None = None,
    ) -> None:
        self.workers = workers
        # Run once the workers poll; a task they return (segment schedules) lives as long
        # as the workers do.
        self.on_start = on_start or []
        self._background: list[asyncio.Task[None]] = []

    @property
    def task_queues(self) -> list[str]:
        return [w.task_queue for w in self.workers]

    async def __aenter__(self) -> WorkerGroup:
        for worker in self.workers:
            await worker.__aenter__()
        for hook in self.on_start:
            task = await hook()
            if task is not None:
                self._background.append(task)
        return self

    async def shutdown(self) -> None:
        """Stop polling now, every worker at once, and wait for the activities in flight
        (up to their grace); `__aexit__` does it too, so this only starts it earlier."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await asyncio.gather(*(w.shutdown() for w in self.workers))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await asyncio.gather(*(w.__aexit__(exc_type, exc, tb) for w in reversed(self.workers)))

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))


# Our packages whose code runs inside workflows; with the sandbox in "passthrough" they are
# imported once per process instead of once per run. They hold no state that changes as
# runs execute (constants, classes, pure functions), and what runs in a workflow reaches
# the world only through activities; the replay corpus and the suite (which runs "strict")
# check both.
WORKFLOW_PACKAGES = ("orchestrator",)


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The runner for journey workflows that `JOURNEYS_WORKFLOW_SANDBOX` asks for."""
    if settings.workflow_sandbox == "off":
        return UnsandboxedWorkflowRunner()
    restrictions = SandboxRestrictions.default
    if settings.workflow_sandbox == "passthrough":
        restrictions = restrictions.with_passthrough_modules(*WORKFLOW_PACKAGES)
    return SandboxedWorkflowRunner(restrictions=restrictions)


# Threads per worker for the (synchronous) activities, and as many activity slots: a task
# Temporal hands us is one a thread runs now, not one queued behind the others with its
# timeout running, which a stopping worker would have to wait for (or start after the stop).
ACTIVITY_THREADS = 16


def build_worker(
    client: Client,
    engine: Engine,
    settings: Settings,
    adapters: dict[str, Channel] | None = None,
    task_queue: str | None = None,
    workflows: list[type] | None = None,
    webhooks: WebhookCaller | None = None,
    **options: Any,
) -> WorkerGroup:
    """Workers for the queues in JOURNEYS_WORKER_QUEUES; `options` go to the journeys one.

    `workflows` replaces the journey workflow classes (upgrade tests run old code);
    `webhooks` makes the `webhook` action's calls (a simulation answers them itself).
    Stopping them stops polling at once and gives the activities in flight
    JOURNEYS_SHUTDOWN_GRACE seconds to finish and record their outcome.
    """
    queue = task_queue or settings.task_queue
    grace = timedelta(seconds=settings.shutdown_grace)
    wanted = settings.worker_queues
    channels = [c for c in ("email", "push", "sms") if c in wanted]
    if adapters is None:  # only the channels this worker delivers on need credentials
        adapters = channel_adapters(settings, channels)
    sends = SendActivities(
        engine,
        Renderer.from_settings(settings),
        adapters,
        MessageLinks.from_settings(settings),
        settings,
    )
    workers = []
    if "main" in wanted:
        zone = settings.default_timezone  # of contacts without one: what `today()` reads
        runs, contacts = RunActivities(engine, zone), ContactActivities(engine, zone)
        dates = DateTriggerActivities(engine, zone)
        campaigns = CampaignActivities(engine, zone)
        actions = ActionActivities(engine, webhooks or call_configured_webhook, zone)
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=[
                    *(workflows or [JourneyWorkflow, *python_journeys(settings)]),
                    SegmentRefreshWorkflow,
                    TransactionalMessageWorkflow,
                    DateTriggerWorkflow,
                    CampaignWorkflow,
                ],
                activities=[
                    runs.enter_run,
                    runs.record_step,
                    runs.finish_run,
                    runs.record_conversion,
                    contacts.check_condition,
                    contacts.next_local_time,
                    contacts.update_contact,
                    actions.run_action,
                    actions.save_event,
                    sends.prepare_message,
                    sends.give_up_message,
                    sends.send_message,
                    SegmentActivities(engine).refresh_segment,
                    dates.plan_date,
                    dates.fire_date,
                    campaigns.open_campaign,
                    campaigns.release_campaign,
                    campaigns.close_campaign,
                ],
                activity_executor=ThreadPoolExecutor(max_workers=ACTIVITY_THREADS),
                **{
                    "max_concurrent_activities": ACTIVITY_THREADS,
                    "graceful_shutdown_timeout": grace,
                    "workflow_runner": workflow_runner(settings),
                    "max_cached_workflows": settings.workflow_cache,
                    **options,
                },
            )
        )
    for channel in channels:
        workers.append(
            Worker(
                client,
                task_queue=channel_queue(queue, channel),
                activities=[sends.deliver_message],
                activity_executor=ThreadPoolExecutor(max_workers=ACTIVITY_THREADS),
                max_concurrent_activities=ACTIVITY_THREADS,
                max_task_queue_activities_per_second=settings.rate_limit_for(channel),
                graceful_shutdown_timeout=grace,
            )
        )
    on_start: list[Callable[[], Awaitable[asyncio.Task[None] | None]]] = []
    if "main" in wanted:

        async def schedule_segments() -> asyncio.Task[None]:
            return asyncio.create_task(
                keep_schedules(client, engine, queue, settings.default_timezone)
            )

        on_start.append(schedule_segments)
    return WorkerGroup(workers, on_start)


SCHEDULE_RESYNC = 300.0  # seconds between syncs: segments deployed meanwhile get theirs


async def keep_schedules(
    client: Client, engine: Engine, task_queue: str, default_zone: str = "UTC"
) -> None:
    """Match the segment and campaign schedules to what is deployed now, then every few
    minutes (deployed while the worker runs), retrying sooner after a failure (Temporal
    briefly down). Failures are logged, never fatal: segments still follow events."""
    log = logging.getLogger(__name__)
    delay = SCHEDULE_RESYNC
    while True:
        try:
            await sync_schedules(client, engine, task_queue)
            await sync_campaign_schedules(client, engine, task_queue, default_zone)
            delay = SCHEDULE_RESYNC
        except RPCError as exc:
            if exc.status == RPCStatusCode.UNIMPLEMENTED:  # e.g. the time-skipping test server
                log.warning(
                    "this Temporal server has no schedules: segments follow events only, "
                    "campaigns do not send"
                )
                return
            delay = min(delay, 30.0)
            log.error("segment schedules not synced (%s); retrying in %.0f s", exc, delay)
        except Exception as exc:
            delay = min(delay, 30.0)
            log.error(
                "segment schedules not synced (%s: %s); retrying in %.0f s",
                type(exc).__name__,
                exc,
                delay,
            )
        await asyncio.sleep(delay)
