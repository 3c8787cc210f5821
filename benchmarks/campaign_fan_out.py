"""Campaign fan-out: a segment's members released by SQL and their runs started, bounded.

    python benchmarks/campaign_fan_out.py [--recipients N] [--quick] [--database URL]
                                          [--postgres URL [--no-sqlite]] [--baseline-starts M]
                                          [--local-time] [--history E] [--send]
                                          [--json FILE]

One fresh embedded Temporal dev server (`DevServer`: SQLite WAL, synchronous=normal, a
temporary data dir) and one fresh store (SQLite by default; `--database URL` instead,
`--postgres URL` also on a scratch database of that server). The store gets N contacts
with `traits: {newsletter: true}` spread over 10 timezones, and N/20 more who are not
subscribed, by bulk inserts; `segments.yaml` defines `newsletter` (that trait) and a
real `refresh()` of it makes their N stays (its `Segment Entered` events are marked
routed: the router took them long ago). `--history E` first stores E routed internal
events of the past (provider reports), as a store in use holds. The campaign journey
sends one email: `trigger: {schedule: <the minute before the run>, segment: newsletter,
timezone: UTC}`. `--local-time` (`local_time: true`, 10 waves) applies to the storing
comparison only: end to end, its waves would come at each zone's own time, hours apart.

baseline  First, on the fresh server: a bare Temporal client starting M trivial
(starts)  workflows (`BenchWaitWorkflow`, signal-with-start as the router does, 32 in
          flight as the router's CONCURRENCY), no worker: the floor for "M workflow
          starts". M = min(N, --baseline-starts, default 10,000); the ratio compares
          rates (the baseline runs on the emptier server database: in its favour).
ours      `CampaignWorkflow` started by hand, as its Temporal Schedule would start it
          (tests/test_campaigns.py does the same), run by a `build_worker` worker (console
          channel to a null stream) on a task queue of its own; the router as `journeys
          worker` runs it (`make_router`, the default 1 s interval) in this process. The
          clock starts at `start_workflow`. Measured: when the last member's `Campaign
          Due` event was stored (released by one INSERT ... SELECT per chunk of 2,000,
          while the router's unrouted backlog of the dispatch is under 4,000; the store's
          stamp, taken as the chunk's statement begins), when the last one was routed -
          each member's `JourneyWorkflow` started by signal-with-start: "recipients
          started" - and, sampled every 0.25 s, the unrouted backlog (the fan-out bound:
          at most MAX_BACKLOG + CHUNK), the runs started (the rate over the first, middle
          and last tenth) and this process's RSS; CPU of the server and this process.
          The runs' first workflow tasks wait in Temporal's task queue meanwhile (no
          journeys worker polls the router's queue during the window), as the
          baseline's do: both sides measure starts accepted by Temporal. Sending 100,000
          emails is the send path's throughput (benchmark 3: about 10 sends/s here), not
          the fan-out's; `--send` then runs the journeys worker until every run has sent
          its email, and reports sends/s (for small N: at 10/s, 100,000 take hours).
          Also timed inside the worker: each chunk's release statement and each backlog
          count (they must not grow with the store: no scan).
baseline  Then, on the same store: the naive way, the members loaded into Python through
(storing) the ORM and one `Event` added per member, committed; against ours storing the
          same N `Campaign Due` events by `release()` chunk after chunk, one transaction
          each, with no router. Each side runs in a child process of its own (its peak
          RSS is its own) and deletes its events after.

The target (the issue): 100,000 recipients started within 10 minutes on this machine,
with the fan-out bounded (the unrouted backlog never above MAX_BACKLOG + CHUNK).
`--quick` is 500 recipients: it runs, it judges nothing. Results: docs/performance.md.
Exit code 0 always.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # ingest_throughput, figures, bench_workflow
    sys.path.insert(0, str(HERE))

import ingest_throughput as it  # noqa: E402
from figures import Figure, Report, summary  # noqa: E402
from reporting_queries import scratch_store  # noqa: E402
from sqlalchemy import Engine, case, delete, func, insert, update  # noqa: E402
from sqlmodel import col, select  # noqa: E402
from temporalio.client import Client  # noqa: E402

import orchestrator  # noqa: E402
import orchestrator.activities.campaigns as campaign_activities  # noqa: E402
from channels.console import ConsoleChannel  # noqa: E402
from orchestrator.campaigns.dispatch import key_prefix, member_zones, release  # noqa: E402
from orchestrator.campaigns.timing import one_wave, waves  # noqa: E402
from orchestrator.dsl.models import CAMPAIGN_DUE  # noqa: E402
from orchestrator.processes.launch import make_router, stop_router  # noqa: E402
from orchestrator.processes.router import CONCURRENCY  # noqa: E402
from orchestrator.processes.worker import build_worker  # noqa: E402
from orchestrator.segments.membership import SEGMENT_ENTERED, refresh  # noqa: E402
from orchestrator.store.db import make_engine, session_scope  # noqa: E402
from orchestrator.store.tables import (  # noqa: E402
    ORIGIN_INTERNAL,
    CampaignDispatch,
    Contact,
    Event,
    Message,
    SegmentMember,
    utcnow,
)
from orchestrator.workflows import types as t  # noqa: E402
from orchestrator.workflows.campaign import CAMPAIGN_WORKFLOW  # noqa: E402

CHUNK = campaign_activities.CHUNK
MAX_BACKLOG = campaign_activities.MAX_BACKLOG
TARGET_RECIPIENTS = 100_000
TARGET_SECONDS = 600.0  # 100,000 recipients started within 10 minutes
JOURNEY_ID = "bench_campaign"
SEGMENT = "newsletter"
# A minute ago, in UTC: the workflow, started by hand, releases at once (a campaign
# sent once is not sent to zones whose time is more than an hour past, so a fixed date
# would release no one), and the schedule (made by no worker here) never fires.
DUE = f"{datetime.now(UTC) - timedelta(minutes=1):%Y-%m-%d %H:%M}"
ZONES = (
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Yekaterinburg",
    "Asia/Novosibirsk",
    "Asia/Vladivostok",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
)
SEGMENTS_YAML = f"""\
{SEGMENT}:
  description: Subscribed to the newsletter
  refresh: {{ every: 24h }}
  trait: {{ name: newsletter, equals: true }}
