"""How long migration 0008 (privacy) takes on an events table of a given size.

0008 separates clients' messageIds from our own dedupe keys: it adds `events.origin`,
moves the rows our own code wrote (provider reports, here 10 % of them) to `internal`
and moves the unique key to `(origin, message_id)`. The events table is locked while
it runs, so its duration is what ingest waits on an upgrade.

Fills a store migrated to 0007 with N events (a fresh SQLite file, or a fresh
database on the PostgreSQL server `--database` names, dropped afterwards), then
times the upgrade and checks how the rows were sorted.

    python benchmarks/migration_0008.py [--events 200000] [--database postgresql://…/db]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from orchestrator.store.db import alembic_config, make_engine, migrate, normalize_url, sqlite_url

CHUNK = 5000


@contextmanager
def fresh_store(server: str | None) -> Iterator[Engine]:
    """An empty store: a SQLite file, or a new database on the PostgreSQL server."""
    if server is None:
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(sqlite_url(Path(folder)))
            try:
                yield engine
            finally:
                engine.dispose()
        return
    base = normalize_url(server)
    name = f"journeys_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(base.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill(engine: Engine, count: int) -> None:
    """`count` events as 0007 stored them: 1 in 10 a SendGrid report, the rest clients'."""
    table = sa.table(
        "events",
        *(sa.column(c) for c in ("message_id", "type", "name", "contact_id")),
        sa.column("properties", sa.JSON()),
        sa.column("context", sa.JSON()),
        sa.column("timestamp", sa.DateTime(timezone=True)),
        sa.column("received_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)

    def row(n: int) -> dict[str, Any]:
        common = {"type": "track", "contact_id": f"c{n % 5000}", "timestamp": now}
        if n % 10 == 0:
            return {
                **common,
                "message_id": f"sendgrid:{uuid.uuid4()}",
                "name": "Email Opened",
                "properties": {"message_id": str(uuid.uuid4())},
                "context": {"source": "sendgrid-webhook"},
                "received_at": now,
            }
        return {
            **common,
            "message_id": str(uuid.uuid4()),
            "name": "Product Viewed",
            "properties": {"product_id": f"p{n % 300}", "price": 19.9},
            "context": {"ip": "203.0.113.9"},
            "received_at": now,
        }

    with engine.begin() as connection:
        for start in range(0, count, CHUNK):
            rows = [row(n) for n in range(start, min(start + CHUNK, count))]
            connection.execute(table.insert(), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--database", help="a PostgreSQL server URL (default: SQLite)")
    args = parser.parse_args()
    with fresh_store(args.database) as engine:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0007")
        fill(engine, args.events)
        started = time.perf_counter()
        migrate(engine)
        took = time.perf_counter() - started
        with engine.connect() as connection:
            query = text("SELECT origin, COUNT(*) FROM events GROUP BY origin")
            origins = dict(connection.execute(query).all())  # type: ignore[arg-type]
    expected = {
        "client": args.events - (args.events + 9) // 10,
        "internal": (args.events + 9) // 10,
    }
    print(
        f"0008 (privacy) on {engine.dialect.name}, {args.events:,} events: {took:.2f} s; "
        f"origins {origins} ({'as expected' if origins == expected else f'expected {expected}'})"
    )


if __name__ == "__main__":
    main()
