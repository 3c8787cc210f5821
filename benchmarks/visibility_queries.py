"""What `journeys runs` and the router's view of deployed versions cost on a big store.

Fills a fresh store with N runs of a few journeys (a fifth still active) and two
messages per run, then retires most journeys — one of them with many runs in flight,
the others with none — and measures:

- `journeys runs`: the newest 50 runs and their last messages (`last_messages`), with
  the number of queries on `messages`;
- `journeys runs --last-message S`: the same page filtered by how the last message
  ended, when every run matches (`failed`) and when none does (`sent`: every run is
  looked at);
- the router's refresh: `live_versions` (which versions start runs, which still have
  runs to signal), what every router does once per `JOURNEYS_ROUTER_INTERVAL`.

Prints the median of 5 timings of each. The target: both in milliseconds, flat in N.

    python benchmarks/visibility_queries.py [--runs 100000] [--database URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert, text

from orchestrator.cli.runs_table import last_messages, list_runs
from orchestrator.store.db import make_engine, migrate, session_scope
from orchestrator.store.tables import JourneyRun, Message
from orchestrator.store.versions import deploy_journey, live_versions, retire_others

JOURNEYS = ["busy", *(f"old_{n}" for n in range(20)), "kept"]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def fill(engine: Engine, runs: int) -> None:
    """`runs` runs spread over the journeys, 20 % active, two messages each."""
    with session_scope(engine) as session:
        for journey_id in JOURNEYS:
            deploy_journey(session, journey_id, {"id": journey_id}, "h1", None)
    with engine.begin() as connection:
        for start in range(0, runs, 5000):
            batch = range(start, min(start + 5000, runs))
            # "busy" gets most runs (and all the active ones of retired journeys).
            journey = ["busy" if n % 10 else JOURNEYS[1 + n % 20] for n in batch]
            connection.execute(
                insert(JourneyRun),
                [
                    {
                        "workflow_id": f"journey:{j}:c{n}",
                        "entry_seq": 1,
                        "journey_id": j,
                        "version": 1,
                        "contact_id": f"c{n}",
                        "status": "active" if n % 5 == 0 and j == "busy" else "completed",
                        "data": {},
                        "entered_at": T0 + timedelta(seconds=n),
                        "updated_at": T0 + timedelta(seconds=n),
                    }
                    for n, j in zip(batch, journey, strict=True)
                ],
            )
            connection.execute(
                insert(Message),
                [
                    {
                        "id": f"m{n}-{k}",
                        "idempotency_key": f"journey:{j}:c{n}:s{k}:1",
                        "workflow_id": f"journey:{j}:c{n}",
                        "entry_seq": 1,
                        "step_id": f"s{k}",
                        "journey_id": j,
                        "contact_id": f"c{n}",
                        "channel": "email",
                        "adapter": "console",
                        "template": "offer",
                        "category": "marketing",
                        "status": "sent" if k == 0 else "failed",
                        "error": None if k == 0 else "template offer: undefined variable: x",
                        "content": {},
                        "timeline": [],
                        "created_at": T0 + timedelta(seconds=n, milliseconds=k),
                        "attempts": 1,
                    }
                    for n, j in zip(batch, journey, strict=True)
                    for k in (0, 1)
                ],
            )
    long_ago = datetime.now(UTC) - timedelta(days=30)
    with session_scope(engine) as session:
        retire_others(session, {"kept"}, long_ago)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))


def median_seconds(action: Callable[[], Any], repeat: int = 5) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--database", help="a fresh database URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{Path(folder) / 'journeys.db'}"
        engine = make_engine(url)
        migrate(engine)
        started = time.perf_counter()
        fill(engine, args.runs)
        print(
            f"{engine.dialect.name}: {args.runs} runs, {2 * args.runs} messages filled in "
            f"{time.perf_counter() - started:.1f} s"
        )

        queries: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            queries.append(statement)

        def runs_page() -> None:
            last_messages(engine, list_runs(engine, limit=50))

        event.listen(engine, "before_cursor_execute", count)
        runs_page()
        event.remove(engine, "before_cursor_execute", count)
        on_messages = len([q for q in queries if "FROM messages" in q])
        page = median_seconds(runs_page) * 1000
        newest = list_runs(engine, limit=50)
        messages = median_seconds(lambda: last_messages(engine, newest)) * 1000
        print(
            f"journeys runs: {page:.1f} ms for the newest 50 runs, of which their last "
            f"messages {messages:.1f} ms in {on_messages} query"
        )

        for outcome in ("failed", "sent"):
            found = len(list_runs(engine, limit=50, last_message=[outcome]))
            took = median_seconds(
                lambda o=outcome: last_messages(
                    engine, list_runs(engine, limit=50, last_message=[o])
                )
            )
            print(
                f"journeys runs --last-message {outcome}: {took * 1000:.1f} ms "
                f"({found} runs listed)"
            )

        def refresh() -> list[Any]:
            with session_scope(engine) as session:
                return live_versions(session)

        live = refresh()
        print(
            f"router refresh (live_versions, {len(JOURNEYS)} journeys, 21 retired): "
            f"{median_seconds(refresh) * 1000:.1f} ms; live: "
            f"{sorted({v.journey_id for v in live})}"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
