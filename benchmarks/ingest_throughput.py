"""Ingest throughput: our API + router + worker against bare Temporal, on one dev server.

    python benchmarks/ingest_throughput.py [--events N] [--concurrency C]
                                           [--synchronous normal|full] [--compare-synchronous]
                                           [--rounds R] [--bytecode-cache] [--only SIDE]
                                           [--trail-cost]

One fresh embedded dev server (`DevServer`: SQLite WAL, a temporary data dir)
and one fresh SQLite store. Two measurements, one after the other:

baseline  N distinct workflow ids of a trivial workflow (`bench_workflow`, waits
          24 h) started with signal-with-start (`start_workflow(start_signal=...)`),
          C in flight, by a client in the same process as a worker for it.
          Done when the worker has run the first workflow task of all N runs.
product   N `track "Product Added"` calls for N distinct users, posted over HTTP
          (C in flight, Basic write key) to the real API (uvicorn serving
          `create_app`, the router running, a `build_worker` worker running
          `JourneyWorkflow`, console channel to a null stream), for a journey
          whose first step is `wait: 24h`. Done when every run is recorded
          `active` in journey_runs: started, first workflow task run, and the
          entry activity committed - the baseline's end point plus our bookkeeping.
          The HTTP client runs in a child process, as a storefront would.

Both rates are the events acknowledged (N, less any refused or timed out) / (time from
the first request to done, when each of them has reached its run); the ratio is
product / baseline, target >= 0.5. Also printed: request ack latency (HTTP for
the product, start_workflow for the baseline), when each stage finished, and CPU
ms per event of the Temporal server, this process and the HTTP client. With
--rounds R the pair is measured R times on the same server and the median ratio
counts (the machine is shared: compare within one run). --compare-synchronous
measures only the baseline, on a fresh server with synchronous=normal then full.
--trail-cost measures only the product, R rounds (default 3) on one server, each round
once with the run trail and its counters recorded (the normal code) and once with them
switched off in this process, alternating which goes first; it prints both rates, the
median ratio off / on and whether recording costs <= 10 % of the throughput.
Results and their reading: docs/benchmarks.md. Exit code 0 always.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # bench_workflow / bench_probe, also when imported
    sys.path.insert(0, str(HERE))

import bench_probe  # noqa: E402
import uvicorn  # noqa: E402
from bench_workflow import BenchWaitWorkflow  # noqa: E402
from figures import Figure, Report  # noqa: E402
from sqlalchemy import Engine, func, text  # noqa: E402
from sqlmodel import select  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter  # noqa: E402
from temporalio.worker import PollerBehaviorAutoscaling, Worker  # noqa: E402

from channels.base import Channel  # noqa: E402
from channels.console import ConsoleChannel  # noqa: E402
from orchestrator.api import create_app  # noqa: E402
from orchestrator.deployment.deploy import deploy  # noqa: E402
from orchestrator.processes.launch import make_router, stop_router  # noqa: E402
from orchestrator.processes.temporal_server import DevServer  # noqa: E402
from orchestrator.processes.worker import build_worker  # noqa: E402
from orchestrator.services.links import MessageLinks  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url  # noqa: E402
from orchestrator.store.tables import Event, JourneyRun  # noqa: E402

TARGET_RATIO = 0.9  # issue 17: within 10 % of bare signal-with-start
TARGET_ACK_P99_MS = 100
TARGET_TRAIL_COST = 0.10  # recording the trail may cost at most 10 % of the throughput
JOURNEY_ID = "bench_wait"
JOURNEY_YAML = f"""\
id: {JOURNEY_ID}
name: Benchmark - wait a day
trigger:
  event: Product Added
entry:
  re_entry: always
steps:
  - wait: 24h
