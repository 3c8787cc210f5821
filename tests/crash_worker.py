"""A journeys worker in a process of its own, which can SIGKILL itself at one point of a send.

`tests/test_send_reliability.py` runs it as `python tests/crash_worker.py`: the real
`build_worker` group (journeys queue + email queue) with the adapter configured in the
environment (SendGrid pointed at a loopback fake), against the database and Temporal
server the test uses. Without `CRASH_WINDOW` it is a plain worker (the storm test).

The crash points are reached only through public extension points, never by editing
or patching the pipeline:

    a  before the ledger insert       SQLAlchemy `before_insert` on `Message` (prepare)
    b  before the provider call       a `Channel` wrapping the real adapter
    c  after the provider accepted,   the same wrapper, once the adapter returned
       before the row is marked sent
    d  after the mark, before         a Temporal activity interceptor, once `deliver_message`
       Temporal learns of it          returned `sent`

Environment (besides the orchestrator's own settings):

    CRASH_WINDOW     a | b | c | d; unset: never crash
    CRASH_AFTER      crash the n-th time this process reaches the point (default 1)
    CRASH_LEDGER     "off" for the control run: a deliver that ignores a `sent` row
    SHUTDOWN_GUARDS  "off" for the control of tests/test_graceful_shutdown.py: deliveries
                     as they were before graceful shutdown (see `Unguarded`); run it with
                     JOURNEYS_SHUTDOWN_GRACE=0, the SDK's default

Whatever the mode, an observing interceptor counts each activity's attempts and outcomes
(`ProviderBackoff`, `TransientChannelError`, ok) and prints them as one `stats:` JSON
line when the worker stops (SIGTERM), for the tests' figures.

So that a kill lands in one window only, the stretch of a delivery from the commit that
says `sending` to the commit that records its outcome is serialized by one lock, and the
crashing thread takes that lock first: no other send is then inside its provider call
when the process dies (a crash at a random moment would also leave every send inside
that stretch `unknown`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio import client as temporal_client
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor, Worker

if __package__ in (None, ""):  # run as a script: the project root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.base import Channel, OutgoingMessage, Receipt
from orchestrator.activities.sending import SendActivities
from orchestrator.processes.launch import stop_on_signals
from orchestrator.processes.worker import WorkerGroup, build_worker, channel_adapters, connect
from orchestrator.rendering import Renderer
from orchestrator.services.links import MessageLinks
from orchestrator.settings import Settings
from orchestrator.store.db import make_engine, session_scope
from orchestrator.store.tables import Message
from orchestrator.workflows import types as t

WINDOWS = ("a", "b", "c", "d")


class CrashPlan:
    """Counts how often each point is reached and dies at the planned one."""

    def __init__(self, window: str | None, after: int) -> None:
        if window is not None and window not in WINDOWS:
            raise SystemExit(f"CRASH_WINDOW must be one of {WINDOWS}, not {window!r}")
        self.window = window
        self.after = after
        self.reached: dict[str, int] = dict.fromkeys(WINDOWS, 0)
        self.counting = threading.Lock()
        # `sending` committed .. outcome committed, one send at a time (see the docstring).
        # A plain Lock: the activity interceptor may release it from another thread.
        self.provider = threading.Lock()
        self.holder: tuple[int, str] | None = None  # (thread, activity) inside the stretch
        self.local = threading.local()

    def point(self, name: str) -> None:
        with self.counting:
            self.reached[name] += 1
            due = name == self.window and self.reached[name] == self.after
        if not due:
            return
        if not self._holding():
            self.provider.acquire()  # wait until no other send is inside window c
        print(f"crash: SIGKILL at window {name} (reached {self.after} times)", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    # --- the serialized stretch: `sending` .. the commit after the provider call -------

    def _holding(self) -> bool:
        holder = self.holder
        return holder is not None and holder[0] == threading.get_ident()

    def claim(self) -> None:
        """A delivery sets `sending`: hold the lock until its outcome is committed."""
        if not self._holding():
            self.provider.acquire()
            self.holder = (threading.get_ident(), _activity_key())
        self.local.called = False

    def calling(self) -> None:
        self.local.called = True

    def committed(self) -> None:
        """The commit of `sending` keeps the lock; the one after the call releases it."""
        if getattr(self.local, "called", False):
            self.release()

    def rolled_back(self) -> None:
        """A failure before the call ends the stretch. After the call the pipeline retries
        writing the outcome (a busy database): the stretch lasts until that commit, or
        until the activity ends (`activity_ended`), or a kill would find the send
        half-recorded and leave it `unknown` besides the one it caught."""
        if not getattr(self.local, "called", False):
            self.release()

    def release(self) -> None:
        if self._holding():
            self.local.called = False
            self.holder = None
            self.provider.release()

    def activity_ended(self, key: str) -> None:
        """An activity that ended inside the stretch (its outcome never written) leaves it."""
        holder = self.holder
        if holder is not None and holder[1] == key:
            self.holder = None
            self.provider.release()


def _activity_key() -> str:
    """The running activity attempt, as the interceptor sees it too."""
    try:
        info = activity.info()
    except RuntimeError:  # not in an activity
        return ""
    return f"{info.workflow_id}/{info.activity_id}/{info.attempt}"


class CrashingChannel(Channel):
    """The real adapter, with the crash points just before and just after its call."""

    name: ClassVar[str] = "sendgrid"
    serves: ClassVar[tuple[str, ...]] = ("email",)

    def __init__(self, inner: Channel, plan: CrashPlan) -> None:
        assert inner.name == self.name, "the ProviderGate and the ledger go by adapter name"
        self.inner = inner
        self.plan = plan

    def send(self, message: OutgoingMessage) -> Receipt:
        self.plan.calling()
        self.plan.point("b")
        receipt = self.inner.send(message)
        self.plan.point("c")
        return receipt  # the lock is released when the pipeline commits the outcome


class CrashAfterDelivery(temporal_client.Interceptor, Interceptor):
    """Window d: the row says `sent`, the activity's result has not reached Temporal.

    A client interceptor too, so the workers `build_worker` creates on the client use it.
    """

    def __init__(self, plan: CrashPlan) -> None:
        self.plan = plan

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        plan = self.plan

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                try:
                    result = await self.next.execute_activity(input)
                finally:
                    plan.activity_ended(_activity_key())
                if activity.info().activity_type == t.DELIVER_MESSAGE and (
                    getattr(result, "status", None) == "sent"
                ):
                    plan.point("d")
                return result

        return Inbound(next)


class AttemptStats(temporal_client.Interceptor, Interceptor):
    """Observes, never changes: each activity's attempts and how they ended, by type.

    Printed as one `stats:` JSON line when the worker stops, for the test's figures.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()  # "deliver_message:ProviderBackoff", ...
        self.max_attempt: Counter[str] = Counter()

    def note(self, name: str, attempt: int, outcome: str) -> None:
        with self.lock:
            self.outcomes[f"{name}:{outcome}"] += 1
            self.max_attempt[name] = max(self.max_attempt[name], attempt)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        stats = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                info = activity.info()
                try:
                    result = await self.next.execute_activity(input)
                except ApplicationError as exc:
                    stats.note(info.activity_type, info.attempt, exc.type or "ApplicationError")
                    raise
                except BaseException as exc:
                    stats.note(info.activity_type, info.attempt, type(exc).__name__)
                    raise
                stats.note(info.activity_type, info.attempt, "ok")
                return result

        return Inbound(next)

    def line(self) -> str:
        with self.lock:
            data = {"outcomes": dict(self.outcomes), "max_attempt": dict(self.max_attempt)}
        return "stats: " + json.dumps(data, sort_keys=True)


