"""The store on SQLite and PostgreSQL: migrations, constraints, types, versioning."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from orchestrator.api.ingest import store_call
from orchestrator.api.segment import TrackCall
from orchestrator.feedback.recording import survey_answer
from orchestrator.store import versions
from orchestrator.store.db import (
    alembic_config,
    make_engine,
    migrate,
    session_scope,
    sqlite_url,
)
from orchestrator.store.tables import Contact, Event, JourneyVersion, Message
from orchestrator.store.versions import (
    active_versions,
    deploy_journey,
    get_version,
    latest_version,
)

TABLES = {
    "contacts",
    "contact_aliases",
    "events",
    "journey_versions",
    "journey_runs",
    "run_trail",
    "journey_counts",
    "messages",
    "suppressions",
    "api_keys",
    "orders",
    "order_lines",
    "loyalty_entries",
    "coupons",
    "segments",
    "segment_members",
    "template_blobs",
    "campaigns",
    "campaign_dispatches",
    "campaign_slots",
    "provider_pauses",
    "dead_letters",
}


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def run_in_threads(count: int, target: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Start `count` threads at the same moment; collect their results and errors."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(target())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def make_event(message_id: str, **kw: Any) -> Event:
    return Event(
        message_id=message_id,
        type="track",
        name="Order Completed",
        contact_id="u1",
        timestamp=kw.pop("timestamp", datetime(2024, 3, 1, tzinfo=UTC)),
        **kw,
    )


def make_message(message_id: str, idempotency_key: str, **kw: Any) -> Message:
    return Message(
        id=message_id,
        idempotency_key=idempotency_key,
        workflow_id="journey:welcome:u1",
        entry_seq=1,
        step_id="send_welcome",
        journey_id="welcome",
        contact_id="u1",
        channel="email",
        adapter="console",
        template="welcome",
        **kw,
    )


# --- engines ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["postgres://u:p@db:5432/app", "postgresql://u@db/app", "postgresql+psycopg://u@db/app"]
)
def test_postgres_urls_use_psycopg(url: str) -> None:
    engine = make_engine(url)
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.url.database == "app"
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_the_pool_of_a_process_follows_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOURNEYS_DB_POOL_SIZE / _MAX_OVERFLOW size each process's PostgreSQL pool, which
    is what `max_connections` must be sized for (no server needed: pools open lazily)."""
    from orchestrator.processes.launch import open_store
    from orchestrator.settings import Settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.invalid/app")
    monkeypatch.setenv("JOURNEYS_DB_POOL_SIZE", "20")
    monkeypatch.setenv("JOURNEYS_DB_MAX_OVERFLOW", "0")
    settings = Settings()
    monkeypatch.setattr("orchestrator.processes.launch.migrate", lambda engine: None)
    engine = open_store(settings)
    try:
        assert engine.pool.size() == 20  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    default = make_engine("postgresql://u@db.invalid/app")
    assert default.pool.size() == 5 and default.pool._max_overflow == 10  # type: ignore[attr-defined]
    default.dispose()


@pytest.mark.parametrize(
    "url", ["mysql://u:hunter2@db/app", "postgresql+psycopg2://u:hunter2@db/app", "journeys.db"]
)
def test_unsupported_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL") as excinfo:
        make_engine(url)
    assert "sqlite:///" in str(excinfo.value)
    assert "postgresql://" in str(excinfo.value)
    assert "hunter2" not in str(excinfo.value)


def test_sqlite_url() -> None:
    assert sqlite_url(Path("/var/lib/journeys")) == "sqlite:////var/lib/journeys/journeys.db"
    assert sqlite_url(Path("data")) == "sqlite:///data/journeys.db"


def test_sqlite_creates_directory_and_sets_pragmas(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "nested" / "data"))
    try:
        with engine.connect() as connection:

            def pragma(name: str) -> Any:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == 1  # NORMAL
            assert pragma("busy_timeout") == 5000
            assert pragma("foreign_keys") == 1
        assert (tmp_path / "nested" / "data" / "journeys.db").is_file()
    finally:
        engine.dispose()


