"""Ingest throughput: our API + router + worker against bare Temporal, on one dev server.

    python benchmarks/ingest_throughput.py [--events N] [--concurrency C]
                                           [--synchronous normal|full] [--compare-synchronous]

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

Both rates are N / (time from the first request to done). Exit code 0 always.
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
from collections.abc import Awaitable, Callable, Iterator
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
from sqlalchemy import Engine, func  # noqa: E402
from sqlmodel import select  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from channels.console import ConsoleChannel  # noqa: E402
from orchestrator.api import create_app  # noqa: E402
from orchestrator.deploy import deploy  # noqa: E402
from orchestrator.router import Router  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url  # noqa: E402
from orchestrator.store.tables import Event, JourneyRun  # noqa: E402
from orchestrator.temporal_server import DevServer  # noqa: E402
from orchestrator.worker import build_worker  # noqa: E402

TARGET_RATIO = 0.5
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

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def accept_rate(self) -> float:
        return self.events / self.accepted_seconds

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


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


async def run_baseline(client: Client, events: int, concurrency: int, warmup: int) -> Result:
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

    async with Worker(client, task_queue=task_queue, workflows=[BenchWaitWorkflow]):
        if warmup:
            prefix = f"bench:{tag}:warm:"
            await drive(warmup, concurrency, starter(prefix))
            await wait_until(_probe_count(prefix), warmup, 120)
        prefix = f"bench:{tag}:run:"
        start, acked, latencies, errors = await drive(events, concurrency, starter(prefix))
        await wait_until(_probe_count(prefix), events - errors, 600)
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
    )


def _probe_count(prefix: str) -> Callable[[], Awaitable[int]]:
    async def check() -> int:
        return bench_probe.count(prefix)[0]

    return check


# --- product: our API, router and worker -----------------------------------------------


class _Http(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_product(
    client: Client, data_dir: Path, events: int, concurrency: int, warmup: int
) -> Result:
    journeys_dir = data_dir / "journeys"
    journeys_dir.mkdir(parents=True, exist_ok=True)
    (journeys_dir / f"{JOURNEY_ID}.yaml").write_text(JOURNEY_YAML)
    settings = Settings(
        data_dir=data_dir,
        journeys_dir=journeys_dir,
        templates_dir=ROOT / "templates",
        task_queue=f"bench-journeys-{uuid.uuid4().hex[:6]}",
    )
    engine = make_engine(sqlite_url(data_dir))
    migrate(engine)
    deploy(engine, settings.journeys_dir, settings.templates_dir)
    write_key = f"bench_{uuid.uuid4().hex}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    router = Router(client, engine, settings.task_queue, settings.router_interval)
    app = create_app(engine, [write_key], client, router.wake)
    http = _Http(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    null = open(os.devnull, "w")  # noqa: SIM115
    console = ConsoleChannel(stream=null)
    adapters = {"email": console, "push": console, "sms": console}
    try:
        async with build_worker(client, engine, settings, adapters):
            router_task = asyncio.create_task(router.run())
            http_task = asyncio.create_task(http.serve())
            while not http.started:
                if http_task.done():
                    http_task.result()
                await asyncio.sleep(0.02)
            try:
                if warmup:
                    await _load(url, write_key, "warm-", warmup, concurrency)
                    await wait_until(_active_count(engine, "warm-"), warmup, 120)
                return await _measure_product(engine, url, write_key, events, concurrency)
            finally:
                http.should_exit = True
                await http_task
                router_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await router_task
    finally:
        null.close()
        engine.dispose()


async def _measure_product(
    engine: Engine, url: str, write_key: str, events: int, concurrency: int
) -> Result:
    prefix = "run-"
    load = asyncio.create_task(_load(url, write_key, prefix, events, concurrency))
    check = _active_count(engine, prefix)
    while not load.done() and await check() < events:
        await asyncio.sleep(POLL)
    report = await load
    target = events - report["errors"]
    done = await wait_until(check, target, 600)
    start = report["start"]
    # When each stage finished for the last event, from the store's own timestamps.
    wall = time.time() - time.monotonic()
    stages = {"last HTTP ack": report["acked"] - start}
    for name, moment in (await asyncio.to_thread(_stage_times, engine, prefix)).items():
        if moment is not None:
            stages[name] = moment.timestamp() - wall - start
    stages["all runs seen active (poll)"] = done - start
    return Result(
        "product",
        events,
        concurrency,
        done - start,
        report["acked"] - start,
        report["latencies"],
        stages,
        report["errors"],
    )


def _active_count(engine: Engine, prefix: str) -> Callable[[], Awaitable[int]]:
    def count() -> int:
        with session_scope(engine) as session:
            query = (
                select(func.count())
                .select_from(JourneyRun)
                .where(JourneyRun.status == "active", JourneyRun.contact_id.startswith(prefix))  # type: ignore[attr-defined]
            )
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
            "last run entered (active)": session.exec(
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
    url: str, write_key: str, prefix: str, events: int, concurrency: int
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

        async def one(i: int) -> None:
            response = await http.post(
                "/v1/track",
                json={
                    "userId": f"{spec['prefix']}{i}",
                    "event": "Product Added",
                    "properties": {"sku": f"SKU-{i % 97}", "price": 19.99, "quantity": 1},
                    "messageId": str(uuid.uuid4()),
                    "timestamp": datetime.now(UTC).isoformat(),
                },
            )
            response.raise_for_status()

        start, acked, latencies, errors = await drive(spec["events"], spec["concurrency"], one)
    json.dump(
        {"start": start, "acked": acked, "latencies": latencies, "errors": errors}, sys.stdout
    )


# --- running and reporting ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def dev_server(synchronous: str, data_dir: Path) -> Any:
    server = DevServer(
        db_file=data_dir / "temporal.db",
        port=free_port(),
        ui_port=free_port(),
        synchronous=synchronous,
        log_file=data_dir / "temporal.log",
    )
    client = await server.start()
    try:
        yield client
    finally:
        server.stop()


def describe(result: Result) -> str:
    lines = [
        f"{result.label}: {result.rate:7.1f} events/s  ({result.events} in {result.seconds:.2f} s)"
        f"; accepted {result.accept_rate:7.1f}/s"
        f"; ack latency p50 {result.pct(0.5):.1f} ms, p99 {result.pct(0.99):.1f} ms"
        + (f"; {result.errors} errors" if result.errors else "")
    ]
    for stage, seconds in result.stages.items():
        lines.append(f"    {stage:<34} {seconds:7.2f} s")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    print(
        f"ingest throughput: {args.events} events, {args.concurrency} in flight, "
        f"warm-up {args.warmup}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="journeys-bench-") as tmp:
        if args.compare_synchronous:
            results = {}
            for synchronous in ("normal", "full"):
                data_dir = Path(tmp) / synchronous
                async with dev_server(synchronous, data_dir) as client:
                    print(f"baseline on synchronous={synchronous}...", flush=True)
                    result = await run_baseline(client, args.events, args.concurrency, args.warmup)
                result.label = f"baseline synchronous={synchronous}"
                print(describe(result), flush=True)
                results[synchronous] = result
            ratio = results["full"].rate / results["normal"].rate
            print(f"full / normal: {ratio:.2f}")
            return
        data_dir = Path(tmp)
        async with dev_server(args.synchronous, data_dir) as client:
            print(f"Temporal dev server: SQLite WAL, synchronous={args.synchronous}", flush=True)
            baseline = product = None
            if args.only in (None, "baseline"):
                print("baseline (bare signal-with-start)...", flush=True)
                baseline = await run_baseline(client, args.events, args.concurrency, args.warmup)
                print(describe(baseline), flush=True)
            if args.only in (None, "product"):
                print("product (HTTP API -> store -> router -> JourneyWorkflow)...", flush=True)
                product = await run_product(
                    client, data_dir, args.events, args.concurrency, args.warmup
                )
                print(describe(product), flush=True)
    if baseline is None or product is None:
        return
    ratio = product.rate / baseline.rate
    met = "MET" if ratio >= TARGET_RATIO else "NOT MET"
    print(f"ratio product/baseline: {ratio:.2f}   target ratio >= {TARGET_RATIO}: {met}")


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
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loadgen:
        asyncio.run(loadgen(json.loads(arguments.loadgen)))
    else:
        asyncio.run(main(arguments))
    sys.exit(0)
