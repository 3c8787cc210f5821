"""No lost events (RELIABILITY section 5), with real processes: `journeys api`,
`journeys worker` and `journeys router` as subprocesses, a Temporal dev server on a
SQLite file, and a storefront that retries every non-2xx answer and timeout with the
same messageId (`tests/ingest_stack.py`). Processes are SIGKILLed and Temporal is
stopped while events arrive; the figures are printed (`pytest -s`) and recorded in
docs/routing.md. Sizes come from the environment (CI defaults in brackets):

    JOURNEYS_RELIABILITY_EVENTS        events sent in the crash test [300]; full: 10000
    JOURNEYS_RELIABILITY_RATE          events per second the storefront offers [40]
    JOURNEYS_TEMPORAL_DOWN_SECONDS     Temporal outage in the "Temporal down" test [20];
                                       full: 300
    JOURNEYS_RELIABILITY_DATABASE      sqlite | postgres for the crash test (default:
                                       postgres when TEST_DATABASE_URL is set)
    JOURNEYS_CONTENTION_BATCHES        batches of 50 events in the SQLite test [240]
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from ingest_stack import (
    Monitor,
    Sender,
    Stack,
    console_sends,
    go_call,
    store_counts,
)
from sqlalchemy import Engine, func
from sqlmodel import col, select

from orchestrator.processes.worker import ACTIVITY_THREADS
from orchestrator.store.backlog import routing_backlog
from orchestrator.store.db import make_engine, session_scope, sqlite_url
from orchestrator.store.tables import Event, Message, utcnow

pytestmark = pytest.mark.slow

EVENTS = int(os.environ.get("JOURNEYS_RELIABILITY_EVENTS", "300"))
RATE = float(os.environ.get("JOURNEYS_RELIABILITY_RATE", "40"))
TEMPORAL_DOWN = float(os.environ.get("JOURNEYS_TEMPORAL_DOWN_SECONDS", "20"))
CRASH_TEST_OUTAGE = 30.0  # RELIABILITY.md: "stop Temporal 30 s"
DATABASE = os.environ.get("JOURNEYS_RELIABILITY_DATABASE") or (
    "postgres" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
)


class Timeline:
    """Runs the fault plan at its times, and notes when each step happened."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.log: list[tuple[float, str]] = []
        self.marks: dict[str, float] = {}  # step -> time.monotonic() when it happened
        self.clock: dict[str, datetime] = {}  # step -> the wall clock then (as rows store it)

    def now(self) -> float:
        return time.monotonic() - self.start

    async def at(self, moment: float, what: str, background: list[asyncio.Task[Any]]) -> None:
        while self.now() < moment:
            for task in background:
                if task.done():
                    task.result()  # a failed sender or monitor fails the test now
            await asyncio.sleep(0.1)
        self.note(what)

    def note(self, what: str) -> None:
        self.marks.setdefault(what, time.monotonic())
        self.clock.setdefault(what, utcnow())
        self.log.append((self.now(), what))

    def table(self) -> str:
        return "\n".join(f"  {t:7.1f}s  {what}" for t, what in self.log)


async def until(
    what: str, check: Callable[[], Awaitable[bool]], limit: float, stack: Stack
) -> float:
    """Wait for `check` (restarting services that die on their own); returns the wait."""
    start = time.monotonic()
    while not await check():
        stack.check()
        waited = time.monotonic() - start
        assert waited < limit, f"{what}: not within {limit:.0f}s\n{stack.report()}"
        await asyncio.sleep(0.5)
    return time.monotonic() - start


def figures(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}")
    for name, value in rows.items():
        print(f"  {name:<38}{value}")


# --- ack after durable write ------------------------------------------------------------