"""
FILL_BATCH = 5000
SAMPLE = 0.25  # seconds between samples of the backlog and the RSS
MIB = 1 << 20


def journey_yaml(local_time: bool) -> str:
    when = "local_time: true" if local_time else "timezone: UTC"
    return f"""\
id: {JOURNEY_ID}
name: Benchmark - newsletter campaign
trigger: {{ schedule: "{DUE}", segment: {SEGMENT}, {when} }}
steps:
  - send: {{ id: news, channel: email, template: win_back }}
"""


# --- the store ----------------------------------------------------------------------------


def contact_id(n: int, prefix: str = "c") -> str:
    """Contact n's id. Each store's contacts get a prefix of their own: the runs of a
    second store's campaign must be new workflows, not signals to the first one's."""
    return f"{prefix}{n:07d}"


def fill(engine: Engine, recipients: int, prefix: str) -> int:
    """N subscribed contacts over 10 zones, N/20 unsubscribed; returns the contacts stored."""
    total = recipients + recipients // 20
    with engine.begin() as connection:
        for start in range(0, total, FILL_BATCH):
            rows = [
                {
                    "id": contact_id(n, prefix),
                    "email": f"{contact_id(n, prefix)}@bench.example.com",
                    "timezone": ZONES[n % len(ZONES)],
                    "traits": {"newsletter": n < recipients},
                    "push_tokens": [],
                    "consent": {"email": {"marketing": True}},
                }
                for n in range(start, min(start + FILL_BATCH, total))
            ]
            connection.execute(insert(Contact), rows)
    return total


def add_history(engine: Engine, events: int, contacts: int, prefix: str) -> None:
    """`events` routed internal events of the past (provider reports), as a store that has
    been sending for a while holds: what a query reading more than the unrouted rows pays."""
    with engine.begin() as connection:
        for start in range(0, events, FILL_BATCH):
            stamp = utcnow()
            connection.execute(
                insert(Event),
                [
                    {
                        "message_id": f"sendgrid:history:{n}",
                        "origin": ORIGIN_INTERNAL,
                        "type": "track",
                        "name": "Email Delivered",
                        "contact_id": contact_id(n % contacts, prefix),
                        "properties": {},
                        "context": {},
                        "timestamp": stamp,
                        "received_at": stamp,
                        "routed_at": stamp,
                    }
                    for n in range(start, min(start + FILL_BATCH, events))
                ],
            )


def enter_segment(engine: Engine) -> int:
    """A real refresh of the segment; its entry events are then taken as routed."""
    with session_scope(engine) as session:
        entered = refresh(session, SEGMENT, utcnow()).entered
    with session_scope(engine) as session:
        session.exec(  # type: ignore[call-overload]
            update(Event)
            .where(col(Event.name) == SEGMENT_ENTERED, col(Event.routed_at).is_(None))
            .values(routed_at=utcnow())
        )
    return entered


def rss(pid: int | str = "self") -> float:
    """Resident set size in bytes (VmRSS), NaN where /proc is not there."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


