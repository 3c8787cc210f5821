"""Waiting journeys at rest: what N runs waiting on a 24 h timer cost, in memory and on disk.

    python benchmarks/waiting_at_rest.py [--runs N] [--quick] [--json FILE]
                                         [--dynamic-config KEY=VALUE ...] [--max-cached N]
                                         [--only product|baseline] [--no-restart]

Two sides, one after the other, each on a fresh embedded dev server (`DevServer`: SQLite
WAL, synchronous=normal, a temporary data dir) with its worker in a process of its own
(a child of this script), so that the worker's memory is measured alone:

product   a journey whose first step is `wait: 24h`; N `track "Product Added"` calls for
          N distinct users, posted as `/v1/batch` calls of 100 to the real API (uvicorn
          serving `create_app`, the router running, both in this process); the worker
          child runs `build_worker` as `journeys worker` builds it (console channel to a
          null stream). A run counts when journey_runs has it `active` at its wait step.
baseline  N runs of the bare `BenchWaitWorkflow` (waits 24 h) started with
          signal-with-start, 50 in flight, its worker child a plain SDK `Worker`. A run
          counts when the worker has run its first workflow task.

Both workers use the SDK's defaults, sticky cache (`max_cached_workflows`) included,
unless `--max-cached N` sets it for both. A few warm-up runs go first (module imports,
the sandbox, connection pools are no per-run cost). Then, with the processes idle (their
CPU near zero for 2 s), at 0, N/2 and N waiting runs this records: the worker's RSS, the
dev server's RSS (VmRSS in /proc), Temporal's SQLite bytes (db + -wal) and, for the
product, our store's bytes (db + -wal) and the RSS of the API + router process (which is
also this benchmark). Per waiting run = (at N - at 0) / N; the marginal cost per run is
(at N - at N/2) / (N/2) and is what 100,000 runs are extrapolated with when fewer were
measured (labelled "extrapolated"). Finally the dev server is restarted on the same
database, alone, and its RSS at rest read again: what N waiting runs cost a server that
did not just start them (`--no-restart` skips it).

Targets (from the issue): at 100,000 waiting runs, worker RSS <= 1 GiB and dev server
RSS <= 2 GiB. `--dynamic-config KEY=VALUE` passes a value to both dev servers (e.g. the
history cache: `history.cacheMaxSize`, `history.cacheSizeBasedLimit`,
`history.cacheMaxSizeBytes`, `history.eventsCacheMaxSizeBytes`), to see what bounds the
server's memory. Results and their reading: docs/benchmarks.md. Exit code 0 always.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # ingest_throughput, bench_workflow, bench_probe, figures
    sys.path.insert(0, str(HERE))

# Heavier imports happen where they are needed: the worker child imports only what its
# side runs, so its RSS holds no API, router or HTTP client.

TARGET_RUNS = 100_000
WORKER_TARGET = 1 << 30  # bytes: worker RSS <= 1 GiB at 100,000 waiting runs
SERVER_TARGET = 2 << 30  # bytes: dev server RSS <= 2 GiB at 100,000 waiting runs
SDK_DEFAULT_CACHE = 1000  # temporalio's Worker(max_cached_workflows=...) default
BATCH = 100  # calls per /v1/batch request
HTTP_IN_FLIGHT = 4  # batch requests in flight
STARTS_IN_FLIGHT = 50  # baseline signal-with-start calls in flight
WARMUP = 20
IDLE_CPU = 0.05  # a process is idle below 5 % of a core...
IDLE_FOR = 2.0  # ...for this many seconds in a row
IDLE_TIMEOUT = 60.0
KB, MIB = 1000, 1 << 20


# --- what is measured --------------------------------------------------------------------


def rss(pid: int | None) -> int:
    """Resident set size of a process in bytes (VmRSS), 0 if unknown."""
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:  # Linux: utime + stime, in clock ticks
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def sqlite_bytes(db: Path) -> int:
    """A SQLite database's bytes on disk: the file and its write-ahead log."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.is_file())


