"""Stopping a worker or `journeys dev` in the middle of sends: nothing twice, nothing torn.

The setup of the report in issue 13: a real `journeys worker` (a subprocess, the SMTP
adapter) against a loopback SMTP relay that answers each message 1.5 s after it ends,
`JOURNEYS_SHUTDOWN_SENDS` one-message runs (default 100). The worker is stopped
(SIGTERM, SIGINT) while messages are in flight, a second worker finishes the batch,
and the relay counts what it received per message id: 0 duplicates, and every message
delivered or recorded `unknown`. The control runs the same with the guards off
(`tests/crash_worker.py` with SHUTDOWN_GUARDS=off and a grace of 0, the SDK's default)
and must see duplicates, proving the count can catch them. `journeys dev` is stopped
the same way (Ctrl-C, then SIGTERM) and restarted.

Also: an activity caught in a database transaction when its worker stops finishes the
transaction instead of being torn mid-statement (PostgreSQL: "can't change 'autocommit'
now: connection in transaction status ACTIVE"), and `journeys worker` says when it is
ready and when it has stopped. Slow (real Temporal dev server, real processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack import DevStack, free_ports, journeys_command, subprocess_env, tail
from fakes.smtp import SmtpInbox
from harness import Bench, write_journey
from sqlalchemy import Engine, func, make_url, text
from sqlmodel import select
from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from orchestrator.analytics.counts import Cohort, bump
from orchestrator.api.ingest import store_call
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.deployment.deploy import deploy
from orchestrator.processes.router import Router
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url
from orchestrator.store.tables import JourneyRun, Message
from orchestrator.workflows.types import PREPARE_MESSAGE

pytestmark = pytest.mark.slow

SENDS = int(os.environ.get("JOURNEYS_SHUTDOWN_SENDS", "100"))
ANSWER_DELAY = 1.5  # the slow relay
FROM = "Shop <news@shop.example.com>"
WORKER = Path(__file__).resolve().parent / "crash_worker.py"
BLAST = textwrap.dedent(
    """
    id: blast
    name: Blast
    trigger: { event: Go }
    steps:
      - send: { id: hello, channel: email, template: hello }
    """
)


def write_project(root: Path) -> None:
    """journeys/ and templates/ as `journeys worker` and `journeys dev` read them."""
    write_journey(root / "journeys", "blast", BLAST)
    (root / "journeys" / "events.yaml").write_text("Go: {description: the test's own event}\n")
    hello = root / "templates" / "hello"
    hello.mkdir(parents=True)
    (hello / "email.subject").write_text("Hello {{ contact.id }}")
    (hello / "email.text").write_text("Hello {{ contact.id }}, this is {{ message.id }}.")


def smtp_env(inbox: SmtpInbox) -> dict[str, str]:
    return {
        "JOURNEYS_EMAIL_CHANNEL": "smtp",
        "JOURNEYS_SMTP_HOST": inbox.host,
        "JOURNEYS_SMTP_PORT": str(inbox.port),
        "JOURNEYS_EMAIL_FROM": FROM,
        "JOURNEYS_MARKETING_CAP": "none",
        "JOURNEYS_MESSAGE_CAP": "none",
    }


def settled_counts(engine: Engine, inbox: SmtpInbox, sends: int) -> dict[str, int]:
    """What the relay received per message id, against what the ledger says."""
    with session_scope(engine) as session:
        runs = list(session.exec(select(JourneyRun.status)))
        rows = [(m.id, m.status) for m in session.exec(select(Message))]
    received = inbox.by_message_id()
    unknown = {i for i, status in rows if status == "unknown"}
    return {
        "runs": len(runs),
        "completed": sum(status == "completed" for status in runs),
        "messages": len(rows),
        "sent": sum(status == "sent" for _, status in rows),
        "unknown": len(unknown),
        "unknown_delivered": sum(1 for i in unknown if received.get(i, 0) > 0),
        "delivered": sum(1 for i, _ in rows if received.get(i, 0) > 0),
        # Neither received nor recorded unknown: lost without anyone being told.
        "lost": sum(1 for i, _ in rows if received.get(i, 0) == 0 and i not in unknown)
        + sends
        - len(rows),
        "duplicates": sum(n - 1 for n in received.values() if n > 1),
        "strangers": sum(n for i, n in received.items() if i not in {r[0] for r in rows}),
    }


def settled(engine: Engine, sends: int) -> bool:
    """Every run over and every message sent or unknown."""
    with session_scope(engine) as session:
        over = session.exec(
            select(func.count()).select_from(JourneyRun).where(JourneyRun.status != "active")
        ).one()
        done = session.exec(
            select(func.count()).select_from(Message).where(Message.status.in_(("sent", "unknown")))  # type: ignore[attr-defined]
        ).one()
    return over == done == sends


async def mid_batch(inbox: SmtpInbox, what: str, output: Any, at_least: int) -> set[str]:
    """Wait until `at_least` messages arrived and some are waiting for their answer: the
    moment to stop a worker. Returns the ids of those in flight."""
    deadline = time.monotonic() + 120
    while not (len(inbox.messages) >= at_least and inbox.answering):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: never mid-batch ({len(inbox.messages)})\n{output()}")
        await asyncio.sleep(0.05)
    return set(inbox.answering)


def statuses(engine: Engine, ids: set[str]) -> dict[str, str]:
    with session_scope(engine) as session:
        rows = session.exec(select(Message).where(Message.id.in_(ids)))  # type: ignore[attr-defined]
        return {m.id: m.status for m in rows}


# --- `journeys worker` (and the control) as subprocesses ---------------------------------


@dataclass
class Shop:
    """A project with the one-send journey, its SQLite store, a slow relay and a queue."""

    root: Path
    inbox: SmtpInbox
    address: str
    sends: int = SENDS
    queue: str = field(default_factory=lambda: f"shutdown-{uuid.uuid4().hex[:6]}")

    def __post_init__(self) -> None:
        write_project(self.root)
        self.url = sqlite_url(self.root)
        self.engine = make_engine(self.url)
        migrate(self.engine)
        # `journeys worker` deploys at start; the control's worker script does not.
        deploy(self.engine, self.root / "journeys", self.root / "templates")

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(
            DATABASE_URL=self.url,
            TEMPORAL_ADDRESS=self.address,
            JOURNEYS_TASK_QUEUE=self.queue,
            JOURNEYS_DATA_DIR=str(self.root / ".journeys"),
            JOURNEYS_SECRET_KEY="shutdown",
            **smtp_env(self.inbox),
            **extra,
        )

    def store_events(self) -> None:
        """Each contact identified with an address, then `Go`: one message each."""
        for i in range(self.sends):
            user = f"u{i}"
            traits = {"email": f"{user}@example.com"}
            store_call(
                self.engine,
                IdentifyCall.model_validate(
                    {"userId": user, "traits": traits, "messageId": str(uuid.uuid4())}
                ),
            )
            store_call(
                self.engine,
                TrackCall.model_validate(
                    {"userId": user, "event": "Go", "messageId": str(uuid.uuid4())}
                ),
            )


@dataclass
class Process:
    """`journeys worker` (or the control's worker script) in `root`, logging to a file."""

    root: Path
    command: list[str]
    env: dict[str, str]
    name: str
    process: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    async def start(self) -> Process:
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=self.root,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return tail(self.log, 80)

    async def wait_ready(self, line: str) -> None:
        deadline = time.monotonic() + 60
        while line not in self.log.read_text(errors="replace"):
            assert self.process is not None
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never printed {line!r}\n{self.output()}")
            await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
        """Signal it; (exit code, seconds it took to exit)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"{self.name} did not stop in {timeout}s\n{self.output()}"
            ) from None
        return code, time.monotonic() - started

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def journeys_worker(shop: Shop, name: str) -> Process:
    return Process(shop.root, journeys_command("worker"), shop.env(), name)


def unguarded_worker(shop: Shop, name: str) -> Process:
    """The control: the real worker group, deliveries without the shutdown guards."""
    env = shop.env(
        JOURNEYS_JOURNEYS_DIR=str(shop.root / "journeys"),
        JOURNEYS_TEMPLATES_DIR=str(shop.root / "templates"),
        JOURNEYS_WORKER_QUEUES='["main", "email"]',
        JOURNEYS_SHUTDOWN_GRACE="0",
        SHUTDOWN_GUARDS="off",
    )
    return Process(shop.root, [sys.executable, str(WORKER)], env, name)


async def stop_mid_batch(
    shop: Shop, make: Any, sig: int, ready: str, route: Client | None = None
) -> dict[str, Any]:
    """Worker A sends until mid-batch and gets `sig`; worker B finishes; the counts.

    `route`: route the events from here (the control's worker script has no router).
    """
    await asyncio.to_thread(shop.store_events)
    first, second = make(shop, "first"), make(shop, "second")
    routing = asyncio.create_task(keep_routing(route, shop)) if route else None
    try:
        await first.start()
        await first.wait_ready(ready)
        in_flight = await mid_batch(shop.inbox, first.name, first.output, shop.sends // 4)
        code, took = await first.stop(sig)
        # What the stopped worker left in the ledger for the sends it had in flight.
        left = await asyncio.to_thread(statuses, shop.engine, in_flight)
        await second.start()
        deadline = time.monotonic() + 240
        while not await asyncio.to_thread(settled, shop.engine, shop.sends):
            if time.monotonic() > deadline:
                counts = settled_counts(shop.engine, shop.inbox, shop.sends)
                raise AssertionError(f"unsettled {counts}\n{second.output()}")
            await asyncio.sleep(0.25)
        await asyncio.sleep(ANSWER_DELAY + 0.5)  # a late duplicate would arrive by now
        second_code, _ = await second.stop(signal.SIGTERM)
    finally:
        if routing is not None:
            routing.cancel()
            with contextlib.suppress(BaseException):
                await routing
        await first.kill()
        await second.kill()
    counts = settled_counts(shop.engine, shop.inbox, shop.sends)
    shop.engine.dispose()
    return {
        **counts,
        "exit": code,
        "second_exit": second_code,
        "stopped_in": took,
        "in_flight": len(in_flight),
        "left_in_flight": left,
        "first_output": first.output(),
    }


async def keep_routing(client: Client, shop: Shop) -> None:
    """The router's loop, for workers that have none."""
    router = Router(client, shop.engine, shop.queue, interval=0)
    while True:
        if not await router.sweep():
            await asyncio.sleep(0.2)


def report(name: str, r: dict[str, Any]) -> None:
    print(
        f"\n{name}: {SENDS} sends, {r['in_flight']} in flight at the signal, left "
        f"{dict(Counter(r['left_in_flight'].values()))} by the stopped worker, stopped in "
        f"{r['stopped_in']:.1f} s (exit {r['exit']}); delivered {r['delivered']}, "
        f"duplicates {r['duplicates']}, unknown {r['unknown']} "
        f"({r['unknown_delivered']} of them delivered), lost {r['lost']}"
    )


@pytest.fixture
def slow_inbox() -> Iterator[SmtpInbox]:
    with SmtpInbox() as inbox:
        inbox.slow(ANSWER_DELAY)
        yield inbox


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_worker_stopped_mid_batch_sends_nothing_twice(
    dev_env: WorkflowEnvironment, slow_inbox: SmtpInbox, tmp_path: Path, sig: int
) -> None:
    """The issue's 107 emails for 100 messages: now 100, each once."""
    address = dev_env.client.service_client.config.target_host
    shop = Shop(tmp_path, slow_inbox, address)
    r = await stop_mid_batch(shop, journeys_worker, sig, "ready;")
    report(f"journeys worker, {signal.Signals(sig).name}", r)
    assert r["in_flight"] > 0, "the signal must come while messages are in flight"
    assert r["exit"] == 0 and r["second_exit"] == 0, r["first_output"]
    # The stopped worker waited for the sends it had in flight and recorded them.
    assert set(r["left_in_flight"].values()) == {"sent"}, r["left_in_flight"]
    assert r["stopped_in"] < 30, r["first_output"]  # the grace is a bound, not a wait
    assert r["duplicates"] == 0 and r["strangers"] == 0, r
    assert r["lost"] == 0, r
    # A graceful stop records every outcome: nothing is left unknown.
    assert r["runs"] == r["completed"] == r["messages"] == r["sent"] == SENDS, r
    assert r["delivered"] == SENDS
    assert "stopped in" in r["first_output"], r["first_output"]


async def test_the_control_without_the_guards_sends_twice(
    dev_env: WorkflowEnvironment, slow_inbox: SmtpInbox, tmp_path: Path
) -> None:
    """Grace 0, cancellation raised inside the delivering thread, unknown outcomes retried:
    the duplicates of the issue. Proves the count above can see them."""
    address = dev_env.client.service_client.config.target_host
    shop = Shop(tmp_path, slow_inbox, address)
    r = await stop_mid_batch(shop, unguarded_worker, signal.SIGTERM, "ready:", dev_env.client)
    report("control (no grace, no ledger guard)", r)
    assert r["in_flight"] > 0
    assert r["duplicates"] > 0, r
    assert r["lost"] == 0, r


# --- `journeys dev`: Ctrl-C, then SIGTERM, mid-batch, restarted each time ------------------


def post_batch(stack: DevStack, sends: int) -> None:
    """One Segment batch: each contact identified with an address, then `Go`."""
    calls: list[dict[str, Any]] = []
    for i in range(sends):
        user = f"d{i}"
        calls.append({"type": "identify", "userId": user, "traits": {"email": f"{user}@x.io"}})
        calls.append({"type": "track", "userId": user, "event": "Go"})
    for call in calls:
        call["messageId"] = str(uuid.uuid4())
    with httpx.Client(base_url=stack.api_url, auth=(stack.write_key, ""), trust_env=False) as c:
        response = c.post("/v1/batch", json={"batch": calls}, timeout=60)
    assert response.status_code == 200, response.text


ALARMING = ("WARN", "ERROR", "Traceback", "Exception")
# The SDK's note that one workflow task took over 5 s (TMPRL1104): on a loaded 2-core CI
# machine, 100 runs' tasks queue behind the stop while the sends in flight finish. It is
# about speed, not about what was sent (counted below), and is reported, not failed on.
SLOW_TASK = "TMPRL1104"


def alarming(output: str) -> list[str]:
    """The output's lines that say something went wrong (slow workflow tasks printed)."""
    lines = output.splitlines()
    for line in lines:
        if SLOW_TASK in line:
            print(f"\nnoted, not failed on: {line[:200]}")
    return [line for line in lines if SLOW_TASK not in line and any(w in line for w in ALARMING)]


async def test_journeys_dev_stopped_mid_batch_and_restarted_sends_nothing_twice(
    slow_inbox: SmtpInbox, tmp_path: Path
) -> None:
    write_project(tmp_path)
    stack = DevStack(tmp_path, env=smtp_env(slow_inbox))
    figures = []
    try:
        stack.start()
        await asyncio.to_thread(post_batch, stack, SENDS)
        engine = make_engine(sqlite_url(stack.data_dir))
        for sig, at_least, group in (
            (signal.SIGINT, SENDS // 4, True),  # Ctrl-C in a terminal: the whole group
            (signal.SIGTERM, SENDS // 2, False),  # a service manager
        ):
            in_flight = await mid_batch(slow_inbox, "journeys dev", stack.report, at_least)
            started = time.monotonic()
            await asyncio.to_thread(stack.stop, 60, group, sig)  # exit 0, nothing left behind
            took = time.monotonic() - started
            left = await asyncio.to_thread(statuses, engine, in_flight)
            output = stack.output()
            figures.append((signal.Signals(sig).name, len(in_flight), took))
            assert set(left.values()) == {"sent"}, (signal.Signals(sig).name, left)
            assert not alarming(output), stack.report()
            stack.start()
        deadline = time.monotonic() + 240
        while not await asyncio.to_thread(settled, engine, SENDS):
            assert time.monotonic() < deadline, stack.report()
            await asyncio.sleep(0.25)
        await asyncio.sleep(ANSWER_DELAY + 0.5)  # a late duplicate would arrive by now
        await asyncio.to_thread(stack.stop)
        r = settled_counts(engine, slow_inbox, SENDS)
        engine.dispose()
    finally:
        stack.close()
    for name, count, took in figures:
        print(f"\njourneys dev, {name}: {count} in flight, stopped in {took:.1f} s")
    print(f"journeys dev: {r}")
    assert r["duplicates"] == 0 and r["lost"] == 0 and r["strangers"] == 0, r
    assert r["runs"] == r["completed"] == r["messages"] == r["sent"] == SENDS, r


# --- what `journeys worker` says ----------------------------------------------------------


async def test_journeys_worker_says_when_it_is_ready_and_when_it_has_stopped(
    dev_env: WorkflowEnvironment, db_url: str, tmp_path: Path
) -> None:
    """One line each, in the router's style; the database password is never printed."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":
        db_url = url.set(password="s3cret-pw").render_as_string(hide_password=False)
    write_project(tmp_path)
    address = dev_env.client.service_client.config.target_host
    env = subprocess_env(
        DATABASE_URL=db_url,
        TEMPORAL_ADDRESS=address,
        JOURNEYS_TASK_QUEUE="lines",
        JOURNEYS_SECRET_KEY="lines",
        JOURNEYS_DATA_DIR=str(tmp_path / ".journeys"),
    )
    env["JOURNEYS_METRICS_PORT"] = str(metrics_port := free_ports(1)[0])
    engine = make_engine(db_url)
    migrate(engine)
    with session_scope(engine) as session:  # three entries, as the workers would count them
        bump(session, Cohort("blast", 1, "2026-12-01"), "entered", count=3)
    engine.dispose()
    worker = Process(tmp_path, journeys_command("worker"), env, "worker")
    await worker.start()
    await worker.wait_ready(": ready;")
    async with httpx.AsyncClient() as http:  # the journey counters, as the API has them
        scraped = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert 'journeys_up{component="database"} 1' in scraped.splitlines(), scraped
    assert 'journeys_runs_entered_total{journey="blast"} 3' in scraped.splitlines(), scraped
    code, _ = await worker.stop(signal.SIGTERM)
    lines = worker.log.read_text().splitlines()
    assert code == 0, worker.output()
    ready = [line for line in lines if ": ready;" in line]
    assert len(ready) == 1, lines
    assert ready[0].startswith("worker ") and "@" in ready[0].split(":")[0], ready
    assert "journeys blast v1;" in ready[0]
    assert "task queues lines, lines-email, lines-push, lines-sms;" in ready[0]
    assert f"Temporal {address} (namespace default);" in ready[0]
    shown = make_url(db_url).render_as_string(hide_password=True)
    assert f"database {shown};" in ready[0] and "s3cret-pw" not in worker.log.read_text()
    assert ready[0].endswith(f"router on; metrics :{metrics_port}/metrics")
    stopped = [line for line in lines if ": stopped in " in line]
    assert len(stopped) == 1 and stopped[0].startswith(ready[0].split(":")[0] + ":"), lines
    assert lines[-1] == stopped[0], lines  # the last thing it says


# --- a transaction in flight when the worker stops -----------------------------------------


def hold_contact(engine: Engine, contact_id: str) -> Any:
    """Lock the contact's row until released: `prepare_message` (SELECT ... FOR UPDATE)
    then waits inside its transaction."""
    connection = engine.connect()
    connection.begin()
    connection.execute(
        text("SELECT id FROM contacts WHERE id = :id FOR UPDATE"), {"id": contact_id}
    )
    return connection


def stuck_backends(engine: Engine) -> list[tuple[str, str]]:
    """Other connections to this PostgreSQL database that are mid-statement or
    mid-transaction (a torn transaction leaves one behind)."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
            )
        )
        return [(r.state, r.query) for r in rows]


async def activity_started(bench: Bench, journey: str, user: str, name: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(RPCError):
            described = await bench.handle(journey, user).describe()
            pending = described.raw_description.pending_activities
            if any(
                a.activity_type.name == name
                and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                for a in pending
            ):
                return
        assert time.monotonic() < deadline, f"{name} never started"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # row locks, psycopg
async def test_a_store_transaction_in_flight_when_the_worker_stops_is_finished_not_torn(
    dev_env: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> None:
    """With no grace at all, the worker stops while `prepare_message` waits inside its
    transaction. The SDK's default was to raise its cancellation inside the activity's
    thread at whatever line it was on: the transaction was rolled back half-way (on
    PostgreSQL sometimes leaving the connection ACTIVE: "can't change 'autocommit' now").
    Now the transaction finishes, its connection goes back clean, and the run goes on
    with the next worker."""
    bench = Bench(
        dev_env,
        engine,
        tmp_path / "journeys",
        tmp_path / "templates",
        overrides={"marketing_cap": "none", "message_cap": "none", "shutdown_grace": 0},
    )
    write_project(tmp_path)
    bench.deploy()
    await bench.identify("ann", email="ann@example.com")
    await bench.track("ann", "Go")  # the run starts when a worker is there
    held = hold_contact(engine, "ann")
    try:
        worker = bench.worker()
        await worker.__aenter__()
        await activity_started(bench, "blast", "ann", PREPARE_MESSAGE)
        await asyncio.sleep(0.5)  # inside its transaction, waiting for the lock
        stopping = asyncio.create_task(worker.__aexit__(None, None, None))
        await asyncio.sleep(1.0)  # the worker has stopped polling and cancelled it
        assert not stopping.done(), "the worker must wait for the activity it runs"
    finally:
        held.rollback()
        held.close()
    await asyncio.wait_for(stopping, 30)
    # The in-flight transaction was finished: the ledger row it wrote is there.
    [message] = bench.messages("ann")
    assert message.status == "queued", message.timeline
    assert stuck_backends(engine) == []
    for _ in range(6):  # every pooled connection is usable
        with session_scope(engine) as session:
            session.exec(select(func.count()).select_from(Message)).one()
    async with bench.worker():
        assert await bench.result("blast", "ann") == "completed"
    [message] = bench.messages("ann")
    assert (message.status, message.attempts) == ("sent", 1)
    assert bench.console.getvalue().count("--- email to ann@example.com") == 1


def test_every_activity_runs_to_its_end_when_cancelled() -> None:
    """The SDK raises a cancellation inside a sync activity's thread unless told not to:
    no activity of ours may be torn that way (see orchestrator/activities/__init__.py)."""
    from orchestrator.activities import actions, contacts, runs, segments, sending

    found = {}
    for module in (actions, contacts, runs, segments, sending):
        for cls in vars(module).values():
            if isinstance(cls, type) and cls.__module__ == module.__name__:
                for attr in vars(cls).values():
                    defn = activity._Definition.from_callable(attr) if callable(attr) else None
                    if defn is not None:
                        found[defn.name] = defn.no_thread_cancel_exception
    assert len(found) >= 14, found
    assert all(found.values()), [name for name, ok in found.items() if not ok]
