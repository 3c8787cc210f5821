"""Engines, migrations and sessions for the store.

SQLite is the zero-setup default (one file under the data directory); PostgreSQL is
for production. Both run the same Alembic migrations, applied by `migrate` on every
start, so a deploy never needs a separate schema step.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from ..services.private_files import touch_private
from ..services.redaction import redact_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary, fixed 64-bit key: every orchestrator process serializes its migrations on it.
_MIGRATION_LOCK_KEY = 0x6A6F75726E657973  # "journeys"

# Alembic keeps its running migration context in module globals: one upgrade per process
# at a time, whatever the database.
_MIGRATE_LOCK = threading.Lock()

_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}

_BUSY_TIMEOUT_S = 5.0
_SQLITE_PRAGMAS = (
    # Wait for a competing writer instead of failing at once with "database is locked";
    # first, because switching a new file to WAL takes a lock too.
    f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000:.0f}",
    # WAL lets the API read while the worker writes; NORMAL is durable enough under WAL.
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)


POSTGRES_EXTRA = "pip install 'journeys-orchestrator[postgres]'"


class MissingDriver(ImportError):
    """DATABASE_URL names a database whose driver is not installed: its extra tells which."""


def sqlite_url(data_dir: Path) -> str:
    """The default database: `journeys.db` inside the data directory."""
    return f"sqlite:///{(Path(data_dir) / 'journeys.db').as_posix()}"


POSTGRES_TIMEOUTS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """Create an engine for a `DATABASE_URL`, tuned for the database behind it.

    `postgres://` and `postgresql://` (as hosting platforms hand them out) are mapped
    to psycopg 3, the driver we ship with. `pool_size` and `max_overflow` size a
    PostgreSQL engine's connection pool (`JOURNEYS_DB_POOL_SIZE`, `_MAX_OVERFLOW`).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    # A failover that drops packets instead of refusing them must not hang a process
    # past its shutdown grace: connecting gives up after 10 s, and TCP keepalives find a
    # dead server in about a minute. The URL's own parameters win (`?connect_timeout=3`).
    connect_args = {
        key: value for key, value in POSTGRES_TIMEOUTS.items() if key not in parsed.query
    }
    try:
        # pre-ping: survive connections dropped by PgBouncer, failovers and idle timeouts.
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            json_serializer=_dump_json,
            connect_args=connect_args,
        )
    except ImportError as exc:  # SQLAlchemy imports the driver here; it is an extra of ours
        raise MissingDriver(
            f"DATABASE_URL is a PostgreSQL database, but its driver psycopg is not installed "
            f"({exc}): {POSTGRES_EXTRA}"
        ) from exc


def normalize_url(url: str) -> URL:
    """Parse a `DATABASE_URL`, mapping PostgreSQL URLs to psycopg 3; reject anything else."""

    def unsupported(why: str) -> ValueError:
        return ValueError(
            f"DATABASE_URL {why}; supported: sqlite:///path/to/journeys.db, "
            "postgresql://user:password@host:5432/dbname (postgres:// and "
            "postgresql+psycopg:// work too)"
        )

    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError; hide it behind our message
        raise unsupported(f"{redact_url(url)!r} is not a database URL") from exc
    if parsed.drivername not in _POSTGRES_DRIVERS | _SQLITE_DRIVERS:
        raise unsupported(f"scheme {parsed.drivername!r} is not supported")
    if parsed.drivername in _POSTGRES_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    kwargs: dict[str, Any] = {}
    if in_memory:
        # Each new connection to :memory: is a new, empty database: share one.
        kwargs["poolclass"] = StaticPool
    elif not database.startswith("file:"):
        # Created 0600 (in a new directory, 0700) before SQLite opens it, which would make
        # it 0644 under the usual umask; its -wal and -shm files take the database's mode.
        touch_private(Path(database).expanduser())
    connect_args: dict[str, Any] = {"check_same_thread": False}
    if not in_memory:
        connect_args["factory"] = QueuedConnection
    engine = create_engine(
        url,
        # Sessions move between threads (API threadpool, worker activities); the
        # pool hands each connection to one user at a time, so this check only gets in the way.
        connect_args=connect_args,
        json_serializer=_dump_json,
        **kwargs,
    )
    event.listen(engine, "connect", _set_sqlite_pragmas)
    if not in_memory:
        writer_queue(database).attach(engine)
    return engine


_QUEUES: dict[str, WriterQueue] = {}
_QUEUES_LOCK = threading.Lock()


def writer_queue(database: str) -> WriterQueue:
    """The process's one `WriterQueue` for a database file, shared by all its engines."""
    key = database if database.startswith("file:") else str(Path(database).expanduser().resolve())
    with _QUEUES_LOCK:
        return _QUEUES.setdefault(key, WriterQueue())