def peak_rss() -> float:
    """This process's peak RSS so far (VmHWM), bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


# --- ours: the campaign, the router, the worker ---------------------------------------------


@dataclass
class Timings:
    """Durations (s) of the release statements and backlog counts the worker ran."""

    release: list[float] = field(default_factory=list)
    backlog: list[float] = field(default_factory=list)


@contextlib.contextmanager
def timed_statements() -> Iterator[Timings]:
    """Time `release()` and `backlog()` as the campaign activities call them."""
    found = Timings()

    def wrap(name: str, into: list[float]) -> Callable[..., Any]:
        real = getattr(campaign_activities, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - began)

        return timed

    saved = campaign_activities.release, campaign_activities.backlog
    campaign_activities.release = wrap("release", found.release)  # type: ignore[assignment]
    campaign_activities.backlog = wrap("backlog", found.backlog)  # type: ignore[assignment]
    try:
        yield found
    finally:
        campaign_activities.release, campaign_activities.backlog = saved


@dataclass
class Campaign:
    recipients: int
    stored: float  # s from start_workflow to the last member's event stored
    first_stored: float
    started: float  # s from start_workflow to the last member's run started (routed)
    workflow_done: float
    max_backlog: int
    samples: int
    rss_before: float
    rss_peak: float
    cpu: dict[str, float]
    timings: Timings
    waves: int
    progress: list[tuple[float, int]] = field(default_factory=list)  # (s, runs started)
    sent: dict[str, float] | None = None  # --send: the runs sending their email

    def rate_between(self, low: float, high: float) -> float:
        """Starts/s while the runs started went from `low` to `high` of the recipients
        (the clock from the campaign's start for `low` 0), from the samples."""

        def reached(share: float) -> float:
            if share <= 0:
                return 0.0
            return next((s for s, n in self.progress if n >= share * self.recipients), math.nan)

        seconds = reached(high) - reached(low)
        return (high - low) * self.recipients / seconds if seconds > 0 else math.nan

    def tenths(self, sep: str = ", ") -> str:
        """Starts/s over the first, middle and last tenth ("-": too few samples)."""
        rates = (
            self.rate_between(0, 0.1),
            self.rate_between(0.45, 0.55),
            self.rate_between(0.9, 1),
        )
        return sep.join("-" if math.isnan(r) else f"{r:.0f}" for r in rates)


def dispatch_state(engine: Engine, dispatch_id: str | None) -> tuple[str | None, int, int]:
    """(the dispatch's id, recipients released, the store's unrouted events: here all of
    them the dispatch's). Counted through the unrouted index, not by `backlog()`: the
    sampler must cost the same whatever the code measured does."""
    with session_scope(engine) as session:
        if dispatch_id is None:
            row = session.exec(
                select(CampaignDispatch).where(CampaignDispatch.journey_id == JOURNEY_ID)
            ).first()
            if row is None:
                return None, 0, 0
            dispatch_id = row.id
        else:
            row = session.get(CampaignDispatch, dispatch_id)
        assert row is not None
        unrouted = session.exec(
            select(func.count()).select_from(Event).where(col(Event.routed_at).is_(None))
        ).one()
        return dispatch_id, row.recipients, int(unrouted)


def event_times(engine: Engine, prefix: str) -> tuple[int, datetime, datetime, datetime, int]:
    """(events, first stored, last stored, last routed, unrouted) of a dispatch's members."""
    with session_scope(engine) as session:
        count, first, last, routed, unrouted = session.exec(
            select(
                func.count(),
                func.min(Event.received_at),
                func.max(Event.received_at),
                func.max(Event.routed_at),
                func.sum(case((col(Event.routed_at).is_(None), 1), else_=0)),
            ).where(
                Event.origin == ORIGIN_INTERNAL,
                Event.name == CAMPAIGN_DUE,
                func.substr(Event.message_id, 1, len(prefix)) == prefix,
            )
        ).one()
    return int(count), first, last, routed, int(unrouted or 0)


async def run_campaign(
    client: Client, engine: Engine, settings: Any, recipients: int, server_pid: int | None
) -> Campaign:
    queue = f"bench-campaign-{uuid.uuid4().hex[:6]}"  # the campaign's; runs start on settings'
    with open(os.devnull, "w") as null, timed_statements() as timings:
        console = ConsoleChannel(stream=null)
        adapters = {"email": console, "push": console, "sms": console}
        router = make_router(client, engine, settings)
        async with build_worker(client, engine, settings, adapters, task_queue=queue):
            router_task = asyncio.create_task(router.run())
            try:
                await asyncio.sleep(1)  # the worker polling, the router's first sweep done
                rss_before = rss()
                meter = it.CpuMeter(server_pid)
                wall = time.time()
                began = time.monotonic()
                handle = await client.start_workflow(
                    CAMPAIGN_WORKFLOW,
                    t.CampaignInput(JOURNEY_ID),
                    id=f"campaign:{JOURNEY_ID}:bench-{uuid.uuid4().hex[:6]}",
                    task_queue=queue,
                )
                result = asyncio.create_task(handle.result())
                dispatch_id: str | None = None
                max_backlog = samples = 0
                progress: list[tuple[float, int]] = []
                rss_peak = rss_before
                workflow_done = float("nan")
                last_report = began
                while True:
                    dispatch_id, released, waiting = await asyncio.to_thread(
                        dispatch_state, engine, dispatch_id
                    )
                    samples += 1
                    progress.append((time.monotonic() - began, router.routed))
                    max_backlog = max(max_backlog, waiting)
                    rss_peak = max(rss_peak, rss())
                    if result.done() and math.isnan(workflow_done):
                        result.result()  # raises if the workflow failed
                        workflow_done = time.monotonic() - began
                    if result.done() and released >= recipients and waiting == 0:
                        break
                    if time.monotonic() - last_report >= 15:
                        last_report = time.monotonic()
                        print(
                            f"  {time.monotonic() - began:6.0f} s: {released} released, "
                            f"{waiting} unrouted, {router.routed} routed, "
                            f"RSS {rss() / MIB:.0f} MiB",
                            flush=True,
                        )
                    await asyncio.sleep(SAMPLE)
                cpu = meter.used()
            finally:
                await stop_router(router, router_task)
    assert dispatch_id is not None
    count, first, last, routed, unrouted = await asyncio.to_thread(
        event_times, engine, key_prefix(dispatch_id)
    )
    if count != recipients or unrouted:
        raise RuntimeError(f"{count} members' events stored, {unrouted} unrouted; {recipients} due")
    with session_scope(engine) as session:
        row = session.get(CampaignDispatch, dispatch_id)
        waves = row.waves if row is not None else 0
    return Campaign(
        recipients,
        last.timestamp() - wall,
        first.timestamp() - wall,
        routed.timestamp() - wall,
        workflow_done,
        max_backlog,
        samples,
        rss_before,
        rss_peak,
        cpu,
        timings,
        waves,
        progress,
    )


def sent_count(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(
            session.exec(
                select(func.count()).select_from(Message).where(Message.status == "sent")
            ).one()
        )


async def run_sends(
    client: Client, engine: Engine, settings: Any, recipients: int, timeout: float
) -> dict[str, float]:
    """`--send`: the journeys worker on the router's queue until every run sent its email."""
    with open(os.devnull, "w") as null:
        console = ConsoleChannel(stream=null)
        adapters = {"email": console, "push": console, "sms": console}
        began = time.monotonic()
        async with build_worker(client, engine, settings, adapters):
            last_report = began
            while (sent := await asyncio.to_thread(sent_count, engine)) < recipients:
                if time.monotonic() - began > timeout:
                    break
                if time.monotonic() - last_report >= 15:
                    last_report = time.monotonic()
                    print(f"  {time.monotonic() - began:6.0f} s: {sent} sent", flush=True)
                await asyncio.sleep(0.5)
            seconds = time.monotonic() - began
    return {"sent": sent, "seconds": seconds}


# --- baselines --------------------------------------------------------------------------------


def store_side(side: str, url: str, out: Path, local_time: bool) -> None:
    """A child process: store one `Campaign Due`-like event per member, ours or the naive
    way; writes (seconds, events, RSS before, peak RSS) to `out`."""
    engine = make_engine(url)
    tag = uuid.uuid4().hex[:6]
    dispatch_id = f"bench-{side}-{tag}"
    with session_scope(engine) as session:  # warm: connection, metadata, the first query
        session.exec(select(func.count()).select_from(SegmentMember)).one()
    before = rss()
    began = time.perf_counter()
    if side == "naive":
        with session_scope(engine) as session:
            members = session.exec(
                select(Contact)
                .join(SegmentMember, col(SegmentMember.contact_id) == col(Contact.id))
                .where(SegmentMember.segment == SEGMENT, col(SegmentMember.exited_at).is_(None))
            ).all()
            now = utcnow()
            for contact in members:
                session.add(
                    Event(
                        message_id=f"{key_prefix(dispatch_id)}{contact.id}",
                        origin=ORIGIN_INTERNAL,
                        type="track",
                        name=CAMPAIGN_DUE,
                        contact_id=contact.id,
                        properties={
                            "journey": JOURNEY_ID,
                            "segment": SEGMENT,
                            "dispatch": dispatch_id,
                            "due": DUE,
                        },
                        context={"campaign": dispatch_id},
                        timestamp=now,
                        received_at=now,
                    )
                )
        stored = len(members)
    else:
        with session_scope(engine) as session:
            dispatch = CampaignDispatch(
                id=dispatch_id, journey_id=JOURNEY_ID, version=1, segment=SEGMENT, due=DUE
            )
            session.add(dispatch)
        due = datetime.fromisoformat(DUE)
        if local_time:  # as open_campaign plans them
            with session_scope(engine) as session:
                planned = waves(due, member_zones(session, SEGMENT), "UTC")
        else:
            planned = one_wave(due, "UTC")
        stored = 0
        for wave in planned:
            cursor = None
            while True:  # as release_campaign runs, one transaction per chunk
                with session_scope(engine) as session:
                    dispatch = session.get(CampaignDispatch, dispatch_id, with_for_update=True)
                    assert dispatch is not None
                    done = release(session, dispatch, wave, cursor, CHUNK)
                stored += done.count
                cursor = done.cursor or cursor
                if done.done:
                    break
    seconds = time.perf_counter() - began
    peak = peak_rss()
    with session_scope(engine) as session:  # leave the store as it was for the other side
        session.exec(  # type: ignore[call-overload]
            delete(Event).where(
                func.substr(Event.message_id, 1, len(key_prefix(dispatch_id)))
                == key_prefix(dispatch_id)
            )
        )
        row = session.get(CampaignDispatch, dispatch_id)
        if row is not None:
            session.delete(row)
    engine.dispose()
    out.write_text(json.dumps({"seconds": seconds, "events": stored, "rss": before, "peak": peak}))


def run_store_side(side: str, url: str, folder: Path, local_time: bool) -> dict[str, float]:
    out = folder / f"store-{side}-{uuid.uuid4().hex[:6]}.json"
    command = [sys.executable, __file__, "--store-side", side, "--database", url, "--out", str(out)]
    # The child imports the product this process imported (benchmarks/as_of.py's tree).
    tree = str(Path(orchestrator.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [*command, *(["--local-time"] if local_time else [])],
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"the {side} storing side exited with {done.returncode}")
    found: dict[str, float] = json.loads(out.read_text())
    return found


async def bare_starts(client: Client, count: int, server_pid: int | None) -> dict[str, Any]:
    """M signal-with-starts of the trivial workflow, CONCURRENCY in flight, no worker."""
    queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        await client.start_workflow(
            "BenchWaitWorkflow",
            {"contact_id": contact_id(i), "journey": JOURNEY_ID},
            id=f"bench:{tag}:{i}",
            task_queue=queue,
            start_signal="event",
            start_signal_args=[{"event_id": i, "name": CAMPAIGN_DUE}],
        )

    meter = it.CpuMeter(server_pid)
    start, acked, _, errors = await it.drive(count, CONCURRENCY, one)
    return {"seconds": acked - start, "errors": errors, "cpu": meter.used()}


# --- running and reporting --------------------------------------------------------------------


@dataclass
class Measured:
    store: str  # SQLite | PostgreSQL
    contacts: int
    fill_seconds: float
    refresh_seconds: float
    campaign: Campaign | None = None
    naive: dict[str, float] | None = None
    sql: dict[str, float] | None = None


def pct(values: list[float], q: float) -> float:
    return it.percentile(sorted(values), q) if values else float("nan")


async def measure_store(
    args: argparse.Namespace,
    client: Client,
    pid: int | None,
    store: str,
    url: str | None,
    tmp: Path,
) -> Measured:
    folder = tmp / store
    settings, engine, _ = it.new_store(
        folder,
        {"segments.yaml": SEGMENTS_YAML, f"{JOURNEY_ID}.yaml": journey_yaml(args.local_time)},
        "bench-journeys",
        store_url=url,
    )
    url = url or f"sqlite:///{folder / 'journeys.db'}"
    try:
        prefix = f"c{uuid.uuid4().hex[:6]}-"
        began = time.perf_counter()
        contacts = await asyncio.to_thread(fill, engine, args.recipients, prefix)
        filled = time.perf_counter() - began
        if args.history:
            began = time.perf_counter()
            await asyncio.to_thread(add_history, engine, args.history, contacts, prefix)
            print(
                f"{store}: {args.history:,} past routed internal events stored in "
                f"{time.perf_counter() - began:.1f} s",
                flush=True,
            )
        began = time.perf_counter()
        entered = await asyncio.to_thread(enter_segment, engine)
        refreshed = time.perf_counter() - began
        if entered != args.recipients:
            raise RuntimeError(f"{entered} entered the segment, {args.recipients} expected")
        print(
            f"{store}: {contacts:,} contacts filled in {filled:.1f} s; {entered:,} entered "
            f"{SEGMENT} by refresh() in {refreshed:.1f} s",
            flush=True,
        )
        found = Measured(store, contacts, filled, refreshed)
        print(f"{store}: ours, the campaign to {args.recipients:,} recipients...", flush=True)
        found.campaign = await run_campaign(client, engine, settings, args.recipients, pid)
        print(describe_campaign(found.campaign), flush=True)
        if args.send:
            print(f"{store}: the journeys worker, until every run has sent...", flush=True)
            sent = await run_sends(
                client, engine, settings, args.recipients, 120 + args.recipients / 2
            )
            found.campaign.sent = sent
            print(
                f"  {sent['sent']:,.0f} of {args.recipients:,} sent in {sent['seconds']:.1f} s "
                f"({sent['sent'] / sent['seconds']:.1f} sends/s)",
                flush=True,
            )
        engine.dispose()
        for side in ("sql", "naive"):
            print(f"{store}: storing {args.recipients:,} events, {side}...", flush=True)
            result = await asyncio.to_thread(run_store_side, side, url, tmp, args.local_time)
            setattr(found, side, result)
            print(
                f"  {result['events']:,.0f} events in {result['seconds']:.2f} s, peak RSS "
                f"{result['peak'] / MIB:.0f} MiB ({(result['peak'] - result['rss']) / MIB:+.0f} "
                "MiB over the process at rest)",
                flush=True,
            )
        return found
    finally:
        engine.dispose()


def describe_campaign(c: Campaign) -> str:
    rate = c.recipients / c.started if c.started > 0 else float("nan")
    cpu = ", ".join(f"{k} {v * 1000 / c.recipients:.1f}" for k, v in c.cpu.items())
    return "\n".join(
        [
            f"  {c.recipients:,} recipients in {c.waves} wave(s): first event stored "
            f"{c.first_stored:.2f} s, last stored {c.stored:.2f} s, last run started "
            f"{c.started:.2f} s ({rate:.0f} starts/s), workflow done {c.workflow_done:.2f} s",
            f"  starts/s over the first, middle and last tenth of the recipients: {c.tenths()}",
            f"  unrouted backlog max {c.max_backlog:,} ({c.samples} samples; bound "
            f"MAX_BACKLOG + CHUNK = {MAX_BACKLOG + CHUNK:,})",
            f"  release statement per chunk: {len(c.timings.release)} chunks, p50 "
            f"{pct(c.timings.release, 0.5) * 1000:.0f} ms, max "
            f"{max(c.timings.release, default=float('nan')) * 1000:.0f} ms, sum "
            f"{sum(c.timings.release):.2f} s",
            f"  backlog count: {len(c.timings.backlog)} counts, p50 "
            f"{pct(c.timings.backlog, 0.5) * 1000:.1f} ms, max "
            f"{max(c.timings.backlog, default=float('nan')) * 1000:.1f} ms",
            f"  RSS of this process (worker + router) {c.rss_before / MIB:.0f} MiB before, "
            f"peak {c.rss_peak / MIB:.0f} MiB during",
            f"  CPU ms per recipient: {cpu}",
        ]
    )


def build_report(args: argparse.Namespace, results: list[Measured], bare: dict[str, Any]) -> Report:
    judged = not args.quick and args.recipients >= TARGET_RECIPIENTS
    report = Report(
        "campaign fan-out",
        settings={
            "recipients": args.recipients,
            "contacts": results[0].contacts if results else None,
            "zones": len(ZONES),
            "local_time": args.local_time,
            "chunk": CHUNK,
            "max_backlog": MAX_BACKLOG,
            "router concurrency": CONCURRENCY,
            "baseline starts": bare.get("count"),
            "temporal": "embedded dev server, SQLite WAL, synchronous=normal",
            "stores": [r.store for r in results],
            "cpus": os.cpu_count(),
            "load average (1, 5, 15 min) before and after": getattr(args, "load", None),
            "python": sys.version.split()[0],
            "quick": args.quick,
        },
    )
    bare_rate = (
        bare["count"] / bare["seconds"] if bare.get("seconds") and not bare.get("errors") else None
    )
    for found in results:
        c = found.campaign
        where = f"{found.store} store"
        if c is None:
            continue
        scale = TARGET_RECIPIENTS / c.recipients
        report.add(
            Figure(
                f"{c.recipients:,} recipients started (start -> last run started), {where}",
                c.started,
                "s",
                c.recipients / bare_rate if bare_rate else None,
                better="lower",
                target=f"<= {TARGET_SECONDS:g} s for {TARGET_RECIPIENTS:,}",
                met=(c.started * scale <= TARGET_SECONDS) if judged else None,
                note="baseline: the same number of bare signal-with-starts at the bare rate",
            )
        )
        report.add(
            Figure(
                f"recipients started /s, {where}",
                c.recipients / c.started,
                "starts/s",
                bare_rate,
                note=f"baseline: bare signal-with-start of a trivial workflow, "
                f"{CONCURRENCY} in flight, no worker, on the fresh server; ours over the "
                f"first / middle / last tenth of the recipients: {c.tenths(' / ')} starts/s",
            )
        )
        if c.sent:
            report.add(
                Figure(
                    f"then every run sending its email (--send), {where}",
                    c.sent["sent"] / c.sent["seconds"],
                    "sends/s",
                    note=f"{c.sent['sent']:,.0f} of {c.recipients:,} sent in "
                    f"{c.sent['seconds']:.1f} s by the journeys worker (console channel)",
                )
            )
        report.add(
            Figure(
                f"last member's Campaign Due event stored, {where}",
                c.stored,
                "s",
                better="lower",
                note="the release waits for the router: at most MAX_BACKLOG unrouted",
            )
        )
        bound = MAX_BACKLOG + CHUNK
        report.add(
            Figure(
                f"max unrouted backlog of the dispatch (sampled), {where}",
                c.max_backlog,
                "events",
                better="lower",
                target=f"<= MAX_BACKLOG + CHUNK = {bound:,}",
                met=(c.max_backlog <= bound) if not args.quick else None,
            )
        )
        report.add(
            Figure(
                f"release statement per chunk of {CHUNK:,}, max, {where}",
                max(c.timings.release, default=float("nan")) * 1000,
                "ms",
                better="lower",
                note=f"p50 {pct(c.timings.release, 0.5) * 1000:.0f} ms over "
                f"{len(c.timings.release)} chunks",
            )
        )
        report.add(
            Figure(
                f"backlog count, max, {where}",
                max(c.timings.backlog, default=float("nan")) * 1000,
                "ms",
                better="lower",
                note=f"p50 {pct(c.timings.backlog, 0.5) * 1000:.1f} ms over "
                f"{len(c.timings.backlog)} counts",
            )
        )
        report.add(
            Figure(
                f"worker + router process RSS, peak during the campaign, {where}",
                c.rss_peak / MIB,
                "MiB",
                better="lower",
                note=f"{c.rss_before / MIB:.0f} MiB before it started",
            )
        )
        for name, seconds in c.cpu.items():
            base = (bare.get("cpu") or {}).get(name)
            report.add(
                Figure(
                    f"CPU ms per recipient started, {name}, {where}",
                    seconds * 1000 / c.recipients,
                    "ms",
                    base * 1000 / bare["count"] if base is not None and bare.get("count") else None,
                    better="lower",
                    note="baseline: per bare start",
                )
            )
        if found.sql and found.naive:
            report.add(
                Figure(
                    f"storing {c.recipients:,} members' events, no router, {where}",
                    found.sql["seconds"],
                    "s",
                    found.naive["seconds"],
                    better="lower",
                    note="ours: release() chunk after chunk (INSERT ... SELECT); baseline: "
                    "members loaded through the ORM, one Event added per member",
                )
            )
            report.add(
                Figure(
                    f"storing them, process RSS over its rest, {where}",
                    (found.sql["peak"] - found.sql["rss"]) / MIB,
                    "MiB",
                    (found.naive["peak"] - found.naive["rss"]) / MIB,
                    better="lower",
                )
            )
    if bare.get("errors"):
        report.notes.append(f"bare baseline: {bare['errors']} of {bare['count']} starts failed")
    if args.quick:
        report.notes.append("quick run: targets shown, not judged")
    elif args.recipients < TARGET_RECIPIENTS:
        report.notes.append(f"{args.recipients:,} recipients: the target is for 100,000")
    return report


async def main(args: argparse.Namespace) -> None:
    if args.local_time:
        raise SystemExit(
            "--local-time: its waves come at each zone's own time, hours apart; this run "
            "measures a campaign due now (its storing side takes --local-time on its own)"
        )
    print(
        f"campaign fan-out: {args.recipients:,} recipients, {os.cpu_count()} CPUs, python "
        f"{sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    ignored = it.count_unraisable()
    load_before = os.getloadavg()
    results: list[Measured] = []
    bare: dict[str, Any] = {}
    # (label, URL, on a scratch database of that server)
    stores: list[tuple[str, str | None, bool]] = []
    if args.database:
        name = "PostgreSQL" if args.database.startswith("postgres") else "SQLite"
        stores.append((name, args.database, False))
    elif not args.no_sqlite:
        stores.append(("SQLite", None, False))
    if args.postgres:
        stores.append(("PostgreSQL", args.postgres, True))
    try:
        with tempfile.TemporaryDirectory(prefix="journeys-bench-") as folder:
            tmp = Path(folder)
            temporal_dir = tmp / "temporal"
            temporal_dir.mkdir(mode=0o700)
            async with it.dev_server("normal", temporal_dir, []) as (client, pid):
                print("Temporal dev server: SQLite WAL, synchronous=normal", flush=True)
                # First, on the fresh server: the baseline gets the emptier database.
                count = min(args.recipients, args.baseline_starts)
                print(f"baseline: {count:,} bare signal-with-starts...", flush=True)
                bare = {"count": count, **await bare_starts(client, count, pid)}
                print(
                    f"  {count:,} in {bare['seconds']:.2f} s ({count / bare['seconds']:.0f}/s), "
                    f"{bare['errors']} errors",
                    flush=True,
                )
                for store, server_url, scratch in stores:
                    try:
                        with scratch_store(server_url if scratch else None) as url:
                            results.append(
                                await measure_store(
                                    args, client, pid, store, url or server_url, tmp
                                )
                            )
                    except Exception:
                        print(f"{store}: stopped:", file=sys.stderr)
                        traceback.print_exc()
    except Exception:
        print("benchmark stopped:", file=sys.stderr)
        traceback.print_exc()
    args.load = {"before": load_before, "after": os.getloadavg()}
    report = build_report(args, results, bare)
    print(
        summary(report, "campaign fan-out (ours vs baseline)", measure=72, unit=8, places=2),
        flush=True,
    )
    report.write(args.json)
    for message, count in ignored.items():
        print(f"note: {count} x 'Exception ignored' at worker shutdown: {message}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, help="N (default 100,000; --quick 500)")
    parser.add_argument("--quick", action="store_true", help="500 recipients, judged on nothing")
    parser.add_argument(
        "--database", metavar="URL", help="our store there instead of a temporary SQLite file"
    )
    parser.add_argument(
        "--postgres", metavar="URL", help="also our store on a scratch database of that server"
    )
    parser.add_argument("--no-sqlite", action="store_true", help="with --postgres: only there")
    parser.add_argument(
        "--baseline-starts",
        type=int,
        default=10_000,
        metavar="M",
        help="bare starts measured (at most N; default 10,000)",
    )
    parser.add_argument("--local-time", action="store_true", help="a local_time campaign")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="E",
        help="E past routed internal events in the store first (a store in use; default 0)",
    )
    parser.add_argument(
        "--send",
        action="store_true",
        help="then run the journeys worker until every run has sent its email (sends/s)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures (benchmarks/figures.py)")
    parser.add_argument("--verbose", action="store_true", help="keep the SDK's warnings")
    parser.add_argument("--store-side", choices=("sql", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.recipients is None:
        args.recipients = 500 if args.quick else TARGET_RECIPIENTS
    if args.recipients < 1:
        parser.error("--recipients: give at least 1")
    if args.no_sqlite and not args.postgres:
        parser.error("--no-sqlite measures on PostgreSQL only: give --postgres URL")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.store_side:
        store_side(
            arguments.store_side, arguments.database, Path(arguments.out), arguments.local_time
        )
    else:
        if not arguments.verbose:
            it.quiet_sdk_logs()
        asyncio.run(main(arguments))
    sys.exit(0)
