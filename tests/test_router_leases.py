"""Several routers on one events table: leases, per-contact order, takeover, aliases.

The routers are the real `Router` on SQLite and PostgreSQL (`engine`), talking to the
real time-skipping server (`ts_env`). What they delivered is read back from Temporal
itself: every signal-with-start and signal a router makes is a `WorkflowExecutionSignaled`
event in the run's history, with the event id in its payload. No worker runs in most
tests, so the runs stay open and keep every delivery; the alias test runs one.

Each guard has a control that removes it (a `Router` subclass picking rows the way the
router did before leases, or without the per-contact rule) and shows the fault the
test would otherwise miss.
"""

from __future__ import annotations

import asyncio
import random
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from harness import Bench, own_time_skipping_server, terminate_runs, tiny_templates, write_journey
from sqlalchemy import Engine, Select
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from orchestrator.api.ingest import store_call, store_calls
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.deployment.deploy import deploy
from orchestrator.processes.router import BATCH, Router
from orchestrator.store.backlog import routing_backlog
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Event, utcnow
from orchestrator.workflows.journey import workflow_id
from orchestrator.workflows.types import EventSignal


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own time-skipping server (see `harness.own_time_skipping_server`)."""
    async with own_time_skipping_server() as env:
        yield env


LISTEN = """
id: listen
name: Listen
trigger: { event: Started }
exit_on: [Leave]
goal: { event: Bought, within: 30d }
steps:
  - wait_for: { event: Ping, timeout: 30d }
"""
DELIVERED = {"Started", "Ping", "Bought", "Leave"}  # "Viewed" is routed but concerns no run


class Shop:
    """A deployed `listen` journey, contacts unique to this test, events stored as the API does."""

    def __init__(self, engine: Engine, env: WorkflowEnvironment, root: Path) -> None:
        self.engine, self.client = engine, env.client
        self.queue = f"tq-{uuid.uuid4().hex[:8]}"
        self.prefix = uuid.uuid4().hex[:6]  # the test server is shared: ids must not collide
        write_journey(root / "journeys", "listen", LISTEN)
        (root / "templates").mkdir()
        deploy(engine, root / "journeys", root / "templates")

    def contact(self, n: int) -> str:
        return f"{self.prefix}-c{n}"

    def store(self, contact: str, name: str) -> None:
        self.store_many([(contact, name)])

    def store_many(self, events: list[tuple[str, str]]) -> None:
        """One transaction, as the API stores a /v1/batch."""
        calls = [
            TrackCall.model_validate({"userId": c, "event": n, "messageId": str(uuid.uuid4())})
            for c, n in events
        ]
        assert store_calls(self.engine, calls) == len(calls)

    def router(self, cls: type[Router] = Router, **options: Any) -> Router:
        return cls(self.client, self.engine, self.queue, **{"interval": 0.05, **options})

    def events(self) -> list[Event]:
        with session_scope(self.engine) as session:
            rows = list(session.exec(select(Event).order_by(col(Event.id))))
            for row in rows:
                session.expunge(row)
            return rows

    def expected(self, contacts: Iterable[str]) -> dict[str, list[int]]:
        """Each contact's events a run hears, in the order they were stored."""
        wanted: dict[str, list[int]] = {c: [] for c in contacts}
        for e in self.events():
            if e.contact_id in wanted and e.name in DELIVERED:
                wanted[e.contact_id].append(e.id or 0)
        return wanted

    async def delivered(self, contact: str) -> list[int]:
        """Event ids the contact's run received, in the order Temporal recorded them."""
        return await signalled_event_ids(self.client, workflow_id("listen", contact))


async def signalled_event_ids(client: Client, wid: str) -> list[int]:
    ids: list[int] = []
    try:
        async for event in client.get_workflow_handle(wid).fetch_history_events():
            if not event.HasField("workflow_execution_signaled_event_attributes"):
                continue
            attributes = event.workflow_execution_signaled_event_attributes
            if attributes.signal_name == "event":
                [signal] = await client.data_converter.decode(
                    attributes.input.payloads, [EventSignal]
                )
                ids.append(signal.event_id)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    return ids


async def deliveries(shop: Shop, contacts: Iterable[str]) -> dict[str, list[int]]:
    found = await asyncio.gather(*(shop.delivered(c) for c in contacts))
    return dict(zip(contacts, found, strict=True))


def duplicates(delivered: dict[str, list[int]]) -> int:
    return sum(n - 1 for ids in delivered.values() for n in Counter(ids).values() if n > 1)


def out_of_order(delivered: dict[str, list[int]]) -> int:
    """Contacts whose run heard an event before an earlier one (first deliveries only)."""
    firsts = {c: list(dict.fromkeys(ids)) for c, ids in delivered.items()}
    return sum(ids != sorted(ids) for ids in firsts.values())


@pytest_asyncio.fixture
async def shop(engine: Engine, ts_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Shop]:
    yield Shop(engine, ts_env, tmp_path)
    await terminate_runs(ts_env.client, engine, "listen")


# --- the controls: routers without the guards under test ------------------------------