"""
POLL = 0.02  # seconds between checks for "done"


@dataclass
class Result:
    label: str
    events: int
    concurrency: int
    seconds: float  # first request -> all done
    accepted_seconds: float  # first request -> last request acknowledged
    latencies: list[float]  # per request, seconds
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds after start
    errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the window
    statuses: dict[str, int] = field(default_factory=dict)  # HTTP status -> responses
    # Events acknowledged, each through to its run by `seconds`; None: all of them.
    acknowledged: int | None = None

    @property
    def done(self) -> int:
        """The events the rates count: a refused or timed-out one was not ingested."""
        return self.events if self.acknowledged is None else self.acknowledged

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    @property
    def accept_rate(self) -> float:
        return self.done / self.accepted_seconds

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def not_acknowledged(requests: int, statuses: Mapping[str, int]) -> int:
    """Requests without a 2xx answer: a non-2xx status, or none at all (a timeout, a reset
    connection), which `statuses` cannot count because no status came back."""
    return requests - sum(n for status, n in statuses.items() if status.startswith("2"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


class CpuMeter:
    """CPU seconds used by the Temporal server and by this process (all threads)."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.started = self._now()

    def _now(self) -> tuple[float, float]:
        return self._server(), time.process_time()

    def _server(self) -> float:
        try:  # Linux: utime + stime, in clock ticks
            fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return float("nan")

    def used(self) -> dict[str, float]:
        server, own = self._now()
        return {
            "Temporal server": server - self.started[0],
            "benchmark process": own - self.started[1],
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def drive(
    count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, float, list[float], int]:
    """Call `one(i)` for i in 0..count-1 with `concurrency` in flight.

    Returns (start, last ack, latencies, errors), times from time.monotonic().
    """
    latencies: list[float] = []
    errors = 0
    indexes = iter(range(count))

    async def lane() -> None:
        nonlocal errors
        for i in indexes:
            began = time.monotonic()
            try:
                await one(i)
            except Exception as exc:
                errors += 1
                if errors <= 3:
                    print(f"  request {i} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            latencies.append(time.monotonic() - began)

    start = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
    return start, time.monotonic(), latencies, errors


async def wait_until(check: Callable[[], Awaitable[int]], target: int, timeout: float) -> float:
    """Poll `check()` until it reaches `target`; returns the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while True:
        if await check() >= target:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await check()} of {target} done after {timeout:.0f}s")
        await asyncio.sleep(POLL)


# --- baseline: bare Temporal ----------------------------------------------------------


def worker_options(pollers: str) -> dict[str, Any]:
    """Worker options applied alike to the baseline's worker and the product's."""
    if pollers == "autoscaling":
        return {
            "workflow_task_poller_behavior": PollerBehaviorAutoscaling(),
            "activity_task_poller_behavior": PollerBehaviorAutoscaling(),
        }
    return {}


async def run_baseline(
    client: Client,
    events: int,
    concurrency: int,
    warmup: int,
    options: dict[str, Any],
    server_pid: int | None = None,
) -> Result:
    task_queue = f"bench-baseline-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:6]

    def starter(prefix: str) -> Callable[[int], Awaitable[None]]:
        async def one(i: int) -> None:
            signal = {"event_id": i, "name": "Product Added"}
            await client.start_workflow(
                BenchWaitWorkflow.run,
                {"contact_id": f"u-{i}", "journey": JOURNEY_ID},
                id=f"{prefix}{i}",
                task_queue=task_queue,
                start_signal="event",
                start_signal_args=[signal],
            )

        return one

    async with Worker(client, task_queue=task_queue, workflows=[BenchWaitWorkflow], **options):
        if warmup:
            prefix = f"bench:{tag}:warm:"
            await drive(warmup, concurrency, starter(prefix))
            await wait_until(probe_count(prefix), warmup, 120)
        prefix = f"bench:{tag}:run:"
        meter = CpuMeter(server_pid)
        start, acked, latencies, errors = await drive(events, concurrency, starter(prefix))
        await wait_until(probe_count(prefix), events - errors, 600)
        cpu = meter.used()
        done = bench_probe.count(prefix)[1]
    return Result(
        "baseline",
        events,
        concurrency,
        done - start,
        acked - start,
        latencies,
        {"last start accepted": acked - start, "last first workflow task run": done - start},
        errors,
        cpu,
        acknowledged=events - errors,
    )


def probe_count(prefix: str) -> Callable[[], Awaitable[int]]:
    async def check() -> int:
        return bench_probe.count(prefix)[0]

    return check


# --- product: our API, router and worker -----------------------------------------------


def new_store(
    data_dir: Path,
    journeys: dict[str, str],
    queue: str,
    templates_dir: Path = ROOT / "templates",
    store_url: str | None = None,
    **options: Any,
) -> tuple[Settings, Engine, str]:
    """A fresh store with `journeys` (file name -> YAML) deployed, as `journeys dev` does
    it: (settings with a task queue of its own, engine, a write key)."""
    journeys_dir = data_dir / "journeys"
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the store's folder is private
    journeys_dir.mkdir(parents=True, exist_ok=True)
    for name, yaml in journeys.items():
        (journeys_dir / name).write_text(yaml)
    settings = Settings(
        data_dir=data_dir,
        journeys_dir=journeys_dir,
        templates_dir=templates_dir,
        task_queue=f"{queue}-{uuid.uuid4().hex[:6]}",
        **options,
    )
    engine = make_engine(store_url or sqlite_url(data_dir))
    migrate(engine)
    deploy(engine, settings.journeys_dir, settings.templates_dir)
    return settings, engine, f"bench_{uuid.uuid4().hex}"


class _Http(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_product(
    client: Client,
    data_dir: Path,
    events: int,
    concurrency: int,
    warmup: int,
    options: dict[str, Any],
    server_pid: int | None = None,
    batch: int = 0,
) -> Result:
    settings, engine, write_key = new_store(
        data_dir, {f"{JOURNEY_ID}.yaml": JOURNEY_YAML}, "bench-journeys"
    )
    tag = uuid.uuid4().hex[:6]
    try:
        async with running_stack(client, engine, settings, write_key, **options) as url:
            if warmup:
                # Contact ids are new on every run: a run still waiting from an earlier
                # round on this server would take the trigger as a signal instead.
                warm = f"{tag}-warm-"
                await _load(url, write_key, warm, warmup, concurrency)
                await wait_until(_active_count(engine, warm), warmup, 120)
            return await _measure_product(
                engine, url, write_key, f"{tag}-run-", events, concurrency, server_pid, batch
            )
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def running_stack(
    client: Client,
    engine: Engine,
    settings: Settings,
    write_key: str,
    adapters: dict[str, Channel] | None = None,
    **options: Any,
) -> AsyncIterator[str]:
    """Our API (uvicorn), router and worker on `engine`, as `journeys dev` runs them in one
    process; yields the API's URL. Channels `adapters` leaves out print to a null stream;
    `options` go to the journeys worker. On exit the API stops, then the router (its sweep
    finished), then the worker."""
    port = free_port()
    router = make_router(client, engine, settings)  # as `journeys dev` builds it
    app = create_app(
        engine, [write_key], client, router.wake, MessageLinks.from_settings(settings), settings
    )
    http = _Http(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    with open(os.devnull, "w") as null:
        console = ConsoleChannel(stream=null)
        channels = {"email": console, "push": console, "sms": console, **(adapters or {})}
        async with build_worker(client, engine, settings, channels, **options):
            router_task = asyncio.create_task(router.run())
            http_task = asyncio.create_task(http.serve())
            while not http.started:
                if http_task.done():
                    http_task.result()
                await asyncio.sleep(0.02)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                http.should_exit = True
                await http_task
                await stop_router(router, router_task)


async def _measure_product(
    engine: Engine,
    url: str,
    write_key: str,
    prefix: str,
    events: int,
    concurrency: int,
    server_pid: int | None,
    batch: int = 0,
) -> Result:
    meter = CpuMeter(server_pid)
    load = asyncio.create_task(_load(url, write_key, prefix, events, concurrency, batch))
    check = _active_count(engine, prefix)
    while not load.done() and await check() < events:
        await asyncio.sleep(POLL)
    report = await load
    # Done when every acknowledged event reached its run; one refused or timed out may
    # have been stored all the same, and its run is not counted in their place.
    refused = [f"{prefix}{n}" for n in report["unacknowledged"]]
    acknowledged = events - len(refused)
    done = await wait_until(_active_count(engine, prefix, refused), acknowledged, 600)
    cpu = {**meter.used(), "HTTP client (child process)": report["cpu"]}
    start = report["start"]
    # When each stage finished for the last event, from the store's own timestamps.
    wall = time.time() - time.monotonic()
    stages = {"last HTTP ack": report["acked"] - start}
    for name, moment in (await asyncio.to_thread(_stage_times, engine, prefix)).items():
        if moment is not None:
            stages[name] = moment.timestamp() - wall - start
    stages["all runs seen active (poll)"] = done - start
    return Result(
        "product" if not batch else f"product, /v1/batch of {batch}",
        events,
        concurrency,
        done - start,
        report["acked"] - start,
        report["latencies"],
        stages,
        report["errors"],
        cpu,
        report["statuses"],
        acknowledged,
    )


def _active_count(
    engine: Engine, prefix: str, leave_out: Sequence[str] = ()
) -> Callable[[], Awaitable[int]]:
    def count() -> int:
        with session_scope(engine) as session:
            query = (
                select(func.count())
                .select_from(JourneyRun)
                .where(JourneyRun.status == "active", JourneyRun.contact_id.startswith(prefix))  # type: ignore[attr-defined]
            )
            if leave_out:
                query = query.where(JourneyRun.contact_id.not_in(leave_out))  # type: ignore[attr-defined]
            return int(session.exec(query).one())

    async def check() -> int:
        return await asyncio.to_thread(count)

    return check


def _stage_times(engine: Engine, prefix: str) -> dict[str, datetime | None]:
    with session_scope(engine) as session:
        ev = Event.contact_id.startswith(prefix)  # type: ignore[attr-defined]
        run = JourneyRun.contact_id.startswith(prefix)  # type: ignore[attr-defined]
        return {
            "last event committed": session.exec(
                select(func.max(Event.received_at)).where(ev)
            ).one(),
            "last event routed": session.exec(select(func.max(Event.routed_at)).where(ev)).one(),
            "last run entered (workflow time)": session.exec(
                select(func.max(JourneyRun.entered_at)).where(run)
            ).one(),
            "last run at its wait step": session.exec(
                select(func.max(JourneyRun.updated_at)).where(
                    run,
                    JourneyRun.current_step.is_not(None),  # type: ignore[union-attr]
                )
            ).one(),
        }


async def _load(
    url: str, write_key: str, prefix: str, events: int, concurrency: int, batch: int = 0
) -> dict[str, Any]:
    """Post the track calls from a child process (the storefront), return its report."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--loadgen",
        json.dumps(
            {
                "url": url,
                "key": write_key,
                "prefix": prefix,
                "events": events,
                "concurrency": concurrency,
                "batch": batch,
            }
        ),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode:
        raise RuntimeError(f"load generator exited with {child.returncode}")
    return json.loads(out)


async def loadgen(spec: dict[str, Any]) -> None:
    """The child process: C lanes of httpx posts; prints a JSON report on stdout."""
    limits = httpx.Limits(max_connections=spec["concurrency"], max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=spec["url"], auth=(spec["key"], ""), limits=limits, timeout=60
    ) as http:
        # Open the connections before the clock starts.
        await asyncio.gather(*(http.get("/health") for _ in range(spec["concurrency"])))

        def call(i: int) -> dict[str, Any]:
            return {
                "type": "track",
                "userId": f"{spec['prefix']}{i}",
                "event": "Product Added",
                "properties": {"sku": f"SKU-{i % 97}", "price": 19.99, "quantity": 1},
                "messageId": str(uuid.uuid4()),
                "timestamp": datetime.now(UTC).isoformat(),
            }

        size = spec.get("batch") or 0
        statuses: Counter[int] = Counter()
        refused: list[int] = []  # events whose request had no 2xx answer

        async def one(i: int) -> None:
            numbers = range(i * size, min(i * size + size, spec["events"])) if size else [i]
            try:
                if size:
                    calls = [call(n) for n in numbers]
                    response = await http.post("/v1/batch", json={"batch": calls})
                else:
                    response = await http.post("/v1/track", json=call(i))
                statuses[response.status_code] += 1
                response.raise_for_status()
            except Exception:
                refused.extend(numbers)
                raise

        requests = -(-spec["events"] // size) if size else spec["events"]
        cpu = time.process_time()
        start, acked, latencies, errors = await drive(requests, spec["concurrency"], one)
        cpu = time.process_time() - cpu
    report = {
        "start": start,
        "acked": acked,
        "latencies": latencies,
        "errors": errors,
        "cpu": cpu,
        "statuses": {str(k): v for k, v in statuses.items()},
        "unacknowledged": sorted(refused),
    }
    json.dump(report, sys.stdout)


# --- running and reporting ----------------------------------------------------------------


@dataclass
class _DevServer(DevServer):
    """`DevServer` plus dynamic config values, for experiments (`--dynamic-config`)."""

    dynamic_config: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        extra = [arg for value in self.dynamic_config for arg in ("--dynamic-config-value", value)]
        return [*super().command(), *extra]


@contextlib.asynccontextmanager
async def dev_server(synchronous: str, data_dir: Path, dynamic_config: list[str]) -> Any:
    server = _DevServer(
        db_file=data_dir / "temporal.db",
        port=free_port(),
        ui_port=free_port(),
        synchronous=synchronous,
        log_file=data_dir / "temporal.log",
        dynamic_config=dynamic_config,
    )
    client = await server.start()
    try:
        yield client, (server.process.pid if server.process else None)
    finally:
        server.stop()


def describe(result: Result) -> str:
    lines = [
        f"{result.label}: {result.rate:7.1f} events/s  ({result.done}"
        + (f" acknowledged of {result.events}" if result.done != result.events else "")
        + f" in {result.seconds:.2f} s)"
        f"; accepted {result.accept_rate:7.1f}/s"
        f"; ack latency p50 {result.pct(0.5):.1f} ms, p99 {result.pct(0.99):.1f} ms"
        + (f"; {result.errors} errors" if result.errors else "")
    ]
    for stage, seconds in result.stages.items():
        lines.append(f"    {stage:<34} {seconds:7.2f} s")
    if result.cpu:
        per_event = ", ".join(
            f"{name} {seconds * 1000 / result.events:.1f}" for name, seconds in result.cpu.items()
        )
        lines.append(f"    CPU ms per event: {per_event}")
    return "\n".join(lines)


def quiet_sdk_logs() -> None:
    """Keep the SDK core's warnings (e.g. TMPRL1104 "workflow task took > 5 s") off the report.

    Must run before the first client connects; `--verbose` skips it.
    """
    filters = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filters))))