@pytest.mark.parametrize("db_url", [DATABASE], indirect=True)
async def test_acknowledged_events_survive_api_worker_and_temporal_crashes(
    tmp_path: Path, db_url: str
) -> None:
    """A storefront sends EVENTS track calls (each a new contact, each triggering one
    push); meanwhile the API is SIGKILLed twice, Temporal is SIGKILLed and kept down
    30 s, and the worker (with its router) is SIGKILLed twice, each restarted at once.
    Every acknowledged event is stored once and routed, every run completes, and every
    contact gets exactly one message row, printed by the console channel."""
    stack = Stack(tmp_path, db_url)
    engine = make_engine(db_url)
    try:
        await stack.temporal.start()
        api = stack.add_api().start()
        worker = stack.add("worker", "worker").start()
        await stack.wait_api()

        # The faults need time: 30 s of outage inside the sending, room around it.
        duration = max(EVENTS / RATE, (CRASH_TEST_OUTAGE + 25) / 0.7)
        calls = [go_call(f"u{i}") for i in range(EVENTS)]
        sender = Sender([stack.url()], rate=EVENTS / duration)
        timeline = Timeline()
        sending = asyncio.create_task(sender.track(calls))
        down_at = 0.3 * duration
        up_at = down_at + CRASH_TEST_OUTAGE
        after = duration - up_at
        for moment, fault in [
            (0.10 * duration, "kill -9 api"),
            (0.20 * duration, "kill -9 api"),
            (down_at, "kill -9 temporal"),
            (up_at, "start temporal"),
            (up_at + 0.3 * after, "kill -9 worker"),
            (up_at + 0.6 * after, "kill -9 worker"),
        ]:
            await timeline.at(moment, fault, [sending])
            if fault == "kill -9 api":
                api.kill()
                api.start()
                await stack.wait_api()
            elif fault == "kill -9 temporal":
                stack.temporal.stop(kill=True)
            elif fault == "start temporal":
                await stack.temporal.start()
            else:
                worker.check()  # a worker that died during the outage comes back first
                worker.kill()
                worker.start()
        await sending
        timeline.note(f"all {EVENTS} acknowledged")

        ids = [c["messageId"] for c in calls]

        async def all_sent() -> bool:
            counts = await asyncio.to_thread(store_counts, engine, ids)
            settled = counts["messages sent"] + counts["messages unknown"]
            done = (settled, counts["runs completed"]) == (EVENTS, EVENTS)
            return counts["unrouted"] == 0 and done

        drained = await until("every run sent", all_sent, 300 + EVENTS * 0.2, stack)
        timeline.note("every event routed, every message sent")
        counts = store_counts(engine, ids)
        printed = console_sends([worker.output()])
        unknown = messages_with_status(engine, "unknown")
        sent = messages_with_status(engine, "sent")
    finally:
        stack.close()
        engine.dispose()

    duplicates = {m: n for m, n in printed.items() if n > 1}
    figures(
        f"ack after durable write ({DATABASE}): {EVENTS} events, faults at",
        {
            "timeline": "\n" + timeline.table(),
            "answers seen by the storefront": dict(sender.answers),
            "acknowledged": len(sender.acked),
            **counts,
            "console pushes": sum(printed.values()),
            "pushes printed twice": len(duplicates),
            "unknown, printed": (
                len(unknown),
                len(unknown & set(printed)),
            ),
            "drain after the last ack": f"{drained:.0f} s",
            "worker lives / died on their own": (worker.lives, worker.died),
            "api lives / died on their own": (api.lives, api.died),
        },
    )
    assert len(sender.acked) == EVENTS
    assert sender.errors_500 == [] and sender.missing_retry_after == 0
    assert counts["stored"] == EVENTS and counts["duplicate rows"] == 0
    assert counts["runs"] == counts["runs completed"] == EVENTS
    assert counts["messages"] == counts["messages sent"] + counts["messages unknown"] == EVENTS
    assert counts["duplicate messages"] == 0
    assert sent <= set(printed), "a message row was marked sent but never printed"
    # A worker killed inside a console call (RELIABILITY section 2's window c) leaves the
    # message `unknown`: never called again, so nothing is printed twice. Each kill can
    # catch at most the calls in flight at that moment.
    assert duplicates == {}, duplicates
    assert len(unknown) <= worker.kills * ACTIVITY_THREADS, unknown
    assert api.kills == 2 and worker.kills == 2
    assert api.died == [] and worker.died == [], "a process ended without being killed"


def messages_with_status(engine: Engine, status: str) -> set[str]:
    with session_scope(engine) as session:
        return set(session.exec(select(Message.id).where(Message.status == status)))


# --- Temporal down -----------------------------------------------------------------------

OUTAGE_RATE = 10.0  # events per second the storefront sends through the outage


