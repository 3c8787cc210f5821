"""What evaluating a segment costs, by SQL in the store, against loading it into Python.

Fills a fresh store with N contacts and their orders over the last 120 days, deploys
the shipped `journeys/segments.yaml`, then measures in one run:

- baseline: the naive way, every contact and order loaded into Python and
  `big_spenders` ("spent > 5,000 RUB in 30 days") computed there;
- ours, count: `members_query` for the same segment, counted by the database;
- ours, first refresh: `refresh()` when everyone who qualifies is new (stays and
  `Segment Entered` events written, in one transaction);
- ours, second refresh: nothing changed (what the hourly schedule mostly does);
- ours, `lapsed_customers` ("ordered before, none in 60 days"): its first refresh;
- ours, after events: `refresh_for_events()` for 100 contacts (what the router does).

Prints seconds and Python peak memory for each, and whether the SQL count beat the
baseline while its memory stayed flat. The target: a full refresh of 100,000 contacts
within a few seconds on SQLite, with memory independent of N.

    python benchmarks/segment_refresh.py [--contacts 100000] [--database URL]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text
from sqlmodel import func, select

from orchestrator.segments.loader import load_segments
from orchestrator.segments.membership import refresh, refresh_for_events, store_segments
from orchestrator.segments.query import members_query
from orchestrator.store.db import make_engine, migrate, session_scope
from orchestrator.store.tables import Contact, Event, Order

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
THRESHOLD, WINDOW = 5000, timedelta(days=30)


def fill(engine: Engine, contacts: int, seed: int = 7) -> int:
    """N contacts, 0-4 orders each over the last 120 days; returns the number of orders."""
    rng = random.Random(seed)
    orders = 0
    with engine.begin() as connection:
        for start in range(0, contacts, 5000):
            ids = [f"c{n:07d}" for n in range(start, min(start + 5000, contacts))]
            connection.execute(
                insert(Contact),
                [{"id": i, "traits": {}, "push_tokens": [], "consent": {}} for i in ids],
            )
            rows = []
            for contact_id in ids:
                for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 4))):
                    orders += 1
                    rows.append(
                        {
                            "order_id": f"o{orders:08d}",
                            "contact_id": contact_id,
                            "revenue": float(rng.randrange(300, 4000)),
                            "currency": "RUB",
                            "placed_at": NOW - timedelta(minutes=rng.randrange(120 * 24 * 60)),
                        }
                    )
            if rows:
                connection.execute(insert(Order), rows)
    with engine.begin() as connection:  # what autovacuum does after a bulk load
        connection.execute(text("ANALYZE"))
    return orders


def in_python(engine: Engine) -> int:
    """The baseline: what the segment would cost if evaluated over loaded rows."""
    with session_scope(engine) as session:
        contacts = list(session.exec(select(Contact)))
        spent: dict[str, float] = {}
        for order in session.exec(select(Order)):
            if order.refunded_at is None and NOW - WINDOW <= order.placed_at <= NOW:
                spent[order.contact_id] = spent.get(order.contact_id, 0.0) + (order.revenue or 0)
        return sum(1 for c in contacts if spent.get(c.id, 0.0) > THRESHOLD)


def in_sql(engine: Engine) -> int:
    with session_scope(engine) as session:
        segment = next(s for s in load_segments(ROOT / "journeys" / "segments.yaml")[0])
        matching = members_query(segment.segment, NOW)
        return int(session.exec(select(func.count()).select_from(matching.subquery())).one())


def measured(label: str, work: Callable[[], Any]) -> tuple[Any, float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"{label:<34} {seconds:8.3f} s  {peak:8.1f} MiB peak  -> {result}")
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database", help="a DATABASE_URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(args.database or f"sqlite:///{folder}/bench.db")
        migrate(engine)
        start = time.perf_counter()
        orders = fill(engine, args.contacts)
        loaded, problems = load_segments(ROOT / "journeys" / "segments.yaml")
        assert not problems, problems
        store_segments(engine, loaded)
        print(
            f"{engine.dialect.name}: {args.contacts} contacts, {orders} orders "
            f"(filled in {time.perf_counter() - start:.1f} s)"
        )
        expected, baseline_s, baseline_mb = measured(
            "baseline: rows into Python", lambda: in_python(engine)
        )
        counted, sql_s, sql_mb = measured("ours: members_query count", lambda: in_sql(engine))
        assert counted == expected, (counted, expected)

        def full_refresh() -> Any:
            with session_scope(engine) as session:
                return refresh(session, "big_spenders", NOW)

        measured("ours: first refresh (all new)", full_refresh)
        measured("ours: second refresh (no change)", full_refresh)

        def lapsed_refresh() -> Any:  # "no order in 60 days": the NOT EXISTS path
            with session_scope(engine) as session:
                return refresh(session, "lapsed_customers", NOW)

        measured("ours: lapsed_customers refresh", lapsed_refresh)

        def after_events() -> Any:
            with session_scope(engine) as session:
                events = [
                    Event(
                        id=n,
                        message_id=f"m{n}",
                        type="track",
                        name="Order Completed",
                        contact_id=f"c{n * 97 % args.contacts:07d}",
                        timestamp=NOW,
                    )
                    for n in range(100)
                ]
                return refresh_for_events(session, events, NOW)

        measured("ours: refresh for 100 contacts", after_events)
        engine.dispose()
    faster = sql_s < baseline_s
    flat = sql_mb < max(5.0, baseline_mb / 10)
    print(
        f"SQL count vs baseline: {baseline_s / sql_s:.1f}x faster, "
        f"{sql_mb:.1f} vs {baseline_mb:.1f} MiB peak: "
        + ("target met" if faster and flat else "TARGET MISSED")
    )


if __name__ == "__main__":
    main()