class WithoutLeases(Router):
    """Picks rows as the router did before leases: the oldest unrouted, whoever holds them."""

    def _claimable(self, now: datetime) -> Select[Any]:
        return select(Event.id).where(col(Event.routed_at).is_(None)).order_by(col(Event.id))


class WithoutContactOrder(Router):
    """Skips leased rows, but not the other events of a contact another router holds."""

    def _claimable(self, now: datetime) -> Select[Any]:
        free = (col(Event.lease_until).is_(None)) | (col(Event.lease_until) < now)
        return select(Event.id).where(col(Event.routed_at).is_(None), free).order_by(col(Event.id))


# --- tests ----------------------------------------------------------------------------


async def test_three_routers_sweeping_one_backlog_deliver_each_event_once_in_order(
    shop: Shop,
) -> None:
    """Three routers run their loops on one growing backlog: every event is routed, each
    exactly once, and every contact's run hears its events in the order they were stored."""
    rng = random.Random(7)
    contacts = [shop.contact(n) for n in range(120)]
    names = ["Ping"] * 6 + ["Viewed", "Bought"]

    def store_backlog(rounds: range) -> None:
        for r in rounds:
            shuffled = rng.sample(contacts, len(contacts))
            for at in range(0, len(shuffled), 30):  # small batches: claims interleave
                shop.store_many(
                    [
                        (c, "Started" if r == 0 else rng.choice(names))
                        for c in shuffled[at : at + 30]
                    ]
                )

    await asyncio.to_thread(store_backlog, range(3))  # 360 events before the routers start
    routers = [shop.router() for _ in range(3)]
    loops = [asyncio.create_task(r.run()) for r in routers]
    try:
        # ...and 480 more while they route, the last one a Leave for everyone.
        await asyncio.to_thread(store_backlog, range(3, 7))
        await asyncio.to_thread(shop.store_many, [(c, "Leave") for c in contacts])
        await until_routed(shop, loops)
    finally:
        for router in routers:
            router.stop()
        await asyncio.gather(*loops)

    events = shop.events()
    assert len(events) == 7 * 120 + 120
    assert all(e.routed_at is not None for e in events)
    assert all(e.lease_owner is None and e.lease_until is None for e in events)
    assert sum(r.routed for r in routers) == len(events), [r.routed for r in routers]
    delivered = await deliveries(shop, contacts)
    assert delivered == shop.expected(contacts)
    print(f"\nevents routed per router: {[r.routed for r in routers]}")