async def settle(pids: list[int]) -> float:
    """Wait until every process in `pids` has used < IDLE_CPU of a core for IDLE_FOR seconds
    (at most IDLE_TIMEOUT); returns the seconds waited."""
    began = time.monotonic()
    quiet_since = began
    last = [cpu_seconds(p) for p in pids]
    while time.monotonic() - began < IDLE_TIMEOUT:
        await asyncio.sleep(0.5)
        now = [cpu_seconds(p) for p in pids]
        if any((b - a) / 0.5 > IDLE_CPU for a, b in zip(last, now, strict=True)):
            quiet_since = time.monotonic()
        last = now
        if time.monotonic() - quiet_since >= IDLE_FOR:
            break
    return time.monotonic() - began


@dataclass
class Snapshot:
    """Bytes at one moment, with `waiting` runs waiting (warm-up runs not counted)."""

    waiting: int
    worker_rss: int
    server_rss: int
    temporal_db: int
    store_db: int = 0
    api_rss: int = 0  # the API + router process (this one): product only


@dataclass
class Side:
    label: str
    runs: int
    cache: int  # the worker's max_cached_workflows
    snapshots: list[Snapshot] = field(default_factory=list)
    start_seconds: float = 0.0  # first start -> last run waiting, both halves, idle time out
    server_rss_restarted: int | None = None  # the dev server restarted alone on the same db
    server_rss_fresh: int | None = None  # a fresh dev server before anything ran
    retries: int = 0  # batch requests answered 503/429 (database busy) and sent again
    failed_activities: int = 0  # activity attempts that failed (e.g. store locked), retried

    @property
    def rate(self) -> float:
        return self.runs / self.start_seconds if self.start_seconds else float("nan")

    def per_run(self, attr: str) -> float:
        """(at N - at 0) / N, bytes."""
        first, last = self.snapshots[0], self.snapshots[-1]
        return (getattr(last, attr) - getattr(first, attr)) / max(last.waiting - first.waiting, 1)

    def marginal(self, attr: str) -> float:
        """(at N - at N/2) / (N/2), bytes: the slope once caches have filled."""
        mid, last = self.snapshots[-2], self.snapshots[-1]
        return (getattr(last, attr) - getattr(mid, attr)) / max(last.waiting - mid.waiting, 1)

    def at_target(self, attr: str) -> tuple[float, bool]:
        """Bytes at TARGET_RUNS waiting: measured, or extrapolated with the marginal slope."""
        last = self.snapshots[-1]
        if last.waiting >= TARGET_RUNS:
            return float(getattr(last, attr)), False
        slope = max(self.marginal(attr), 0.0)
        return getattr(last, attr) + slope * (TARGET_RUNS - last.waiting), True

    def cache_filling(self, attr: str) -> bool:
        """The worker's sticky cache was not full at N/2: its marginal slope still includes
        runs being cached, so a linear extrapolation is an upper bound."""
        return attr == "worker_rss" and self.snapshots[-2].waiting + WARMUP < self.cache


# --- the worker child ----------------------------------------------------------------------


