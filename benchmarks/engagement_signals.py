"""Engagement -> runs: email opens through our API and router to the waiting runs, against
bare Temporal signals, on one dev server.

    python benchmarks/engagement_signals.py [--runs N] [--concurrency C] [--batch B]
                                            [--warmup W] [--quick] [--json FILE]

One fresh embedded dev server (`DevServer`: SQLite WAL, a temporary data dir) and one
fresh SQLite store, with our API, router and worker running throughout. Per way in, a
pair of measurements, one after the other, each on N runs that are already waiting (set
up unmeasured, after W warm-up runs went the whole way, unmeasured):

baseline  N runs of a trivial workflow (`BenchSignalWorkflow`) waiting for a signal;
          then N `handle.signal(...)` calls, C in flight, from a client in the same
          process as the worker. Done when every run went on after its signal
          (`bench_probe`, outside replay). Measured again before each way in, so each
          is compared with bare signals on the machine as it was then.
webhook   N runs of a journey triggered by an event: `send` an email (console channel
          to a null stream; the message row is what SendGrid's `msg_id` finds), then
          `wait_for: {message: promo, engagement: opened, timeout: 5d}` and nothing
          after it. The real API (uvicorn serving `create_app`, the router running, a
          `build_worker` worker) gets the opens as SendGrid Event Webhook posts, B open
          events per request (default 100), ECDSA-signed as SendGrid signs them, C
          requests in flight. Done when every run is recorded `completed` in
          journey_runs: the webhook stored the event, the router recorded the
          engagement on the message and signalled the run, the run ended.
track     The same on a fresh set of N runs, the opens as Segment `track` calls
          (`Email Opened` with `properties.message_id`, the user being the message's
          contact, Basic write key), one per request, C in flight.

The HTTP client runs in a child process, as SendGrid or a storefront would. Rates are
the opens acknowledged (N, less any lost) / (first request -> all of them done); the
target is webhook / baseline and track / baseline >= 0.9 each. Also printed: request
ack latency (HTTP for ours, the signal RPC for the baseline; a webhook request carries
B opens, so its latency has no baseline), when each stage finished, and CPU ms per open
of the Temporal server, this process (API, router, worker) and the HTTP client, from
when the client has its connections open. `--quick` is N = 100 (one webhook request)
and W = 5: a smoke run, about a minute. Warnings logged meanwhile (an activity retried
after SQLite said "database is locked") are counted and listed at the end; `--verbose`
prints them, and the SDK's own. `--json FILE` writes the figures (`figures.Report`).
Exit code 0 always, also when a measurement fails (the error is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # ingest_throughput, bench_workflow, bench_probe, figures
    sys.path.insert(0, str(HERE))

import bench_probe  # noqa: E402
import ingest_throughput as it  # noqa: E402
from bench_workflow import BenchSignalWorkflow  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from figures import Figure, Report  # noqa: E402
from sqlalchemy import Engine, func  # noqa: E402
from sqlmodel import col, select  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from orchestrator.feedback.signatures import SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP  # noqa: E402
from orchestrator.store.db import session_scope  # noqa: E402
from orchestrator.store.tables import Event, JourneyRun, Message  # noqa: E402

TARGET_RATIO = 0.9
TARGET = f"ratio >= {TARGET_RATIO}"
JOURNEY_ID = "bench_open"
SEND_STEP = "promo"
WAIT_STEP = "opened"
TRIGGER = "Promo Started"
TEMPLATE = "bench_promo"
JOURNEY_YAML = f"""\
id: {JOURNEY_ID}
name: Benchmark - email, then wait for its open
trigger:
  event: {TRIGGER}
entry:
  re_entry: always
policy:
  frequency_cap: false
steps:
  - send: {{ id: {SEND_STEP}, channel: email, template: {TEMPLATE} }}
  - wait_for: {{ message: {SEND_STEP}, engagement: opened, timeout: 5d }}
    id: {WAIT_STEP}
