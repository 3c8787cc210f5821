"""What operators see of routing: `/health`'s `events` part, `/metrics`, and the warnings
a router logs while the database is unreachable.

The API runs in-process over ASGI against a real store (SQLite and PostgreSQL); events
are routed by the real `Router` to the time-skipping server.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from harness import own_time_skipping_server, terminate_runs, write_journey
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from orchestrator.api import create_app
from orchestrator.api.ingest import store_calls
from orchestrator.api.segment import TrackCall
from orchestrator.deployment.deploy import deploy
from orchestrator.processes.router import Router
from orchestrator.settings import Settings
from orchestrator.store.db import make_engine


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own time-skipping server (see `harness.own_time_skipping_server`)."""
    async with own_time_skipping_server() as env:
        yield env


KEY = "metrics-key"
# The Prometheus text format, as scrapers parse it: comments, or `name{labels} value`.
SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$')


def client_for(
    engine: Engine, env: WorkflowEnvironment | None, **settings: float
) -> httpx.AsyncClient:
    app = create_app(engine, [KEY], env.client if env else None, settings=Settings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def metrics_of(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        assert SAMPLE.match(line), f"not Prometheus text format: {line!r}"
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


@pytest_asyncio.fixture
async def shop(
    engine: Engine, ts_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Router]]:
    write_journey(
        tmp_path / "journeys",
        "welcome",
        "id: welcome\nname: Welcome\ntrigger: { event: Signed Up }\nsteps:\n  - wait: 30d\n",
    )
    (tmp_path / "templates").mkdir()
    deploy(engine, tmp_path / "journeys", tmp_path / "templates")
    yield engine, Router(ts_env.client, engine, f"tq-{uuid.uuid4().hex[:8]}", interval=0)
    await terminate_runs(ts_env.client, engine, "welcome")


def store(engine: Engine, count: int) -> None:
    calls = [
        TrackCall.model_validate(
            {
                "userId": f"m-{uuid.uuid4().hex[:8]}",
                "event": "Signed Up",
                "messageId": str(uuid.uuid4()),
            }
        )
        for _ in range(count)
    ]
    store_calls(engine, calls)


async def test_health_and_metrics_follow_the_backlog_as_it_is_claimed_and_routed(
    shop: tuple[Engine, Router], ts_env: WorkflowEnvironment
) -> None:
    engine, router = shop
    store(engine, 5)
    async with client_for(engine, ts_env) as api:
        waiting = (await api.get("/health")).json()["events"]
        assert (waiting["status"], waiting["backlog"], waiting["leased"]) == ("ok", 5, 0)
        assert waiting["routing_lag_seconds"] > 0
        assert waiting["routing_lag_limit_seconds"] == 300
        assert (waiting["routed_total"], waiting["drain_rate_per_second"]) == (0, 0)

        claim = await asyncio.to_thread(router.claim)
        held = (await api.get("/health")).json()["events"]
        assert (held["backlog"], held["leased"]) == (5, 5)

        await router.deliver(claim)
        store(engine, 2)
        response = await api.get("/health")
        after = response.json()
        assert response.status_code == 200 and after["status"] == "ok", after
        assert (after["events"]["backlog"], after["events"]["leased"]) == (2, 0)
        assert after["events"]["routed_total"] == 5
        assert after["events"]["drain_rate_per_second"] == pytest.approx(5 / 60, abs=0.001)

        scraped = await api.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    metrics = metrics_of(scraped.text)
    assert metrics["journeys_events_backlog"] == 2
    assert metrics["journeys_events_leased"] == 0
    assert metrics["journeys_events_routed_total"] == 5
    assert metrics["journeys_events_routing_lag_seconds"] > 0
    assert metrics['journeys_up{component="database"}'] == 1
    assert metrics['journeys_up{component="temporal"}'] == 1
    assert scraped.text.count("# TYPE journeys_up gauge") == 1
    assert "# TYPE journeys_events_routed_total counter" in scraped.text


async def test_a_routing_lag_above_the_limit_makes_health_degraded(
    shop: tuple[Engine, Router], ts_env: WorkflowEnvironment
) -> None:
    engine, router = shop
    store(engine, 1)
    await asyncio.sleep(0.05)  # the event is now older than the 10 ms limit below
    async with client_for(engine, ts_env, routing_lag_limit=0.01) as api:
        response = await api.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "degraded"
        assert response.json()["events"]["status"] == "lagging"
        await router.sweep()
        assert (await api.get("/health")).status_code == 200  # routed: no lag left
    store(engine, 1)
    await asyncio.sleep(0.05)
    async with client_for(engine, ts_env, routing_lag_limit=0) as api:  # 0: never degraded
        body = (await api.get("/health")).json()
        assert (
            body["events"]["status"] == "ok" and body["events"]["routing_lag_limit_seconds"] is None
        )


async def test_database_down_is_reported_not_a_500_and_routers_wait(
    caplog: pytest.LogCaptureFixture, ts_env: WorkflowEnvironment
) -> None:
    """Nothing listens on port 1: every database call fails to connect."""
    gone = make_engine("postgresql://journeys@127.0.0.1:1/journeys")
    async with client_for(gone, ts_env) as api:
        health = await api.get("/health")
        scraped = await api.get("/metrics")
        track = await api.post(
            "/v1/track", auth=(KEY, ""), json={"userId": "u", "event": "Signed Up"}
        )
    assert health.status_code == 503
    assert health.json()["database"] == "error"  # the why is in the log, not the answer
    assert health.json()["events"] == {"status": "unknown: the database is unavailable"}
    assert scraped.status_code == 200
    metrics = metrics_of(scraped.text)
    # This process's own counters (requests, sends: orchestrator/observability) are there
    # too, with what earlier tests in this process did; not the point here.
    metrics = {k: v for k, v in metrics.items() if k.startswith("journeys_up")}
    assert metrics == {
        'journeys_up{component="database"}': 0,
        'journeys_up{component="temporal"}': 1,
    }
    assert track.status_code == 503 and track.headers["retry-after"] == "1"
    assert track.json()["error"] == "database busy, retry later"

    router = Router(ts_env.client, gone, "tq-nowhere", interval=0.05)
    caplog.clear()  # the API logged why it answered 503
    with caplog.at_level(logging.WARNING, logger="orchestrator.processes.router"):
        loop = asyncio.create_task(router.run())
        for _ in range(100):
            if caplog.records:
                break
            await asyncio.sleep(0.05)
        router.stop()
        await loop
    [warning] = caplog.records  # one per 10 s while it lasts
    assert warning.getMessage().startswith("routing paused, the database is unavailable")
    gone.dispose()


async def everything_down() -> tuple[Engine, httpx.ASGITransport]:
    """An API whose database and Temporal do not answer (nothing listens on port 1)."""
    gone = make_engine("postgresql://journeys@127.0.0.1:1/journeys")
    unreachable = await Client.connect("127.0.0.1:1", lazy=True)
    app = create_app(gone, [KEY], unreachable, settings=Settings())
    return gone, httpx.ASGITransport(app=app)


async def test_health_names_each_part_and_its_status_and_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/health is for anyone (monitors, load balancers): it says which part is down, never
    the exception text, which names hosts, ports, users and driver internals."""
    gone, transport = await everything_down()
    with caplog.at_level(logging.WARNING, logger="orchestrator.api"):
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            health = await api.get("/health")
            track = await api.post("/v1/track", auth=(KEY, ""), json={"userId": "u", "event": "X"})
    assert health.status_code == 503
    assert health.json() == {
        "status": "degraded",
        "api": "ok",
        "database": "error",
        "temporal": "error",
        "events": {"status": "unknown: the database is unavailable"},
    }
    assert track.status_code == 503
    for answer in (health.text, track.text):
        assert "127.0.0.1" not in answer and "Error" not in answer and "journeys@" not in answer
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "database" in logged and "temporal" in logged.lower()
    assert "127.0.0.1" in logged  # the details are where the operator looks
    gone.dispose()


async def test_a_part_that_stays_down_is_logged_once_however_often_health_is_polled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/health and /metrics need no key and are polled by anyone: while the database or
    Temporal stays down, why is logged (with the traceback) once per 30 s, not per call."""
    gone, transport = await everything_down()
    with caplog.at_level(logging.WARNING, logger="orchestrator.api"):
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            for _ in range(3):
                assert (await api.get("/health")).status_code == 503
                assert (await api.get("/metrics")).status_code == 200
    said = [r.getMessage() for r in caplog.records]
    assert (
        said.count("health: the database does not answer (said once per 30 s while it lasts)") == 1
    )
    assert said.count("health: Temporal does not answer (said once per 30 s while it lasts)") == 1
    gone.dispose()
