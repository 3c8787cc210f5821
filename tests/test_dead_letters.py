"""Poison events: an event whose routing keeps failing for a reason of its own becomes a
dead letter after JOURNEYS_DEAD_LETTER_AFTER attempts, and its contact's later events
are routed; an outage counts against no event; operators list, retry and drop.

The poison is real: a journey whose start input is larger than Temporal takes (this
module's dev server has its payload limit, `limit.blobSize.error`, lowered from 2 MB to
below the 1 MB a journey file may hold, as a cluster's operator may; it refuses the
start with INVALID_ARGUMENT, "Blob data size exceeds limit"), and a
stored `message` event whose payload the router cannot read. The routers are the real
`Router` on SQLite and PostgreSQL against the Temporal dev server (the time-skipping
server accepts any size); the outage is a client whose server does not answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner
from harness import terminate_runs, write_journey
from sqlalchemy import Engine, delete, update
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from orchestrator.api import create_app
from orchestrator.api.ingest import store_calls
from orchestrator.api.segment import TrackCall
from orchestrator.cli import main
from orchestrator.deployment.deploy import deploy
from orchestrator.processes.route_failures import error_text, is_outage
from orchestrator.processes.router import Router
from orchestrator.processes.temporal_server import find_binary
from orchestrator.settings import Settings
from orchestrator.store.backlog import routing_backlog
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url
from orchestrator.store.dead_letters import (
    DEAD,
    DROPPED,
    FAILING,
    DeadLetterError,
    drop,
    letters,
    record_failure,
    retry,
)
from orchestrator.store.tables import ORIGIN_INTERNAL, DeadLetter, Event, utcnow
from orchestrator.workflows.journey import workflow_id

BIG = (
    "id: big\nname: Big\ndescription: {text}\ntrigger: {{ event: Big Order }}\n"
    "steps:\n  - wait: 30d\n"
)
LISTEN = "id: listen\nname: Listen\ntrigger: { event: Started }\nsteps:\n  - wait: 30d\n"
BLOB_LIMIT = 256 * 1024  # `limit.blobSize.error` of this module's Temporal
TOO_BIG = "x" * 900_000  # refused by it (450 KB pass: the server's accounting is its own)


def store(engine: Engine, *events: tuple[str, str]) -> list[int]:
    """Track calls stored as the API stores a batch; their ids, in order."""
    calls = [
        TrackCall.model_validate({"userId": c, "event": n, "messageId": str(uuid.uuid4())})
        for c, n in events
    ]
    assert store_calls(engine, calls) == len(calls)
    with session_scope(engine) as session:
        return list(session.exec(select(Event.id).order_by(col(Event.id))))[-len(events) :]


def store_broken_message(engine: Engine, contact: str) -> int:
    """A transactional `message` event whose request the router cannot read (what a bug
    storing it would leave): its `context.message` is not an object."""
    with session_scope(engine) as session:
        event = Event(
            message_id=f"broken-{uuid.uuid4()}",
            origin=ORIGIN_INTERNAL,
            type="message",
            name="receipt",
            contact_id=contact,
            context={"message": "not an object"},
            timestamp=utcnow(),
        )
        session.add(event)
        session.flush()
        return event.id or 0


def routed(engine: Engine, event_id: int) -> bool:
    with session_scope(engine) as session:
        event = session.get(Event, event_id)
        assert event is not None
        return event.routed_at is not None


def failures(engine: Engine) -> list[tuple[int, str, int]]:
    with session_scope(engine) as session:
        rows = session.exec(select(DeadLetter).order_by(col(DeadLetter.event_id)))
        return [(r.event_id, r.status, r.attempts) for r in rows]


# --- the store, on both databases ---------------------------------------------------


def test_attempts_are_counted_in_the_store_and_dead_after_n(engine: Engine) -> None:
    first, later = store(engine, ("ann", "Big Order"), ("ann", "Started"))
    for attempt in (1, 2):
        counted = record_failure(engine, first, "ValueError: no", dead_after=3)
        assert (counted.attempts, counted.dead) == (attempt, False)
    backlog = routing_backlog(engine)
    assert (backlog.backlog, backlog.dead_letters) == (2, 0)  # failing: still routed
    counted = record_failure(engine, first, "ValueError: still no", dead_after=3)
    assert (counted.attempts, counted.dead) == (3, True)
    [letter] = letters(engine)
    assert (letter.event_id, letter.contact_id, letter.name, letter.status) == (
        first,
        "ann",
        "Big Order",
        DEAD,
    )
    assert (letter.attempts, letter.error) == (3, "ValueError: still no")
    assert letter.first_failed_at <= letter.last_failed_at == letter.dead_at
    backlog = routing_backlog(engine)
    assert (backlog.backlog, backlog.dead_letters) == (1, 1)  # the later event only
    # The claim skips it: a router's next claim is the contact's later event.
    router = Router(None, engine, "tq", name="r1")  # type: ignore[arg-type]
    assert [e.id for e in router.claim().events] == [later]
    # 0: never a dead letter.
    other = store(engine, ("bob", "Big Order"))[0]
    for _ in range(10):
        assert not record_failure(engine, other, "ValueError: no", dead_after=0).dead


def test_retry_puts_events_back_in_order_and_drop_keeps_the_row(engine: Engine) -> None:
    a1, a2, b1, a3 = store(engine, ("ann", "One"), ("ann", "Two"), ("bob", "One"), ("ann", "Three"))
    for event_id in (a1, a2, b1):
        record_failure(engine, event_id, "ValueError: no", dead_after=1)
    failing = store(engine, ("cy", "One"))[0]
    record_failure(engine, failing, "ValueError: no", dead_after=5)
    assert [letter.event_id for letter in letters(engine)] == [a1, a2, b1]

    with pytest.raises(DeadLetterError) as unknown:
        retry(engine, [a1, 999_999, failing])
    assert str(unknown.value) == (
        f"event {failing} is still being retried, not a dead letter yet; "
        "event 999999 is not in the dead letter: nothing changed"
    )
    assert [letter.event_id for letter in letters(engine)] == [a1, a2, b1]

    assert drop(engine, [b1]) == [b1]
    with pytest.raises(DeadLetterError, match=f"^event {b1} is dropped already: nothing changed$"):
        drop(engine, [b1])
    assert [(r.event_id, r.status) for r in letters(engine, dropped=True)] == [
        (a1, DEAD),
        (a2, DEAD),
        (b1, DROPPED),
    ]
    assert routing_backlog(engine).dead_letters == 2  # a dropped one waits for no one

    # --all retries the waiting ones, not the dropped: ann's come back before her third.
    assert retry(engine, None) == [a1, a2]
    assert failures(engine) == [(b1, DROPPED, 1), (failing, FAILING, 1)]
    claim = Router(None, engine, "tq", name="r1").claim()  # type: ignore[arg-type]
    assert [e.id for e in claim.events if e.contact_id == "ann"] == [a1, a2, a3]
    assert b1 not in {e.id for e in claim.events}
    # A dropped one can still be retried by its id.
    assert retry(engine, [b1]) == [b1]
    assert drop(engine, None) == []


def test_erasing_an_event_erases_its_dead_letter(engine: Engine) -> None:
    event_id = store(engine, ("ann", "Big Order"))[0]
    record_failure(engine, event_id, "ValueError: no", dead_after=1)
    with session_scope(engine) as session:
        session.exec(delete(Event).where(col(Event.id) == event_id))  # type: ignore[call-overload]
    assert failures(engine) == []


# --- which failures count -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "outage"),
    [
        (RPCStatusCode.UNAVAILABLE, "tcp connect error", True),
        (RPCStatusCode.DEADLINE_EXCEEDED, "deadline exceeded", True),
        (RPCStatusCode.RESOURCE_EXHAUSTED, "namespace rate limit exceeded", True),
        (RPCStatusCode.UNAUTHENTICATED, "bad key", True),
        (RPCStatusCode.INTERNAL, "oops", True),
        (RPCStatusCode.NOT_FOUND, "namespace default not found", True),
        (RPCStatusCode.INVALID_ARGUMENT, "Blob data size exceeds limit.", False),
        (RPCStatusCode.FAILED_PRECONDITION, "no", False),
        (
            RPCStatusCode.RESOURCE_EXHAUSTED,
            "grpc: received message after decompression larger than max 4194304",
            False,
        ),
    ],
)
def test_temporal_errors_that_are_outages(
    status: RPCStatusCode, message: str, outage: bool
) -> None:
    assert is_outage(RPCError(message, status, b"")) is outage


def test_other_errors_that_are_outages() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    assert is_outage(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert is_outage(ConnectionResetError())
    assert is_outage(TimeoutError())
    assert is_outage(RuntimeError("Failed client connect: Server connection error"))
    assert not is_outage(IntegrityError("INSERT", {}, Exception("duplicate")))
    assert not is_outage(AttributeError("'str' object has no attribute 'get'"))
    assert not is_outage(RuntimeError("a bug"))


def test_error_texts_name_nobody() -> None:
    exc = ValueError("workflow journey:j:Ann@Example.com for ann@example.com, +44 7700 900123")
    assert error_text(exc, ("ann@example.com", "anon-1")) == (
        "ValueError: workflow journey:j:<address> for <address>, <number>"
    )
    assert error_text(KeyError("bob@shop.example"), ()) == "KeyError: '<address>'"
    rpc = RPCError("Blob data size exceeds limit.", RPCStatusCode.INVALID_ARGUMENT, b"")
    assert error_text(rpc) == "RPCError(INVALID_ARGUMENT): Blob data size exceeds limit."
    assert len(error_text(ValueError("x" * 1000))) == 300


# Message, the contact's ids → the error kept: addresses (any @), then phone-like numbers,
# then the ids as whole tokens (short ones only standing alone), nothing else touched.
SCRUBBED = [
    ("call +1 (555) 123-4567 now", (), "call <number> now"),
    ("(555) 123-4567.", (), "<number>."),
    ("tel 0555.123.456", (), "tel <number>"),
    ("order 12345678 of 2 items", (), "order 12345678 of 2 items"),  # 8 digits: kept
    ("ann%40example.com", (), "<address>"),
    ("?email=ann%40example.com&x=1", (), "?email=<address>&x=1"),
    ("ann\uff20example\uff0ecom wrote", (), "<address> wrote"),  # fullwidth @ and .
    ("to <ann@example.com>.", ("ann@example.com",), "to <<address>>."),
    ("Ann-Marie and ann.lee, not anne", ("ann",), "Ann-Marie and ann.lee, not anne"),
    ("journey:j:ann for ANN.", ("ann",), "journey:j:<contact> for <contact>."),
    ("id anon-1, anon-12", ("anon-1",), "id <contact>, anon-12"),
    (
        "Blob data size exceeds limit, can another: journey:big:an",
        ("an",),
        "Blob data size exceeds limit, can another: journey:big:<contact>",
    ),
    ("no contact 'an' (x/an/y)", ("an",), "no contact '<contact>' (x/<contact>/y)"),
    ("an id named address in <address>", ("address",), "an id named <contact> in <address>"),
]


@pytest.mark.parametrize(("message", "known", "kept"), SCRUBBED)
def test_error_texts_replace_addresses_numbers_and_whole_ids(
    message: str, known: tuple[str, ...], kept: str
) -> None:
    assert error_text(ValueError(message), known) == f"ValueError: {kept}"


async def test_a_routing_pause_logs_the_reason_scrubbed(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.exc import OperationalError

    router = Router(None, sqlite_engine, "tq-nowhere")  # type: ignore[arg-type]
    down = OperationalError("UPDATE contacts", {}, Exception("ann@example.com +1 (555) 123-4567"))
    with caplog.at_level(logging.WARNING, logger="orchestrator.processes.router"):
        await router._report_pause(down, 1)
    [warning] = caplog.records
    assert "ann@" not in warning.getMessage() and "555" not in warning.getMessage()
    assert "<address> <number>" in warning.getMessage()


# --- routers against Temporal ---------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server of this module's own, with a smaller payload limit."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        dev_server_log_level="error",
        dev_server_extra_args=["--dynamic-config-value", f"limit.blobSize.error={BLOB_LIMIT}"],
        ui=False,
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture
async def shop(
    engine: Engine, dev_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Client, Path]]:
    """`big` (its start input too large for Temporal) and `listen`, deployed."""
    folder = tmp_path / "journeys"
    write_journey(folder, "big", BIG.format(text=TOO_BIG))
    write_journey(folder, "listen", LISTEN)
    (tmp_path / "templates").mkdir()
    deploy(engine, folder, tmp_path / "templates")
    yield engine, dev_env.client, folder
    for journey in ("big", "listen"):
        await terminate_runs(dev_env.client, engine, journey)


async def sweep_until(routers: list[Router], done: object, timeout: float = 60) -> None:
    """Sweep with each router in turn (pausing as a router's loop does) until `done()`."""
    deadline = asyncio.get_running_loop().time() + timeout
    turn = 0
    while not done():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, failures(routers[0].engine)
        await routers[turn % len(routers)].sweep()
        turn += 1
        await asyncio.sleep(0.05)


async def test_a_poison_event_is_dead_lettered_and_its_contact_moves_on(
    shop: tuple[Engine, Client, Path], caplog: pytest.LogCaptureFixture
) -> None:
    engine, client, folder = shop
    ann, bob = f"ann-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    poison, later, other = store(engine, (ann, "Big Order"), (ann, "Started"), (bob, "Started"))
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    # Two routers share the count: each sees the attempts the other made.
    routers = [
        Router(client, engine, queue, interval=0.01, dead_letter_after=3, name=f"r{n}")
        for n in (1, 2)
    ]
    await routers[0].sweep()
    assert routed(engine, other) and not routed(engine, later)  # held behind the poison
    assert failures(engine) == [(poison, FAILING, 1)]

    await sweep_until(routers, lambda: routed(engine, later))
    assert failures(engine) == [(poison, DEAD, 3)]
    assert not routed(engine, poison)
    [letter] = letters(engine)
    assert letter.error == "RPCError(INVALID_ARGUMENT): Blob data size exceeds limit."
    assert await client.get_workflow_handle(workflow_id("listen", ann)).describe()
    backlog = routing_backlog(engine)
    assert (backlog.backlog, backlog.dead_letters) == (0, 1)
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("router")]
    assert any(
        m.startswith(f"event {poison} (track Big Order) is a dead letter after 3 failed")
        for m in logged
    ), logged
    assert all(ann not in m for m in logged)

    # The cause fixed (a smaller journey deployed), a retry routes it: a run starts.
    write_journey(folder, "big", BIG.format(text="Small now."))
    deploy(engine, folder, folder.parent / "templates")
    assert retry(engine, [poison]) == [poison]
    await sweep_until(routers, lambda: routed(engine, poison))
    assert failures(engine) == []
    assert await client.get_workflow_handle(workflow_id("big", ann)).describe()