class WriterQueue:
    """One SQLite writer at a time per process, handed over in turn, not polled for.

    SQLite allows one write transaction per database; a writer that finds it taken
    polls (`busy_timeout`) with naps growing to 100 ms. With the API, the router and
    the worker's activity threads writing from one process on a busy CPU, the lock
    sat free while the pollers napped, writers queued up, and those at the back gave
    up after 5 s ("database is locked", seen failing `enter_run` and `record_step`
    under the ingest benchmark). Here a write transaction first takes this process's
    turn, whose release wakes the next writer at once; SQLite's own lock (and its busy
    timeout) still arbitrates between processes.

    pysqlite opens a transaction at the first INSERT/UPDATE/DELETE/REPLACE, and our
    code takes the lock up front with BEGIN IMMEDIATE where it reads before writing;
    the turn is taken before such a statement and given back when that connection's
    transaction ends (after its commit or rollback, or when it is closed). Taking it
    at a BEGIN IMMEDIATE matters: a connection holding SQLite's lock while it waits
    for the turn would deadlock with a turn holder waiting for SQLite's lock.

    A turn can be lost: an exception raised into a thread from outside (Temporal
    cancels a sync activity that way when a worker stops without a grace period) may
    land between taking the turn and recording it, or between a commit and giving
    it back. A waiter therefore checks the holder: once the holder has had its turn
    for `STALE_AFTER` seconds without a transaction open, the turn is taken over.
    Misjudging costs nothing worse than the old behaviour: two writers meet at
    SQLite's lock and its busy timeout sorts them out.
    """

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")
    STALE_AFTER = 2.0  # seconds a holder may keep the turn with no transaction open
    _CHECK_EVERY = 0.25  # seconds between a waiter's looks at the holder

    def __init__(self, timeout: float = _BUSY_TIMEOUT_S * 2) -> None:
        self._turn = threading.Condition(threading.Lock())
        self._holder: QueuedConnection | None = None
        self._taken_at = 0.0
        self.timeout = timeout
        self.waits = 0  # writers that found the turn taken (benchmarks read it)
        self.reclaimed = 0  # lost turns taken over (tests read it)

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before_execute)

    def _before_execute(self, conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        if not isinstance(dbapi, QueuedConnection) or dbapi.holds_turn is self:
            return
        if statement.lstrip()[:15].upper().startswith(self.WRITES):
            self.take(dbapi)

    def take(self, conn: QueuedConnection) -> None:
        """Wait for the turn and give it to `conn`; raise like SQLite's busy error."""
        deadline = time.monotonic() + self.timeout
        with self._turn:
            if self._holder is not None:
                self.waits += 1
            while self._holder is not None and self._holder is not conn:
                if self._lost():
                    self.reclaimed += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise sqlite3.OperationalError(
                        f"database is locked (no write turn within {self.timeout:g} s)"
                    )
                self._turn.wait(min(left, self._CHECK_EVERY))
            self._holder, self._taken_at = conn, time.monotonic()
            conn.holds_turn = self

    def give_back(self, conn: QueuedConnection) -> None:
        with self._turn:
            if self._holder is conn:
                self._holder = None
                self._turn.notify()

    def _lost(self) -> bool:
        """The holder's transaction ended long ago, yet it never gave the turn back."""
        holder = self._holder
        if holder is None or time.monotonic() - self._taken_at < self.STALE_AFTER:
            return False
        try:
            return not holder.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return True


class QueuedConnection(sqlite3.Connection):
    """A pysqlite connection that gives its `WriterQueue` turn back once its transaction
    has ended, not before: the next writer finds SQLite's lock free."""

    holds_turn: WriterQueue | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._give_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._give_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._give_back()

    def _give_back(self) -> None:
        queue, self.holds_turn = self.holds_turn, None
        if queue is not None:
            queue.give_back(self)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _dump_json(value: Any) -> str:
    """Store non-ASCII text as itself, so rows stay readable in psql and sqlite3."""
    return json.dumps(value, ensure_ascii=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for our migrations, built in code: no alembic.ini at runtime.

    With `connection`, migrations run on it (inside the caller's transaction).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest migration; a no-op when already there.

    Safe on every start and from several processes at once: the whole upgrade runs in
    one transaction under a database-wide lock (an advisory lock on PostgreSQL, the
    write lock on SQLite), so a latecomer waits, then finds the schema current.
    """
    with _MIGRATE_LOCK, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Transaction-scoped: released by the commit or rollback, even on a crash.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        elif connection.dialect.name == "sqlite":
            # pysqlite would autocommit each DDL statement; an explicit BEGIN IMMEDIATE
            # makes the upgrade atomic and takes the write lock before reading the revision.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        command.upgrade(alembic_config(connection), "head")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work: commit if the block succeeds, roll back if it raises.

    Objects stay loaded after the commit (`expire_on_commit=False`) so callers can
    return them from the block without a DetachedInstanceError.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def dialect_insert(session: Session) -> Any:
    """The INSERT of the session's database, with its ON CONFLICT clauses."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
