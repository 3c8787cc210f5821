"""SQLite writers in one process take turns (`WriterQueue`) instead of polling for the lock.

The ingest benchmark saw `enter_run` and `record_step` fail with "database is locked":
writers that poll SQLite's lock (busy_timeout) queue behind each other while the lock
sits free between naps, and the last ones give up. These tests show the failure on a
bare engine (the control), its absence on ours, and that the turn is always given back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from orchestrator.store.db import make_engine, sqlite_url, writer_queue

THREADS = 8
TRANSACTIONS = 6
HOLD = 0.05  # seconds each write transaction keeps the lock
BUSY_MS = 200  # shorter than the queue ahead of the last writer: 7 x 50 ms


def short_busy_timeout(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _busy(dbapi: Any, _record: Any) -> None:
        dbapi.execute(f"PRAGMA busy_timeout={BUSY_MS}")


def hammer(engine: Engine) -> list[str]:
    """THREADS writers, each TRANSACTIONS write transactions holding the lock HOLD s."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS tally (n INTEGER)"))
    errors: list[str] = []
    start = threading.Barrier(THREADS)

    def writer() -> None:
        start.wait()
        for _ in range(TRANSACTIONS):
            try:
                with engine.begin() as connection:
                    connection.execute(text("INSERT INTO tally (n) VALUES (1)"))
                    time.sleep(HOLD)  # work done while holding the write lock
            except Exception as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=writer) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_bare_engine_writers_give_up_on_a_busy_lock(tmp_path: Path) -> None:
    """The control: the same load on a plain engine loses writes to "database is locked"."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    short_busy_timeout(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    errors = hammer(engine)
    assert errors and all("database is locked" in e for e in errors)


def test_our_engine_queues_writers_and_loses_none(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    short_busy_timeout(engine)
    queue = writer_queue(str(tmp_path / "journeys.db"))
    errors = hammer(engine)
    assert errors == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM tally")).scalar() == (
            THREADS * TRANSACTIONS
        )
    assert queue.waits > 0  # they did meet: the test exercised the queue


def test_the_turn_is_given_back_after_rollback_errors_and_begin_immediate(
    tmp_path: Path,
) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    queue = writer_queue(str(tmp_path / "journeys.db"))
    queue_timeout, queue.timeout = queue.timeout, 1.0
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (n INTEGER UNIQUE)"))
            connection.execute(text("INSERT INTO t (n) VALUES (1)"))
        # a failed write, then the rollback
        with pytest.raises(Exception, match="UNIQUE"), engine.begin() as connection:
            connection.execute(text("INSERT INTO t (n) VALUES (1)"))
        with engine.connect() as connection:  # rolled back on return to the pool
            connection.execute(text("INSERT INTO t (n) VALUES (2)"))
        with engine.begin() as connection:  # the router's and erasure's way in
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            connection.execute(text("INSERT INTO t (n) VALUES (3)"))
        done = threading.Event()

        def other_thread() -> None:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t (n) VALUES (4)"))
            done.set()

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=5)
        assert done.is_set()  # every turn above was given back: no 1 s wait, no error
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT n FROM t ORDER BY n")).scalars().all()
        assert rows == [1, 3, 4]
    finally:
        queue.timeout = queue_timeout


def test_a_writer_that_never_gets_its_turn_fails_like_a_locked_database(tmp_path: Path) -> None:
    """The API turns this into 503 + Retry-After, like SQLite's own busy error."""
    engine = make_engine(sqlite_url(tmp_path))
    queue = writer_queue(str(tmp_path / "journeys.db"))
    queue_timeout, queue.timeout = queue.timeout, 0.2
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (n INTEGER)"))
        holder = engine.connect()
        holder.execute(text("INSERT INTO t (n) VALUES (1)"))  # holds the turn, uncommitted
        failure: list[BaseException] = []

        def blocked() -> None:
            try:
                with engine.begin() as connection:
                    connection.execute(text("INSERT INTO t (n) VALUES (2)"))
            except Exception as exc:
                failure.append(exc)

        thread = threading.Thread(target=blocked)
        thread.start()
        thread.join(timeout=5)
        holder.commit()
        holder.close()
        assert len(failure) == 1
        assert isinstance(failure[0], OperationalError)  # what the API maps to 503
        assert isinstance(failure[0].orig, sqlite3.OperationalError)
        assert "database is locked" in str(failure[0])
    finally:
        queue.timeout = queue_timeout


def test_a_turn_lost_to_an_exception_from_outside_is_taken_over(tmp_path: Path) -> None:
    """Temporal cancels a sync activity by raising into its thread; if that lands between
    a commit and giving the turn back, the turn is lost. Before, every later writer in
    the process waited its full timeout and failed (a worker then could not stop: the
    graceful-shutdown control test hung). Now a waiter takes over a turn whose holder
    has had no transaction open for `STALE_AFTER` seconds."""
    engine = make_engine(sqlite_url(tmp_path))
    queue = writer_queue(str(tmp_path / "journeys.db"))
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    reclaimed = queue.reclaimed
    with engine.connect() as connection:
        connection.execute(text("INSERT INTO t (n) VALUES (1)"))  # takes the turn
        raw = connection.connection.dbapi_connection
        sqlite3.Connection.commit(raw)  # committed...
        raw.holds_turn = None  # ...and the exception landed before the turn went back
        started = time.monotonic()
        with engine.begin() as other:  # another connection: waited `timeout`, then failed
            other.execute(text("INSERT INTO t (n) VALUES (2)"))
        waited = time.monotonic() - started
    assert queue.reclaimed == reclaimed + 1
    assert queue.STALE_AFTER <= waited < queue.timeout
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 2