class WithoutLedger(SendActivities):
    """The control: a retried delivery forgets that the ledger says `sent`, and resends."""

    @activity.defn(name=t.DELIVER_MESSAGE)
    def deliver_message(self, req: t.DeliverRequest) -> t.SendResult:
        with session_scope(self.engine) as session:
            row = session.get(Message, req.message_id)
            if row is not None and row.status == "sent":
                row.status = "queued"
        return super().deliver_message(req)


class Unguarded(SendActivities):
    """The shutdown control: deliveries without the two guards of a graceful stop.

    - Defined without `no_thread_cancel_exception`: the SDK raises its cancellation inside
      the delivering thread when the worker stops (right after the provider's answer);
    - a delivery whose outcome is unknown is retried, and the retry sends again (the row
      is put back to `queued`), as the pipeline did before it recorded `unknown`.
    """

    @activity.defn(name=t.DELIVER_MESSAGE)
    def deliver_message(self, req: t.DeliverRequest) -> t.SendResult:
        with session_scope(self.engine) as session:
            row = session.get(Message, req.message_id)
            if row is not None and row.status in ("sending", "unknown"):
                row.status = "queued"
        return super().deliver_message(req)

    def _unknown(self, message_id: str, error: str) -> t.SendResult:
        raise ApplicationError(f"outcome unknown, retried (control): {error}")