async def test_temporal_down_events_are_acknowledged_then_drained(tmp_path: Path) -> None:
    """Temporal is down for TEMPORAL_DOWN seconds while a storefront keeps sending; two
    `journeys router` processes route (the worker runs with JOURNEYS_ROUTER=off). The
    API acknowledges only what it committed (it is SIGKILLed and restarted mid-outage,
    and must start without Temporal), /health and /metrics show the backlog growing,
    the routers warn with the backlog, and after the restart the backlog drains."""
    store = sqlite_url(tmp_path / "store")
    stack = Stack(tmp_path, store, api_env={"JOURNEYS_ROUTING_LAG_LIMIT": "10"})
    engine = make_engine(store)
    try:
        await stack.temporal.start()
        api = stack.add_api().start()
        worker = stack.add("worker", "worker", JOURNEYS_ROUTER="off").start()
        routers = [stack.add(f"router-{n}", "router").start() for n in (1, 2)]
        await stack.wait_api()

        warmup, tail_after = 10.0, 15.0
        count = int(OUTAGE_RATE * (warmup + TEMPORAL_DOWN + tail_after))
        calls = [go_call(f"t{i}") for i in range(count)]
        sender = Sender([stack.url()], rate=OUTAGE_RATE, concurrency=8)
        monitor = Monitor(stack.url())
        timeline = Timeline()
        sending = asyncio.create_task(sender.track(calls))
        watching = asyncio.create_task(monitor.run())
        background = [sending, watching]
        await timeline.at(warmup, "kill -9 temporal", background)
        stack.temporal.stop(kill=True)
        await timeline.at(warmup + 0.3 * TEMPORAL_DOWN, "kill -9 api, restart", background)
        api.kill()
        api.start()
        await stack.wait_api()
        await timeline.at(warmup + 0.5 * TEMPORAL_DOWN, "kill -9 router-1, restart", background)
        routers[0].kill()
        routers[0].start()
        await timeline.at(warmup + TEMPORAL_DOWN, "start temporal", background)
        backlog_at_restart = routing_backlog(engine).backlog
        await stack.temporal.start()
        timeline.note("temporal answers")

        ids = [c["messageId"] for c in calls]

        async def drained() -> bool:
            """Every event that waited for Temporal is routed (new ones keep coming)."""
            return not await asyncio.to_thread(
                unrouted_before, engine, timeline.clock["start temporal"]
            )

        async def all_sent() -> bool:
            counts = await asyncio.to_thread(store_counts, engine, ids)
            return counts["messages sent"] == counts["runs completed"] == count

        await until("the outage's backlog drained", drained, 300 + count * 0.1, stack)
        timeline.note("backlog drained")
        await sending
        timeline.note(f"all {count} acknowledged")
        await until("every run sent", all_sent, 300 + count * 0.2, stack)
        timeline.note("every message sent")
        await asyncio.sleep(2)  # one more /health once everything is over
        watching.cancel()
        counts = store_counts(engine, ids)
        router_logs = [r.output() for r in routers]
        # The backlog Temporal's restart found, as the routers worked it off.
        with session_scope(engine) as session:
            waited, first, last = session.exec(
                select(func.count(), func.min(Event.routed_at), func.max(Event.routed_at)).where(
                    col(Event.received_at) < timeline.clock["start temporal"],
                    col(Event.routed_at) > timeline.clock["start temporal"],
                )
            ).one()
    finally:
        stack.close()
        engine.dispose()

    down, restart = timeline.marks["kill -9 temporal"], timeline.marks["start temporal"]
    up, done = timeline.marks["temporal answers"], timeline.marks["backlog drained"]
    during = monitor.between(down + 4, restart)  # Temporal's health answer takes up to 3 s
    backlogs = [s.health["events"]["backlog"] for s in during]
    acked_during = sum(down < t < restart for t in sender.acked.values())
    drain_seconds = done - up
    answered = timeline.clock["temporal answers"]
    oldest = max(s.health["events"]["routing_lag_seconds"] for s in during)
    after = [s for s in monitor.samples if s.at > done + 1]
    figures(
        f"Temporal down {TEMPORAL_DOWN:.0f} s: {count} events at {OUTAGE_RATE:.0f}/s, two routers",
        {
            "timeline": "\n" + timeline.table(),
            "answers seen by the storefront": dict(sender.answers),
            "acknowledged during the outage": acked_during,
            "/health samples during the outage": len(during),
            "backlog seen by /health": f"{backlogs[0]} -> {backlogs[-1]}",
            "backlog when Temporal restarted": backlog_at_restart,
            "oldest event when it restarted": f"{oldest:.0f} s",
            "outage backlog drained": f"{drain_seconds:.1f} s after Temporal answered",
            "first routed after the restart": f"{(first - answered).total_seconds():.1f} s after",
            "backlog routed in": f"{(last - first).total_seconds():.1f} s",
            "drain rate": f"{waited / max((last - first).total_seconds(), 0.001):.0f} events/s",
            "highest /metrics drain rate (60 s avg)": max(
                s.metrics.get("journeys_events_drain_rate_per_second", 0) for s in monitor.samples
            ),
            **counts,
            "router warnings": [log.count("Temporal is unreachable") for log in router_logs],
            "worker / router lives": (worker.lives, [r.lives for r in routers]),
        },
    )
    # Acknowledged means committed: the API was SIGKILLed mid-outage, and nothing it
    # acknowledged is missing.
    assert len(sender.acked) == count and counts["stored"] == count
    assert counts["duplicate rows"] == 0
    assert sender.errors_500 == [] and sender.missing_retry_after == 0
    assert acked_during >= OUTAGE_RATE * TEMPORAL_DOWN * 0.5, "the API must keep acknowledging"
    # /health says what is wrong, and the backlog grows by what was acknowledged meanwhile.
    assert during and all(s.health_status == 503 for s in during)
    assert all(s.health["temporal"].startswith("error") for s in during)
    assert all(s.metrics['journeys_up{component="temporal"}'] == 0 for s in during)
    assert backlogs == sorted(backlogs), "the backlog only grows while Temporal is down"
    assert backlog_at_restart >= acked_during
    assert any(s.health["events"]["status"] == "lagging" for s in during)
    metric_backlogs = [s.metrics["journeys_events_backlog"] for s in during]
    assert metric_backlogs == sorted(metric_backlogs)
    # The routers said why they paused, with the backlog (router-1's second life, started
    # while Temporal was down, too).
    for log in router_logs:
        assert "Temporal is unreachable" in log and "events waiting" in log, log[-2000:]
    assert "Temporal is unreachable" in stack.services["router-1"].log(2).read_text()
    # After the restart: everything routed and sent once; /health is ok again.
    assert counts["unrouted"] == 0
    assert counts["runs completed"] == counts["messages sent"] == count
    assert counts["duplicate messages"] == 0
    assert after and after[-1].health_status == 200, after[-1].health if after else None
    assert after[-1].health["events"]["status"] == "ok"
    assert worker.died == [] and all(r.died == [] for r in routers)