def count_unraisable() -> Counter[str]:
    """Count "Exception ignored" reports (runs torn down at worker shutdown) instead of
    printing a traceback for each; they are summarised at the end."""
    seen: Counter[str] = Counter()

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        seen[f"{type(exc).__name__}: {exc}"] += 1

    sys.unraisablehook = hook
    return seen


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def compare_synchronous(args: argparse.Namespace, tmp: Path, options: dict[str, Any]) -> None:
    rates: dict[str, list[float]] = {"normal": [], "full": []}
    for round_ in range(args.rounds):
        for synchronous in ("normal", "full"):
            data_dir = tmp / f"{synchronous}-{round_}"
            async with dev_server(synchronous, data_dir, args.dynamic_config) as (client, pid):
                print(f"baseline on synchronous={synchronous}...", flush=True)
                result = await run_baseline(
                    client, args.events, args.concurrency, args.warmup, options, pid
                )
            result.label = f"baseline synchronous={synchronous}"
            print(describe(result), flush=True)
            rates[synchronous].append(result.rate)
    normal, full = median(rates["normal"]), median(rates["full"])
    print(
        f"synchronous=normal {normal:.1f}/s, synchronous=full {full:.1f}/s"
        f" (median of {args.rounds}); full / normal: {full / normal:.2f}"
    )


