"""A journey test bench: real store, real router, real activities, console channel.

Events go in exactly as the API stores them (`store_call`) and reach Temporal
through the real `Router`; messages come out in the outbox table and on the
console stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from channels.base import Channel
from channels.console import ConsoleChannel
from orchestrator.api.ingest import store_call
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.deployment.deploy import deploy
from orchestrator.processes.router import Router
from orchestrator.processes.worker import WorkerGroup, build_worker, python_journeys
from orchestrator.settings import Settings
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Event, JourneyRun, Message
from orchestrator.workflows.journey import workflow_id

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Bench:
    env: WorkflowEnvironment
    engine: Engine
    journeys_dir: Path
    templates_dir: Path = ROOT / "templates"
    task_queue: str = field(default_factory=lambda: f"tq-{uuid.uuid4().hex[:8]}")
    console: io.StringIO = field(default_factory=io.StringIO)
    history_limit: int = 10_000
    finished: list[str] = field(default_factory=list)
    python_journeys: list[str] = field(default_factory=list)
    # Settings for this bench. Quiet hours are off unless a test sets them: the
    # time-skipping server starts at the wall-clock time, which must not decide a test.
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client: Client = self.env.client
        self.settings = Settings(
            journeys_dir=self.journeys_dir,
            templates_dir=self.templates_dir,
            task_queue=self.task_queue,
            python_journeys=self.python_journeys,
            secret_key="bench-secret",
            **{"quiet_hours_push": "none", "quiet_hours_sms": "none", **self.overrides},
        )
        self.router = Router(
            self.client,
            self.engine,
            self.task_queue,
            interval=0,
            history_limit=self.history_limit,
            python_journeys=python_journeys(self.settings),
        )

    def deploy(self) -> list[Any]:
        return deploy(self.engine, self.journeys_dir, self.templates_dir)

    def worker(self, adapters: dict[str, Channel] | None = None, **options: Any) -> WorkerGroup:
        """The journeys worker and the channel workers; console everywhere by default."""
        console = ConsoleChannel(stream=self.console)
        adapters = {"email": console, "push": console, "sms": console, **(adapters or {})}
        return build_worker(self.client, self.engine, self.settings, adapters, **options)

    async def identify(self, user: str, **traits: Any) -> None:
        context = traits.pop("context", {})
        anonymous = {"anonymousId": traits.pop("anonymousId")} if "anonymousId" in traits else {}
        call = IdentifyCall.model_validate(
            {"userId": user, "traits": traits, "context": context, "messageId": _id(), **anonymous}
        )
        store_call(self.engine, call)
        await self.route_all()

    async def track(
        self,
        user: str,
        event: str,
        segment_id: str | None = None,
        at: datetime | None = None,
        **props: Any,
    ) -> None:
        """A track call as the API stores it (`at`: when it happened, default now)."""
        call = TrackCall.model_validate(
            {
                "userId": user,
                "event": event,
                "properties": props,
                "messageId": segment_id or _id(),
                "timestamp": (at or datetime.now(UTC)).isoformat(),
            }
        )
        store_call(self.engine, call)
        await self.route_all()

    async def track_many(self, users: list[str], event: str) -> None:
        """One track call per user, all stored before any is routed: they reach the
        router as one burst, as a busy storefront's would."""
        for user in users:
            call = TrackCall.model_validate({"userId": user, "event": event, "messageId": _id()})
            store_call(self.engine, call)
        await self.route_all()

    async def track_anonymous(self, anonymous_id: str, event: str, **props: Any) -> None:
        """A track call of a visitor not signed in (only an `anonymousId`): write keys
        merge such a contact into the userId it signs in as."""
        call = TrackCall.model_validate(
            {"anonymousId": anonymous_id, "event": event, "properties": props, "messageId": _id()}
        )
        store_call(self.engine, call)
        await self.route_all()

    async def route_all(self) -> None:
        """Route until nothing is left: routing may store events (segment entries)."""
        for _ in range(10):
            if not await self.router.sweep():
                return

    def handle(self, journey: str, user: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id(journey, user))

    async def result(self, journey: str, user: str) -> Any:
        """The run's result; on the time-skipping server, time runs fast while we wait."""
        handle = self.handle(journey, user)
        self.finished.append(handle.id)
        unlocked = getattr(self.env, "time_skipping_unlocked", None)
        if unlocked is None or not getattr(self.env, "_auto_time_skipping", True):
            return await handle.result()
        async with unlocked():
            return await handle.result()

    def messages(self, user: str | None = None) -> list[Message]:
        with session_scope(self.engine) as session:
            query = select(Message).order_by(Message.created_at)
            if user:
                query = query.where(Message.contact_id == user)
            rows = list(session.exec(query))
            for row in rows:
                session.expunge(row)
            return rows

    def runs(self, user: str | None = None) -> list[JourneyRun]:
        with session_scope(self.engine) as session:
            query = select(JourneyRun).order_by(JourneyRun.id)
            if user:
                query = query.where(JourneyRun.contact_id == user)
            rows = list(session.exec(query))
            for row in rows:
                session.expunge(row)
            return rows


