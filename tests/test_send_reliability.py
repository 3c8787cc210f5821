"""Send reliability (docs/send-reliability.md): crashes, rate-limit storms, queue overflow.

Everything runs on the real Temporal dev server (real timeouts and retry delays: the
time-skipping server cannot serve here, see the doc) with the real router, store,
activities and provider SDKs, against loopback fakes that count what they received
per message id. Each test prints its figures (`pytest -s`). Sizes come from the
environment, so CI stays within its budget and the full scale is one command away:

    JOURNEYS_RELIABILITY_SENDS   sends per crash window (default 150; RELIABILITY.md: 1000)
    JOURNEYS_RELIABILITY_KILLS   SIGKILLs per crash window (default 3)
    JOURNEYS_STORM_SENDS         sends in the rate-limit storm (default 600; RELIABILITY.md: 10000)
    JOURNEYS_STORM_WORKERS       worker processes in the storm (default 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from devstack import subprocess_env, tail
from fakes.sendgrid import FakeSendGrid
from fakes.server import RESET, Reply, Request
from fakes.twilio import QUEUE_ERRORS, FakeTwilio
from fakes.twilio import error as twilio_error
from harness import Bench, write_journey
from sqlalchemy import Engine, func, text
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from channels.twilio import TwilioChannel
from orchestrator.api.ingest import store_call
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.deployment.deploy import deploy
from orchestrator.processes.router import Router
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url
from orchestrator.store.tables import JourneyRun, Message
from orchestrator.workflows.kit import DELIVERY_DEADLINE

SENDS = int(os.environ.get("JOURNEYS_RELIABILITY_SENDS", "150"))
KILLS = int(os.environ.get("JOURNEYS_RELIABILITY_KILLS", "3"))
STORM_SENDS = int(os.environ.get("JOURNEYS_STORM_SENDS", "600"))
STORM_WORKERS = int(os.environ.get("JOURNEYS_STORM_WORKERS", "2"))
WORKER = Path(__file__).resolve().parent / "crash_worker.py"
FROM = "Shop <news@shop.example.com>"


def journey(channel: str) -> str:
    """One trigger, one send: every message is one run, and every run one message."""
    return textwrap.dedent(
        f"""
        id: blast
        name: Blast
        trigger: {{ event: Go }}
        steps:
          - send: {{ id: hello, channel: {channel}, template: hello }}
        """
    )


def _id() -> str:
    return str(uuid.uuid4())


def write_templates(root: Path) -> Path:
    hello = root / "templates" / "hello"
    hello.mkdir(parents=True)
    (hello / "email.subject").write_text("Hello {{ contact.id }}")
    (hello / "email.text").write_text("Hello {{ contact.id }}, this is message {{ message.id }}.")
    (hello / "sms.body").write_text("Hello {{ contact.id }}")
    return root / "templates"


# --- a project whose worker runs in a process of its own ---------------------------------


@dataclass
class Site:
    """One project: a one-step email journey, its own SQLite file, fake SendGrid and queue.

    Events go in as the API stores them (`store_call`) and reach Temporal through the
    real `Router`; the worker is `tests/crash_worker.py` (the real `build_worker` group
    with the real SendGrid adapter) in a subprocess sharing the database file (WAL).
    """

    name: str
    root: Path
    sends: int
    fake: FakeSendGrid
    queue: str = field(init=False)
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True)
        self.queue = f"{self.name}-{uuid.uuid4().hex[:6]}"
        self.templates = write_templates(self.root)
        self.journeys = write_journey(self.root / "journeys", "blast", journey("email")).parent
        self.engine = make_engine(sqlite_url(self.root))
        migrate(self.engine)
        with self.engine.connect() as connection:
            mode = connection.execute(text("PRAGMA journal_mode")).scalar()
        assert mode == "wal", "the worker process shares this database: it must be in WAL mode"
        deploy(self.engine, self.journeys, self.templates)
        self.users = [f"{self.name}{i}" for i in range(self.sends)]

    def worker_env(self, address: str, **extra: str) -> dict[str, str]:
        return subprocess_env(
            DATABASE_URL=sqlite_url(self.root),
            TEMPORAL_ADDRESS=address,
            JOURNEYS_TASK_QUEUE=self.queue,
            JOURNEYS_DATA_DIR=str(self.root / ".journeys"),
            JOURNEYS_JOURNEYS_DIR=str(self.journeys),
            JOURNEYS_TEMPLATES_DIR=str(self.templates),
            JOURNEYS_WORKER_QUEUES='["main", "email"]',
            JOURNEYS_EMAIL_CHANNEL="sendgrid",
            JOURNEYS_MARKETING_CAP="none",
            JOURNEYS_MESSAGE_CAP="none",
            JOURNEYS_SECRET_KEY="reliability",
            SENDGRID_API_KEY=self.fake.api_key,
            JOURNEYS_SENDGRID_HOST=self.fake.url,
            JOURNEYS_EMAIL_FROM=FROM,
            **extra,
        )

    def store_events(self) -> None:
        """Each user identified with an email address, then `Go`."""
        for user in self.users:
            traits = {"email": f"{user}@example.com"}
            identify = {"userId": user, "traits": traits, "messageId": _id()}
            store_call(self.engine, IdentifyCall.model_validate(identify))
            track = {"userId": user, "event": "Go", "messageId": _id()}
            store_call(self.engine, TrackCall.model_validate(track))

    async def route(self, env: WorkflowEnvironment) -> None:
        """Store the events, then sweep until all reached Temporal (the router's loop)."""
        await asyncio.to_thread(self.store_events)
        router = Router(env.client, self.engine, self.queue, interval=0)
        while await router.sweep():
            pass

    async def finished_runs(self, routing: asyncio.Task[None]) -> bool:
        """Every event routed and every run over (sent or not)."""
        if routing.done() and routing.exception() is not None:
            raise routing.exception()  # type: ignore[misc]
        return routing.done() and (await asyncio.to_thread(self.progress))[0] == self.sends

    async def finished(self, routing: asyncio.Task[None]) -> bool:
        """Every event routed, every run over and every message marked sent (or unknown:
        its provider call was cut by a crash, see the crash matrix)."""
        if routing.done() and routing.exception() is not None:
            raise routing.exception()  # type: ignore[misc]
        return routing.done() and await asyncio.to_thread(self.progress) == (self.sends,) * 2

    async def completed_in_temporal(self, env: WorkflowEnvironment) -> int:
        """Runs Temporal itself reports completed (its visibility store lags a little)."""
        query = f"TaskQueue = '{self.queue}' AND ExecutionStatus = 'Completed'"
        for _ in range(40):
            count = (await env.client.count_workflows(query)).count
            if count >= self.sends:
                break
            await asyncio.sleep(0.25)
        return count

    def progress(self) -> tuple[int, int]:
        """(runs no longer active, messages marked sent or unknown)."""
        with session_scope(self.engine) as session:
            finished = session.exec(
                select(func.count()).select_from(JourneyRun).where(JourneyRun.status != "active")
            ).one()
            settled = session.exec(
                select(func.count())
                .select_from(Message)
                .where(Message.status.in_(("sent", "unknown")))  # type: ignore[attr-defined]
            ).one()
            return finished, settled

    def messages(self) -> list[Message]:
        with session_scope(self.engine) as session:
            rows = list(session.exec(select(Message)))
            for row in rows:
                session.expunge(row)
            return rows

    def counts(self) -> dict[str, int]:
        """What the provider received, per message id, against what the ledger holds."""
        with session_scope(self.engine) as session:
            runs = list(session.exec(select(JourneyRun.status)))
        messages = self.messages()
        received = self.fake.by_msg_id()
        ids = {m.id for m in messages}
        unknown = {m.id for m in messages if m.status == "unknown"}
        return {
            "runs": len(runs),
            "completed": sum(status == "completed" for status in runs),
            "messages": len(messages),
            "sent": sum(m.status == "sent" for m in messages),
            # The provider call was cut by the crash: not sent again, recorded `unknown`.
            "unknown": len(unknown),
            "unknown_delivered": sum(1 for i in unknown if received[i] > 0),
            # Not received and not recorded unknown: lost without anyone being told.
            "lost": sum(1 for i in ids - unknown if received[i] == 0) + self.sends - len(ids),
            "duplicates": sum(received[i] - 1 for i in ids if received[i] > 1),
            "strangers": sum(n for i, n in received.items() if i not in ids),
        }


@dataclass
class WorkerProcess:
    """`tests/crash_worker.py` as a subprocess; each start (a "life") logs to its own file."""

    root: Path
    env: dict[str, str]
    name: str = "worker"
    lives: int = 0
    process: asyncio.subprocess.Process | None = None
    log: Path | None = None

    async def start(self, **extra: str) -> None:
        self.lives += 1
        self.log = self.root / f"{self.name}-{self.lives}.log"
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                cwd=self.root,
                env={**self.env, **extra},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def output(self) -> str:
        return tail(self.log) if self.log else "(never started)"

    def stats(self) -> dict[str, Any]:
        """The `stats:` line the worker printed when it stopped (attempts and outcomes)."""
        assert self.log is not None
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("stats: ")]
        assert lines, self.output()
        return json.loads(lines[-1].removeprefix("stats: "))


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


