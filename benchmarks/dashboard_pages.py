"""Every dashboard page on a big store: the time to answer, against the JSON API that
returns the same numbers (the page's own cost is the difference).

    python benchmarks/dashboard_pages.py [--quick] [--postgres URL] [--no-sqlite] [--json FILE]

The store is the analytics benchmark's (`reporting_queries.py`, same seed, same sizes:
100,000 contacts, 1,000,000 events, 500,000 messages, 200,000 runs; `--quick` a
tenth; `JOURNEYS_BENCH_SCALE` scales), on SQLite in a temporary file and, with
`--postgres URL`, on a scratch database of that server. The app is the API's own
(`create_app`), called in-process through httpx's ASGI transport with a logged-in
admin session: the figure is the server's time to answer (guard, queries, rendering),
without a network.

Measured, each 20 times after a warm-up, median and p95 in ms; target <= 200 ms for
every page (issue 16). Baseline in the same run: `GET /v1/journeys` and `GET
/v1/journeys/{id}/stats`, the JSON of the same reporting model. Exit code 0 always.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reporting_queries import TARGET_MS, reported, scratch_postgres, seed, sizes
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from orchestrator.api import create_app
from orchestrator.settings import Settings
from orchestrator.store.db import make_engine, migrate
from orchestrator.store.keys import create_key
from orchestrator.store.tables import JourneyRun, Message

REPEAT = 20


async def _session(client: httpx.AsyncClient, key: str) -> None:
    form = await client.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, "no login form"
    answer = await client.post("/dashboard/login", data={"csrf": token.group(1), "key": key})
    assert answer.status_code == 303, answer.text[:500]


async def _time(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    first = await client.get(url, headers=headers)  # warm-up (caches, first plans)
    if first.status_code not in (200, 503):
        raise RuntimeError(f"{url}: {first.status_code} {first.text[:300]}")
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        answer = await client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code in (200, 503)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "bytes": len(first.content),
    }


def _targets(engine: Engine) -> dict[str, str]:
    """The pages to time on this store: its biggest journey, a heavy and a typical
    contact, a message."""
    with Session(engine) as s:
        by_journey = dict(
            s.exec(  # type: ignore[arg-type]
                select(JourneyRun.journey_id, func.count()).group_by(col(JourneyRun.journey_id))
            ).all()
        )
        biggest = max(by_journey, key=lambda j: by_journey[j])
        per_contact = s.exec(
            select(Message.contact_id, func.count())
            .group_by(col(Message.contact_id))
            .order_by(func.count().desc())
            .limit(1)
        ).first()
        assert per_contact is not None
        message = s.exec(select(Message.id).order_by(col(Message.created_at).desc())).first()
    return {"journey": biggest, "contact": per_contact[0], "message": str(message)}


async def measure(engine: Engine, data_dir: Path, label: str) -> dict[str, Any]:
    key = create_key(engine, f"bench-{time.time_ns()}", "admin")
    settings = Settings(data_dir=data_dir, secret_key="benchmark-only-secret")
    app = create_app(engine, [], None, settings=settings)
    t = _targets(engine)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 1))
    pages = {
        "journeys, last 30 days": "/dashboard/",
        "journeys, all time": "/dashboard/?days=all",
        f"journey {t['journey']}, last 30 days": f"/dashboard/journeys/{t['journey']}",
        f"journey {t['journey']}, all time": f"/dashboard/journeys/{t['journey']}?days=all",
        "messages, newest": "/dashboard/messages",
        f"messages of {t['journey']}": f"/dashboard/messages?journey={t['journey']}",
        "messages, failed": "/dashboard/messages?status=failed",
        "messages, email, one month": (
            "/dashboard/messages?channel=email&since=2000-01-01&until=2100-01-01"
        ),
        f"messages of contact {t['contact']}": f"/dashboard/messages?contact={t['contact']}",
        "one message": f"/dashboard/messages/{t['message']}",
        f"contact {t['contact']} (most messages)": f"/dashboard/contacts/{t['contact']}",
        "health": "/dashboard/health",
    }
    api = {
        "API: GET /v1/journeys": "/v1/journeys",
        f"API: GET /v1/journeys/{t['journey']}/stats": f"/v1/journeys/{t['journey']}/stats",
    }
    found: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await _session(client, key)
        for name, url in pages.items():
            found[name] = await _time(client, url, {})
            _print(label, name, found[name])
        bearer = {"authorization": f"Bearer {key}"}
        for name, url in api.items():
            found[name] = await _time(client, url, bearer)
            _print(label, name, found[name], target=False)
    slowest = max((v["p95_ms"] for k, v in found.items() if not k.startswith("API")), default=0)
    met = slowest <= TARGET_MS
    print(
        f"{label}: slowest page p95 {slowest:.0f} ms: target <= {TARGET_MS:.0f} ms "
        f"{'met' if met else 'NOT met'}",
        flush=True,
    )
    return {"database": label, "pages": found, "slowest_p95_ms": slowest, "target_met": met}


def _print(label: str, name: str, figures: dict[str, Any], target: bool = True) -> None:
    mark = "" if not target else (" ok" if figures["p95_ms"] <= TARGET_MS else " SLOW")
    print(
        f"  {label:10} {name:48} median {figures['median_ms']:7.1f} ms  "
        f"p95 {figures['p95_ms']:7.1f} ms  {figures['bytes'] / 1024:6.0f} KiB{mark}",
        flush=True,
    )


def run(label: str, engine: Engine, size: dict[str, int], work: Path) -> dict[str, Any]:
    print(f"\n=== {label} ===", flush=True)
    migrate(engine)
    started = time.perf_counter()
    seed(engine, size, work, datetime.now(UTC))
    print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    return asyncio.run(measure(engine, work, label))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("contacts", "events", "messages", "runs"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--quick", action="store_true", help="a tenth of the issue's sizes")
    parser.add_argument("--postgres", metavar="URL", help="also on a scratch database there")
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    size = sizes(args)
    print(
        f"dashboard pages: {size['contacts']:,} contacts, {size['events']:,} events, "
        f"{size['messages']:,} messages, {size['runs']:,} runs; {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}",
        flush=True,
    )
    results = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="journeys-dash-") as tmp, reported("SQLite"):
            engine = make_engine(f"sqlite:///{Path(tmp) / 'journeys.db'}")
            try:
                results.append(run("SQLite", engine, size, Path(tmp)))
            finally:
                engine.dispose()
    if args.postgres:
        with reported("PostgreSQL"), scratch_postgres(args.postgres) as url:
            engine = make_engine(url)
            try:
                with tempfile.TemporaryDirectory(prefix="journeys-dash-") as tmp:
                    results.append(run("PostgreSQL", engine, size, Path(tmp)))
            finally:
                engine.dispose()
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "measured_at": datetime.now(UTC).isoformat(),
                    "sizes": size,
                    "target_ms": TARGET_MS,
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
