"""Each channel delivers on its own task queue, whose rate limit holds across workers.

On the real dev server (the time-skipping server ignores task-queue rate limits):
two workers poll the email queue with `JOURNEYS_EMAIL_RATE_LIMIT=3`, and the
provider sees about 3 sends a second (after a first burst the server allows)
however many workers there are.
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from harness import Bench, write_journey
from temporalio.client import Client

from channels.base import Channel, OutgoingMessage, Receipt
from orchestrator.processes.worker import build_worker

SENDS = 24
RATE = 3.0


class Recorder(Channel):
    """A provider stand-in that notes when each message reached it."""

    name: ClassVar[str] = "recorder"
    serves: ClassVar[tuple[str, ...]] = ("email", "push", "sms")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> Receipt:
        with self.lock:
            self.times.append(time.monotonic())
        return Receipt(provider_message_id=f"rec-{message.message_id}")


def busiest_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max(sum(1 for t in ordered if start <= t < start + 1.0) for start in ordered)


async def deliver_all(bench: Bench, rate: float | None, users: list[str]) -> list[float]:
    recorder = Recorder()
    bench.settings = bench.settings.model_copy(update={"email_rate_limit": rate})
    adapters: dict[str, Any] = {"email": recorder}
    # A second worker polling only the email queue, with a connection of its own as a
    # second process would have (one client may not run two workers on one queue).
    other = await Client.connect(
        bench.client.service_client.config.target_host, namespace=bench.client.namespace
    )
    only_email = bench.settings.model_copy(update={"worker_queues": ["email"]})
    second = build_worker(other, bench.engine, only_email, {"email": recorder})
    assert second.task_queues == [f"{bench.task_queue}-email"]
    for user in users:
        await bench.identify(user, email=f"{user}@example.com")
    async with bench.worker(adapters), second:
        # One burst of events, so the baseline's span is the sends' own, not the
        # time taken to feed the events one by one.
        await bench.track_many(users, "Go")
        for user in users:
            assert await bench.result("blast", user) == "completed"
    return recorder.times


async def test_rate_limit_of_a_channel_queue_holds_across_workers(
    dev_env, sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    templates = tmp_path / "templates" / "hello"
    templates.mkdir(parents=True)
    (templates / "email.subject").write_text("Hello")
    (templates / "email.text").write_text("Hello {{ contact.id }}")

    def bench_for(name: str) -> Bench:
        bench = Bench(dev_env, sqlite_engine, tmp_path / name, tmp_path / "templates")
        bench.settings = bench.settings.model_copy(update={"marketing_cap": "none"})
        write_journey(
            bench.journeys_dir,
            "blast",
            textwrap.dedent(
                """
                id: blast
                name: Blast
                trigger: { event: Go }
                steps:
                  - send: { id: hello, channel: email, template: hello }
                """
            ),
        )
        bench.deploy()
        return bench

    # Baseline in the same run: without a limit, the same sends arrive in a burst.
    free = await deliver_all(bench_for("free"), None, [f"f{i}" for i in range(SENDS)])
    limited = await deliver_all(bench_for("limited"), RATE, [f"l{i}" for i in range(SENDS)])

    def span(times: list[float]) -> float:
        return max(times) - min(times)

    # Temporal's limiter lets a burst through when the queue has been idle (8 of 24 in
    # the first second here, with two workers); after it, RATE per second. We allow a
    # burst of 3 x RATE, so the rest must take at least this long.
    burst = 3 * RATE
    sustained = (SENDS - burst) / RATE
    print(
        f"\n{SENDS} sends: unlimited took {span(free):.1f}s (busiest second "
        f"{busiest_second(free)}); limited to {RATE}/s took {span(limited):.1f}s "
        f"(busiest second {busiest_second(limited)}); quota floor {sustained:.1f}s"
    )
    assert len(free) == len(limited) == SENDS
    # The baseline breaks the quota both ways: the check has teeth.
    assert span(free) < sustained
    assert busiest_second(free) > burst
    assert span(limited) >= sustained
    assert busiest_second(limited) <= burst