# --- crash window matrix (RELIABILITY.md section 2) -------------------------------------

WINDOWS = {
    "a": "a  before the ledger insert",
    "b": "b  before the provider call",
    "c": "c  after accept, before the mark",
    "d": "d  after the mark",
    "control": "d  with the ledger off (control)",
}


@dataclass
class Cell:
    """One crash window (or the control) on a site of its own."""

    site: Site
    window: str
    ledger: bool = True
    kills: int = 0
    last_kill: float = 0.0
    seconds: float = 0.0
    in_temporal: int = 0  # runs Temporal reports completed
    log: str = ""

    @property
    def crash_after(self) -> int:
        """Each life dies the n-th time it reaches the window, so kills spread over the run."""
        return max(1, self.site.sends // (3 * KILLS))


async def run_cell(cell: Cell, env: WorkflowEnvironment, deadline: float) -> None:
    """Send to every user; SIGKILL the worker in the cell's window, restart it, KILLS times."""
    site = cell.site
    worker = WorkerProcess(site.root, site.worker_env(env.client.service_client.config.target_host))
    if not cell.ledger:
        worker.env["CRASH_LEDGER"] = "off"  # every life, the last one too
    crash = {"CRASH_WINDOW": cell.window, "CRASH_AFTER": str(cell.crash_after)}
    started = time.monotonic()
    routing = asyncio.create_task(site.route(env))
    try:
        while not await site.finished(routing):
            if time.monotonic() > deadline:
                raise AssertionError(f"{site.name}: unfinished {site.counts()}\n{worker.output()}")
            if worker.process is None or worker.exit_code is not None:
                if worker.exit_code == -signal.SIGKILL:
                    assert f"crash: SIGKILL at window {cell.window}" in worker.output()
                    cell.kills += 1
                    cell.last_kill = time.monotonic() - started
                elif worker.process is not None:
                    raise AssertionError(f"{site.name}: worker died\n{worker.output()}")
                await worker.start(**(crash if cell.kills < KILLS else {}))
            await asyncio.sleep(0.25)
        cell.in_temporal = await site.completed_in_temporal(env)
    finally:
        await stop(routing)
        await worker.stop()
        cell.log = worker.output()
    cell.seconds = time.monotonic() - started


async def test_crash_window_matrix(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """SIGKILL in each window of a send: nothing is sent twice. A kill during the provider
    call (b, c) leaves its message `unknown`: not sent again, whether or not it arrived.

    The cells run side by side: the activities a killed process held are retried only
    when their 60 s start-to-close timeout expires, and running the windows at once pays
    that minute once instead of once per window.
    """
    with contextlib.ExitStack() as stack:
        cells = {
            name: Cell(
                Site(name, tmp_path / name, SENDS, stack.enter_context(FakeSendGrid())),
                "d" if name == "control" else name,
                ledger=name != "control",
            )
            for name in WINDOWS
        }
        started = time.monotonic()
        deadline = started + 300 + SENDS * 0.8
        await asyncio.gather(*(run_cell(cell, dev_env, deadline) for cell in cells.values()))
        elapsed = time.monotonic() - started
        results = {name: cell.site.counts() for name, cell in cells.items()}
        for cell in cells.values():
            cell.site.engine.dispose()

    print(f"\ncrash window matrix: {SENDS} sends and {KILLS} kills per window, {elapsed:.0f}s")
    print(
        f"{'window':<36}kills  lost   dup  dup/kill  unknown (arrived)  completed  last kill  done"
    )
    for name, cell in cells.items():
        r = results[name]
        per_kill = r["duplicates"] / cell.kills if cell.kills else math.nan
        print(
            f"{WINDOWS[name]:<36}{cell.kills:>5}{r['lost']:>6}{r['duplicates']:>6}"
            f"{per_kill:>10.2f}{r['unknown']:>9} ({r['unknown_delivered']})"
            f"{r['completed']:>11}/{SENDS:<4}{cell.last_kill:>9.0f}s{cell.seconds:>5.0f}s"
        )
    for name, cell in cells.items():
        r = results[name]
        assert cell.kills == KILLS, f"window {name} was reached too rarely\n{cell.log}"
        settled = r["sent"] + r["unknown"]
        assert r["runs"] == r["completed"] == r["messages"] == settled == SENDS, (name, r)
        assert cell.in_temporal == SENDS, (name, cell.in_temporal)
        assert r["lost"] == 0 and r["strangers"] == 0, (name, r)
    for name in ("a", "b", "c", "d"):
        assert results[name]["duplicates"] == 0, (name, results[name])
    for name in ("a", "d", "control"):  # outside the provider call: every outcome recorded
        assert results[name]["unknown"] == 0, unknown_story(cells[name])
    # Inside it, each kill leaves the one message it caught unknown, never resent: not
    # arrived when the kill came before the call (b), arrived when after the answer (c).
    # (Once seen in CI as 4 unknown for 3 kills in c: the harness let a kill land while
    # another send was retrying the write of its outcome on a busy database; the stretch
    # now lasts until that write, see tests/crash_worker.py. The records say what
    # happened if a count is off again.)
    b, c = results["b"], results["c"]
    assert b["unknown"] == cells["b"].kills and b["unknown_delivered"] == 0, unknown_story(
        cells["b"]
    )
    assert c["unknown"] == c["unknown_delivered"] == cells["c"].kills, unknown_story(cells["c"])
    # The control proves the test sees the double send the ledger prevents in window d.
    assert results["control"]["duplicates"] >= cells["control"].kills > 0


def unknown_story(cell: Cell) -> str:
    """Each `unknown` message's ledger record and whether it arrived, for a failed count."""
    received = cell.site.fake.by_msg_id()
    lines = [f"{cell.kills} kills in window {cell.window}; unknown messages:"]
    for row in cell.site.messages():
        if row.status == "unknown":
            lines.append(f"  {row.id} arrived {received[row.id]}x: {row.error}; {row.timeline}")
    return "\n".join(lines)


# --- rate-limit storm (RELIABILITY.md section 3) ----------------------------------------


@dataclass
class Answer:
    request: Request
    msg_id: str
    kind: str  # accepted | 429 | 503 | reset
    reset: float | None = None  # unix time the provider told us to wait for (429)


class Storm:
    """The fake's fault script: 20 % 429 with a reset, 5 % 503, 2 % connection reset.

    A 429 says when to come back in one of SendGrid's two ways: mostly `Retry-After:
    0.1`, sometimes (RESET_SHARE) only SendGrid's own `X-RateLimit-Reset`, the epoch
    second its window ends (the next whole second). Why so short: the ProviderGate holds
    every send of a worker after a 429 until its reset, so the storm lasts about
    (429s x reset) / overlap. Whole-second resets on 20 % of 10k sends would spend most
    of an hour asleep; a tenth of a second keeps the storm's shape at a tenth of the
    time, and none of the checks (no request before its reset, nothing lost, nothing
    twice) depends on the scale. The 5 % of epoch-second resets keep SendGrid's real
    header in the mix at a cost of up to 1 s each.
    """

    RATE_LIMITED, UNAVAILABLE, DROPPED = 0.20, 0.05, 0.02
    RETRY_AFTER = 0.1
    RESET_SHARE = 0.05

    def __init__(self, seed: int = 1) -> None:
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.answers: list[Answer] = []

    def __call__(self, request: Request) -> Reply | None:
        msg_id = _msg_id(request)
        with self.lock:
            draw, flavour = self.random.random(), self.random.random()
        reply: Reply | None = None
        reset = None
        now = time.time()  # the answer leaves now: the reset counts from here
        if draw < self.RATE_LIMITED:
            if flavour < self.RESET_SHARE:
                reset = float(math.floor(now) + 1)
                reply = FakeSendGrid.rate_limited(reset_at=reset)
            else:
                reset = now + self.RETRY_AFTER
                reply = FakeSendGrid.rate_limited(self.RETRY_AFTER, reset_at=reset)
                reply.headers["X-RateLimit-Reset"] = str(math.ceil(reset))
            kind = "429"
        elif draw < self.RATE_LIMITED + self.UNAVAILABLE:
            reply, kind = FakeSendGrid.server_error(503), "503"
        elif draw < self.RATE_LIMITED + self.UNAVAILABLE + self.DROPPED:
            reply, kind = RESET, "reset"
        if reply is not None:
            with self.lock:
                self.answers.append(Answer(request, msg_id, kind, reset))
        return reply


def _msg_id(request: Request) -> str:
    try:
        payload = request.json()
    except ValueError:
        return ""
    personal = (payload.get("personalizations") or [{}])[0].get("custom_args") or {}
    return str({**(payload.get("custom_args") or {}), **personal}.get("msg_id", ""))


IN_FLIGHT = 0.1  # a request this soon after a 429 was on its way before the worker knew


def storm_figures(storm: Storm, fake: FakeSendGrid) -> dict[str, Any]:
    """Per message: was any request earlier than a reset that message was given?"""
    answers = [
        *storm.answers,
        *(Answer(d.request, d.msg_id or "", "accepted") for d in fake.delivered),
    ]
    answers.sort(key=lambda a: a.request.at)
    per_message: dict[str, float] = defaultdict(float)  # latest reset given to it so far
    early: list[tuple[str, float]] = []
    after_reset: list[float] = []  # a 429's message came back this long after its reset
    waiting: dict[str, float] = {}  # message -> reset of its 429 not yet followed up
    global_reset, set_at = 0.0, 0.0  # the latest reset given to anyone, and when
    lags: list[float] = []  # requests before the global reset: how long after that 429
    for answer in answers:
        at, msg_id = answer.request.at, answer.msg_id
        if at < per_message[msg_id]:
            early.append((msg_id, per_message[msg_id] - at))
        if msg_id in waiting:
            after_reset.append(at - waiting.pop(msg_id))
        if at < global_reset:
            lags.append(at - set_at)
        if answer.reset is not None:
            per_message[msg_id] = max(per_message[msg_id], answer.reset)
            waiting[msg_id] = answer.reset
            if answer.reset > global_reset:
                global_reset, set_at = answer.reset, at
    kinds = defaultdict(int)
    for answer in answers:
        kinds[answer.kind] += 1
    return {
        "requests": len(answers),
        "kinds": dict(kinds),
        "early": early,
        "after_reset": sorted(after_reset),
        "globally_early": len(lags),
        "globally_early_late": sum(lag > IN_FLIGHT for lag in lags),
        "first": answers[0].request.at if answers else 0.0,
        "last": answers[-1].request.at if answers else 0.0,
    }


async def test_rate_limit_storm(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Every message delivered once, and never asked for again before its reset time."""
    storm = Storm()
    with FakeSendGrid() as fake:
        fake.faults = storm
        site = Site("storm", tmp_path / "storm", STORM_SENDS, fake)
        address = dev_env.client.service_client.config.target_host
        workers = [
            WorkerProcess(site.root, site.worker_env(address), f"worker{i}")
            for i in range(STORM_WORKERS)
        ]
        started, highest = time.monotonic(), 0
        deadline = started + 240 + STORM_SENDS * 0.3
        routing = asyncio.create_task(site.route(dev_env))
        try:
            for worker in workers:
                await worker.start()
            while not await site.finished(routing):
                for worker in workers:
                    assert worker.exit_code is None, worker.output()
                if time.monotonic() > deadline:
                    raise AssertionError(f"unfinished: {site.counts()}\n{workers[0].output()}")
                await asyncio.sleep(0.5)
            in_temporal = await site.completed_in_temporal(dev_env)
        finally:
            await stop(routing)
            for worker in workers:
                await worker.stop()
        elapsed = time.monotonic() - started
        counts = site.counts()
        figures = storm_figures(storm, fake)
        messages, delivered = site.messages(), list(fake.delivered)
        every_request_answered = figures["requests"] == len(fake.requests)
        outcomes: Counter[str] = Counter()
        for worker in workers:
            stats = worker.stats()
            outcomes.update(stats["outcomes"])
            highest = max(highest, stats["max_attempt"].get("deliver_message", 0))
        site.engine.dispose()

    span = figures["last"] - figures["first"]
    kinds = figures["kinds"]
    # How long each accepted send stayed in window c, and (Little's law) how many were
    # in it at an average moment: the duplicates one crash causes, on average.
    accepted_at = {d.msg_id: d.request.at for d in delivered}
    windows = [m.sent_at.timestamp() - accepted_at[m.id] for m in messages if m.sent_at]
    exposure = sum(windows) / span
    worst = max((ahead for _, ahead in figures["early"]), default=0.0)
    print(
        f"\nrate-limit storm: {STORM_SENDS} sends, {elapsed:.0f}s in all, "
        f"{STORM_SENDS / span:.1f} sends/s from first to last request\n"
        f"  {figures['requests']} requests ({figures['requests'] / STORM_SENDS:.2f} per "
        f"delivered message): {kinds.get('accepted', 0)} accepted, {kinds.get('429', 0)} x 429, "
        f"{kinds.get('503', 0)} x 503, {kinds.get('reset', 0)} connection resets\n"
        f"  lost {counts['lost']}, duplicates {counts['duplicates']}; requests before the "
        f"reset their message was given: {len(figures['early'])} (worst {worst * 1000:.0f} ms)\n"
        f"  requests before the latest reset given to any message: {figures['globally_early']}, "
        f"of which {figures['globally_early_late']} more than {IN_FLIGHT * 1000:.0f} ms after "
        f"that 429 (the rest were on their way)\n"
        f"  a rate-limited message came back {1000 * median(figures['after_reset']):.0f} ms "
        f"(median; max {max(figures['after_reset']):.1f}s) after the reset it was given\n"
        f"  deliver attempts {sum(v for k, v in outcomes.items() if k.startswith('deliver'))}: "
        f"{outcomes['deliver_message:ok']} ok, "
        f"{outcomes['deliver_message:TransientChannelError']} transient errors, "
        f"{outcomes['deliver_message:ProviderBackoff']} held back by the ProviderGate; "
        f"highest attempt {highest}; provider calls per message "
        f"max {max(m.attempts for m in messages)}\n"
        f"  window c (provider accepted .. marked sent): median {1000 * median(windows):.0f} ms, "
        f"mean {1000 * sum(windows) / len(windows):.0f} ms, p99 "
        f"{1000 * sorted(windows)[int(0.99 * (len(windows) - 1))]:.0f} ms; a crash at a random "
        f"moment of this run would have caught {exposure:.2f} sends in it"
    )
    assert counts["runs"] == counts["completed"] == counts["sent"] == STORM_SENDS, counts
    assert in_temporal == STORM_SENDS
    assert counts["lost"] == 0 and counts["duplicates"] == 0 and counts["strangers"] == 0, counts
    assert every_request_answered  # by the storm or accepted: nothing refused for cause
    assert figures["early"] == []
    assert kinds.get("429", 0) > 0 and kinds.get("reset", 0) > 0  # the storm did blow


REFUSALS = 30  # 429s each message gets before it is accepted: more than 25 retries
LONG_STORM_SENDS = 5


async def test_a_long_rate_limit_is_waited_out(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """SendGrid answers each message's first REFUSALS requests 429 (Retry-After 0.1 s), then
    accepts it: every message is delivered once, however many answers it took.

    Every 429 costs a retry. With the former `maximum_attempts=25` all five messages were
    marked failed after 25 attempts (27 s); deliveries now retry for `DELIVERY_DEADLINE`.
    """
    refused: Counter[str] = Counter()
    lock = threading.Lock()

    def rate_limited(request: Request) -> Reply | None:
        msg_id = _msg_id(request)
        with lock:
            refused[msg_id] += 1
            if refused[msg_id] > REFUSALS:
                return None
        return FakeSendGrid.rate_limited(0.1)

    with FakeSendGrid() as fake:
        fake.faults = rate_limited
        site = Site("long", tmp_path / "long", LONG_STORM_SENDS, fake)
        worker = WorkerProcess(
            site.root, site.worker_env(dev_env.client.service_client.config.target_host)
        )
        started = time.monotonic()
        routing = asyncio.create_task(site.route(dev_env))
        try:
            await worker.start()
            while not await site.finished_runs(routing):
                assert worker.exit_code is None, worker.output()
                assert time.monotonic() < started + 10 * REFUSALS, site.counts()
                await asyncio.sleep(0.5)
        finally:
            await stop(routing)
            await worker.stop()
        counts, stats = site.counts(), worker.stats()
        statuses = Counter(m.status for m in site.messages())
        site.engine.dispose()
        requests = Counter(_msg_id(r) for r in fake.requests)
    highest = stats["max_attempt"].get("deliver_message", 0)
    print(
        f"\nlong rate limit: {LONG_STORM_SENDS} sends, each refused {REFUSALS} times; runs over "
        f"after {time.monotonic() - started:.0f}s; messages {dict(statuses)}, lost "
        f"{counts['lost']}, duplicates {counts['duplicates']}; {sum(requests.values())} "
        f"requests; highest deliver attempt {highest} (deadline {DELIVERY_DEADLINE})"
    )
    assert counts["lost"] == 0 and counts["duplicates"] == 0, counts
    assert statuses == {"sent": LONG_STORM_SENDS}
    assert set(requests.values()) == {REFUSALS + 1}  # every refusal retried, none after
    assert highest >= REFUSALS + 1


# --- queue overflow (RELIABILITY.md section 3) ------------------------------------------

OVERFLOW_SENDS = 20
FULL_FOR = 5.0  # seconds the sender queue stays full after its first overflow answer


async def test_queue_overflow_pauses_and_resumes(
    dev_env: WorkflowEnvironment, sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Twilio's sender queue is full (30001, then 21611) for a while: sends pause for the
    adapter's `queue_full_delay` and resume; nothing is dropped or sent twice."""
    bench = Bench(
        dev_env,
        sqlite_engine,
        tmp_path / "journeys",
        write_templates(tmp_path),
        overrides={"marketing_cap": "none", "message_cap": "none"},
    )
    write_journey(bench.journeys_dir, "blast", journey("sms"))
    bench.deploy()
    with FakeTwilio() as fake:
        channel = TwilioChannel(
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
            sms_from="+15005550006",
            base_url=fake.url,
        )
        full: list[tuple[Request, int]] = []  # requests answered "queue full", with the code
        lock = threading.Lock()

        def overflow(request: Request) -> Reply | None:
            """While full, answers alternate 30001 (the fake's queue-full mode) and 21611.

            The first answer takes a second, so the burst of sends already past the
            ProviderGate reaches the full queue too (both codes), before the gate closes.
            """
            with lock:
                if fake.queue_full is None:
                    return None
                code = 21611 if len(full) % 2 else 30001
                full.append((request, code))
                first = len(full) == 1
            if first:
                time.sleep(1.0)
            if code == 21611:  # what the fake's mode answers with queue_full = 21611
                return twilio_error(400, 21611, QUEUE_ERRORS[21611])
            return None  # queue_full = 30001 answers

        fake.faults = overflow
        fake.queue_full = 30001
        users = [f"+1555010{i:04d}" for i in range(OVERFLOW_SENDS)]
        for i, phone in enumerate(users):  # every run started before the worker: one burst
            await bench.identify(f"o{i}", phone=phone)
            await bench.track(f"o{i}", "Go")
        async with bench.worker({"sms": channel}):
            started = time.monotonic()
            while not full:
                await asyncio.sleep(0.05)
            await asyncio.sleep(FULL_FOR)
            with lock:
                fake.queue_full = None  # the queue drained
            statuses = await asyncio.gather(
                *(bench.result("blast", f"o{i}") for i in range(OVERFLOW_SENDS))
            )
            elapsed = time.monotonic() - started
        requests = list(fake.requests)
        delivered = fake.delivered

    first_full = min(r.at for r, _ in full)
    refused = {id(r) for r, _ in full}
    accepted = [r for r in requests if id(r) not in refused]
    pause = min(r.at for r in accepted) - first_full
    during = [r for r in accepted if r.at < first_full + TwilioChannel.queue_full_delay]
    codes = sorted({code for _, code in full})
    print(
        f"\nqueue overflow: {OVERFLOW_SENDS} SMS; {len(full)} requests answered queue-full "
        f"({', '.join(map(str, codes))}) within {max(r.at for r, _ in full) - first_full:.1f}s, "
        f"then nothing for {pause:.1f}s (queue_full_delay {TwilioChannel.queue_full_delay:.0f}s); "
        f"{len(requests)} requests, {len(delivered)} delivered, {elapsed:.0f}s in all"
    )
    assert statuses == ["completed"] * OVERFLOW_SENDS
    assert sorted(s.to for s in delivered) == sorted(users)  # all delivered, none twice
    assert [m.status for m in bench.messages()] == ["sent"] * OVERFLOW_SENDS
    assert codes == [21611, 30001]
    assert during == [], "sends went on while the provider asked us to pause"
