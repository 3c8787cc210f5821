"""The production layout as real processes, for the no-lost-events tests.

`journeys api`, `journeys worker` and `journeys router` run as subprocesses (each start a
"life" with its own log file) against one store and a Temporal dev server
(`orchestrator.processes.temporal_server.DevServer`, on a SQLite file, so it can be SIGKILLed and
started again with its workflows intact). `Sender` is a storefront that sends Segment
calls and retries every non-2xx answer and every timeout with the same `messageId`
until acknowledged, noting what it saw. `Monitor` polls `/health` and `/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from devstack import free_ports, journeys_command, subprocess_env, tail
from harness import write_journey
from sqlalchemy import Engine, func
from sqlmodel import col, select

from orchestrator.processes.temporal_server import DevServer
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Event, JourneyRun, Message

WRITE_KEY = "reliability-key"

# One trigger, one push: every event is one run and one message. The push token comes
# with the track call (`context.device.token`), so one call per contact is enough.
BLAST = """
id: blast
name: Blast
trigger: { event: Go }
steps:
  - send: { id: hello, channel: push, template: hello }
"""


def make_project(root: Path) -> Path:
    write_journey(root / "journeys", "blast", textwrap.dedent(BLAST))
    hello = root / "templates" / "hello"
    hello.mkdir(parents=True)
    (hello / "push.title").write_text("Hello")
    (hello / "push.body").write_text("Hello {{ contact.id }}")
    return root


def go_call(user: str) -> dict[str, Any]:
    return {
        "userId": user,
        "event": "Go",
        "messageId": str(uuid.uuid4()),
        "context": {"device": {"token": f"tok-{user}"}},
    }


# --- processes -----------------------------------------------------------------------


@dataclass
class Service:
    """One `journeys <command>` process; restartable; killed with SIGKILL like a crash."""

    name: str
    command: list[str]
    root: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    lives: int = 0
    kills: int = 0
    died: list[str] = field(default_factory=list)  # lives that ended on their own, and why

    def start(self) -> Service:
        assert not self.alive, f"{self.name} is already running"
        self.lives += 1
        with self.log(self.lives).open("wb") as out:
            self.process = subprocess.Popen(
                journeys_command(*self.command),
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log(self, life: int) -> Path:
        return self.root / f"{self.name}-{life}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Restart a life that ended on its own (noted in `died`, with its last line): the
        supervisor's job (systemd `Restart=always`, a Kubernetes restart policy)."""
        if self.process is not None and not self.alive and self.process.returncode != -9:
            last = tail(self.log(self.lives), 1)
            self.died.append(f"exit {self.process.returncode}: {last}")
            self.process = None
            self.start()

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        assert self.process is not None and self.alive, f"{self.name} is not running"
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM and wait: a clean shutdown."""
        if not self.alive:
            return None
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        return "".join(
            self.log(life).read_text(errors="replace")
            for life in range(1, self.lives + 1)
            if self.log(life).exists()
        )

    def report(self) -> str:
        return f"--- {self.name} (life {self.lives}) ---\n{tail(self.log(self.lives), 30)}"


@dataclass
class Stack:
    """Temporal + the store + any number of API, worker and router processes."""

    root: Path
    database_url: str
    api_env: dict[str, str] = field(default_factory=dict)
    temporal: DevServer = field(init=False)
    services: dict[str, Service] = field(default_factory=dict, init=False)
    api_ports: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        make_project(self.root)
        grpc, ui = free_ports(2)
        self.temporal = DevServer(
            db_file=self.root / "temporal" / "temporal.db",
            port=grpc,
            ui_port=ui,
            log_file=self.root / "temporal.log",
        )
        self.queue = f"nolost-{uuid.uuid4().hex[:6]}"

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(
            DATABASE_URL=self.database_url,
            TEMPORAL_ADDRESS=self.temporal.address,
            JOURNEYS_TASK_QUEUE=self.queue,
            JOURNEYS_DATA_DIR=str(self.root / ".journeys"),
            JOURNEYS_JOURNEYS_DIR=str(self.root / "journeys"),
            JOURNEYS_TEMPLATES_DIR=str(self.root / "templates"),
            JOURNEYS_SECRET_KEY="reliability-secret",
            JOURNEYS_WRITE_KEYS=f'["{WRITE_KEY}"]',
            JOURNEYS_MARKETING_CAP="none",
            JOURNEYS_MESSAGE_CAP="none",
            # A dead router's claims come back after 10 s instead of 30.
            JOURNEYS_ROUTER_LEASE="10",
            **extra,
        )

    def add(self, name: str, *command: str, **env: str) -> Service:
        service = Service(name, list(command), self.root, self.env(**env))
        self.services[name] = service
        return service

    def add_api(self, name: str = "api", **env: str) -> Service:
        [port] = free_ports(1)
        self.api_ports[name] = port
        return self.add(name, "api", "--port", str(port), **{**self.api_env, **env})

    def url(self, api: str = "api") -> str:
        return f"http://127.0.0.1:{self.api_ports[api]}"

    async def wait_api(self, api: str = "api", timeout: float = 60) -> None:
        """Until the API answers /health at all (503 while Temporal is down is an answer)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url(api), trust_env=False) as client:
            while True:
                service = self.services[api]
                service.check()  # restarted if it exited on its own, as a supervisor would
                with contextlib.suppress(httpx.HTTPError):
                    await client.get("/health", timeout=5)
                    return
                assert time.monotonic() < deadline, f"{api} did not answer\n{service.report()}"
                await asyncio.sleep(0.2)

    def check(self) -> None:
        for service in self.services.values():
            service.check()

    def close(self) -> None:
        for service in self.services.values():
            service.close()
        self.temporal.stop(kill=True)

    def report(self) -> str:
        parts = [s.report() for s in self.services.values()]
        parts.append(f"--- temporal.log ---\n{tail(self.root / 'temporal.log', 15)}")
        return "\n".join(parts)