def test_sqlite_files_and_their_new_directory_are_for_their_owner_only(tmp_path: Path) -> None:
    """The store holds contacts, events and messages: no other local user may read it,
    whatever the umask (022 is the usual one: files 0644, directories 0755)."""
    previous = os.umask(0o022)
    engine = make_engine(sqlite_url(tmp_path / "data"))
    try:
        migrate(engine)
        with session_scope(engine) as session:
            session.add(Contact(id="ann", email="ann@example.com"))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "data").iterdir()}
        assert modes == {"journeys.db": 0o600, "journeys.db-wal": 0o600, "journeys.db-shm": 0o600}
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    finally:
        engine.dispose()
        os.umask(previous)


def test_in_memory_sqlite_keeps_one_database() -> None:
    engine = make_engine("sqlite://")
    try:
        migrate(engine)
        with session_scope(engine) as session:
            session.add(Contact(id="u1"))
        with session_scope(engine) as session:
            assert session.get(Contact, "u1") is not None
    finally:
        engine.dispose()


def test_session_scope_commits_or_rolls_back(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Contact(id="kept"))
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        session.add(Contact(id="dropped"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(engine) as session:
        assert session.get(Contact, "kept") is not None
        assert session.get(Contact, "dropped") is None


# --- migrations ---------------------------------------------------------------------


def test_migrations_match_models(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert schema_diff(engine) == []
    assert current_revision(engine) == head_revision()


def test_migrate_again_is_a_no_op(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Contact(id="u1", traits={"plan": "pro"}))
    migrate(engine)
    migrate(engine)
    assert current_revision(engine) == head_revision()
    with session_scope(engine) as session:
        contact = session.get(Contact, "u1")
        assert contact is not None
        assert contact.traits == {"plan": "pro"}


def test_downgrade_to_base_then_upgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None
    migrate(engine)
    assert schema_diff(engine) == []
    assert current_revision(engine) == head_revision()


def test_concurrent_migrate_on_a_fresh_database(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(3)]
    pending = iter(engines)
    lock = threading.Lock()

    def migrate_one() -> None:
        with lock:
            engine = next(pending)
        migrate(engine)

    try:
        _, errors = run_in_threads(len(engines), migrate_one)
        assert errors == []
        assert schema_diff(engines[0]) == []
        assert current_revision(engines[0]) == head_revision()
    finally:
        for engine in engines:
            engine.dispose()


def test_existing_events_keep_deduplicating_in_their_namespace_after_0008(db_url: str) -> None:
    """Rows stored before client messageIds and our keys were separated: ours are found
    by the shape our code writes, everything else stays the client's."""
    engine = make_engine(db_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0007")
    stored = [
        ("sendgrid:ev-1", "Email Opened", {"source": "sendgrid-webhook"}, "internal"),
        ("twilio:SM1:delivered", "SMS Delivered", {"source": "twilio-webhook"}, "internal"),
        ("survey:m-1", "Survey Answered", {"source": "survey-page"}, "internal"),
        ("journey:" + "a1" * 20, "Points Given", {"journey": {"id": "j"}}, "internal"),
        ("segment:buyers:ann:entered:1", "Segment Entered", {}, "internal"),
        # A client's track that took an answer's key before the fix: still the client's.
        ("survey:m-2", "Survey Answered", {"ip": "203.0.113.9"}, "client"),
        ("segment:promo", "Order Completed", {}, "client"),
        ("3f0c9c1e-8c43-4f4e-9a55-3c1f0d6c2a10", "Order Completed", {}, "client"),
    ]
    columns = ("message_id", "type", "name", "contact_id", "properties", "context")
    table = sqlalchemy.table(
        "events",
        *(sqlalchemy.column(c) for c in columns[:4]),
        sqlalchemy.column("properties", sqlalchemy.JSON()),
        sqlalchemy.column("context", sqlalchemy.JSON()),
        sqlalchemy.column("timestamp", sqlalchemy.DateTime(timezone=True)),
        sqlalchemy.column("received_at", sqlalchemy.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for key, name, context, _ in stored:
            row = (key, "track", name, "ann", {"score": 9}, context)
            values = dict(zip(columns, row, strict=True))
            connection.execute(table.insert().values(**values, timestamp=now, received_at=now))
    migrate(engine)
    try:
        with session_scope(engine) as session:
            origins = {e.message_id: e.origin for e in session.exec(select(Event))}
            assert origins == {key: origin for key, _, _, origin in stored}
            assert survey_answer(session, "m-1") == 9  # answered before: still answered
            assert survey_answer(session, "m-2") is None  # the client's row blocks nothing
        retry = TrackCall.model_validate(
            {"userId": "ann", "event": "Order Completed", "messageId": stored[-1][0]}
        )
        assert store_call(engine, retry) is False  # the client's retry dedupes as before
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


# --- constraints and types ----------------------------------------------------------


def test_event_message_id_is_unique(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(make_event("m-1"))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(make_event("m-1"))
    with session_scope(engine) as session:
        assert len(session.exec(select(Event)).all()) == 1


def test_message_idempotency_key_is_unique(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(make_message("00000000-0000-0000-0000-000000000001", "wf:send:1"))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(make_message("00000000-0000-0000-0000-000000000002", "wf:send:1"))


def test_journey_version_numbers_are_unique(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(JourneyVersion(journey_id="j", version=1, spec_hash="a"))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(JourneyVersion(journey_id="j", version=1, spec_hash="b"))


def test_json_round_trips_nested_non_ascii(engine: Engine) -> None:
    traits = {
        "name": "Анна Каренина",
        "city": {"ar": "القاهرة", "ru": "Москва", "emoji": "🎉"},
        "orders": [{"sku": "чай-1", "qty": 2, "price": 9.5}, None, True],
    }
    content = {"subject": "Привет, Анна!", "body": "مرحبا بك في متجرنا"}
    with session_scope(engine) as session:
        session.add(Contact(id="u1", traits=traits, push_tokens=["tök"]))
        session.add(make_message("00000000-0000-0000-0000-000000000001", "k", content=content))
    with session_scope(engine) as session:
        contact = session.get(Contact, "u1")
        message = session.exec(select(Message)).one()
        assert contact is not None
        assert contact.traits == traits
        assert contact.push_tokens == ["tök"]
        assert message.content == content
        # Stored as readable text, not \u escapes.
        raw = session.exec(text("SELECT CAST(traits AS TEXT) FROM contacts")).scalar_one()  # type: ignore[call-overload]
        assert "Анна Каренина" in raw
        assert "القاهرة" in raw


def test_datetimes_round_trip_as_aware_utc(engine: Engine) -> None:
    moscow = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Moscow"))
    with session_scope(engine) as session:
        session.add(make_event("m-1", timestamp=moscow))
        # Naive values are taken as UTC.
        session.add(make_event("m-2", timestamp=datetime(2024, 3, 1, 9, 30, 15, 123456)))
    with session_scope(engine) as session:
        first, second = session.exec(select(Event).order_by(Event.message_id)).all()
        for event in (first, second):
            assert event.timestamp == datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
            assert event.timestamp.utcoffset() == timedelta(0)
            assert event.received_at.tzinfo is not None
            assert event.received_at.utcoffset() == timedelta(0)
            assert event.routed_at is None
        # Comparisons happen in UTC too, whatever zone the bound value is in.
        before = session.exec(select(Event).where(Event.timestamp < moscow + timedelta(seconds=1)))
        after = session.exec(select(Event).where(Event.timestamp > moscow + timedelta(seconds=1)))
        assert len(before.all()) == 2
        assert after.all() == []


# --- journey versions ---------------------------------------------------------------


def deploy(engine: Engine, journey_id: str, spec_hash: str) -> JourneyVersion:
    with session_scope(engine) as session:
        return deploy_journey(
            session, journey_id, {"id": journey_id, "hash": spec_hash}, spec_hash, "j.yaml"
        )


def versions_of(engine: Engine, journey_id: str) -> list[tuple[int, str, bool]]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(JourneyVersion)
            .where(JourneyVersion.journey_id == journey_id)
            .order_by(JourneyVersion.version)
        ).all()
        return [(row.version, row.spec_hash, row.active) for row in rows]


def test_deploy_versions(engine: Engine) -> None:
    first = deploy(engine, "welcome", "h1")
    assert (first.version, first.active, first.spec) == (1, True, {"id": "welcome", "hash": "h1"})
    assert first.source_path == "j.yaml"
    assert first.deployed_at.utcoffset() == timedelta(0)

    again = deploy(engine, "welcome", "h1")
    assert (again.id, again.version, again.deployed_at) == (first.id, 1, first.deployed_at)
    assert versions_of(engine, "welcome") == [(1, "h1", True)]

    second = deploy(engine, "welcome", "h2")
    assert second.version == 2
    assert versions_of(engine, "welcome") == [(1, "h1", False), (2, "h2", True)]


def test_redeploying_an_old_spec_reactivates_its_version(engine: Engine) -> None:
    deploy(engine, "welcome", "h1")
    deploy(engine, "welcome", "h2")
    reverted = deploy(engine, "welcome", "h1")
    assert reverted.version == 1
    assert versions_of(engine, "welcome") == [(1, "h1", True), (2, "h2", False)]
    with session_scope(engine) as session:
        latest = latest_version(session, "welcome")
        assert latest is not None
        assert latest.version == 2
        assert [(v.journey_id, v.version) for v in active_versions(session)] == [("welcome", 1)]
    # Going forward again reactivates v2; no version is ever created twice.
    assert deploy(engine, "welcome", "h2").version == 2
    assert versions_of(engine, "welcome") == [(1, "h1", False), (2, "h2", True)]


def test_version_queries(engine: Engine) -> None:
    deploy(engine, "welcome", "w1")
    deploy(engine, "winback", "b1")
    deploy(engine, "winback", "b2")
    with session_scope(engine) as session:
        assert latest_version(session, "nope") is None
        assert get_version(session, "nope", 1) is None
        assert get_version(session, "winback", 3) is None
        found = get_version(session, "winback", 1)
        assert found is not None
        assert found.spec_hash == "b1"
        assert not found.active
        assert [(v.journey_id, v.version) for v in active_versions(session)] == [
            ("welcome", 1),
            ("winback", 2),
        ]


def test_concurrent_deploys_of_the_same_edit_make_one_version(engine: Engine) -> None:
    deploy(engine, "welcome", "h1")
    for round_ in range(2, 6):
        spec_hash = f"h{round_}"
        results, errors = run_in_threads(4, lambda h=spec_hash: deploy(engine, "welcome", h))
        assert errors == []
        assert {v.version for v in results} == {round_}
        rows = versions_of(engine, "welcome")
        assert len(rows) == round_
        assert [(v, active) for v, _, active in rows if active] == [(round_, True)]


def test_deploy_retries_after_losing_a_race(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulate another process committing the same edit between our read and insert."""
    deploy(engine, "welcome", "h1")
    real_find = versions._find_by_hash
    calls = 0

    def stale_find(session: Any, journey_id: str, spec_hash: str) -> JourneyVersion | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            with session_scope(engine) as winner:  # the other process
                winner.add(JourneyVersion(journey_id="welcome", version=2, spec_hash="h2"))
            return None  # what we read before it committed
        return real_find(session, journey_id, spec_hash)

    monkeypatch.setattr(versions, "_find_by_hash", stale_find)
    with session_scope(engine) as session:
        result = deploy_journey(session, "welcome", {}, "h2", None)
    assert calls == 2
    assert result.version == 2
    assert versions_of(engine, "welcome") == [(1, "h1", False), (2, "h2", True)]


@pytest.mark.parametrize(
    ("url", "connect_timeout"),
    [
        ("postgresql://journeys@db.example:5432/journeys", 10),
        ("postgresql://journeys@db.example:5432/journeys?connect_timeout=3", "3"),
    ],
)
def test_postgresql_connections_give_up_instead_of_hanging(
    url: str, connect_timeout: object
) -> None:
    """A failover that drops packets must not hang a worker past its shutdown grace: a
    connection attempt gives up after 10 s (unless the URL says otherwise) and TCP
    keepalives notice a dead server."""
    from sqlalchemy import event

    engine = make_engine(url)
    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    @event.listens_for(engine, "do_connect")
    def capture(dialect, record, cargs, cparams):  # type: ignore[no-untyped-def]
        seen.update(cparams)
        raise Stop

    with pytest.raises(Stop):
        engine.connect()
    engine.dispose()
    assert seen["connect_timeout"] == connect_timeout
    assert (seen["keepalives"], seen["keepalives_idle"], seen["keepalives_count"]) == (1, 30, 3)