"""
EVENTS_NOTE = "starts the engagement benchmark's journey"
SETUP_BATCH = 50  # contacts per /v1/batch call while setting up (identify + track each)
SETUP_TIMEOUT = 600.0
DONE_TIMEOUT = 600.0
PHASES = {"webhook": "SendGrid Event Webhook", "track": "Segment track Email Opened"}


# --- baseline: bare Temporal signals ---------------------------------------------------


async def run_baseline(
    client: Client, runs: int, concurrency: int, warmup: int, server_pid: int | None
) -> it.Result:
    task_queue = f"bench-signals-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:6]

    def starter(prefix: str) -> Callable[[int], Awaitable[None]]:
        async def one(i: int) -> None:
            await client.start_workflow(
                BenchSignalWorkflow.run,
                {"contact_id": f"u-{i}", "journey": JOURNEY_ID},
                id=f"{prefix}{i}",
                task_queue=task_queue,
            )

        return one

    def signaller(prefix: str) -> Callable[[int], Awaitable[None]]:
        async def one(i: int) -> None:
            signal = {"signal_id": f"e{i}", "step_id": SEND_STEP, "kind": "opened"}
            await client.get_workflow_handle(f"{prefix}{i}").signal("engagement", signal)

        return one

    async def ready(prefix: str, count: int) -> None:
        await it.drive(count, concurrency, starter(prefix))
        await it.wait_until(it.probe_count(f"waiting:{prefix}"), count, SETUP_TIMEOUT)

    async with Worker(client, task_queue=task_queue, workflows=[BenchSignalWorkflow]):
        warm, prefix = f"bench:{tag}:warm:", f"bench:{tag}:run:"
        if warmup:
            await ready(warm, warmup)
            await it.drive(warmup, concurrency, signaller(warm))
            await it.wait_until(it.probe_count(f"handled:{warm}"), warmup, SETUP_TIMEOUT)
        await ready(prefix, runs)
        meter = it.CpuMeter(server_pid)
        start, acked, latencies, errors = await it.drive(runs, concurrency, signaller(prefix))
        await it.wait_until(it.probe_count(f"handled:{prefix}"), runs - errors, DONE_TIMEOUT)
        cpu = meter.used()
        done = bench_probe.count(f"handled:{prefix}")[1]
    return it.Result(
        "baseline (bare signals)",
        runs,
        concurrency,
        done - start,
        acked - start,
        latencies,
        {"last signal acknowledged": acked - start, "last run went on": done - start},
        errors,
        cpu,
        acknowledged=runs - errors,
    )


# --- ours: API, router, worker -----------------------------------------------------------


@dataclass
class Product:
    """The running product: its store, HTTP address, write key and webhook signing key."""

    engine: Engine
    url: str
    write_key: str
    signing_key: str  # PEM, PKCS#8: what SendGrid signs with (the child needs it)
    server_pid: int | None
    tag: str


@contextlib.asynccontextmanager
async def running_product(
    client: Client, data_dir: Path, server_pid: int | None
) -> AsyncIterator[Product]:
    """Our API (uvicorn), router and worker on a fresh store, as `journeys dev` runs them."""
    templates_dir = data_dir / "templates"
    template = templates_dir / TEMPLATE
    template.mkdir(parents=True)
    (template / "email.subject").write_text("Something for you, {{ contact.id }}")
    (template / "email.text").write_text("A short benchmark email.")
    key = ec.generate_private_key(ec.SECP256R1())
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings, engine, write_key = it.new_store(
        data_dir,
        {
            f"{JOURNEY_ID}.yaml": JOURNEY_YAML,
            "events.yaml": f"{TRIGGER}:\n  description: {EVENTS_NOTE}\n",
        },
        "bench-journeys",
        templates_dir,
        sendgrid_webhook_public_key=base64.b64encode(public_der).decode(),
    )
    try:
        async with it.running_stack(client, engine, settings, write_key) as url:
            yield Product(
                engine,
                url,
                write_key,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
                server_pid,
                uuid.uuid4().hex[:6],
            )
    finally:
        engine.dispose()


async def prepare(product: Product, prefix: str, runs: int) -> list[list[str]]:
    """Start `runs` runs (contacts `<prefix><i>` with an email address) and wait until each
    has sent its email and waits for the open; returns [contact, message id, email]."""
    users = [f"{prefix}{i}" for i in range(runs)]
    async with httpx.AsyncClient(
        base_url=product.url, auth=(product.write_key, ""), timeout=60
    ) as http:
        for first in range(0, runs, SETUP_BATCH):
            batch: list[dict[str, Any]] = []
            for user in users[first : first + SETUP_BATCH]:
                batch.append({"type": "identify", "userId": user, "traits": _traits(user)})
                batch.append({"type": "track", "userId": user, "event": TRIGGER})
            response = await http.post("/v1/batch", json={"batch": batch})
            response.raise_for_status()
    await it.wait_until(_runs(product.engine, prefix, "active", WAIT_STEP), runs, SETUP_TIMEOUT)
    found = await asyncio.to_thread(_sent_messages, product.engine, prefix)
    if len(found) != runs:
        raise RuntimeError(f"{len(found)} of {runs} emails were sent")
    return [[user, found[user], _traits(user)["email"]] for user in users]


def _traits(user: str) -> dict[str, str]:
    return {"email": f"{user}@example.com"}


def _sent_messages(engine: Engine, prefix: str) -> dict[str, str]:
    with session_scope(engine) as session:
        query = select(Message.contact_id, Message.id).where(
            Message.journey_id == JOURNEY_ID,
            Message.step_id == SEND_STEP,
            Message.status == "sent",
            col(Message.contact_id).startswith(prefix),
        )
        return {contact: message for contact, message in session.exec(query)}


def _runs(
    engine: Engine, prefix: str, status: str, step: str | None = None
) -> Callable[[], Awaitable[int]]:
    def count() -> int:
        with session_scope(engine) as session:
            query = (
                select(func.count())
                .select_from(JourneyRun)
                .where(
                    JourneyRun.journey_id == JOURNEY_ID,
                    JourneyRun.status == status,
                    col(JourneyRun.contact_id).startswith(prefix),
                )
            )
            if step is not None:
                query = query.where(JourneyRun.current_step == step)
            return int(session.exec(query).one())

    async def check() -> int:
        return await asyncio.to_thread(count)

    return check


async def run_product(
    product: Product, phase: str, runs: int, concurrency: int, batch: int, warmup: int
) -> it.Result:
    """Set up `runs` waiting runs, open them through `phase` ("webhook" or "track")."""
    if warmup:
        warm = f"{product.tag}-{phase}warm-"
        items = await prepare(product, warm, warmup)
        await _load(product, phase, items, concurrency, batch, [])
        await it.wait_until(_runs(product.engine, warm, "completed"), warmup, SETUP_TIMEOUT)
    prefix = f"{product.tag}-{phase}-"
    began = time.monotonic()
    items = await prepare(product, prefix, runs)
    print(f"    {runs} runs sent their email and wait ({time.monotonic() - began:.1f} s)")
    meters: list[it.CpuMeter] = []
    report = await _load(product, phase, items, concurrency, batch, meters)
    done = await it.wait_until(
        _runs(product.engine, prefix, "completed"), runs - report["lost"], DONE_TIMEOUT
    )
    cpu = {**meters[0].used(), CLIENT_CPU: report["cpu"]}
    start = report["start"]
    wall = time.time() - time.monotonic()
    stages = {"last HTTP ack": report["acked"] - start}
    for name, moment in (await asyncio.to_thread(_stage_times, product.engine, prefix)).items():
        if moment is not None:
            stages[name] = _utc(moment).timestamp() - wall - start
    stages["all runs seen completed (poll)"] = done - start
    opened = await asyncio.to_thread(_opened_messages, product.engine, prefix)
    if opened != runs - report["lost"]:
        print(f"  warning: {opened} messages recorded opened, expected {runs}", file=sys.stderr)
    return it.Result(
        f"ours, {PHASES[phase]}",
        runs,
        concurrency,
        done - start,
        report["acked"] - start,
        report["latencies"],
        stages,
        report["errors"],
        cpu,
        acknowledged=runs - report["lost"],
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stage_times(engine: Engine, prefix: str) -> dict[str, datetime | None]:
    with session_scope(engine) as session:
        ev = (Event.name == "Email Opened", col(Event.contact_id).startswith(prefix))
        run = (JourneyRun.journey_id == JOURNEY_ID, col(JourneyRun.contact_id).startswith(prefix))
        return {
            "last open stored": session.exec(select(func.max(Event.received_at)).where(*ev)).one(),
            "last open routed": session.exec(select(func.max(Event.routed_at)).where(*ev)).one(),
            "last run completed (its record)": session.exec(
                select(func.max(JourneyRun.exited_at)).where(*run)
            ).one(),
        }


def _opened_messages(engine: Engine, prefix: str) -> int:
    with session_scope(engine) as session:
        query = (
            select(func.count())
            .select_from(Message)
            .where(Message.status == "opened", col(Message.contact_id).startswith(prefix))
        )
        return int(session.exec(query).one())


async def _load(
    product: Product,
    phase: str,
    items: list[list[str]],
    concurrency: int,
    batch: int,
    meter: list[it.CpuMeter],
) -> dict[str, Any]:
    """Post the opens from a child process (SendGrid, or the app), return its report.

    The child reads its spec, opens its connections and says so; the CPU meter starts
    then (appended to `meter`), and the child starts its clock on our go."""
    spec = {
        "phase": phase,
        "url": product.url,
        "key": product.write_key,
        "signing_key": product.signing_key,
        "items": items,
        "concurrency": concurrency,
        "batch": batch,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--loadgen",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**26,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(spec).encode() + b"\n")
    await child.stdin.drain()
    if (await child.stdout.readline()).strip() != b"ready":
        await child.wait()
        raise RuntimeError(f"load generator exited with {child.returncode} before starting")
    meter.append(it.CpuMeter(product.server_pid))
    out, _ = await child.communicate(b"go\n")
    if child.returncode:
        raise RuntimeError(f"load generator exited with {child.returncode}")
    report: dict[str, Any] = json.loads(out)
    return report


async def loadgen(spec: dict[str, Any]) -> None:
    """The child process: C lanes of httpx posts; prints a JSON report on stdout."""
    items: list[list[str]] = spec["items"]
    concurrency, size = int(spec["concurrency"]), int(spec["batch"])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=None)
    key = serialization.load_pem_private_key(spec["signing_key"].encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    async with httpx.AsyncClient(
        base_url=spec["url"], auth=(spec["key"], ""), limits=limits, timeout=120
    ) as http:
        # Open the connections before the clock (and the parent's CPU meter) starts.
        await asyncio.gather(*(http.get("/health") for _ in range(concurrency)))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        async def webhook(i: int) -> int:
            chunk = items[i * size : (i + 1) * size]
            body = json.dumps([_sendgrid_open(message, email) for _, message, email in chunk])
            raw = body.encode()
            stamp = str(int(time.time()))
            signature = key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
            headers = {
                "Content-Type": "application/json",
                SENDGRID_SIGNATURE: base64.b64encode(signature).decode(),
                SENDGRID_TIMESTAMP: stamp,
            }
            response = await http.post("/webhooks/sendgrid", content=raw, headers=headers)
            response.raise_for_status()
            answer = response.json()
            if answer.get("stored") != len(chunk):
                raise RuntimeError(f"stored {answer} of {len(chunk)} opens")
            return len(chunk)

        async def track(i: int) -> int:
            user, message, _ = items[i]
            response = await http.post(
                "/v1/track",
                json={
                    "userId": user,
                    "event": "Email Opened",
                    "properties": {"message_id": message},
                    "messageId": str(uuid.uuid4()),
                    "timestamp": datetime.now(UTC).isoformat(),
                },
            )
            response.raise_for_status()
            return 1

        if spec["phase"] == "webhook":
            requests, one = -(-len(items) // size), webhook
        else:
            requests, one = len(items), track
        lost = 0

        async def counted(i: int) -> None:
            nonlocal lost
            try:
                await one(i)
            except Exception:
                lost += size if spec["phase"] == "webhook" else 1
                raise

        cpu = time.process_time()
        start, acked, latencies, errors = await it.drive(requests, concurrency, counted)
        cpu = time.process_time() - cpu
    report = {
        "start": start,
        "acked": acked,
        "latencies": latencies,
        "errors": errors,
        "lost": min(lost, len(items)),
        "cpu": cpu,
    }
    json.dump(report, sys.stdout)


def _sendgrid_open(message_id: str, email: str) -> dict[str, Any]:
    """An `open` event as SendGrid posts it, our custom_args.msg_id at the top level."""
    return {
        "email": email,
        "timestamp": int(time.time()),
        "event": "open",
        "sg_event_id": uuid.uuid4().hex[:22],
        "sg_message_id": f"{uuid.uuid4().hex[:22]}.filter0001.16648.5515E0B88.0",
        "useragent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0",
        "ip": "255.255.255.255",
        "category": ["marketing"],
        "msg_id": message_id,
    }


# --- running and reporting -----------------------------------------------------------------


def ours_cpu(result: it.Result) -> float:
    """CPU ms per open of the Temporal server and this process (API, router, worker)."""
    seconds = result.cpu.get("Temporal server", 0.0) + result.cpu.get("benchmark process", 0.0)
    return seconds * 1000 / result.events


def build_report(args: argparse.Namespace, pairs: dict[str, tuple[it.Result, it.Result]]) -> Report:
    """The figures: per way in, our rate against the bare signals measured just before it,
    then ack latency (beside the signal RPC's only for one open per request) and CPU per
    open beside the same baseline's."""
    report = Report(
        "engagement -> runs",
        settings={
            "runs": args.runs,
            "concurrency": args.concurrency,
            "batch": args.batch,
            "warmup": args.warmup,
            "quick": args.quick,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "temporal": "embedded dev server, SQLite WAL, synchronous=normal",
            "store": "SQLite",
        },
    )
    for phase, (baseline, ours) in pairs.items():
        ratio = ours.rate / baseline.rate
        report.add(
            Figure(
                f"opens -> runs completed, {PHASES[phase]}",
                ours.rate,
                "opens/s",
                baseline=baseline.rate,
                target=TARGET,
                met=ratio >= TARGET_RATIO,
                note=BASELINE_NOTE,
            )
        )
    for phase, (baseline, ours) in pairs.items():
        requests = len(ours.latencies)
        # p99 of a single request (a quick run's one webhook post) is its p50 again.
        for q in (0.5, 0.99) if requests > 1 else (0.5,):
            if phase == "webhook":
                # A post carrying B opens against an RPC carrying one signal is no like for
                # like, and dividing the post over its opens would not be either: no baseline.
                carried = "up to " if args.runs % args.batch and args.runs > args.batch else ""
                carried += f"{min(args.batch, args.runs)} opens"
                figure = Figure(
                    f"ack latency p{q * 100:.0f}, {PHASES[phase]}, one request of {carried}",
                    ours.pct(q),
                    "ms",
                    better="lower",
                    note=f"{requests} request(s); no baseline: a signal RPC carries one open",
                )
            else:
                figure = Figure(
                    f"ack latency p{q * 100:.0f}, {PHASES[phase]}",
                    ours.pct(q),
                    "ms",
                    baseline=baseline.pct(q),
                    better="lower",
                    note="per request of one open; baseline: the signal RPC",
                )
            report.add(figure)
        client_ms = ours.cpu.get(CLIENT_CPU, 0.0) * 1000 / ours.events
        report.add(
            Figure(
                f"CPU per open, Temporal server + our process, {PHASES[phase]}",
                ours_cpu(ours),
                "ms",
                baseline=ours_cpu(baseline),
                better="lower",
                note=f"the HTTP client's not counted: {client_ms:.2f} ms per open",
            )
        )
    if args.quick:
        report.notes.append(f"quick run: {args.runs} runs per measurement")
    return report


BASELINE_NOTE = (
    "baseline: N handle.signal() calls, same concurrency, to N runs of a bare workflow "
    "waiting for a signal, measured just before on the same server"
)
CLIENT_CPU = "HTTP client (child process)"


async def main(args: argparse.Namespace) -> Report:
    print(
        f"engagement -> runs: {args.runs} runs per measurement, {args.concurrency} requests "
        f"in flight, {args.batch} opens per webhook request, warm-up {args.warmup}, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}",
        flush=True,
    )
    ignored = it.count_unraisable()
    logged = count_warnings() if not args.verbose else Counter[str]()
    pairs: dict[str, tuple[it.Result, it.Result]] = {}
    with tempfile.TemporaryDirectory(prefix="journeys-bench-") as tmp:
        async with it.dev_server("normal", Path(tmp), []) as (client, pid):
            print("Temporal dev server: SQLite WAL, synchronous=normal", flush=True)
            async with running_product(client, Path(tmp) / "store", pid) as product:
                for phase in PHASES:
                    print("baseline (bare Temporal: N runs waiting, N signals)...", flush=True)
                    baseline = await run_baseline(
                        client, args.runs, args.concurrency, args.warmup, pid
                    )
                    print(it.describe(baseline), flush=True)
                    print(f"ours ({PHASES[phase]} -> store -> router -> run)...", flush=True)
                    ours = await run_product(
                        product, phase, args.runs, args.concurrency, args.batch, args.warmup
                    )
                    print(it.describe(ours), flush=True)
                    print(f"    ratio to bare signals: {ours.rate / baseline.rate:.2f}", flush=True)
                    pairs[phase] = (baseline, ours)
    report = build_report(args, pairs)
    print("summary:")
    for figure in report.figures:
        if figure.target is None or figure.baseline is None or figure.ratio is None:
            continue
        met = "MET" if figure.met else "NOT MET"
        print(
            f"  {figure.measure}: {figure.ours:.1f} {figure.unit}, bare signals "
            f"{figure.baseline:.1f}, ratio {figure.ratio:.2f}   target {figure.target}: {met}"
        )
    for message, count in ignored.items():
        print(f"note: {count} x 'Exception ignored' at worker shutdown: {message}")
    for message, count in logged.most_common():
        print(f"note: logged {count} x {message}")
    return report


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _Counting(logging.Handler):
    def __init__(self, seen: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().splitlines()[0]
        # One line per kind: the activity's type, not its ids; no message ids.
        text = re.sub(r" \(\{'activity_id'.*'activity_type': '([^']+)'.*", r" (\1)", text)
        text = UUID.sub("<id>", text)[:100]
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            cause = getattr(error, "orig", None) or error  # the driver's own words, if any
            text += f" ({type(cause).__name__}: {str(cause).splitlines()[0][:80]})"
        self.seen[f"{record.levelname} {record.name}: {text}"] += 1


def count_warnings() -> Counter[str]:
    """Count the warnings our code and the SDK log (e.g. an activity retried after SQLite
    said "database is locked") instead of printing a traceback each; summarised at the end."""
    seen: Counter[str] = Counter()
    logging.getLogger().addHandler(_Counting(seen))
    return seen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="N (default 1000; 100 with --quick)")
    parser.add_argument("--concurrency", type=int, default=50, help="C (default 50)")
    parser.add_argument("--batch", type=int, default=100, help="opens per webhook request")
    parser.add_argument(
        "--warmup", type=int, help="unmeasured runs first (default 20, 5 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="N = 100, warm-up 5: a smoke run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures")
    parser.add_argument("--verbose", action="store_true", help="keep the SDK's warnings")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 100 if args.quick else 1000
    if args.warmup is None:
        args.warmup = 5 if args.quick else 20
    return args


def run(args: argparse.Namespace) -> None:
    if not args.verbose:
        it.quiet_sdk_logs()
    try:
        report = asyncio.run(main(args))
    except Exception:
        traceback.print_exc()
        print("engagement benchmark failed: no figures", flush=True)
        report = Report("engagement -> runs", notes=["failed: " + traceback.format_exc(-1)])
    report.write(args.json)
    if args.json:
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loadgen:
        asyncio.run(loadgen(json.loads(sys.stdin.readline())))
    else:
        run(arguments)
    sys.exit(0)
