"""Simulation throughput: contacts per second through `abandoned_cart`, against bare Temporal.

    python benchmarks/simulation_throughput.py [--contacts N] [--quick] [--json FILE]
                                               [--only ours|bare] [--no-sandboxed]
                                               [--entry-hours H] [--timeout S]

ours      `orchestrator.simulation.runner.Simulator` over the shipped `journeys/`
          and `templates/`, journey `abandoned_cart` (wait 24 h, email, wait up to
          48 h for the open, push or SMS; buying ends it), with a scenario of N
          contacts who each add a product to their cart once, spread over the first
          H hours (`--entry-hours`, default 1), 30 % of whom buy 1 h to 3 days after,
          whatever the messages do (the default answers to the messages apply on
          top); simulated for D + 4 days so every run ends. The simulator starts
          its own time-skipping test server and a fresh SQLite store, deploys, and
          moves time by explicit `env.sleep` steps of at most 1 h (unsandboxed
          worker).
bare      `bare_cart.BareCartWorkflow` (the same timers: wait 24 h, an activity
          writing one row to SQLite, wait up to 48 h, a second activity; a `bought`
          signal ends it) for N ids, all started first, on a fresh time-skipping
          test server; a seeded 30 % get `bought` at a random time 1 h to 3 days in.
          Time moves as the simulator moves it: explicit `env.sleep` to the next
          signal due, at most 1 h at a time, for 4 days. Measured with the worker
          unsandboxed (as the simulator's) and, unless `--no-sandboxed`, sandboxed.

Each side's time is wall clock from before its test server starts to after it has
shut down ("total"); "loop" is only the part that moves time. Contacts/s = N / total.
Targets (issue 15): ours >= 0.7 x bare (unsandboxed, the like-for-like figure), and
1,000 contacts in <= 20 s. Also printed: where the simulator's loop spends its time,
timed from outside by wrapping its methods (env.sleep, which includes the worker's
workflow tasks and activities run meanwhile; routing; answering messages; the
shoppers' actions), and how many runs ended as what. `--quick` is 100 contacts.
Results and their reading: docs/benchmarks.md. Exit code 0 always.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import func, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import bare_cart  # noqa: E402

from orchestrator.dsl.scenario import Delay, Entry, Purchase, Scenario  # noqa: E402
from orchestrator.processes.temporal_server import find_binary  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.simulation import runner as sim_runner  # noqa: E402
from orchestrator.simulation.runner import Simulator  # noqa: E402
from orchestrator.store.tables import JourneyRun, Message  # noqa: E402

JOURNEY = "abandoned_cart"
BUYERS = 0.3
BUY_AFTER = (3600, 3 * 86400)
STEP = timedelta(hours=1)
BARE_DAYS = 4  # 24 h + 48 h + slack, every run starts at once
TARGET_RATIO = 0.7
TARGET_CONTACTS, TARGET_SECONDS = 1000, 20.0
QUEUE = "bare-cart"


class Timer:
    """Seconds and calls per label."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] += seconds
        self.calls[label] += 1

    def wrap_async(
        self, label: str, fn: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - t0)

        return timed

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - t0)

        return timed


# --- ours ----------------------------------------------------------------------------


def scenario(contacts: int, entry_hours: int, seed: int) -> Scenario:
    return Scenario(
        contacts=contacts,
        days=math.ceil(entry_hours / 24) + 4,
        entries_over=entry_hours * 3600,
        seed=seed,
        entries=[
            Entry(
                event="Product Added",
                buys=Purchase(chance=BUYERS, after=Delay(min=BUY_AFTER[0], max=BUY_AFTER[1])),
            )
        ],
    )


def instrument(sim: Simulator, timer: Timer, marks: dict[str, float]) -> None:
    """Time the simulator's parts from outside: its methods, replaced on the instance."""
    loop = sim._loop

    async def timed_loop(env: WorkflowEnvironment, end: Any, contacts: int) -> None:
        env.sleep = timer.wrap_async("env.sleep (server + worker)", env.sleep)  # type: ignore[method-assign]
        marks["loop_start"] = time.perf_counter()
        try:
            await loop(env, end, contacts)
        finally:
            marks["loop_end"] = time.perf_counter()

    schedule = sim._schedule

    def timed_schedule(at: Any, action: Callable[[], None]) -> None:
        schedule(at, timer.wrap("shoppers' actions (ingest, feedback)", action))

    sim._loop = timed_loop  # type: ignore[method-assign]
    sim._route = timer.wrap_async("routing (router.sweep)", sim._route)  # type: ignore[method-assign]
    sim._answer_new_messages = timer.wrap(  # type: ignore[method-assign]
        "answering (outbox query)", sim._answer_new_messages
    )
    sim._schedule = timed_schedule  # type: ignore[method-assign]