async def until_routed(shop: Shop, loops: list[asyncio.Task[None]], limit: float = 180) -> None:
    """Wait for an empty backlog (the limit only guards against a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while (backlog := await asyncio.to_thread(routing_backlog, shop.engine)).backlog:
        for task in loops:
            if task.done():
                task.result()
        assert loop.time() < deadline, f"still unrouted after {limit:.0f} s: {backlog}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("kind", [Router, WithoutLeases], ids=["leases", "control"])
async def test_claims_of_concurrent_routers_are_disjoint(shop: Shop, kind: type[Router]) -> None:
    """Three routers claim one after the other, then deliver at the same time. With leases
    the claims share no event and no contact; the control (no leases) delivers twice."""
    contacts = [shop.contact(n) for n in range(3 * BATCH + 100)]
    shop.store_many([(c, "Started") for c in contacts] + [(c, "Ping") for c in contacts[:100]])
    routers = [shop.router(kind) for _ in range(3)]
    claims = [await asyncio.to_thread(r.claim) for r in routers]
    await asyncio.gather(*(r.deliver(c) for r, c in zip(routers, claims, strict=True)))

    claimed = [[e.id for e in c.events] for c in claims]
    if kind is WithoutLeases:
        assert claimed[0] == claimed[1] == claimed[2]
        delivered = await deliveries(shop, contacts[:BATCH])
        assert duplicates(delivered) == 2 * BATCH, "the control must see the double delivery"
        return
    # Each router took the next 200 Started; the Pings wait: their contacts are held.
    assert [len(ids) for ids in claimed] == [BATCH] * 3
    assert len({i for ids in claimed for i in ids}) == 3 * BATCH
    held = [{e.contact_id for e in c.events} for c in claims]
    assert sum(len(h) for h in held) == len(set().union(*held)) == 3 * BATCH
    assert await shop.router().sweep() == 200  # the rest: 100 Started, 100 Pings
    delivered = await deliveries(shop, contacts)
    assert duplicates(delivered) == 0
    assert delivered == shop.expected(contacts)


@pytest.mark.parametrize("kind", [Router, WithoutContactOrder], ids=["leases", "control"])
async def test_a_contact_held_by_one_router_waits_for_it(shop: Shop, kind: type[Router]) -> None:
    """Router A holds Ann's first event; her next one is stored; router B routes Bob's event
    but not Ann's until A is done, so her run hears them in order. The control (leases
    without the per-contact rule) delivers her second event first."""
    ann, bob = shop.contact(1), shop.contact(2)
    shop.store(ann, "Started")
    assert await shop.router().sweep() == 1  # her run is open and listening
    shop.store(ann, "Ping")
    a, b = shop.router(kind, lease=3600), shop.router(kind, lease=3600)
    held = await asyncio.to_thread(a.claim)
    assert [(e.contact_id, e.name) for e in held.events] == [(ann, "Ping")]
    shop.store(ann, "Bought")
    shop.store(bob, "Started")

    await b.sweep()
    if kind is WithoutContactOrder:
        await a.deliver(held)
        assert out_of_order(await deliveries(shop, [ann])) == 1, "the control must reorder"
        return
    assert await shop.delivered(bob) == shop.expected([bob])[bob]
    assert len(await shop.delivered(ann)) == 1  # her Bought waits behind the Ping A holds
    await a.deliver(held)
    assert await b.sweep() == 1
    assert await shop.delivered(ann) == shop.expected([ann])[ann]
    assert len(shop.expected([ann])[ann]) == 3


async def test_an_expired_lease_is_taken_over_and_the_late_router_delivers_nothing(
    shop: Shop,
) -> None:
    """A router claims and stalls past its lease (as if it died): its events are skipped
    while the lease lives, then another router takes them over. When the stalled router
    wakes up, its lease is over and it delivers nothing: no event is delivered twice."""
    contacts = [shop.contact(n) for n in range(5)]
    for contact in contacts:
        shop.store(contact, "Started")
        shop.store(contact, "Ping")
    stalled = shop.router(lease=1.0)
    held = await asyncio.to_thread(stalled.claim)
    assert len(held.events) == 10
    rescuer = shop.router()
    # The lease is live for a second at most; waiting on the stored deadline, not a clock.
    [until] = {e.lease_until for e in shop.events()}
    assert until is not None
    while utcnow() <= until:
        await asyncio.sleep(0.1)
    assert await rescuer.sweep() == 10
    assert await stalled.deliver(held) == 10  # it "finishes" its claim: nothing is sent
    assert stalled.routed == 0 and rescuer.routed == 10
    delivered = await deliveries(shop, contacts)
    assert delivered == shop.expected(contacts)
    assert all(e.routed_at is not None and e.lease_owner is None for e in shop.events())


async def test_a_router_that_cannot_reach_temporal_releases_its_claim(shop: Shop) -> None:
    """A router whose Temporal is down fails its sweep: nothing is marked routed, its claim
    is released at once (not held for the lease), and a router that reaches Temporal
    delivers everything."""
    contacts = [shop.contact(n) for n in range(4)]
    for contact in contacts:
        shop.store(contact, "Started")
    cut_off = Router(
        await Client.connect("127.0.0.1:1", lazy=True), shop.engine, shop.queue, lease=3600
    )
    with pytest.raises(RuntimeError, match="connect"):
        await cut_off.sweep()
    events = shop.events()
    assert [(e.routed_at, e.lease_owner, e.lease_until) for e in events] == [(None, None, None)] * 4
    assert await shop.router().sweep() == 4
    assert await deliveries(shop, contacts) == shop.expected(contacts)


async def test_events_reach_runs_started_under_an_alias(
    ts_env: WorkflowEnvironment, sqlite_engine: Engine, tmp_path: Path
) -> None:
    """A shopper adds to her cart before signing in (anonymousId), then signs in (the ids
    merge) and buys under her userId: the run started under the anonymousId exits and
    sends nothing. Triggers after the merge start under the userId."""
    bench = Bench(
        ts_env,
        sqlite_engine,
        tmp_path / "journeys",
        tiny_templates(tmp_path / "templates", ("hello",)),
    )
    write_journey(
        bench.journeys_dir,
        "cart",
        textwrap.dedent(
            """
            id: cart
            name: Cart
            trigger: { event: Product Added }
            exit_on: [Order Completed]
            steps:
              - wait: 1d
              - send: { id: hi, channel: email, template: hello }
            """
        ),
    )
    bench.deploy()
    anon, ann = f"anon-{uuid.uuid4().hex[:8]}", f"ann-{uuid.uuid4().hex[:8]}"
    call = {"anonymousId": anon, "event": "Product Added", "messageId": str(uuid.uuid4())}
    store_call(bench.engine, TrackCall.model_validate(call))
    await bench.router.sweep()
    signed_in = {
        "userId": ann,
        "anonymousId": anon,
        "traits": {"email": "ann@example.com"},
        "messageId": str(uuid.uuid4()),
    }
    store_call(bench.engine, IdentifyCall.model_validate(signed_in))
    async with bench.worker():
        await bench.track(ann, "Order Completed")
        assert await bench.result("cart", anon) == "exited"
        await bench.track(ann, "Product Added")  # a new trigger: under the userId
        with ts_env.auto_time_skipping_disabled():
            description = await bench.handle("cart", ann).describe()
        assert description.status is not None and description.status.name == "RUNNING"
        await bench.track(ann, "Order Completed")
        assert await bench.result("cart", ann) == "exited"
    assert [(r.workflow_id, r.status) for r in bench.runs()] == [
        (workflow_id("cart", anon), "exited"),
        (workflow_id("cart", ann), "exited"),
    ]
    assert bench.messages() == []