async def compare_product(
    args: argparse.Namespace, tmp: Path, options: dict[str, Any]
) -> Report | None:
    ratios, cpu_ratios = [], []
    rounds: list[dict[str, Result]] = []
    async with dev_server(args.synchronous, tmp, args.dynamic_config) as (client, pid):
        print(f"Temporal dev server: SQLite WAL, synchronous={args.synchronous}", flush=True)
        for round_ in range(args.rounds):
            if args.rounds > 1:
                print(f"--- round {round_ + 1} of {args.rounds}", flush=True)
            found: dict[str, Result] = {}
            if args.only in (None, "baseline"):
                print("baseline (bare signal-with-start)...", flush=True)
                found["baseline"] = await run_baseline(
                    client, args.events, args.concurrency, args.warmup, options, pid
                )
                print(describe(found["baseline"]), flush=True)
            if args.only in (None, "product"):
                print("product (HTTP API -> store -> router -> JourneyWorkflow)...", flush=True)
                found["product"] = await run_product(
                    client,
                    tmp / f"store-{round_}",
                    args.events,
                    args.concurrency,
                    args.warmup,
                    options,
                    pid,
                )
                print(describe(found["product"]), flush=True)
            if args.batch and args.only in (None, "product"):
                lanes = max(1, args.concurrency // 10)
                print(f"product, /v1/batch of {args.batch}, {lanes} in flight...", flush=True)
                found["batch"] = await run_product(
                    client,
                    tmp / f"store-{round_}-batch",
                    args.events,
                    lanes,
                    args.warmup,
                    options,
                    pid,
                    batch=args.batch,
                )
                print(describe(found["batch"]), flush=True)
            rounds.append(found)
            if "baseline" not in found or "product" not in found:
                continue
            baseline, product = found["baseline"], found["product"]
            ratios.append(product.rate / baseline.rate)
            cpu_ratios.append(server_and_worker_cpu(baseline) / server_and_worker_cpu(product))
            print(
                f"ratio product/baseline: {ratios[-1]:.2f}"
                f"   (by CPU per event, Temporal server + our process: {cpu_ratios[-1]:.2f})",
                flush=True,
            )
    if ratios:
        ratio = median(ratios)
        met = "MET" if ratio >= TARGET_RATIO else "NOT MET"
        label = f"median of {len(ratios)} rounds" if len(ratios) > 1 else "1 round"
        print(
            f"ratio product/baseline: {ratio:.2f} ({label})   target ratio >= {TARGET_RATIO}: {met}"
        )
    return report(args, rounds)


def report(args: argparse.Namespace, rounds: list[dict[str, Result]]) -> Report:
    """The suite's figures: the median round's (by the single-event ratio)."""
    out = Report(
        "events -> journey starts",
        settings={
            "events": args.events,
            "concurrency": args.concurrency,
            "batch": args.batch,
            "rounds": args.rounds,
            "dev server": f"SQLite WAL, synchronous={args.synchronous}",
            "store": "SQLite",
        },
    )
    complete = [r for r in rounds if "baseline" in r and "product" in r]
    if not complete:
        return out
    complete.sort(key=lambda r: r["product"].rate / r["baseline"].rate)
    found = complete[len(complete) // 2]
    baseline, product = found["baseline"], found["product"]
    out.add(
        Figure(
            "single track calls -> runs waiting, events/s",
            product.rate,
            "events/s",
            baseline.rate,
            target=f"ratio >= {TARGET_RATIO}",
            met=product.rate / baseline.rate >= TARGET_RATIO,
            note="baseline: bare signal-with-start, same concurrency",
        )
    )
    if "batch" in found:
        batch = found["batch"]
        out.add(
            Figure(
                f"/v1/batch of {args.batch} -> runs waiting, events/s",
                batch.rate,
                "events/s",
                product.rate,
                target="faster than single calls (ratio > 1)",
                met=batch.rate > product.rate,
                note="baseline: our single track calls in the same run",
            )
        )
    out.add(
        Figure(
            f"API ack p99, {args.concurrency} in flight",
            product.pct(0.99),
            "ms",
            baseline.pct(0.99),
            better="lower",
            target=f"p99 <= {TARGET_ACK_P99_MS} ms",
            met=product.pct(0.99) <= TARGET_ACK_P99_MS,
            note="baseline: start_workflow (signal-with-start) returning",
        )
    )
    out.add(
        Figure(
            f"API ack p50, {args.concurrency} in flight",
            product.pct(0.5),
            "ms",
            baseline.pct(0.5),
            better="lower",
        )
    )
    failed = not_acknowledged(product.events, product.statuses)  # one event per request
    unanswered = product.events - sum(product.statuses.values())
    out.add(
        Figure(
            f"requests not acknowledged (503 etc.) of {args.events}",
            failed,
            "requests",
            float(baseline.errors),
            better="lower",
            target="0",
            met=failed == 0,
            note=", ".join(
                [f"HTTP {k}: {v}" for k, v in sorted(product.statuses.items())]
                + ([f"no answer (timeout, reset): {unanswered}"] if unanswered else [])
            ),
        )
    )
    for name, label in (("benchmark process", "our process"), ("Temporal server", "Temporal")):
        out.add(
            Figure(
                f"CPU ms per event, {label}",
                product.cpu.get(name, float("nan")) * 1000 / product.events,
                "ms",
                baseline.cpu.get(name, float("nan")) * 1000 / baseline.events,
                better="lower",
            )
        )
    return out


def server_and_worker_cpu(result: Result) -> float:
    return result.cpu.get("Temporal server", 0.0) + result.cpu.get("benchmark process", 0.0)


# --- the trail's cost ------------------------------------------------------------------


@contextlib.contextmanager
def trail_off() -> Iterator[None]:
    """Record no trail rows and bump no counters in this process (the worker runs here):
    `trail.record` and `trail.record_refusal` answer True without writing, `counts.bump`
    does nothing, also where a module imported them by name. Restored on exit."""
    from orchestrator.activities import runs
    from orchestrator.analytics import attribution, counts, message_counts, trail

    def record(*args: Any, **kwargs: Any) -> bool:
        return True

    def bump(*args: Any, **kwargs: Any) -> None:
        return None

    replacements = {
        id(trail.record): record,
        id(trail.record_refusal): record,
        id(counts.bump): bump,
    }
    modules = [runs, attribution, counts, message_counts, trail]
    modules += [m for name, m in sys.modules.items() if name.startswith("orchestrator.")]
    saved: list[tuple[Any, str, Any]] = []
    for module in dict.fromkeys(modules):  # once each, in order
        for name, value in list(vars(module).items()):
            if id(value) in replacements:
                saved.append((module, name, value))
                setattr(module, name, replacements[id(value)])
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def reporting_rows(data_dir: Path) -> tuple[int, int]:
    """(trail rows, counter rows) in the product's store, to show what a round wrote."""
    engine = make_engine(sqlite_url(data_dir))
    try:
        with engine.connect() as connection:
            trail_rows = connection.execute(text("SELECT count(*) FROM run_trail")).scalar()
            counters = connection.execute(text("SELECT count(*) FROM journey_counts")).scalar()
            return int(trail_rows or 0), int(counters or 0)
    finally:
        engine.dispose()


async def compare_trail(args: argparse.Namespace, tmp: Path, options: dict[str, Any]) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    ratios = []
    async with dev_server(args.synchronous, tmp, args.dynamic_config) as (client, pid):
        print(f"Temporal dev server: SQLite WAL, synchronous={args.synchronous}", flush=True)
        for round_ in range(args.rounds):
            print(f"--- round {round_ + 1} of {args.rounds}", flush=True)
            # ABBA: on first in odd rounds, off first in even ones, so drift cancels out.
            order = (True, False) if round_ % 2 == 0 else (False, True)
            found: dict[bool, Result] = {}
            for on in order:
                label = "trail on" if on else "trail off"
                print(f"product, {label}...", flush=True)
                data_dir = tmp / f"store-{round_}-{'on' if on else 'off'}"
                with contextlib.nullcontext() if on else trail_off():
                    result = await run_product(
                        client,
                        data_dir,
                        args.events,
                        args.concurrency,
                        args.warmup,
                        options,
                        pid,
                    )
                result.label = f"product, {label}"
                print(describe(result), flush=True)
                trail_rows, counter_rows = await asyncio.to_thread(reporting_rows, data_dir)
                print(f"    written: {trail_rows} trail rows, {counter_rows} counter rows")
                found[on] = result
                rates[on].append(result.rate)
                cpu[on].append(server_and_worker_cpu(result) * 1000 / result.events)
            ratios.append(found[False].rate / found[True].rate)
            print(f"ratio off/on: {ratios[-1]:.3f}", flush=True)
    ratio = median(ratios)
    cost = 1 - 1 / ratio
    met = "MET" if cost <= TARGET_TRAIL_COST else "NOT MET"
    cpu_on, cpu_off = median(cpu[True]), median(cpu[False])
    print(
        f"trail on {median(rates[True]):.1f} events/s, trail off {median(rates[False]):.1f} "
        f"events/s (medians of {args.rounds}); ratio off/on per round "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + f", median {ratio:.3f}"
    )
    print(
        f"CPU ms per event (Temporal server + our process): on {cpu_on:.1f}, off {cpu_off:.1f}"
        f" ({(cpu_on - cpu_off) / cpu_on:+.1%} of on)"
    )
    print(
        f"trail cost: {cost:.1%} of ingest-to-start throughput   "
        f"target <= {TARGET_TRAIL_COST:.0%}: {met}"
    )


# --- the API alone: group commit on and off ------------------------------------------


async def api_alone(data_dir: Path, events: int, concurrency: int, group_commit: bool) -> Result:
    """The API storing `track` calls with no router or worker running: what one
    `journeys api` process costs per call, and its acknowledgement latency."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = make_engine(sqlite_url(data_dir))
    migrate(engine)
    write_key = f"bench_{uuid.uuid4().hex}"
    port = free_port()
    settings = Settings(data_dir=data_dir, group_commit=group_commit)
    app = create_app(engine, [write_key], None, settings=settings)
    http = _Http(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(http.serve())
    try:
        while not http.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        await _load(url, write_key, "warm-", 50, concurrency)
        cpu = time.process_time()
        report = await _load(url, write_key, "run-", events, concurrency)
        used = time.process_time() - cpu
    finally:
        http.should_exit = True
        await task
        engine.dispose()
    label = f"API alone, group commit {'on' if group_commit else 'off'}"
    return Result(
        label,
        events,
        concurrency,
        report["acked"] - report["start"],
        report["acked"] - report["start"],
        report["latencies"],
        {},
        report["errors"],
        {"benchmark process": used, "HTTP client (child process)": report["cpu"]},
        report["statuses"],
        events - len(report["unacknowledged"]),
    )


async def compare_group_commit(args: argparse.Namespace, tmp: Path) -> None:
    """`--api-only`: the API alone, group commit off and on, alternating (ABBA) rounds."""
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for on in order:
            result = await api_alone(tmp / f"api-{round_}-{on}", args.events, args.concurrency, on)
            print(describe(result), flush=True)


async def main(args: argparse.Namespace) -> None:
    print(
        f"ingest throughput: {args.events} events, {args.concurrency} in flight, "
        f"warm-up {args.warmup}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}",
        flush=True,
    )
    ignored = count_unraisable()
    options = worker_options(args.pollers)
    with tempfile.TemporaryDirectory(prefix="journeys-bench-") as tmp:
        if args.bytecode_cache and sys.dont_write_bytecode:
            # The sandbox re-imports a workflow's module for every new run: without .pyc
            # files (PYTHONDONTWRITEBYTECODE with a source checkout) it compiles it each time.
            sys.pycache_prefix = str(Path(tmp) / "pycache")
            sys.dont_write_bytecode = False
        print(
            "bytecode cache: "
            + ("off (PYTHONDONTWRITEBYTECODE)" if sys.dont_write_bytecode else "on"),
            flush=True,
        )
        if args.compare_synchronous:
            await compare_synchronous(args, Path(tmp), options)
        elif args.trail_cost:
            await compare_trail(args, Path(tmp), options)
        elif args.api_only:
            await compare_group_commit(args, Path(tmp))
        else:
            found = await compare_product(args, Path(tmp), options)
            if found is not None:
                found.notes += [
                    f"{n} x 'Exception ignored' at worker shutdown: {m}" for m, n in ignored.items()
                ]
                found.write(args.json)
    for message, count in ignored.items():
        print(f"note: {count} x 'Exception ignored' at worker shutdown: {message}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="N (default 1000)")
    parser.add_argument("--concurrency", type=int, default=50, help="C (default 50)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured runs first")
    parser.add_argument(
        "--synchronous", choices=("normal", "full"), default="normal", help="dev server SQLite"
    )
    parser.add_argument(
        "--compare-synchronous",
        action="store_true",
        help="run only the baseline, on synchronous=normal then full",
    )
    parser.add_argument(
        "--only", choices=("baseline", "product"), help="run one side only (no ratio)"
    )
    parser.add_argument(
        "--pollers",
        choices=("default", "autoscaling"),
        default="default",
        help="task poller behaviour of both workers (default: the SDK's, as build_worker)",
    )
    parser.add_argument(
        "--dynamic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra dev server dynamic config value (repeatable), for experiments",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="repeat the comparison; the median ratio counts (default 1, 3 with --trail-cost)",
    )
    parser.add_argument(
        "--trail-cost",
        action="store_true",
        help="product only, trail recorded and not, alternately: what the trail costs",
    )
    parser.add_argument(
        "--bytecode-cache",
        action="store_true",
        help="with PYTHONDONTWRITEBYTECODE set, cache .pyc files in the temp dir anyway",
    )
    parser.add_argument(
        "--api-only",
        action="store_true",
        help="the API alone (no router, no worker), group commit off and on, per round",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="also post the events as /v1/batch calls of this many (0: skip; default 100)",
    )
    parser.add_argument("--quick", action="store_true", help="200 events, warm-up 10 (CI-sized)")
    parser.add_argument("--json", metavar="FILE", help="write the figures (benchmarks/figures.py)")
    parser.add_argument("--verbose", action="store_true", help="keep the SDK's warnings")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.trail_cost else 1
    if args.quick:
        args.events, args.warmup = min(args.events, 200), min(args.warmup, 10)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loadgen:
        asyncio.run(loadgen(json.loads(arguments.loadgen)))
    else:
        if not arguments.verbose:
            quiet_sdk_logs()
        asyncio.run(main(arguments))
    sys.exit(0)
