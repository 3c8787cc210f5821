"""`journeys stats` and `journeys explain` on a big store: counters against naive SQL.

    python benchmarks/reporting_queries.py [--quick] [--postgres URL] [--plans] [--json FILE]
                                           [--contacts N] [--events N] [--messages N] [--runs N]
                                           [--history-days N]

Seeds a fresh store (SQLite in a temporary file; with `--postgres URL` also a scratch
database created on that server and dropped afterwards) with the issue's sizes:
100,000 contacts, 1,000,000 events, 500,000 messages and 200,000 runs (`--quick`:
a tenth; `JOURNEYS_BENCH_SCALE=0.25` scales the defaults; explicit sizes win). The
shipped journeys are deployed first, plus one benchmark-only onboarding drip (six
emails) that takes the message count to the issue's ratio of 2.5 per run, which the
shipped journeys alone (two or three sends per run at most) cannot reach.

The data is generated with a fixed seed: runs over ~90 days of entry, the most of
them (~45 %) in `abandoned_cart`, each walked through its journey's steps as the
workflow would (entered, steps reached, waits, branch cases, sends, the goal, the
exit: ~11 trail rows per run), with the trail rows, the message rows (statuses and
timelines), the events behind them (triggers, orders, answers, provider reports) and
the counters (`journey_counts`, each bump on a random shard) the write path would have
produced (`--history-days N`: also counters for N earlier days); then unrelated
storefront events (the rest of the million), spread over the contacts with a heavy
tail. Bulk inserts only (SQLAlchemy Core `insert()` in batches of 10,000; COPY on
PostgreSQL), then ANALYZE (VACUUM ANALYZE on PostgreSQL, as autovacuum would).

Measured, each 20 times after a warm-up, median and p95 in ms, target <= 200 ms:

- `journey_stats` for the biggest journey, all time and for the last 30 days;
- `headlines` (every journey, `journeys stats` without a journey);
- `contact_story` for a contact with ~10x the average number of events, and for a
  typical one;
- baseline: what a marketer's SQL would do for the same journey numbers (messages by
  step and status, runs by status, from the rows), so the ratio shows what the
  counters buy.

`--plans` prints the query plans (EXPLAIN QUERY PLAN / EXPLAIN) of every statement
the measured calls run; a summary of the scans of whole big tables is always printed.
Results and their reading: docs/benchmarks.md. Exit code 0 always.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, bindparam, event, insert, make_url, text
from sqlmodel import col, func, select

from orchestrator.analytics import counts
from orchestrator.analytics.counts import JOURNEY
from orchestrator.analytics.stats import headlines, journey_stats
from orchestrator.analytics.story import contact_story
from orchestrator.deployment.deploy import deploy
from orchestrator.dsl import models as m
from orchestrator.store.db import make_engine, migrate, session_scope
from orchestrator.store.tables import (
    Contact,
    Coupon,
    Event,
    JourneyCount,
    JourneyRun,
    JourneyVersion,
    LoyaltyEntry,
    Message,
    TrailEntry,
    UTCDateTime,
)

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 200.0
REPEAT = 20
SEED = 20261206
BATCH = 10_000
DAYS = 90  # runs entered over the last DAYS days
FULL = {"contacts": 100_000, "events": 1_000_000, "messages": 500_000, "runs": 200_000}
BIG_TABLES = (
    "events",
    "messages",
    "run_trail",
    "journey_runs",
    "journey_counts",
    "contacts",
    "loyalty_entries",
    "coupons",
)

# The benchmark-only journey: six tips, a few days apart (no goal, no exit).
DRIP = "onboarding_drip"
DRIP_GAPS = (1, 2, 3, 4, 5, 6)  # days after each tip
DRIP_YAML = (
    f"id: {DRIP}\n"
    "name: Onboarding tips (benchmark only)\n"
    "trigger:\n  event: Account Created\n"
    "entry:\n  re_entry: never\n"
    "steps:\n"
    + "".join(
        f"  - send: {{ id: tip_{n}, channel: email, template: review_invite }}\n"
        f"  - id: pause_{n}\n    wait: {gap}d\n"
        for n, gap in enumerate(DRIP_GAPS, 1)
    )
)
# Share of runs per journey (the drip's share is worked out from the message target).
MIX = {
    "abandoned_cart": 0.50,
    "post_purchase": 0.14,
    "nps_survey": 0.08,
    "welcome": 0.07,
    "win_back": 0.07,
    "big_spenders": 0.03,
}
# Order probability and goal window (days) per journey; exit_on means the order ends it.
GOALS = {
    "abandoned_cart": (0.12, 14, True),
    "welcome": (0.15, 14, True),
    "win_back": (0.07, 45, True),
    "big_spenders": (0.25, 30, False),
}
FREE_EVENTS = (  # storefront events not behind any run: name (None = identify), weight
    ("Product Viewed", 45),
    ("Products Searched", 12),
    ("Cart Viewed", 10),
    ("Product Added", 8),
    ("Checkout Started", 5),
    ("Page Viewed", 10),
    (None, 10),
)
LOCALES = ("ru", "ru", "ru", "en", "sr-Latn", "ar")
CONTENT = {"subject": "Your cart is waiting", "text": "Hello! Your items are still here."}


# --- sizes ------------------------------------------------------------------------


def sizes(args: argparse.Namespace) -> dict[str, int]:
    if args.quick:
        scale = 0.1
    else:
        try:
            scale = float(os.environ.get("JOURNEYS_BENCH_SCALE", "1") or 1)
        except ValueError:
            scale = 1.0
    found = {}
    for name, full in FULL.items():
        given = getattr(args, name)
        found[name] = given if given is not None else max(1, round(full * scale))
    return found


# --- seeding ----------------------------------------------------------------------


class Writer:
    """Buffered bulk inserts: Core `insert()` executemany, or COPY on PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.buffers: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        self.written: dict[str, int] = defaultdict(int)

    def add(self, model: Any, row: dict[str, Any]) -> None:
        table = model.__table__
        buffer = self.buffers[table]
        buffer.append(row)
        if len(buffer) >= BATCH:
            self.flush(table)

    def flush(self, table: Table) -> None:
        rows = self.buffers[table]
        if not rows:
            return
        if self.postgres:
            self._copy(table, rows)
        else:
            with self.engine.begin() as connection:
                connection.execute(insert(table), rows)
        self.written[table.name] += len(rows)
        rows.clear()

    def _copy(self, table: Table, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        # Columns the rows leave out take their model default, as Core `insert()` does.
        defaults = {
            c.name: c.default.arg
            for c in table.columns
            if c.name not in rows[0] and c.default is not None and c.default.is_scalar
        }
        json_columns = {c.name for c in table.columns if c.type.__class__.__name__ == "JSON"}
        quoted = ", ".join(f'"{c}"' for c in [*columns, *defaults])
        with self.engine.begin() as connection:
            raw = connection.connection.driver_connection
            statement = f'COPY "{table.name}" ({quoted}) FROM STDIN'
            with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(
                        [
                            *(
                                json.dumps(row[c], ensure_ascii=False)
                                if c in json_columns
                                else row[c]
                                for c in columns
                            ),
                            *defaults.values(),
                        ]
                    )

    def close(self) -> None:
        for table in list(self.buffers):
            self.flush(table)


class Pending(Exception):
    """The run's next move is after now: it is still active at its current step."""


class Over(Exception):
    """The run ended (its goal event with exit_on, or an exit step)."""


@dataclass
class Profile:
    """What a contact can be sent: addresses and consent, by contact index."""

    email: bool
    phone: bool
    push: bool
    email_ok: bool  # marketing consent
    sms_ok: bool
    locale: str
    gold: bool


class Seeder:
    def __init__(self, engine: Engine, size: dict[str, int], now: datetime) -> None:
        self.engine = engine
        self.size = size
        self.now = now
        self.rng = random.Random(SEED)
        self.writer = Writer(engine)
        self.next_event_id = 1
        self.events_made = 0
        self.events_per_contact = [0] * size["contacts"]
        self.runs_per_contact = [0] * size["contacts"]
        self.counters: dict[tuple[str, int, str, str, str, str], list[float]] = defaultdict(
            lambda: [0, 0.0, 0.0]
        )
        self.profiles: list[Profile] = []
        self.coupon_seq = 0
        self.order_seq = 0
        self.message_count = 0
        self.trail_count = 0
        self.drip_share = 0.0
        self.steps = deployed_steps(engine)
        self.missing: set[tuple[str, str]] = set()

    # contacts ---------------------------------------------------------------------

    def contacts(self) -> None:
        rng = self.rng
        self.weights = []
        for n in range(self.size["contacts"]):
            profile = Profile(
                email=rng.random() < 0.93,
                phone=rng.random() < 0.45,
                push=rng.random() < 0.30,
                email_ok=rng.random() < 0.90,
                sms_ok=rng.random() < 0.60,
                locale=rng.choice(LOCALES),
                gold=rng.random() < 0.05,
            )
            self.profiles.append(profile)
            # Activity per contact: a heavy tail (Pareto, alpha 2.5).
            self.weights.append(rng.paretovariate(2.5))
            cid = contact_id(n)
            self.writer.add(
                Contact,
                {
                    "id": cid,
                    "email": f"{cid}@example.com" if profile.email else None,
                    "phone": f"+7900{n:07d}" if profile.phone else None,
                    "locale": profile.locale,
                    "timezone": "Europe/Moscow",
                    "traits": {"first_name": f"Name{n % 997}", "tier": "gold"}
                    if profile.gold
                    else {"first_name": f"Name{n % 997}"},
                    "push_tokens": [f"tok-{n}"] if profile.push else [],
                    "consent": {
                        "email": {"marketing": profile.email_ok, "transactional": True},
                        "sms": {"marketing": profile.sms_ok, "transactional": True},
                    },
                    "anonymous": False,
                    "created_at": self.now - timedelta(days=400 * rng.random()),
                    "updated_at": self.now - timedelta(days=30 * rng.random()),
                },
            )
        self.cum_weights = []
        total = 0.0
        for w in self.weights:
            total += w
            self.cum_weights.append(total)

    def pick_contacts(self, k: int) -> list[int]:
        return self.rng.choices(range(self.size["contacts"]), cum_weights=self.cum_weights, k=k)

    # events -----------------------------------------------------------------------

    def add_event(
        self,
        contact: int,
        at: datetime,
        name: str | None,
        properties: dict[str, Any],
        origin: str = "client",
        message_id: str | None = None,
    ) -> int:
        event_id = self.next_event_id
        self.next_event_id += 1
        self.events_made += 1
        self.events_per_contact[contact] += 1
        self.writer.add(
            Event,
            {
                "id": event_id,
                "message_id": message_id or f"m-{event_id:09d}",
                "origin": origin,
                "type": "identify" if name is None else "track",
                "name": name,
                "contact_id": contact_id(contact),
                "properties": properties,
                "context": {"library": {"name": "analytics.js"}} if origin == "client" else {},
                "timestamp": at,
                "received_at": at + timedelta(milliseconds=200),
                "routed_at": at + timedelta(seconds=1),
            },
        )
        return event_id

    def free_events(self) -> None:
        left = self.size["events"] - self.events_made
        if left <= 0:
            return
        names = [n for n, _ in FREE_EVENTS]
        weights = [w for _, w in FREE_EVENTS]
        rng = self.rng
        span = DAYS * 86400
        for start in range(0, left, BATCH):
            k = min(BATCH, left - start)
            who = self.pick_contacts(k)
            what = rng.choices(names, weights=weights, k=k)
            for contact, name in zip(who, what, strict=True):
                at = self.now - timedelta(seconds=span * rng.random())
                if name is None:
                    props: dict[str, Any] = {"traits": {"locale": self.profiles[contact].locale}}
                elif name == "Products Searched":
                    props = {"query": f"q{rng.randrange(500)}"}
                elif name == "Page Viewed":
                    props = {"path": f"/p/{rng.randrange(300)}"}
                else:
                    props = {"product_id": f"P{rng.randrange(2000):04d}", "price": 990.0}
                self.add_event(contact, at, name, props)

    # runs -------------------------------------------------------------------------

    def runs(self) -> None:
        rng = self.rng
        count = self.size["runs"]
        self.drip_share = self._drip_share(count)
        journeys = [*MIX, DRIP]
        weights = [*(w * (1 - self.drip_share) / sum(MIX.values()) for w in MIX.values())]
        weights.append(self.drip_share)
        chosen = rng.choices(journeys, weights=weights, k=count)
        who = self.pick_contacts(count)
        span = DAYS * 86400
        headers = []
        once: set[tuple[str, int]] = set()
        for n, (journey, contact) in enumerate(zip(chosen, who, strict=True)):
            if journey in ("welcome", DRIP):  # re_entry: never: someone else enters
                while (journey, contact) in once and len(once) < 2 * self.size["contacts"]:
                    contact = rng.randrange(self.size["contacts"])
                once.add((journey, contact))
            entered = self.now - timedelta(seconds=span * rng.random())
            headers.append((entered, journey, contact, n))
        headers.sort()
        seqs: dict[str, int] = defaultdict(int)
        for entered, journey, contact, _ in headers:
            wid = f"journey:{journey}:{contact_id(contact)}"
            if journey == "post_purchase":  # one_run_per: order_id
                self.order_seq += 1
                order = f"o{self.order_seq:08d}"
                wid = f"{wid}:{order}"
            else:
                order = None
            seqs[wid] += 1
            self.runs_per_contact[contact] += 1
            self._run(journey, contact, wid, seqs[wid], entered, order)

    def _drip_share(self, runs: int) -> float:
        """The drip's share of runs that brings messages per run to the target ratio,
        estimated on a pilot of the other journeys (no rows written)."""
        target = self.size["messages"] / max(runs, 1)
        pilot = Seeder.__new__(Seeder)
        pilot.__dict__.update(self.__dict__)
        pilot.rng = random.Random(SEED + 1)
        pilot.writer = _NullWriter()  # type: ignore[assignment]
        pilot.counters = defaultdict(lambda: [0, 0.0, 0.0])
        pilot.events_per_contact = [0] * self.size["contacts"]
        pilot.runs_per_contact = [0] * self.size["contacts"]
        per_journey = {}
        for journey in [*MIX, DRIP]:
            pilot.message_count = 0
            for i in range(400):
                entered = self.now - timedelta(seconds=DAYS * 86400 * pilot.rng.random())
                contact = pilot.rng.randrange(self.size["contacts"])
                pilot._run(journey, contact, f"pilot:{journey}:{i}", 1, entered, f"p{i}")
            per_journey[journey] = pilot.message_count / 400
        others = sum(per_journey[j] * w for j, w in MIX.items()) / sum(MIX.values())
        drip = per_journey[DRIP]
        if target <= others or drip <= others:
            return 0.0
        return min(0.9, (target - others) / (drip - others))

    def _run(
        self,
        journey: str,
        contact: int,
        wid: str,
        seq: int,
        entered: datetime,
        order: str | None,
    ) -> None:
        run = Run(self, journey, contact, wid, seq, entered)
        trigger = self._trigger(journey, contact, entered, order)
        run.row["trigger_event_id"] = trigger
        run.trail("entered", None, f"entry {seq}", "first entry" if seq == 1 else f"entry {seq}")
        run.count(JOURNEY, "entered")
        try:
            SCRIPTS[journey](run)
            run.finish("completed", None)
        except (Pending, Over):
            pass
        run.late_conversion()
        self.writer.add(JourneyRun, run.row)
        if journey == "abandoned_cart" and self.rng.random() < 0.06:
            self._refusal(run)

    def _trigger(self, journey: str, contact: int, at: datetime, order: str | None) -> int:
        rng = self.rng
        before = at - timedelta(seconds=2)
        match journey:
            case "abandoned_cart":
                return self.add_event(
                    contact,
                    before,
                    "Product Added",
                    {
                        "product_id": f"P{rng.randrange(2000):04d}",
                        "price": 1490.0,
                        "quantity": 1,
                        "cart_id": f"cart-{contact}",
                    },
                )
            case "post_purchase":
                revenue = round(rng.lognormvariate(8, 0.6), 2)
                return self.add_event(
                    contact,
                    before,
                    "Order Completed",
                    {"order_id": order, "revenue": revenue, "currency": "RUB"},
                )
            case "welcome":
                return self.add_event(
                    contact,
                    before,
                    None,
                    {"consent": {"email": {"marketing": True}}, "traits": {"email": "x"}},
                )
            case "nps_survey":
                return self.add_event(
                    contact, before, "Order Delivered", {"order_id": f"d{rng.randrange(10**8)}"}
                )
            case "win_back" | "big_spenders":
                segment = "lapsed_customers" if journey == "win_back" else "big_spenders"
                return self.add_event(
                    contact,
                    before,
                    "Segment Entered",
                    {"segment": segment},
                    origin="internal",
                    message_id=f"segment:{segment}:{self.next_event_id}",
                )
            case _:
                return self.add_event(contact, before, "Account Created", {"plan": "free"})

    def _refusal(self, run: Run) -> None:
        """Another Product Added within 7 days: not entered again (re_entry: after 7d)."""
        at = run.entered + timedelta(days=6 * self.rng.random())
        if at > self.now:
            return
        trigger = self.add_event(run.contact, at, "Product Added", {"cart_id": "again"})
        self.trail_count += 1
        self.writer.add(
            TrailEntry,
            {
                "key": f"{run.wid}:e{trigger}:refused",
                "workflow_id": run.wid,
                "entry_seq": 0,
                "journey_id": run.journey,
                "version": 1,
                "contact_id": contact_id(run.contact),
                "step_id": None,
                "kind": "refused",
                "outcome": "re_entry",
                "reason": "entered too recently (re_entry: after)",
                "detail": {"trigger_event_id": trigger},
                "at": at,
            },
        )
        key = (run.journey, 1, at.date().isoformat(), JOURNEY, "refused:re_entry", "")
        self.counters[key][0] += 1

    def coupon(self, run: Run, campaign: str, prefix: str) -> None:
        self.coupon_seq += 1
        code = f"{prefix}-{self.coupon_seq:08X}"
        redeemed = run.order_at is not None and self.rng.random() < 0.5
        at = run.at()
        self.writer.add(
            Coupon,
            {
                "code": code,
                "campaign": campaign,
                "contact_id": contact_id(run.contact),
                "kind": "percent",
                "value": 10.0,
                "currency": None,
                "minimum_order": None,
                "expires_at": at + timedelta(days=30),
                "idempotency_key": f"{run.wid}:{run.current}:{run.seq}",
                "journey_id": run.journey,
                "workflow_id": run.wid,
                "entry_seq": run.seq,
                "shareable": False,
                "issued_at": at,
                "redeemed_at": None,
                "redeemed_order_id": None,
                "redeemed_revenue": None,
            }
            | (
                {"redeemed_at": at + timedelta(days=1), "redeemed_order_id": f"r-{code}"}
                if redeemed
                else {}
            ),
        )
        run.row["data"] = {**run.row["data"], "coupon": code}

    def points(self, run: Run, points: int) -> None:
        at = run.at()
        self.writer.add(
            LoyaltyEntry,
            {
                "contact_id": contact_id(run.contact),
                "kind": "earn",
                "points": points,
                "order_id": run.wid.rsplit(":", 1)[-1],
                "idempotency_key": f"{run.wid}:points:{run.seq}",
                "journey_id": run.journey,
                "note": "order",
                "expires_at": at + timedelta(days=365),
                "created_at": at,
            },
        )

    # counters ---------------------------------------------------------------------

    def write_counters(self, history_days: int = 0) -> None:
        """The counters as the write path leaves them: each bump lands on a random shard
        of its counter (when the table has shards), so a busy counter is several rows.

        `history_days`: also counters for that many days before the seeded ones (copies
        of theirs, 91 days back at a time), as a journey that has run that long has;
        no runs or messages behind them."""
        sharded = "shard" in JourneyCount.__table__.columns  # type: ignore[attr-defined]
        shards = getattr(counts, "SHARDS", 1) if sharded else 1
        for (journey, version, day, step, metric, channel), (n, amount, sq) in sorted(
            self.counters.items()
        ):
            n = int(n)
            per_shard = [0] * shards
            if n <= 4 * shards:
                for _ in range(n):
                    per_shard[self.rng.randrange(shards)] += 1
            else:
                per_shard = [n // shards] * shards
                for i in self.rng.sample(range(shards), n % shards):
                    per_shard[i] += 1
            for shard, part in enumerate(per_shard):
                if not part:
                    continue
                row = {
                    "journey_id": journey,
                    "version": version,
                    "day": day,
                    "step_id": step,
                    "metric": metric,
                    "channel": channel,
                    "count": part,
                    "amount": amount * part / n,
                    "amount_sq": sq * part / n,
                }
                if sharded:
                    row["shard"] = shard
                self.writer.add(JourneyCount, row)
                first = date.fromisoformat(day)
                for back in range(DAYS + 1, history_days + 1, DAYS + 1):  # 91 days seeded
                    earlier = (first - timedelta(days=back)).isoformat()
                    self.writer.add(JourneyCount, {**row, "day": earlier})


class _NullWriter:
    def add(self, model: Any, row: dict[str, Any]) -> None:
        pass


def deployed_steps(engine: Engine) -> dict[str, set[str]]:
    """The step ids of each journey's active version."""
    found: dict[str, set[str]] = {}
    with session_scope(engine) as session:
        rows = session.exec(
            select(JourneyVersion.journey_id, JourneyVersion.spec).where(
                col(JourneyVersion.active).is_(True)
            )
        ).all()
    for journey_id, spec in rows:
        found[journey_id] = set(_step_ids(m.Journey.model_validate(spec).steps))
    return found


def _step_ids(steps: list[Any]) -> Iterator[str]:
    for step in steps:
        yield str(step.id)
        for attr in ("then", "on_timeout", "else_", "on_failure"):
            yield from _step_ids(getattr(step, attr, None) or [])
        for case in getattr(step, "branch", None) or getattr(step, "split", None) or []:
            yield from _step_ids(case.then)


def contact_id(n: int) -> str:
    return f"c{n:07d}"


class Run:
    """One run walked through its journey: the run row, its trail, messages, counters."""

    def __init__(
        self, seeder: Seeder, journey: str, contact: int, wid: str, seq: int, entered: datetime
    ) -> None:
        self.s = seeder
        self.rng = seeder.rng
        self.journey = journey
        self.contact = contact
        self.profile = seeder.profiles[contact]
        self.wid = wid
        self.seq = seq
        self.entered = entered
        self.horizon = (seeder.now - entered).total_seconds()
        self.t = 0.0
        self.current: str | None = None
        self.day = entered.date().isoformat()
        self.converted = False
        goal = GOALS.get(journey)
        self.order_at: float | None = None
        self.exit_on = bool(goal and goal[2])
        self.goal_within = goal[1] * 86400 if goal else 0
        if goal and self.rng.random() < goal[0]:
            # Most orders come early: the product of two uniforms.
            self.order_at = self.goal_within * self.rng.random() * self.rng.random()
        self.row: dict[str, Any] = {
            "workflow_id": wid,
            "entry_seq": seq,
            "journey_id": journey,
            "version": 1,
            "contact_id": contact_id(contact),
            "trigger_event_id": None,
            "status": "active",
            "current_step": None,
            "exit_reason": None,
            "converted_at": None,
            "revenue": None,
            "conversion_event_id": None,
            "data": {},
            "entered_at": entered,
            "updated_at": entered,
            "exited_at": None,
        }

    def at(self, t: float | None = None) -> datetime:
        return self.entered + timedelta(seconds=self.t if t is None else t)

    def count(self, step: str, metric: str, channel: str = "", amount: float = 0.0) -> None:
        counter = self.s.counters[(self.journey, 1, self.day, step, metric, channel)]
        counter[0] += 1
        counter[1] += amount
        counter[2] += amount * amount

    def trail(
        self,
        kind: str,
        step: str | None,
        outcome: str | None,
        reason: str | None,
        detail: dict[str, Any] | None = None,
        t: float | None = None,
    ) -> None:
        self.s.trail_count += 1
        self.s.writer.add(
            TrailEntry,
            {
                "key": f"{self.wid}:{self.seq}:{step or ''}:{kind}",
                "workflow_id": self.wid,
                "entry_seq": self.seq,
                "journey_id": self.journey,
                "version": 1,
                "contact_id": contact_id(self.contact),
                "step_id": step,
                "kind": kind,
                "outcome": outcome,
                "reason": reason,
                "detail": detail or {},
                "at": self.at(t),
            },
        )

    def advance(self, seconds: float) -> None:
        """Move journey time on; an order on the way ends the run (exit_on), and a move
        past now leaves it active where it is."""
        target = self.t + seconds
        if (
            self.exit_on
            and self.order_at is not None
            and not self.converted
            and self.order_at <= min(target, self.horizon)
        ):
            self.t = self.order_at
            self.convert()
            self.finish("exited", "event: Order Completed")
            raise Over
        if target > self.horizon:
            raise Pending
        self.t = target

    def step(self, step_id: str) -> bool:
        """Reach a step; False (nothing happens) when the deployed journey has no such step
        (the shipped journeys changed since this script was written: it says so)."""
        if step_id not in self.s.steps.get(self.journey, ()):
            self.s.missing.add((self.journey, step_id))
            return False
        self.current = step_id
        self.row["current_step"] = step_id
        self.row["updated_at"] = self.at()
        self.trail("step", step_id, None, None)
        self.count(step_id, "reached")
        return True

    def decide(
        self, kind: str, step_id: str, outcome: str, reason: str | None, detail: Any = None
    ) -> None:
        self.trail(kind, step_id, outcome, reason, detail)
        self.count(step_id, f"{kind}:{outcome}")

    def convert(self) -> None:
        at = self.at(self.order_at)
        revenue = round(self.rng.lognormvariate(8, 0.6), 2)
        self.s.order_seq += 1
        order = f"o{self.s.order_seq:08d}"
        event_id = self.s.add_event(
            self.contact,
            at,
            "Order Completed",
            {"order_id": order, "revenue": revenue, "currency": "RUB"},
        )
        self.converted = True
        self.row.update(converted_at=at, revenue=revenue, conversion_event_id=event_id)
        self.trail(
            "goal",
            None,
            order,
            f"Order Completed within {self.goal_within // 86400}d of entry",
            {"event_id": event_id, "order_id": order, "revenue": revenue},
            t=self.order_at,
        )
        self.count(JOURNEY, "converted", amount=revenue)

    def late_conversion(self) -> None:
        """Goal events convert a run within the window, alive or not."""
        if self.order_at is not None and not self.converted and self.order_at <= self.horizon:
            self.convert()

    def finish(self, status: str, reason: str | None) -> None:
        at = self.at()
        self.row.update(status=status, exit_reason=reason, exited_at=at, updated_at=at)
        self.trail("exit", None, status, reason or "reached the end of the journey")
        self.count(JOURNEY, f"finished:{status}")
        if reason:
            self.count(JOURNEY, f"exit:{reason}")

    def wait(self, step_id: str, days: float) -> None:
        if self.step(step_id):
            self.advance(days * 86400)

    def wait_for(
        self, step_id: str, within_days: float, hit_after: float | None, what: str
    ) -> bool:
        """A wait for an event or engagement `hit_after` seconds from now (None: never)."""
        if not self.step(step_id):
            return False
        timeout = within_days * 86400
        if hit_after is not None and hit_after <= timeout:
            self.advance(hit_after)
            self.decide("wait", step_id, what, f"{what.split(':', 1)[1]} arrived")
            return True
        self.advance(timeout)
        self.decide("wait", step_id, "timeout", f"no {what.split(':', 1)[1]} in time")
        return False

    def send(
        self,
        step_id: str,
        channels: tuple[str, ...],
        template: str,
        category: str = "marketing",
        quiet_hours: bool = False,
    ) -> tuple[str, float | None]:
        """Reach a send step and send: (status, seconds until it was opened or None)."""
        if not self.step(step_id):
            return "no such step", None
        rng, p = self.rng, self.profile
        s = self.s
        message_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        start = self.at()
        timeline: list[dict[str, Any]] = [{"status": "pending", "at": start.isoformat()}]
        row: dict[str, Any] = {
            "id": message_id,
            "idempotency_key": f"{self.wid}:{step_id}:{self.seq}",
            "workflow_id": self.wid,
            "entry_seq": self.seq,
            "step_id": step_id,
            "journey_id": self.journey,
            "contact_id": contact_id(self.contact),
            "channel": channels[0],
            "adapter": "",
            "template": template,
            "category": category,
            "recipient": None,
            "content": {},
            "locale": p.locale,
            "status": "pending",
            "provider_message_id": None,
            "error": None,
            "timeline": timeline,
            "created_at": start,
            "queued_at": None,
            "sent_at": None,
            "attempts": 0,
        }
        s.message_count += 1
        channel = None
        refusals = []
        for ch in channels:
            has = {"email": p.email, "sms": p.phone, "push": p.push}[ch]
            ok = category != "marketing" or {"email": p.email_ok, "sms": p.sms_ok}.get(ch, True)
            if has and ok:
                channel = ch
                break
            refusals.append(f"{ch}: {'no consent' if has else 'no address'}")
        opened_after = None
        try:
            if channel is None:
                no_consent = any("consent" in r for r in refusals)
                status = "suppressed" if no_consent else "failed"
                self._end(row, status, "; ".join(refusals), "channel")
                return status, None
            row["channel"] = channel
            row["adapter"] = {"email": "sendgrid", "sms": "twilio", "push": "firebase"}[channel]
            row["recipient"] = contact_id(self.contact)
            detail = f"{channel} ({'; '.join(refusals) or 'first choice'})"
            timeline.append(
                {"status": "pending", "check": "channel", "result": "pass", "detail": detail}
                | {"at": start.isoformat()}
            )
            if quiet_hours and channel == "email" and rng.random() < 0.25:
                until = start + timedelta(hours=6 + 5 * rng.random())
                row["status"] = "deferred"
                timeline.append(
                    {
                        "status": "deferred",
                        "check": "quiet_hours",
                        "detail": "21:00-08:00 in Europe/Moscow",
                        "until": until.isoformat(),
                        "at": start.isoformat(),
                    }
                )
                self.count(step_id, "message:deferred:quiet_hours", channel)
                self.advance((until - start).total_seconds())
            roll = rng.random()
            if roll < 0.015:
                self._end(row, "skipped", "frequency cap: 3 per 7d", "frequency_cap")
                return "skipped", None
            if roll < 0.02:
                row["attempts"] = 3
                self._end(row, "failed", "provider said no: 400 invalid recipient", "provider")
                return "failed", None
            sent_at = self.at()
            row.update(
                content=CONTENT,
                queued_at=sent_at,
                sent_at=sent_at,
                attempts=1,
                provider_message_id=f"pm-{message_id[:18]}",
            )
            timeline.append({"status": "queued", "at": sent_at.isoformat()})
            timeline.append({"status": "sending", "at": sent_at.isoformat()})
            self._end(row, "sent", None, None)
            opened_after = self._engage(row, channel, sent_at)
            return "sent", opened_after
        finally:
            s.writer.add(Message, row)

    def _end(self, row: dict[str, Any], status: str, error: str | None, check: str | None) -> None:
        row["status"] = status
        row["error"] = error
        entry: dict[str, Any] = {"status": status, "at": self.at().isoformat()}
        if check:
            entry["check"] = check
        if error:
            entry["detail"] = error
        row["timeline"].append(entry)
        self.count(row["step_id"], f"message:{status}", row["channel"])
        self.decide(
            "send",
            row["step_id"],
            status,
            error,
            {"message_id": row["id"], "channel": row["channel"]},
        )

    def _engage(self, row: dict[str, Any], channel: str, sent_at: datetime) -> float | None:
        """Provider reports and engagement, up to now: returns when it was opened."""
        rng = self.rng
        rates = {  # delivered, bounced | opened (of delivered), clicked (of opened)
            "email": (0.96, 0.03, 0.35, 0.25),
            "push": (0.90, 0.0, 0.10, 0.0),
            "sms": (0.97, 0.01, 0.0, 0.05),
        }[channel]
        roll = rng.random()
        now = self.s.now
        reached: list[tuple[str, datetime, int | None]] = []
        if roll < rates[1]:
            at = sent_at + timedelta(seconds=30)
            if at <= now:
                reached.append(("bounced", at, self._report(row, "Email Bounced", at, "bounce")))
        elif roll < rates[1] + rates[0]:
            at = sent_at + timedelta(seconds=20)
            if at <= now:
                report = self._report(row, "Email Delivered", at, "delivered")
                reached.append(("delivered", at, report if channel == "email" else None))
                if rng.random() < rates[2]:
                    opened = at + timedelta(seconds=rng.expovariate(1 / 20000))
                    if opened <= now:
                        name = "Email Opened" if channel == "email" else "Push Opened"
                        reached.append(("opened", opened, self._report(row, name, opened, "open")))
                        if rng.random() < rates[3]:
                            clicked = opened + timedelta(seconds=rng.expovariate(1 / 120))
                            if clicked <= now:
                                report = self._report(row, "Email Link Clicked", clicked, "click")
                                reached.append(("clicked", clicked, report))
        opened_after = None
        for status, at, event_id in reached:
            entry: dict[str, Any] = {"status": status, "at": at.isoformat()}
            if event_id is not None:
                entry["event_id"] = event_id
            row["timeline"].append(entry)
            row["status"] = status
            self.count(row["step_id"], f"message:{status}", channel)
            if status == "opened":
                opened_after = (at - sent_at).total_seconds()
        return opened_after

    def _report(self, row: dict[str, Any], name: str, at: datetime, kind: str) -> int | None:
        """The provider's report as an event; not for deliveries, which would take half
        of the events (the timeline records them without an event)."""
        if kind == "delivered":
            return None
        return self.s.add_event(
            self.contact,
            at,
            name,
            {"message_id": row["id"], "journey_id": self.journey},
            origin="internal",
            message_id=f"{row['adapter']}:{row['id']}:{kind}",
        )


# --- the journeys, step by step ------------------------------------------------------


def abandoned_cart(run: Run) -> None:
    run.wait("steps.0", 1)
    _, opened = run.send("reminder", ("email",), "cart_reminder")
    if not run.wait_for("steps.2", 2, opened, "engaged:opened"):
        run.send("reminder_push", ("push", "sms"), "cart_reminder")


def post_purchase(run: Run) -> None:
    run.step("points")
    run.s.points(run, run.rng.randrange(500, 5000))
    run.step("next_order_code")
    run.s.coupon(run, "thank_you", "THANKS")
    run.send("thank_you", ("email",), "order_thank_you", category="transactional")
    delivered = 86400 * (2 + 4 * run.rng.random()) if run.rng.random() < 0.9 else None
    if delivered is not None and run.t + delivered <= run.horizon:
        order = run.wid.rsplit(":", 1)[-1]
        run.s.add_event(
            run.contact, run.at(run.t + delivered), "Order Delivered", {"order_id": order}
        )
    if run.wait_for("steps.3", 30, delivered, "event:Order Delivered"):
        run.wait("steps.3.then.0", 7)
        run.send("review", ("email",), "review_request")


def welcome(run: Run) -> None:
    run.step("first_order_code")
    run.s.coupon(run, "welcome", "HELLO")
    run.send("welcome", ("email",), "welcome", quiet_hours=True)
    run.wait("steps.2", 3)
    run.send("code_reminder", ("email",), "welcome_reminder", quiet_hours=True)


def win_back(run: Run) -> None:
    _, opened = run.send("miss_you", ("email",), "win_back")
    if not run.wait_for("steps.1", 7, opened, "engaged:opened"):
        run.send("miss_you_push", ("push",), "win_back")
    run.wait("steps.2", 14)
    run.step("last_offer_code")
    run.s.coupon(run, "win_back", "BACK")
    run.send("last_offer", ("email", "sms"), "win_back_last_offer")


def nps_survey(run: Run) -> None:
    rng = run.rng
    run.wait("steps.0", 3)
    status, _ = run.send("survey", ("email", "sms"), "nps_survey")
    if status != "sent":
        run.step("steps.1.on_failure.0")
        run.finish("exited", "could not ask (no address or no consent)")
        raise Over
    answer = 86400 * 4 * rng.random() if rng.random() < 0.35 else None
    if not run.wait_for("steps.2", 5, answer, "event:Survey Answered"):
        run.send("survey_reminder", ("email", "sms"), "nps_reminder")
        answer = 86400 * 4 * rng.random() if rng.random() < 0.2 else None
        if not run.wait_for("steps.2.on_timeout.1", 5, answer, "event:Survey Answered"):
            run.step("steps.2.on_timeout.1.on_timeout.0")
            run.finish("exited", "no answer")
            raise Over
    score = rng.choice((2, 5, 6, 7, 8, 9, 9, 10, 10, 10))
    run.s.add_event(run.contact, run.at(), "Survey Answered", {"score": score}, "internal")
    run.step("steps.3")
    if score <= 6:
        run.decide("branch", "steps.3", "case 1", "score <= 6 is true")
        run.step("support_ticket")
        run.step("apology_code")
        run.s.coupon(run, "nps_apology", "SORRY")
        run.send("apology", ("email", "sms"), "nps_apology")
    elif score >= 9:
        run.decide("branch", "steps.3", "case 2", "score >= 9 is true")
        run.send("review_invite", ("email",), "review_invite")
    else:
        run.decide("branch", "steps.3", "else", "no case's condition is true")


def big_spenders(run: Run) -> None:
    run.step("steps.0")
    run.step("vip_code")
    run.s.coupon(run, "big_spenders", "VIP")
    run.send("offer", ("email",), "vip_offer")


def drip(run: Run) -> None:
    for n, gap in enumerate(DRIP_GAPS, 1):
        run.send(f"tip_{n}", ("email",), "review_invite")
        run.wait(f"pause_{n}", gap)


SCRIPTS: dict[str, Callable[[Run], None]] = {
    "abandoned_cart": abandoned_cart,
    "post_purchase": post_purchase,
    "welcome": welcome,
    "win_back": win_back,
    "nps_survey": nps_survey,
    "big_spenders": big_spenders,
    DRIP: drip,
}


def seed(
    engine: Engine, size: dict[str, int], work: Path, now: datetime, history_days: int = 0
) -> dict[str, Any]:
    """Deploy, generate and bulk-insert; returns what was written and how long it took."""
    started = time.perf_counter()
    journeys_dir = work / "journeys"
    shutil.copytree(ROOT / "journeys", journeys_dir)
    (journeys_dir / f"{DRIP}.yaml").write_text(DRIP_YAML)
    deploy(engine, journeys_dir, ROOT / "templates")
    seeder = Seeder(engine, size, now)
    seeder.contacts()
    seeder.runs()
    run_events = seeder.events_made  # triggers, orders, answers, provider reports
    seeder.free_events()
    seeder.write_counters(history_days)
    seeder.writer.close()
    inserted = time.perf_counter()
    # What the routers do every hour: past days' counters folded into one shard each.
    before = (now - timedelta(days=counts.FOLD_AFTER_DAYS)).date().isoformat()
    folded = 0
    while True:
        with session_scope(engine) as session:
            batch = counts.fold_shards(session, before, 50_000)
        folded += batch
        if batch < 50_000:
            break
    fold_done = time.perf_counter()
    analyze(engine)
    done = time.perf_counter()
    written = dict(seeder.writer.written)
    reached = {(j, step) for (j, _, _, step, metric, _) in seeder.counters if metric == "reached"}
    unvisited = sorted(
        (j, step) for j, ids in seeder.steps.items() for step in ids if (j, step) not in reached
    )
    # The contacts to explain: ~10x the average number of events, and about the average.
    per = seeder.events_per_contact
    average = sum(per) / len(per)
    with_runs = [n for n in range(len(per)) if seeder.runs_per_contact[n]]
    heavy = min(with_runs, key=lambda n: (abs(per[n] - 10 * average), n))
    typical = min(with_runs, key=lambda n: (abs(per[n] - average), n))
    return {
        "now": now,
        "written": written,
        "trail_per_run": written.get("run_trail", 0) / max(written.get("journey_runs", 1), 1),
        "drip_share": seeder.drip_share,
        "run_events": run_events,
        "insert_seconds": inserted - started,
        "fold_seconds": fold_done - inserted,
        "folded_rows": folded,
        "analyze_seconds": done - fold_done,
        "heavy": (contact_id(heavy), per[heavy]),
        "typical": (contact_id(typical), per[typical]),
        "average_events": average,
        "missing_steps": sorted(seeder.missing),
        "unvisited_steps": unvisited,
    }


def analyze(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load (VACUUM also sets the visibility map
        # that index-only scans need).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
        with engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def store_bytes(engine: Engine, path: Path | None) -> int:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return int(
                connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
                or 0
            )
    assert path is not None
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


# --- measuring ------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    samples: list[float]  # ms
    target: bool = True  # judged against TARGET_MS

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        if len(self.samples) < 2:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=20, method="inclusive")[18]

    @property
    def met(self) -> bool:
        return self.p95 <= TARGET_MS


def measure(label: str, call: Callable[[], Any], target: bool = True) -> Timing:
    call()  # warm-up
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return Timing(label, samples, target)


def baseline(engine: Engine, journey_id: str, since: date | None) -> dict[str, Any]:
    """The naive way: messages by step and status, and runs by status, from the rows."""
    moment = datetime.combine(since, datetime.min.time(), UTC) if since else None
    messages = (
        "SELECT step_id, status, count(*) FROM messages WHERE journey_id = :j"
        + (" AND created_at >= :since" if moment else "")
        + " GROUP BY step_id, status"
    )
    runs = (
        "SELECT status, count(*), sum(revenue) FROM journey_runs WHERE journey_id = :j"
        + (" AND entered_at >= :since" if moment else "")
        + " GROUP BY status"
    )
    params: dict[str, Any] = {"j": journey_id}
    if moment is not None:
        params["since"] = moment
    with engine.connect() as connection:
        return {
            "messages": connection.execute(_timed(messages, moment), params).all(),
            "runs": connection.execute(_timed(runs, moment), params).all(),
        }


def _timed(sql: str, moment: datetime | None) -> Any:
    """Bind `:since` as the store writes its timestamps (SQLite: UTC text)."""
    query = text(sql)
    return query.bindparams(bindparam("since", type_=UTCDateTime())) if moment else query


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run inside the block, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def plans(engine: Engine, calls: dict[str, Callable[[], Any]]) -> dict[str, list[dict[str, Any]]]:
    """EXPLAIN every SELECT the calls run; flags scans of whole big tables."""
    found: dict[str, list[dict[str, Any]]] = {}
    postgres = engine.dialect.name == "postgresql"
    for label, call in calls.items():
        with statements(engine) as seen:
            call()
        entries = []
        done: set[str] = set()
        for statement, parameters in seen:
            if not statement.lstrip().upper().startswith("SELECT") or statement in done:
                continue
            if "pg_advisory" in statement:
                continue
            done.add(statement)
            with engine.connect() as connection:
                prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
                rows = connection.exec_driver_sql(prefix + statement, parameters).all()
            lines = [r[0] for r in rows] if postgres else [r[-1] for r in rows]
            entries.append(
                {"sql": " ".join(statement.split()), "plan": lines, "scans": full_scans(lines)}
            )
        found[label] = entries
    return found


def full_scans(lines: list[str]) -> list[str]:
    """Scans of a whole big table (or of a whole index of one) in a plan."""
    flagged = []
    for i, line in enumerate(lines):
        sqlite = re.match(r"\s*SCAN (\w+)(.*)", line)
        if sqlite and sqlite.group(1) in BIG_TABLES:
            flagged.append(line.strip())
            continue
        pg = re.search(r"(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan)\b.* on (\w+)", line)
        if pg and pg.group(2) in BIG_TABLES:
            if pg.group(1) == "Seq Scan":
                flagged.append(line.strip())
                continue
            if pg.group(1) == "Bitmap Heap Scan":
                continue  # its Bitmap Index Scan child has the condition
            body = []  # the node's own lines, up to the next node
            for later in lines[i + 1 :]:
                if "->" in later:
                    break
                body.append(later)
            if not any("Index Cond" in b for b in body):
                flagged.append(line.strip() + " (no Index Cond: the whole index)")
    return flagged


def run_database(
    label: str,
    engine: Engine,
    size: dict[str, int],
    work: Path,
    db_path: Path | None,
    args: argparse.Namespace,
    now: datetime,
) -> dict[str, Any]:
    show = args.plans
    print(f"\n=== {label} ===", flush=True)
    migrate(engine)
    seeded = seed(engine, size, work, now, args.history_days)
    written = seeded["written"]
    size_bytes = store_bytes(engine, db_path)
    print(
        f"seeded in {seeded['insert_seconds']:.1f} s "
        f"(+ folding {seeded['folded_rows']} counter rows of past days "
        f"{seeded['fold_seconds']:.1f} s, + ANALYZE {seeded['analyze_seconds']:.1f} s); "
        f"store size {size_bytes / 2**20:.0f} MiB",
        flush=True,
    )
    print(
        "rows: "
        + ", ".join(f"{t} {n:,}" for t, n in sorted(written.items(), key=lambda kv: -kv[1]))
        + f"; trail rows per run {seeded['trail_per_run']:.1f}; "
        f"drip share of runs {seeded['drip_share']:.2f}; events behind runs and messages "
        f"{seeded['run_events']:,}",
        flush=True,
    )
    if seeded["missing_steps"] or seeded["unvisited_steps"]:
        print(
            "note: the seeding scripts and journeys/ differ; steps the scripts walk that the "
            f"journeys lack: {seeded['missing_steps'] or 'none'}; steps no run reached: "
            f"{seeded['unvisited_steps'] or 'none'}",
            flush=True,
        )
    with session_scope(engine) as session:
        by_journey: dict[str, int] = dict(
            session.exec(  # type: ignore[arg-type]
                select(JourneyRun.journey_id, func.count()).group_by(col(JourneyRun.journey_id))
            ).all()
        )
    biggest = max(by_journey, key=lambda j: by_journey[j])
    today = seeded["now"].date()
    since = today - timedelta(days=30)
    heavy, heavy_events = seeded["heavy"]
    typical, typical_events = seeded["typical"]
    print(
        f"journey {biggest}: {by_journey[biggest]:,} runs; contacts explained: {heavy} "
        f"({heavy_events} events), {typical} ({typical_events}; average "
        f"{seeded['average_events']:.1f})",
        flush=True,
    )

    def stats(since: date | None = None) -> Callable[[], Any]:
        def call() -> Any:
            with session_scope(engine) as session:
                return journey_stats(session, biggest, since)

        return call

    def heads() -> Any:
        with session_scope(engine) as session:
            return headlines(session)

    def story(contact: str) -> Callable[[], Any]:
        def call() -> Any:
            with session_scope(engine) as session:
                return contact_story(session, contact)

        return call

    # Consistency: the counters agree with the rows (of the seeded days).
    report = stats(seeded["now"].date() - timedelta(days=DAYS))()
    naive = baseline(engine, biggest, None)
    runs_total = sum(n for _, n, _ in naive["runs"])
    messages_total = sum(n for _, _, n in naive["messages"])
    counted = sum(m.sent + sum(m.not_sent.values()) + m.unknown for m in report.messages)
    consistent = report.entered == runs_total and counted == messages_total
    print(
        f"counters vs rows: entered {report.entered:,} / runs {runs_total:,}; "
        f"send outcomes {counted:,} / messages {messages_total:,}: "
        + ("consistent" if consistent else "NOT CONSISTENT"),
        flush=True,
    )
    heavy_story = story(heavy)()
    typical_story = story(typical)()

    timings = [
        measure(f"journey_stats {biggest}, all time", stats()),
        measure(f"journey_stats {biggest}, since {since}", stats(since)),
        measure(f"headlines ({len(by_journey)} journeys)", heads),
        measure(
            f"contact_story, {heavy_events} events ({len(heavy_story.moments)} moments)",
            story(heavy),
        ),
        measure(
            f"contact_story, {typical_events} events ({len(typical_story.moments)} moments)",
            story(typical),
        ),
        measure(
            f"baseline SQL {biggest}, all time",
            lambda: baseline(engine, biggest, None),
            target=False,
        ),
        measure(
            f"baseline SQL {biggest}, since {since}",
            lambda: baseline(engine, biggest, since),
            target=False,
        ),
    ]
    print(f"\n{'query':<52} {'median ms':>10} {'p95 ms':>8}  target <= {TARGET_MS:.0f} ms")
    for t in timings:
        verdict = ("met" if t.met else "NOT MET") if t.target else "-"
        print(f"{t.label:<52} {t.median:>10.1f} {t.p95:>8.1f}  {verdict}")
    ratio_all = timings[5].median / timings[0].median
    ratio_30 = timings[6].median / timings[1].median
    print(
        f"baseline / journey_stats (medians): all time {ratio_all:.1f}x, "
        f"last 30 days {ratio_30:.1f}x",
        flush=True,
    )

    explained = plans(
        engine,
        {
            "journey_stats": stats(),
            "journey_stats since": stats(since),
            "headlines": heads,
            "contact_story": story(heavy),
            "baseline": lambda: baseline(engine, biggest, since),
        },
    )
    print("\nscans of whole big tables (from the query plans):")
    any_scan = False
    for label_, entries in explained.items():
        for entry in entries:
            for scan in entry["scans"]:
                any_scan = True
                print(f"  {label_}: {scan}\n      in: {entry['sql'][:160]}")
    if not any_scan:
        print("  none")
    if show:
        for label_, entries in explained.items():
            print(f"\n--- plans: {label_}")
            for entry in entries:
                print(f"  {entry['sql']}")
                for line in entry["plan"]:
                    print(f"      {line}")
    return {
        "database": label,
        "sizes": written,
        "seed_seconds": round(seeded["insert_seconds"], 1),
        "analyze_seconds": round(seeded["analyze_seconds"], 1),
        "fold_seconds": round(seeded["fold_seconds"], 1),
        "folded_rows": seeded["folded_rows"],
        "store_bytes": size_bytes,
        "trail_rows_per_run": round(seeded["trail_per_run"], 2),
        "events_behind_runs": seeded["run_events"],
        "journey": biggest,
        "journey_runs": by_journey[biggest],
        "contacts": {"heavy": [heavy, heavy_events], "typical": [typical, typical_events]},
        "consistent": consistent,
        "timings": [
            {
                "label": t.label,
                "median_ms": round(t.median, 2),
                "p95_ms": round(t.p95, 2),
                "target_met": t.met if t.target else None,
            }
            for t in timings
        ],
        "baseline_ratio": {"all_time": round(ratio_all, 1), "last_30_days": round(ratio_30, 1)},
        "full_scans": {
            label_: [s for e in entries for s in e["scans"]]
            for label_, entries in explained.items()
        },
        "plans": explained if show else None,
    }


@contextmanager
def scratch_store(postgres: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database on that server (dropped after), or None for SQLite."""
    if postgres is None:
        yield None
        return
    with scratch_postgres(postgres) as url:
        yield url


@contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """A database created for the run on the server of `url`, dropped afterwards."""
    name = f"journeys_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def reported(label: str) -> Iterator[None]:
    """A benchmark reports; it does not fail: an error ends this database's part only."""
    try:
        yield
    except Exception as exc:
        print(f"{label}: benchmark stopped: {type(exc).__name__}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument(
        "--history-days",
        type=int,
        default=0,
        metavar="N",
        help="also counters for N days before the seeded 90 (a journey that ran that long)",
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the issue's sizes")
    parser.add_argument("--postgres", metavar="URL", help="also run on a scratch database there")
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    parser.add_argument("--plans", action="store_true", help="print every query plan")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    size = sizes(args)
    print(
        f"reporting queries: {size['contacts']:,} contacts, {size['events']:,} events, "
        f"{size['messages']:,} messages, {size['runs']:,} runs; {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}"
        + (f"; counters for {args.history_days} more days of history" if args.history_days else ""),
        flush=True,
    )
    results = []
    now = datetime.now(UTC)  # the same data on both databases
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="journeys-bench-") as tmp:
            db_path = Path(tmp) / "journeys.db"
            engine = make_engine(f"sqlite:///{db_path}")
            with reported("SQLite"):
                results.append(run_database("SQLite", engine, size, Path(tmp), db_path, args, now))
            engine.dispose()
    if args.postgres:
        with reported("PostgreSQL"), scratch_postgres(args.postgres) as url:
            engine = make_engine(url)
            try:
                with tempfile.TemporaryDirectory(prefix="journeys-bench-") as tmp:
                    results.append(
                        run_database("PostgreSQL", engine, size, Path(tmp), None, args, now)
                    )
            finally:
                engine.dispose()
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "measured_at": datetime.now(UTC).isoformat(),
                    "sizes_asked": size,
                    "history_days": args.history_days,
                    "target_ms": TARGET_MS,
                    "results": results,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
    sys.exit(0)