async def test_an_outage_counts_against_no_event(
    shop: tuple[Engine, Client, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Temporal unreachable: the plain event fails with the client's connect error (an
    outage by its kind), the broken one with its own error, which is not counted either
    since Temporal does not answer. Then with Temporal back, only the broken one counts."""
    engine, client, _ = shop
    contact = f"cy-{uuid.uuid4().hex[:6]}"
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    broken = store_broken_message(engine, contact)
    plain = store(engine, (f"dee-{uuid.uuid4().hex[:6]}", "Started"))[0]
    cut_off = Router(
        await Client.connect("127.0.0.1:1", lazy=True),
        engine,
        queue,
        interval=0.01,
        dead_letter_after=1,
    )
    for _ in range(3):
        with pytest.raises((RuntimeError, AttributeError)):
            await cut_off.sweep()
    assert failures(engine) == []
    with session_scope(engine) as session:
        leases = session.exec(select(Event.lease_owner).where(col(Event.id).in_([broken, plain])))
        assert list(leases) == [None, None]  # released for the next claim
    assert routing_backlog(engine).backlog == 2

    router = Router(client, engine, queue, interval=0.01, dead_letter_after=1)
    await router.sweep()
    assert routed(engine, plain)
    assert failures(engine) == [(broken, DEAD, 1)]
    [letter] = letters(engine)
    assert letter.error == "AttributeError: 'str' object has no attribute 'get'"


# --- what operators see ---------------------------------------------------------------


async def test_health_and_metrics_count_dead_letters_without_lagging(
    engine: Engine, dev_env: WorkflowEnvironment
) -> None:
    poison, waiting = store(engine, ("ann", "Big Order"), ("bob", "Started"))
    record_failure(engine, poison, "ValueError: no", dead_after=1)
    an_hour_ago = utcnow() - timedelta(hours=1)
    with session_scope(engine) as session:  # old enough to be lag, were it counted
        session.exec(update(Event).where(col(Event.id) == poison).values(received_at=an_hour_ago))  # type: ignore[call-overload]
    app = create_app(engine, ["k"], dev_env.client, settings=Settings(routing_lag_limit=60))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        health = await http.get("/health")
        metrics = (await http.get("/metrics")).text
    assert health.status_code == 200, health.text
    events = health.json()["events"]
    assert (events["status"], events["backlog"], events["dead_letters"]) == ("ok", 1, 1)
    assert events["routing_lag_seconds"] < 60
    assert "# TYPE journeys_events_dead_letters gauge" in metrics
    assert "\njourneys_events_dead_letters 1\n" in metrics
    assert "\njourneys_events_backlog 1\n" in metrics
    assert waiting


def test_the_dead_letter_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    engine = make_engine(sqlite_url(data))
    migrate(engine)
    at = datetime(2026, 12, 7, 9, 30, 5, tzinfo=UTC)
    poison, fine, other = store(engine, ("ann", "Big Order"), ("ann", "Started"), ("bob", "Go"))
    for event_id in (poison, other):
        record_failure(
            engine, event_id, "RPCError(INVALID_ARGUMENT): Blob data size exceeds limit.", 1, at
        )
    engine.dispose()
    run = CliRunner().invoke
    store_line = f"store: sqlite:///{(data / 'journeys.db').as_posix()}\n"

    def cli(*args: str) -> tuple[int, str]:
        result = run(
            main,
            ["events", "dead-letter", *args, "--data-dir", str(data)],
            env={"DATABASE_URL": None},
        )
        return result.exit_code, result.output

    assert cli("list") == (
        0,
        store_line + "event  contact  name       attempts  last failed          error\n"
        f"{poison}      ann      Big Order  1         2026-12-07 09:30:05  "
        "RPCError(INVALID_ARGUMENT): Blob data size exceeds limit.\n"
        f"{other}      bob      Go         1         2026-12-07 09:30:05  "
        "RPCError(INVALID_ARGUMENT): Blob data size exceeds limit.\n",
    )
    listed = run(
        main,
        ["events", "dead-letter", "list", "--json", "--data-dir", str(data)],
        env={"DATABASE_URL": None},
    )
    assert (listed.exit_code, listed.stderr) == (0, store_line)  # stdout: JSON only
    assert json.loads(listed.stdout)[0] == {
        "event_id": poison,
        "contact_id": "ann",
        "type": "track",
        "name": "Big Order",
        "status": "dead",
        "attempts": 1,
        "error": "RPCError(INVALID_ARGUMENT): Blob data size exceeds limit.",
        "first_failed_at": "2026-12-07T09:30:05+00:00",
        "last_failed_at": "2026-12-07T09:30:05+00:00",
        "dead_at": "2026-12-07T09:30:05+00:00",
        "dropped_at": None,
    }
    assert cli("retry", str(fine), "77") == (
        1,
        store_line
        + f"error: event {fine} is not in the dead letter; event 77 is not in the dead letter: "
        "nothing changed\n",
    )
    assert cli("retry") == (
        1,
        "error: name the events (IDs as `journeys events dead-letter list` shows) or --all\n",
    )
    assert cli("retry", "--all", str(poison)) == (
        1,
        "error: IDs and --all cannot be combined: name the events, or --all for every "
        "waiting one\n",
    )
    assert cli("drop", str(other)) == (
        0,
        store_line + f"1 event(s) ({other}) dropped: never routed, listed with `list --dropped`\n",
    )
    code, output = cli("list", "--dropped")
    assert code == 0 and output.splitlines()[0] == store_line.strip()
    assert output.splitlines()[1].split() == [
        "event", "contact", "name", "attempts", "last", "failed", "state", "error",
    ]  # fmt: skip
    waiting, gone = (line.split() for line in output.splitlines()[2:])  # waiting ones too
    assert waiting[:8] == [
        str(poison), "ann", "Big", "Order", "1", "2026-12-07", "09:30:05", "dead",
    ]  # fmt: skip
    assert gone[:7] == [
        str(other), "bob", "Go", "1", "2026-12-07", "09:30:05", "dropped",
    ]  # fmt: skip
    assert cli("retry", "--all") == (
        0,
        store_line + f"1 event(s) ({poison}) put back for routing: the next sweep routes them\n",
    )
    assert cli("list") == (
        0,
        store_line + "no dead letters: every event was routed or is being retried\n",
    )
    assert cli("drop", "--all") == (0, store_line + "no dead letters waiting: nothing to do\n")


def test_the_dead_letter_commands_refuse_without_a_store_and_hide_the_password(
    tmp_path: Path,
) -> None:
    """Without DATABASE_URL and a store in the data dir, "no dead letters" would be a
    false all-clear read from a new, empty SQLite: refused, and nothing created."""
    empty = tmp_path / "data"
    run = CliRunner().invoke
    for args in (["list"], ["list", "--json"], ["retry", "--all"], ["drop", "3"]):
        result = run(
            main,
            ["events", "dead-letter", *args, "--data-dir", str(empty)],
            env={"DATABASE_URL": None},
        )
        assert (result.exit_code, result.output) == (
            1,
            "error: no store to read dead letters from: DATABASE_URL is not set and there "
            f"is no {empty / 'journeys.db'}; set DATABASE_URL to the database the routers "
            "use (or --data-dir to the data directory of `journeys dev`)\n",
        ), args
    assert not empty.exists()
    # The store named comes first, its password hidden, even when it cannot be reached.
    nowhere = "postgresql://journeys:s3cret@127.0.0.1:1/journeys"
    result = run(main, ["events", "dead-letter", "list"], env={"DATABASE_URL": nowhere})
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "store: postgresql://journeys:***@127.0.0.1:1/journeys"
    assert "s3cret" not in result.output