async def run_ours(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    settings = Settings(journeys_dir=ROOT / "journeys", templates_dir=ROOT / "templates")
    sim = Simulator(
        settings,
        [JOURNEY],
        scenario(args.contacts, args.entry_hours, args.seed),
        folder=tmp / "sim",
    )
    (tmp / "sim").mkdir(mode=0o700)
    timer, marks = Timer(), {}
    instrument(sim, timer, marks)
    t0 = time.perf_counter()
    simulation = await asyncio.wait_for(sim.run(), args.timeout)
    total = time.perf_counter() - t0
    with sim_runner.session_scope(simulation.engine) as session:
        runs = dict(
            session.exec(select(JourneyRun.status, func.count()).group_by(JourneyRun.status)).all()
        )
        messages = session.exec(select(func.count()).select_from(Message)).one()
    simulation.engine.dispose()
    loop = marks.get("loop_end", t0) - marks.get("loop_start", t0)
    return {
        "side": "ours",
        "contacts": args.contacts,
        "seconds": total,
        "loop_seconds": loop,
        "setup_seconds": marks.get("loop_start", t0) - t0,
        "rate": args.contacts / total,
        "steps": timer.calls["env.sleep (server + worker)"],
        "runs": runs,
        "messages": messages,
        "breakdown": {k: [v, timer.calls[k]] for k, v in timer.seconds.items()},
    }


# --- bare ----------------------------------------------------------------------------


async def run_bare(args: argparse.Namespace, tmp: Path, sandboxed: bool) -> dict[str, Any]:
    label = "sandboxed" if sandboxed else "unsandboxed"
    folder = tmp / f"bare-{label}"
    folder.mkdir(parents=True, exist_ok=True)
    sends = bare_cart.BareSends(folder / "sends.db")
    timer = Timer()
    t0 = time.perf_counter()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server")),
        runtime=sim_runner._quiet_runtime(),
    )
    outcomes: Counter[str] = Counter()
    try:
        options: dict[str, Any] = {}
        if not sandboxed:
            options["workflow_runner"] = UnsandboxedWorkflowRunner()
        worker = Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[bare_cart.BareCartWorkflow],
            activities=[sends.send],
            activity_executor=ThreadPoolExecutor(max_workers=16),
            max_concurrent_activities=16,
            **options,
        )
        async with worker:
            loop_start = time.perf_counter()
            handles = await start_all(env.client, args.contacts, folder.name)
            timer.add("starting the workflows", time.perf_counter() - loop_start)
            r = random.Random(args.seed)
            due = sorted(
                (r.uniform(*BUY_AFTER), i) for i in range(args.contacts) if r.random() < BUYERS
            )
            now, end, k = 0.0, BARE_DAYS * 86400.0, 0
            while now < end:
                t = time.perf_counter()
                batch = []
                while k < len(due) and due[k][0] <= now:
                    batch.append(
                        handles[due[k][1]].signal(bare_cart.BareCartWorkflow.bought_signal)
                    )
                    k += 1
                await asyncio.gather(*batch)
                timer.add("signalling", time.perf_counter() - t)
                target = min(end, now + STEP.total_seconds())
                if k < len(due):
                    target = min(target, max(due[k][0], now + 1))
                t = time.perf_counter()
                await env.sleep(timedelta(seconds=target - now))
                timer.add("env.sleep (server + worker)", time.perf_counter() - t)
                now = target
            loop_end = time.perf_counter()
            with env.auto_time_skipping_disabled():
                for i in range(0, len(handles), 100):
                    results = await asyncio.gather(*(h.result() for h in handles[i : i + 100]))
                    outcomes.update(results)
    finally:
        await env.shutdown()
    total = time.perf_counter() - t0
    return {
        "side": f"bare ({label})",
        "contacts": args.contacts,
        "seconds": total,
        "loop_seconds": loop_end - loop_start,
        "setup_seconds": loop_start - t0,
        "rate": args.contacts / total,
        "steps": timer.calls["env.sleep (server + worker)"],
        "runs": dict(outcomes),
        "messages": sends.count(),
        "breakdown": {k: [v, timer.calls[k]] for k, v in timer.seconds.items()},
    }


