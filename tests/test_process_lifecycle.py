"""Starting and stopping the production processes (`journeys api|worker|router`) as a
process manager does: before Temporal is up, and with SIGTERM in the middle of work.

- a worker (and a router) started while Temporal is down waits and retries, then polls
  once it is up, instead of exiting (a crash loop on every cluster restart);
- `/ready` answers 200 while the database does, Temporal down or not (`/health` is then
  503): readiness decides whether a load balancer sends traffic, and ingest works
  without Temporal;
- an API asked to stop finishes the requests in flight: the event it was committing is
  acknowledged and stored, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from ingest_stack import WRITE_KEY, Stack, console_sends, go_call, store_counts

from orchestrator.store.db import make_engine, sqlite_url

pytestmark = pytest.mark.asyncio


async def until(
    what: str, check: Callable[[], Awaitable[bool] | bool], timeout: float, stack: Stack
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s\n{stack.report()}"
        await asyncio.sleep(0.25)


async def test_processes_started_before_temporal_wait_for_it(tmp_path: Path) -> None:
    store = sqlite_url(tmp_path / "store")
    stack = Stack(tmp_path, store)
    engine = make_engine(store)
    try:
        api = stack.add_api().start()
        worker = stack.add("worker", "worker", JOURNEYS_ROUTER="off").start()
        router = stack.add("router", "router").start()
        await stack.wait_api()
        async with httpx.AsyncClient(base_url=stack.url(), trust_env=False) as http:
            ready, health = await http.get("/ready"), await http.get("/health")
            assert (ready.status_code, ready.json()) == (
                200,
                {"status": "ready", "database": "ok"},
            )
            assert health.status_code == 503 and health.json()["temporal"] == "error"
            call = go_call("early")
            answer = await http.post("/v1/track", json=call, auth=(WRITE_KEY, ""))
            assert answer.status_code == 200, answer.text

        def waiting(service_name: str) -> bool:
            return "Temporal is unreachable" in stack.services[service_name].output()

        await until("the worker says it waits", lambda: waiting("worker"), 60, stack)
        await until("the router says it waits", lambda: waiting("router"), 60, stack)
        await asyncio.sleep(3)  # a few more connection attempts: still there, not exited
        assert worker.alive and router.alive and api.alive, stack.report()
        assert worker.lives == router.lives == 1

        await stack.temporal.start()
        await until("the worker polls", lambda: "ready; journeys" in worker.output(), 60, stack)
        await until(
            "the event acknowledged before Temporal was up is sent",
            lambda: store_counts(engine, [call["messageId"]])["messages sent"] == 1,
            120,
            stack,
        )
        assert len(console_sends([worker.output()])) == 1
        # What it sends with is in its ready line; the console adapter is a warning, since
        # messages "sent" through it reach nobody.
        assert "sends email console, push console, sms console;" in worker.output()
        assert (
            "push messages are printed by the console adapter, not sent: set "
            "JOURNEYS_PUSH_CHANNEL" in worker.output()
        )
        assert worker.stop() == 0 and router.stop() == 0 and api.stop() == 0
        assert "stopped in" in worker.output()
        assert "stopped in" in router.output() and "its claims released" in router.output()
        assert worker.lives == router.lives == api.lives == 1, "nothing had to be restarted"
    finally:
        stack.close()
        engine.dispose()


async def test_api_stopped_mid_request_finishes_it(tmp_path: Path) -> None:
    """SIGTERM while a track call waits for the database: the call is answered 200, the
    event is stored, and the API exits 0 (nothing acknowledged is lost, nothing cut)."""
    store = sqlite_url(tmp_path / "store")
    stack = Stack(tmp_path, store)
    try:
        api = stack.add_api().start()
        await stack.wait_api()
        # Another writer holds SQLite's write lock: the API's commit waits (busy timeout).
        holder = sqlite3.connect(tmp_path / "store" / "journeys.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        call = go_call("in-flight")
        async with httpx.AsyncClient(base_url=stack.url(), trust_env=False) as http:
            request = asyncio.create_task(
                http.post("/v1/track", json=call, auth=(WRITE_KEY, ""), timeout=30)
            )
            await asyncio.sleep(1.0)
            assert not request.done(), "the call should be waiting for the write lock"
            assert api.process is not None
            api.process.terminate()  # SIGTERM, as a rolling deploy sends it
            await asyncio.sleep(1.0)
            assert api.alive, "the API exited with a request in flight\n" + api.report()
            holder.execute("ROLLBACK")
            answer = await request
        holder.close()
        assert answer.status_code == 200, answer.text
        assert await asyncio.to_thread(api.process.wait, 30) == 0, api.report()
        assert "stopped in" in api.output() and "requests in flight finished" in api.output()
        engine = make_engine(store)
        try:
            assert store_counts(engine, [call["messageId"]])["stored"] == 1
        finally:
            engine.dispose()
    finally:
        stack.close()