# --- SQLite contention -------------------------------------------------------------------

WRITERS = 4
BATCHES = int(os.environ.get("JOURNEYS_CONTENTION_BATCHES", "240"))  # of 50 events each
BIG_BATCH = 2_500  # the most a /v1/batch may carry: its commit is a long write to die in
KILL_AT = (0.6, 0.85, 0.95, 1.0)  # of the time a big batch takes: around its commit


async def test_sqlite_contention_gives_503_never_500_and_survives_kill_mid_write(
    tmp_path: Path,
) -> None:
    """Four `journeys api` processes write one SQLite file (WAL) under load; a fifth
    writer holds the write lock longer than the busy timeout, as a backup or a long
    migration would. "database is locked" must come back as 503 with Retry-After, never
    500. An API SIGKILLed while committing a 2,500-event batch leaves all of it or none,
    and `PRAGMA integrity_check` passes; every acknowledged event is stored once.

    Ingest never calls Temporal: TEMPORAL_ADDRESS points at a server that is not started.
    """
    store = sqlite_url(tmp_path / "store")
    stack = Stack(tmp_path, store)
    apis = [stack.add_api(f"api-{n}").start() for n in range(1, WRITERS + 1)]
    engine = make_engine(store)
    try:
        for api in apis:
            await stack.wait_api(api.name)
        events = [[go_call(f"s{b}-{i}") for i in range(50)] for b in range(BATCHES)]
        sender = Sender([stack.url(a.name) for a in apis], rate=1000, concurrency=4 * WRITERS)
        timeline = Timeline()
        load = asyncio.create_task(
            sender.send(
                "/v1/batch",
                [{"batch": [{"type": "track", **e} for e in batch]} for batch in events],
                [[e["messageId"] for e in batch] for batch in events],
            )
        )
        await timeline.at(2, "a fifth writer holds the write lock for 7 s", [load])
        await asyncio.to_thread(hold_write_lock, tmp_path / "store" / "journeys.db", 7.0)
        timeline.note("the fifth writer commits")
        # How long a big batch takes to be acknowledged under this load: the kills are
        # aimed at the end of that time, where its transaction writes and commits.
        took = await big_batch(stack, apis[0])
        timeline.note(f"a big batch took {took:.1f} s")
        outcomes = []
        for fraction in KILL_AT:
            await timeline.at(
                timeline.now() + 1, f"big batch to api-1, kill at {fraction:.0%}", [load]
            )
            outcomes.append(await big_batch(stack, apis[0], engine, took * fraction, timeline))
        await load
        timeline.note("load acknowledged")
        integrity = sqlite_check(tmp_path / "store" / "journeys.db")
        all_ids = [e["messageId"] for batch in events for e in batch]
        with session_scope(engine) as session:
            stored = session.exec(
                select(Event.message_id).where(col(Event.message_id).in_(all_ids))
            ).all()
    finally:
        stack.close()
        engine.dispose()

    figures(
        f"SQLite contention: {WRITERS} API processes, {BATCHES} batches of 50 + 5 of {BIG_BATCH}",
        {
            "timeline": "\n" + timeline.table(),
            "answers": dict(sender.answers),
            "503 bodies (first)": sender.busy_errors[:1],
            "big batches killed mid-write: rows then": [o[0] for o in outcomes],
            "integrity_check after each kill": [o[1] for o in outcomes],
            "integrity_check at the end": integrity,
            "acknowledged events stored": f"{len(set(stored))} of {len(all_ids)}",
            "API lives that ended on their own": [d for api in apis for d in api.died],
        },
    )
    assert sender.errors_500 == [], sender.errors_500[:3]
    assert sender.answers["503"] > 0, "the lock holder must have caused 503s"
    assert sender.missing_retry_after == 0
    assert all("database busy" in body for body in sender.busy_errors)
    assert len(sender.acked) == len(all_ids)
    assert sorted(stored) == sorted(all_ids), "lost or duplicated events"
    for rows, check in outcomes:
        assert rows in (0, BIG_BATCH), f"a batch was half stored: {rows} rows"
        assert check == "ok"
    assert integrity == "ok"