async def start_all(client: Client, n: int, prefix: str) -> list[Any]:
    gate = asyncio.Semaphore(50)
    run_id = uuid.uuid4().hex[:8]

    async def one(i: int) -> Any:
        async with gate:
            return await client.start_workflow(
                bare_cart.BareCartWorkflow.run,
                f"c{i}",
                id=f"{prefix}-{run_id}-{i}",
                task_queue=QUEUE,
            )

    return list(await asyncio.gather(*(one(i) for i in range(n))))


# --- report --------------------------------------------------------------------------


def describe(result: dict[str, Any]) -> str:
    lines = [
        f"{result['side']:<20} {result['contacts']:>6} contacts  {result['seconds']:7.1f} s"
        f"  {result['rate']:7.1f} contacts/s   (setup {result['setup_seconds']:.1f} s,"
        f" loop {result['loop_seconds']:.1f} s, {result['steps']} env.sleep steps;"
        f" runs {result['runs']}, messages {result['messages']})"
    ]
    loop = result["loop_seconds"] or 1.0
    for label, (seconds, calls) in sorted(result["breakdown"].items(), key=lambda kv: -kv[1][0]):
        lines.append(
            f"    {label:<40} {seconds:7.2f} s  {100 * seconds / loop:5.1f} % of loop"
            f"  {calls:>6} calls  {1000 * seconds / max(calls, 1):7.2f} ms/call"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"{args.contacts} contacts, journey {JOURNEY}; {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    # Unmeasured: the first start of the test server (loading its binary) is slower.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server")),
        runtime=sim_runner._quiet_runtime(),
    )
    await env.shutdown()
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        if args.only in (None, "bare"):
            print("bare, unsandboxed...", flush=True)
            results["bare"] = await run_bare(args, Path(tmp), sandboxed=False)
            print(describe(results["bare"]), flush=True)
            if not args.no_sandboxed:
                print("bare, sandboxed...", flush=True)
                results["bare_sandboxed"] = await run_bare(args, Path(tmp), sandboxed=True)
                print(describe(results["bare_sandboxed"]), flush=True)
        if args.only in (None, "ours"):
            print("ours (Simulator)...", flush=True)
            results["ours"] = await run_ours(args, Path(tmp))
            print(describe(results["ours"]), flush=True)
    summary: dict[str, Any] = {"contacts": args.contacts, "results": results}
    print()
    print(f"{'side':<22} {'contacts':>8} {'seconds':>8} {'contacts/s':>11}")
    for result in results.values():
        print(
            f"{result['side']:<22} {result['contacts']:>8} {result['seconds']:>8.1f}"
            f" {result['rate']:>11.1f}"
        )
    if "ours" in results and "bare" in results:
        ratio = results["ours"]["rate"] / results["bare"]["rate"]
        summary["ratio"] = ratio
        met = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"ratio ours / bare (unsandboxed): {ratio:.2f}   target >= {TARGET_RATIO}: {met}")
        if "bare_sandboxed" in results:
            sandboxed = results["ours"]["rate"] / results["bare_sandboxed"]["rate"]
            summary["ratio_sandboxed"] = sandboxed
            print(f"ratio ours / bare (sandboxed):   {sandboxed:.2f}")
    if "ours" in results:
        needed = TARGET_CONTACTS / results["ours"]["rate"]
        summary["seconds_for_1000"] = needed
        summary["targets"] = {"ratio": TARGET_RATIO, "seconds_for_1000": TARGET_SECONDS}
        met = "met" if needed <= TARGET_SECONDS else "NOT met"
        measured = "measured" if args.contacts == TARGET_CONTACTS else "at the measured rate"
        print(
            f"{TARGET_CONTACTS} contacts through ours: {needed:.1f} s ({measured})"
            f"   target <= {TARGET_SECONDS:.0f} s: {met}"
        )
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1000, help="N (default 1000)")
    parser.add_argument("--quick", action="store_true", help="100 contacts (CI-sized)")
    parser.add_argument("--only", choices=("ours", "bare"), help="measure one side only")
    parser.add_argument(
        "--no-sandboxed", action="store_true", help="skip the sandboxed bare measurement"
    )
    parser.add_argument(
        "--entry-hours", type=int, default=1, help="entries spread over H hours (default 1)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--timeout", type=float, default=900, help="give up on the simulator after S seconds"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.contacts = 100
    return args


if __name__ == "__main__":
    arguments = parse_args()
    figures = asyncio.run(main(arguments))
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"figures written to {arguments.json}")