def _id() -> str:
    return str(uuid.uuid4())


def write_message(name: str, files: dict[str, str], templates: Path = Path("templates")) -> Path:
    """`templates/<name>/` with `files` ({"email.subject": ..., "ru/email.text": ...})."""
    folder = templates / name
    for part, source in files.items():
        path = folder / part
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return folder


def tiny_templates(root: Path, names: tuple[str, ...]) -> Path:
    """One tiny message per name, with a version for every channel."""
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "email.subject").write_text(f"{name} for {{{{ contact.id }}}}")
        (folder / "email.text").write_text(f"{name} body")
        (folder / "push.title").write_text(name)
        (folder / "push.body").write_text(f"{name} push")
        (folder / "sms.body").write_text(f"{name} sms")
    return root


def write_journey(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


async def save_histories(bench: Bench, prefix: str) -> None:
    """With JOURNEYS_RECORD_HISTORIES=<dir>, keep the runs a test awaited for the replay corpus."""
    target = os.environ.get("JOURNEYS_RECORD_HISTORIES")
    if not target:
        return
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    for wid in dict.fromkeys(bench.finished):
        history = await bench.client.get_workflow_handle(wid).fetch_history()
        name = wid.replace("journey:", "").replace(":", "__")
        (folder / f"{prefix}__{name}.json").write_text(history.to_json())


async def terminate_runs(client: Client, engine: Engine, journey_id: str) -> None:
    """End the runs a test left open on the shared time-skipping server.

    A run whose task queue no worker polls keeps a workflow task outstanding, and the
    test server does not skip time while one is: later tests' timers would never fire.
    """
    from temporalio.service import RPCError

    with session_scope(engine) as session:
        contacts = set(session.exec(select(Event.contact_id)))

    async def end(contact: str) -> None:
        with contextlib.suppress(RPCError):  # never started, or already finished
            await client.get_workflow_handle(workflow_id(journey_id, contact)).terminate(
                reason="test over"
            )

    for start in range(0, len(contacts), 50):
        await asyncio.gather(*(end(c) for c in sorted(contacts)[start : start + 50]))


@contextlib.asynccontextmanager
async def own_time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for one module: tests that leave hundreds of runs on task
    queues no worker polls must not hold back the shared server's clock."""
    from orchestrator.processes.temporal_server import find_binary

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server"))
    )
    try:
        yield env
    finally:
        await env.shutdown()


def shipped_journeys(folder: Path, *names: str) -> Path:
    """A journeys folder holding copies of some of the shipped journeys (and the shipped
    segments), so a test sees only the journeys it is about."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*names, "segments"):
        source = ROOT / "journeys" / f"{name}.yaml"
        if source.exists():
            (folder / source.name).write_text(source.read_text())
    return folder


async def end_open_runs(bench: Bench) -> None:
    """Terminate every run the bench's store knows of (keyed runs too), so no run of a
    finished test holds back the time-skipping server's clock."""
    from temporalio.service import RPCError

    with session_scope(bench.engine) as session:
        ids = sorted(set(session.exec(select(JourneyRun.workflow_id))))
    for wid in ids:
        with contextlib.suppress(RPCError):
            await bench.client.get_workflow_handle(wid).terminate(reason="test over")