def unrouted_before(engine: Engine, moment: datetime) -> int:
    with session_scope(engine) as session:
        return session.exec(
            select(func.count()).where(
                col(Event.routed_at).is_(None), col(Event.received_at) < moment
            )
        ).one()


def hold_write_lock(path: Path, seconds: float) -> None:
    """A writer that keeps the write lock: BEGIN IMMEDIATE, wait, commit."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        connection.execute("COMMIT")
    finally:
        connection.close()


def sqlite_check(path: Path) -> str:
    connection = sqlite3.connect(path, timeout=30)
    try:
        return ";".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


async def big_batch(
    stack: Stack,
    api: Any,
    engine: Engine | None = None,
    kill_after: float | None = None,
    timeline: Timeline | None = None,
) -> Any:
    """Send a 2,500-event batch to `api` and wait for the acknowledgement; returns how long
    it took. With `kill_after`: SIGKILL the API that long after sending, count what the
    batch left, check integrity, restart the API, resend until acknowledged, and return
    (rows left by the killed attempt, integrity_check)."""
    batch = [go_call(f"big-{uuid.uuid4().hex[:8]}-{i}") for i in range(BIG_BATCH)]
    ids = [c["messageId"] for c in batch]
    body = {"batch": [{"type": "track", **c} for c in batch]}
    sender = Sender([stack.url(api.name)], concurrency=1, timeout=60)
    start = time.monotonic()
    request = asyncio.create_task(sender.send("/v1/batch", [body], [ids]))
    if kill_after is None:
        await request
        return time.monotonic() - start
    assert engine is not None and timeline is not None
    await asyncio.sleep(kill_after)
    acked_before_kill = bool(sender.acked)
    api.kill()
    timeline.note(f"kill -9 {api.name} {kill_after:.1f} s after sending")
    with session_scope(engine) as session:
        rows = len(session.exec(select(Event.id).where(col(Event.message_id).in_(ids))).all())
    check = await asyncio.to_thread(sqlite_check, stack.root / "store" / "journeys.db")
    api.start()
    await stack.wait_api(api.name)
    await request
    assert len(sender.acked) == BIG_BATCH and sender.errors_500 == []
    assert not acked_before_kill or rows == BIG_BATCH
    return rows, check