async def worker_child(spec: dict[str, Any]) -> None:
    """A worker in its own process. stdin: `count PREFIX` (baseline runs that ran their first
    workflow task, answered on stdout) or `quit`/EOF; stdout: `ready` once polling."""
    from temporalio.client import Client

    client = await Client.connect(spec["address"])
    options: dict[str, Any] = {}
    if spec.get("max_cached") is not None:
        options["max_cached_workflows"] = spec["max_cached"]
    null = open(os.devnull, "w")  # noqa: SIM115
    worker: Any
    if spec["side"] == "product":
        from channels.console import ConsoleChannel
        from orchestrator.processes.worker import build_worker
        from orchestrator.settings import Settings
        from orchestrator.store.db import make_engine, sqlite_url

        settings = Settings(
            data_dir=Path(spec["data_dir"]),
            journeys_dir=Path(spec["data_dir"]) / "journeys",
            templates_dir=ROOT / "templates",
            task_queue=spec["task_queue"],
            temporal_address=spec["address"],
        )
        engine = make_engine(sqlite_url(settings.data_dir))
        console = ConsoleChannel(stream=null)
        adapters = {"email": console, "push": console, "sms": console}
        worker = build_worker(client, engine, settings, adapters, **options)
    else:
        from bench_workflow import BenchWaitWorkflow
        from temporalio.worker import Worker

        worker = Worker(
            client, task_queue=spec["task_queue"], workflows=[BenchWaitWorkflow], **options
        )
    import bench_probe

    loop = asyncio.get_running_loop()
    async with worker:
        print("ready", flush=True)
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line or line == "quit":
                break
            command, _, argument = line.partition(" ")
            if command == "count":
                print(bench_probe.count(argument)[0], flush=True)
    null.close()


class WorkerProcess:
    """This script run as `--worker-child SPEC`, and the line protocol to talk to it."""

    def __init__(self, spec: dict[str, Any], log: Path) -> None:
        self.spec = spec
        self.log = log  # its stderr: the SDK's warnings, e.g. activities that failed
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def failed_activities(self) -> int:
        """Activity attempts the worker logged as failed (Temporal retries them)."""
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace").count("Completing activity as failed")
        return 0

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker-child",
                json.dumps(self.spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        line = await asyncio.wait_for(self._line(), 120)
        if line != "ready":
            raise RuntimeError(f"worker child did not start (said {line!r})")

    async def _line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            raise RuntimeError(f"worker child exited with {await self.process.wait()}")
        return raw.decode().strip()

    async def count(self, prefix: str) -> int:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"count {prefix}\n".encode())
        await self.process.stdin.drain()
        return int(await self._line())

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.process.stdin.write(b"quit\n")
            await self.process.stdin.drain()
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# --- the two sides ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_server(data_dir: Path, dynamic_config: list[str]) -> AsyncIterator[Any]:
    """A fresh embedded dev server (ingest_throughput's `_DevServer`: DevServer + values)."""
    import ingest_throughput as it

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    server = it._DevServer(
        db_file=data_dir / "temporal.db",
        port=it.free_port(),
        ui_port=it.free_port(),
        log_file=data_dir / "temporal.log",
        dynamic_config=dynamic_config,
    )
    client = await server.start()
    try:
        yield server, client
    finally:
        server.stop()


async def restarted_rss(server: Any) -> int:
    """Stop the server, start it again on the same database, alone; its RSS once idle."""
    server.stop()
    await server.start()
    await asyncio.sleep(3)  # the history shard loads, then the server idles
    await settle([server.process.pid])
    return rss(server.process.pid)