def install_database_hooks(plan: CrashPlan) -> None:
    """Window a, and the ends of the serialized stretch, as SQLAlchemy events."""

    def before_ledger_insert(*_: Any) -> None:
        plan.point("a")

    def status_set(_target: Any, value: Any, *_: Any) -> None:
        if value == "sending":
            plan.claim()

    event.listen(Message, "before_insert", before_ledger_insert)
    event.listen(Message.status, "set", status_set)
    event.listen(Session, "after_commit", lambda *_: plan.committed())
    event.listen(Session, "after_soft_rollback", lambda *_: plan.rolled_back())


def delivering_with(
    kind: type[SendActivities],
    client: Client,
    engine: Engine,
    settings: Settings,
    adapters: dict[str, Channel],
) -> WorkerGroup:
    """The journeys worker of `build_worker`, and an email worker built as it builds one,
    but delivering through `kind` (a control)."""
    main_only = settings.model_copy(update={"worker_queues": ["main"]})
    group = build_worker(client, engine, main_only, adapters)
    sends = kind(
        engine,
        Renderer.from_settings(settings),
        adapters,
        MessageLinks.from_settings(settings),
        settings,
    )
    email = Worker(
        client,
        task_queue=t.channel_queue(settings.task_queue, "email"),
        activities=[sends.deliver_message],
        activity_executor=ThreadPoolExecutor(max_workers=16),
        max_task_queue_activities_per_second=settings.rate_limit_for("email"),
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace),
    )
    return WorkerGroup([*group.workers, email])


async def main() -> None:
    settings = Settings()
    window = os.environ.get("CRASH_WINDOW") or None
    plan = CrashPlan(window, int(os.environ.get("CRASH_AFTER", "1")))
    ledger_off = os.environ.get("CRASH_LEDGER") == "off"
    unguarded = os.environ.get("SHUTDOWN_GUARDS") == "off"
    engine = make_engine(settings.resolved_database_url)
    client = await connect(settings)
    adapters = channel_adapters(settings, ["email"])
    stats = AttemptStats()
    interceptors: list[Any] = [stats]
    if window is not None:
        install_database_hooks(plan)
        adapters = {"email": CrashingChannel(adapters["email"], plan)}
        interceptors.append(CrashAfterDelivery(plan))
    config = client.config()
    config["interceptors"] = [*config["interceptors"], *interceptors]
    client = Client(**config)
    if ledger_off:
        group = delivering_with(WithoutLedger, client, engine, settings, adapters)
    elif unguarded:
        group = delivering_with(Unguarded, client, engine, settings, adapters)
    else:
        group = build_worker(client, engine, settings, adapters)
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with group:
        print(f"ready: {', '.join(group.task_queues)} (pid {os.getpid()})", flush=True)
        await stop.wait()
    print(stats.line(), flush=True)
    engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