# --- the storefront -------------------------------------------------------------------


@dataclass
class Sender:
    """Sends calls at `rate` per second with `concurrency` in flight; retries each until 2xx.

    Every answer is counted by kind; `acked` maps each messageId to when it was
    acknowledged. A 503 must carry Retry-After (honoured); connection errors and
    timeouts wait a moment and resend the same body.
    """

    urls: list[str]
    rate: float = 50.0
    concurrency: int = 16
    timeout: float = 10.0
    answers: Counter[str] = field(default_factory=Counter)
    acked: dict[str, float] = field(default_factory=dict)  # messageId -> time.monotonic()
    missing_retry_after: int = 0
    errors_500: list[str] = field(default_factory=list)
    busy_errors: list[str] = field(default_factory=list)  # bodies of the 503s

    async def send(self, path: str, bodies: list[dict[str, Any]], ids: list[list[str]]) -> None:
        """POST each body to `path` (round robin over the APIs); `ids[i]`: its messageIds."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(bodies)):
            queue.put_nowait(i)
        start = time.monotonic()

        async def one(i: int, client: httpx.AsyncClient) -> None:
            url = self.urls[i % len(self.urls)]
            while True:
                try:
                    response = await client.post(
                        f"{url}{path}", json=bodies[i], auth=(WRITE_KEY, ""), timeout=self.timeout
                    )
                except httpx.TimeoutException:
                    self.answers["timeout"] += 1
                    await asyncio.sleep(0.5)
                    continue
                except httpx.TransportError:
                    self.answers["connection error"] += 1
                    await asyncio.sleep(0.3)
                    continue
                self.answers[str(response.status_code)] += 1
                if response.is_success:
                    now = time.monotonic()
                    for message_id in ids[i]:
                        self.acked.setdefault(message_id, now)
                    return
                if response.status_code >= 500 and response.status_code != 503:
                    self.errors_500.append(response.text[:300])
                wait = response.headers.get("retry-after")
                if response.status_code == 503:
                    self.busy_errors.append(response.text[:200])
                    self.missing_retry_after += wait is None
                await asyncio.sleep(min(float(wait or 1), 5))

        async def worker() -> None:
            async with httpx.AsyncClient(trust_env=False) as client:
                while not queue.empty():
                    i = queue.get_nowait()
                    due = start + i / self.rate
                    if (pause := due - time.monotonic()) > 0:
                        await asyncio.sleep(pause)
                    await one(i, client)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def track(self, calls: list[dict[str, Any]]) -> None:
        await self.send("/v1/track", calls, [[c["messageId"]] for c in calls])


# --- /health and /metrics over time ----------------------------------------------------


@dataclass
class Sample:
    at: float  # time.monotonic()
    health_status: int
    health: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class Monitor:
    """Polls /health and /metrics every `every` seconds while running."""

    url: str
    every: float = 1.0
    samples: list[Sample] = field(default_factory=list)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, trust_env=False) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    health = await client.get("/health", timeout=10)
                    metrics = await client.get("/metrics", timeout=10)
                    self.samples.append(
                        Sample(
                            time.monotonic(),
                            health.status_code,
                            health.json(),
                            parse_metrics(metrics.text),
                        )
                    )
                await asyncio.sleep(self.every)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


METRIC_LINE = re.compile(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format to {"name{labels}": value}; fails on a malformed line."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = METRIC_LINE.match(line)
        assert match, f"not Prometheus text format: {line!r}"
        values[match.group(1)] = float(match.group(2))
    return values


# --- what the store holds ---------------------------------------------------------------


def store_counts(engine: Engine, message_ids: list[str]) -> dict[str, int]:
    """Events stored for these messageIds (and duplicates), routed, runs and messages."""
    with session_scope(engine) as session:
        stored = Counter(
            session.exec(select(Event.message_id).where(col(Event.message_id).in_(message_ids)))
        )
        unrouted = session.exec(select(func.count()).where(col(Event.routed_at).is_(None))).one()
        runs = Counter(session.exec(select(JourneyRun.status)))
        messages = list(session.exec(select(Message.contact_id, Message.status, Message.attempts)))
    per_contact = Counter(m[0] for m in messages)
    return {
        "stored": len(stored),
        "duplicate rows": sum(n - 1 for n in stored.values()),
        "unrouted": int(unrouted),
        "runs": sum(runs.values()),
        "runs completed": runs["completed"],
        "messages": len(messages),
        "messages sent": sum(m[1] == "sent" for m in messages),
        # The provider call a worker was killed in: never repeated (docs/send-reliability.md).
        "messages unknown": sum(m[1] == "unknown" for m in messages),
        "duplicate messages": sum(n - 1 for n in per_contact.values()),
        "resent (attempts > 1)": sum(m[2] > 1 for m in messages),
    }


# Not anchored to line starts: the console adapter prints from several activity threads,
# and one print's closing newline may land after another's text.
CONSOLE_PUSH = re.compile(r"--- push to \S+ \(message ([0-9a-f-]{36})\)")


def console_sends(outputs: list[str]) -> Counter[str]:
    """Pushes the console channel printed, per message id, across worker lives."""
    return Counter(m for text in outputs for m in CONSOLE_PUSH.findall(text))