async def wait_for(check: Callable[[], Awaitable[int]], target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (done := await check()) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {target} runs waiting after {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def measure(
    side: Side,
    start: Callable[[int, int], Awaitable[None]],
    waiting: Callable[[], Awaitable[int]],
    snapshot: Callable[[int], Snapshot],
    pids: list[int],
) -> None:
    """Warm up, then start the runs in two halves, a snapshot at rest before and after each."""
    await start(0, WARMUP)
    await wait_for(waiting, WARMUP, 300)
    await settle(pids)
    side.snapshots.append(snapshot(0))
    half = side.runs // 2
    for begin, end in ((0, half), (half, side.runs)):
        began = time.monotonic()
        await start(WARMUP + begin, WARMUP + end)
        await wait_for(waiting, WARMUP + end, 60 + 0.2 * (end - begin))
        side.start_seconds += time.monotonic() - began
        await settle(pids)
        side.snapshots.append(snapshot(end))
        print(f"    {describe_snapshot(side.snapshots[-1])}", flush=True)


JOURNEY_ID = "bench_wait_at_rest"
JOURNEY_YAML = f"""\
id: {JOURNEY_ID}
name: Benchmark - wait a day, at rest
trigger:
  event: Product Added
entry:
  re_entry: always
steps:
  - wait: 24h
"""


async def run_product(tmp: Path, args: argparse.Namespace) -> Side:
    import httpx
    import ingest_throughput as it
    import uvicorn
    from sqlalchemy import func
    from sqlmodel import select

    from orchestrator.api import create_app
    from orchestrator.processes.launch import make_router
    from orchestrator.store.db import session_scope
    from orchestrator.store.tables import JourneyRun

    side = Side("product", args.runs, args.max_cached or SDK_DEFAULT_CACHE)
    data_dir = tmp / "product"
    data_dir.mkdir(mode=0o700)  # the store's folder is private
    async with fresh_server(data_dir / "temporal", args.dynamic_config) as (server, client):
        side.server_rss_fresh = rss(server.process.pid)
        settings, engine, write_key = it.new_store(
            data_dir, {f"{JOURNEY_ID}.yaml": JOURNEY_YAML}, "bench-rest"
        )
        store_file = data_dir / "journeys.db"
        port = it.free_port()
        router = make_router(client, engine, settings)  # as `journeys worker` builds it
        app = create_app(engine, [write_key], client, router.wake)
        http_server = it._Http(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        worker = WorkerProcess(
            {
                "side": "product",
                "address": server.address,
                "data_dir": str(data_dir),
                "task_queue": settings.task_queue,
                "max_cached": args.max_cached,
            },
            data_dir / "worker.log",
        )
        prefix = f"rest-{uuid.uuid4().hex[:6]}-"
        router_task = asyncio.create_task(router.run())
        http_task = asyncio.create_task(http_server.serve())
        try:
            await worker.start()
            while not http_server.started:
                if http_task.done():
                    http_task.result()
                await asyncio.sleep(0.02)
            http = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", auth=(write_key, ""), timeout=120
            )

            async def start(first: int, last: int) -> None:
                async def post(lo: int) -> None:
                    now = datetime.now(UTC).isoformat()
                    calls = [
                        {
                            "type": "track",
                            "userId": f"{prefix}{i}",
                            "event": "Product Added",
                            "properties": {"sku": f"SKU-{i % 97}", "price": 19.99},
                            "messageId": str(uuid.uuid4()),
                            "timestamp": now,
                        }
                        for i in range(lo, min(lo + BATCH, last))
                    ]
                    for _ in range(60):  # 503/429 + Retry-After: a Segment client retries
                        response = await http.post("/v1/batch", json={"batch": calls})
                        if response.status_code not in (429, 503):
                            break
                        side.retries += 1
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    response.raise_for_status()

                lows = iter(range(first, last, BATCH))

                async def lane() -> None:
                    for lo in lows:
                        await post(lo)

                await asyncio.gather(*(lane() for _ in range(HTTP_IN_FLIGHT)))

            def count() -> int:
                with session_scope(engine) as session:
                    query = (
                        select(func.count())
                        .select_from(JourneyRun)
                        .where(
                            JourneyRun.status == "active",
                            JourneyRun.current_step.is_not(None),  # type: ignore[union-attr]
                            JourneyRun.contact_id.startswith(prefix),  # type: ignore[attr-defined]
                        )
                    )
                    return int(session.exec(query).one())

            async def waiting() -> int:
                return await asyncio.to_thread(count)

            def snapshot(n: int) -> Snapshot:
                return Snapshot(
                    n,
                    rss(worker.pid),
                    rss(server.process.pid),
                    sqlite_bytes(server.db_file),
                    sqlite_bytes(store_file),
                    rss(os.getpid()),
                )

            async with http:
                pids = [worker.pid, server.process.pid, os.getpid()]
                await measure(side, start, waiting, snapshot, pids)
        finally:
            await worker.stop()
            side.failed_activities = worker.failed_activities()
            http_server.should_exit = True
            with contextlib.suppress(Exception):
                await http_task
            router.stop()
            router_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await router_task
            engine.dispose()
        if args.restart:
            side.server_rss_restarted = await restarted_rss(server)
    return side


async def run_baseline(tmp: Path, args: argparse.Namespace) -> Side:
    from bench_workflow import BenchWaitWorkflow

    side = Side("baseline", args.runs, args.max_cached or SDK_DEFAULT_CACHE)
    async with fresh_server(tmp / "baseline", args.dynamic_config) as (server, client):
        side.server_rss_fresh = rss(server.process.pid)
        task_queue = f"bench-rest-base-{uuid.uuid4().hex[:6]}"
        prefix = f"rest:{uuid.uuid4().hex[:6]}:"
        worker = WorkerProcess(
            {
                "side": "baseline",
                "address": server.address,
                "task_queue": task_queue,
                "max_cached": args.max_cached,
            },
            tmp / "baseline" / "worker.log",
        )
        try:
            await worker.start()

            async def start(first: int, last: int) -> None:
                ids = iter(range(first, last))

                async def lane() -> None:
                    for i in ids:
                        await client.start_workflow(
                            BenchWaitWorkflow.run,
                            {"contact_id": f"u-{i}", "journey": JOURNEY_ID},
                            id=f"{prefix}{i}",
                            task_queue=task_queue,
                            start_signal="event",
                            start_signal_args=[{"event_id": i, "name": "Product Added"}],
                        )

                await asyncio.gather(*(lane() for _ in range(STARTS_IN_FLIGHT)))

            async def waiting() -> int:
                return await worker.count(prefix)

            def snapshot(n: int) -> Snapshot:
                return Snapshot(
                    n, rss(worker.pid), rss(server.process.pid), sqlite_bytes(server.db_file)
                )

            await measure(side, start, waiting, snapshot, [worker.pid, server.process.pid])
        finally:
            await worker.stop()
            side.failed_activities = worker.failed_activities()
        if args.restart:
            side.server_rss_restarted = await restarted_rss(server)
    return side


# --- reporting ---------------------------------------------------------------------------------


def mib(value: float) -> str:
    return f"{value / MIB:,.0f} MiB"


def kb(value: float) -> str:
    return f"{value / KB:,.1f} KB"


def describe_snapshot(s: Snapshot) -> str:
    line = (
        f"{s.waiting:>7,} waiting: worker {mib(s.worker_rss)}, dev server {mib(s.server_rss)}, "
        f"Temporal SQLite {mib(s.temporal_db)}"
    )
    if s.store_db:
        line += f", our store {mib(s.store_db)}, API + router {mib(s.api_rss)}"
    return line


MEASURES = [  # attribute, label
    ("worker_rss", "worker RSS"),
    ("server_rss", "dev server RSS"),
    ("temporal_db", "Temporal SQLite (db + wal)"),
    ("store_db", "our store (db + wal)"),
    ("api_rss", "API + router process RSS"),
]


def summary(side: Side) -> list[str]:
    lines = [
        f"{side.label}: {side.runs:,} runs waiting, started at {side.rate:.1f}/s "
        f"({side.start_seconds:.1f} s; at this rate 100,000 take "
        f"~{TARGET_RUNS / side.rate / 60:.0f} min)"
        + (f"; {side.retries} batches retried after a 503/429" if side.retries else "")
        + (
            f"; {side.failed_activities} activity attempts failed and were retried"
            " (the worker's log: 'database is locked')"
            if side.failed_activities
            else ""
        )
    ]
    lines.append(f"    {'bytes per waiting run':<30} {'(N - 0) / N':>14} {'(N - N/2) / (N/2)':>18}")
    for attr, label in MEASURES:
        if side.label == "baseline" and attr in ("store_db", "api_rss"):
            continue
        lines.append(f"    {label:<30} {kb(side.per_run(attr)):>14} {kb(side.marginal(attr)):>18}")
    if side.server_rss_fresh is not None:
        lines.append(f"    dev server RSS fresh, before any run: {mib(side.server_rss_fresh)}")
    if side.server_rss_restarted is not None:
        last = side.snapshots[-1]
        lines.append(
            f"    dev server RSS restarted alone with {last.waiting:,} runs waiting: "
            f"{mib(side.server_rss_restarted)} (vs {mib(last.server_rss)} after starting them)"
        )
    return lines


def target_lines(side: Side, quick: bool) -> list[str]:
    lines = []
    for attr, label, target in (
        ("worker_rss", "worker RSS", WORKER_TARGET),
        ("server_rss", "dev server RSS", SERVER_TARGET),
    ):
        value, extrapolated = side.at_target(attr)
        how = (
            f"extrapolated from {side.runs:,} with the marginal {kb(side.marginal(attr))}/run"
            if extrapolated
            else "measured"
        )
        if extrapolated and side.cache_filling(attr):
            how += f"; an upper bound: the sticky cache ({side.cache:,}) was not full at N/2"
        met = "MET" if value <= target else "NOT MET"
        if quick or (extrapolated and side.cache_filling(attr)):
            met += " (cannot say from this run's size)"
        lines.append(
            f"    {side.label} {label} at {TARGET_RUNS:,} waiting: {mib(value)} ({how}); "
            f"target <= {mib(target)}: {met}"
        )
    return lines


def build_report(product: Side | None, baseline: Side | None, args: argparse.Namespace) -> Any:
    from figures import Figure, Report

    report = Report(
        "waiting journeys at rest",
        settings={
            "runs": args.runs,
            "quick": args.quick,
            "max_cached_workflows": args.max_cached or f"SDK default ({SDK_DEFAULT_CACHE})",
            "dynamic_config": args.dynamic_config,
            "dev server": "embedded, SQLite WAL, synchronous=normal",
            "warm-up runs": WARMUP,
            "cpus": os.cpu_count(),
        },
    )
    for attr, label in MEASURES:
        ours = product.per_run(attr) if product else float("nan")
        base = None
        if baseline and attr not in ("store_db", "api_rss"):
            base = baseline.per_run(attr)
        if product is None and base is None:
            continue
        report.add(
            Figure(
                f"{label} per waiting run",
                ours,
                "bytes",
                base,
                better="lower",
                note="(at N - at 0) / N, idle; marginal (N/2 -> N) "
                + (f"ours {product.marginal(attr):,.0f}" if product else "ours -")
                + (
                    f", baseline {baseline.marginal(attr):,.0f}"
                    if base is not None and baseline
                    else ""
                ),
            )
        )
    for attr, label, target in (
        ("worker_rss", "worker RSS", WORKER_TARGET),
        ("server_rss", "dev server RSS", SERVER_TARGET),
    ):
        ours_value, extrapolated = product.at_target(attr) if product else (float("nan"), False)
        base_value = baseline.at_target(attr)[0] if baseline else None
        filling = product is not None and product.cache_filling(attr)
        met = None if args.quick or product is None or filling else ours_value <= target
        report.add(
            Figure(
                f"{label} at {TARGET_RUNS:,} waiting runs"
                + (" (extrapolated)" if extrapolated else ""),
                ours_value / MIB,
                "MiB",
                base_value / MIB if base_value is not None else None,
                better="lower",
                target=f"<= {target // MIB} MiB",
                met=met,
                note=(
                    f"measured at {args.runs:,}, extrapolated with the marginal bytes per run"
                    + (" (an upper bound: the sticky cache was not full at N/2)" if filling else "")
                    if extrapolated
                    else None
                ),
            )
        )
    restarted = [side.server_rss_restarted if side else None for side in (product, baseline)]
    if restarted[0] is not None or restarted[1] is not None:
        report.add(
            Figure(
                f"dev server RSS restarted alone with {args.runs:,} runs waiting",
                restarted[0] / MIB if restarted[0] is not None else float("nan"),
                "MiB",
                restarted[1] / MIB if restarted[1] is not None else None,
                better="lower",
                note="what the waiting runs hold once the burst of starts is over",
            )
        )
    for side in (product, baseline):
        if side is None:
            continue
        report.add(
            Figure(
                f"{side.label}: runs started and waiting /s",
                side.rate,
                "runs/s",
                better="higher",
                note=f"{side.runs:,} runs, {side.start_seconds:.1f} s",
            )
        )
        report.notes.extend(summary(side))
    report.notes.append(
        "`journeys worker` does not expose the sticky cache size (max_cached_workflows): "
        "build_worker(**options) takes it in code only."
    )
    return report


async def main(args: argparse.Namespace) -> None:
    print(
        f"waiting journeys at rest: {args.runs:,} runs, warm-up {WARMUP}, "
        f"max_cached_workflows {args.max_cached or f'SDK default ({SDK_DEFAULT_CACHE})'}, "
        f"dynamic config {args.dynamic_config or 'none'}, {os.cpu_count()} CPUs",
        flush=True,
    )
    product = baseline = None
    with tempfile.TemporaryDirectory(prefix="journeys-bench-rest-") as tmp:
        if args.only in (None, "product"):
            print("product (POST /v1/batch -> store -> router -> JourneyWorkflow)...", flush=True)
            try:
                product = await run_product(Path(tmp), args)
            except Exception:
                traceback.print_exc()
        if args.only in (None, "baseline"):
            print("baseline (bare signal-with-start of BenchWaitWorkflow)...", flush=True)
            try:
                baseline = await run_baseline(Path(tmp), args)
            except Exception:
                traceback.print_exc()
    print()
    for side in (product, baseline):
        if side is not None:
            print("\n".join(summary(side)))
    print("targets (issue: at 100,000 waiting runs on the embedded default):")
    for side in (product, baseline):
        if side is not None:
            print("\n".join(target_lines(side, args.quick)))
    if product and baseline:
        for attr, label in MEASURES[:3]:
            ours, base = product.per_run(attr), baseline.per_run(attr)
            print(
                f"    {label} per waiting run: ours {kb(ours)}, baseline {kb(base)}"
                + (f" (ours / baseline {ours / base:.2f})" if base > 0 else "")
            )
    if product or baseline:
        build_report(product, baseline, args).write(args.json)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="N (default 10,000; 500 with --quick)")
    parser.add_argument("--quick", action="store_true", help="500 runs, 1-2 minutes")
    parser.add_argument("--json", help="write the figures (benchmarks/figures.py) to this file")
    parser.add_argument(
        "--dynamic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dev server dynamic config value for both sides (repeatable)",
    )
    parser.add_argument(
        "--max-cached",
        type=int,
        help=f"both workers' max_cached_workflows (default: the SDK's, {SDK_DEFAULT_CACHE})",
    )
    parser.add_argument("--only", choices=("product", "baseline"), help="one side only")
    parser.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="skip restarting the dev server to read its RSS at rest",
    )
    parser.add_argument("--worker-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 500 if args.quick else 10_000
    args.runs = max(args.runs, 2)
    return args


def quiet_sdk_logs() -> None:
    """The SDK core's warnings off the report (as ingest_throughput's, without its imports)."""
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    filters = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filters))))


if __name__ == "__main__":
    arguments = parse_args()
    quiet_sdk_logs()
    try:
        if arguments.worker_child:
            asyncio.run(worker_child(json.loads(arguments.worker_child)))
        else:
            import ingest_throughput as it

            it.count_unraisable()  # runs torn down at worker shutdown: counted, not printed
            asyncio.run(main(arguments))
    except Exception:
        traceback.print_exc()
    sys.exit(0)
