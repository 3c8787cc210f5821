"""`/health`, `/ready` and `/metrics`: is each part (API, database, Temporal) working, is
routing keeping up, and may this process take traffic.

`/health` is JSON for people and monitors: 200 when every part is ok and the oldest
unrouted event is younger than JOURNEYS_ROUTING_LAG_LIMIT, else 503 with the part
that is not. `/metrics` is the Prometheus text format (always 200: a part that is
down is a `journeys_up` of 0, not a failed scrape). The event figures come from the
events table, so every API process reports the routing of every router.

Neither needs a key, so they answer a part and its status only (`error`); why it
failed (exception text, which names hosts, ports and users) goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import Engine, text
from temporalio.client import Client

from ..analytics.metrics import Sample, journey_samples
from ..observability.registry import REGISTRY, Exposition
from ..store.backlog import (
    DRAIN_WINDOW,
    RoutedCount,
    RoutingBacklog,
    count_routed,
    routing_backlog,
)
from ..store.db import session_scope
from .context import api_context, authenticate
from .errors import ApiError

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)
ERROR = "error"  # a part that does not work; the details are logged

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
DB_TIMEOUT = 5.0
# The full count of routed events is O(table): taken at most this often per API process,
# and extended in between by counting what was routed since (an index range).
RECOUNT_EVERY = 300.0


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    healthy, checks = await health_checks(request)
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", **checks},
        status_code=200 if healthy else 503,
    )


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness, for load balancers and Kubernetes: can this process acknowledge events?

    It needs the database only (events are committed, then routed), so a Temporal outage
    or a routing lag, which make `/health` 503, do not take API instances out of service.
    """
    database = await _check_database(api_context(request).engine)
    return _readiness(database)


def _readiness(database: str) -> JSONResponse:
    ok = database == "ok"
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "database": database},
        status_code=200 if ok else 503,
    )


async def health_checks(request: Request) -> tuple[bool, dict[str, Any]]:
    """Each part's status (and the routing figures): `/health` and the dashboard's Health
    page show the same answer."""
    ctx = api_context(request)
    checks: dict[str, Any] = {"api": "ok", "database": await _check_database(ctx.engine)}
    checks["temporal"] = await _check_temporal(ctx.client) if ctx.client else "not configured"
    checks["events"] = (
        await _events_section(request, ctx.settings.routing_lag_limit)
        if checks["database"] == "ok"
        else {"status": "unknown: the database is unavailable"}
    )
    healthy = all((v["status"] if isinstance(v, dict) else v) == "ok" for v in checks.values())
    return healthy, checks


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format: routing backlog, lag and throughput, and which part is up."""
    ctx = api_context(request)
    database = await _check_database(ctx.engine) == "ok"
    temporal = ctx.client is not None and await _check_temporal(ctx.client) == "ok"
    out = Exposition()
    up = "1 when the part answers, 0 when it does not."
    out.add("journeys_up", "gauge", up, int(database), {"component": "database"})
    out.add("journeys_up", "gauge", up, int(temporal), {"component": "temporal"})
    if database:
        try:
            b = await _backlog(request)
        except Exception:  # gone since the ping: the scrape still reports what is down
            b = None
        if b is not None:
            out.add("journeys_events_backlog", "gauge", BACKLOG_HELP, b.backlog)
            out.add("journeys_events_leased", "gauge", LEASED_HELP, b.leased)
            out.add("journeys_events_routing_lag_seconds", "gauge", LAG_HELP, b.lag_seconds)
            out.add("journeys_events_routed_total", "counter", ROUTED_HELP, b.routed_total or 0)
            out.add("journeys_events_dead_letters", "gauge", DEAD_LETTERS_HELP, b.dead_letters)
            out.add(
                "journeys_events_drain_rate_per_second",
                "gauge",
                f"Events routed per second, averaged over the last {b.window:g} s.",
                b.drain_rate,
            )
        # Conversions and revenue are the shop's business: only for an admin key here (this
        # port is public: recipients' links land on it); JOURNEYS_METRICS_PORT serves them
        # to an internal scraper without one.
        if await _is_admin(request):
            await _add_journey_samples(request, ctx.engine, out)
    REGISTRY.write(out)  # this process's requests (and sends, in `journeys dev`)
    return PlainTextResponse(out.text(), media_type=PROMETHEUS_TEXT)


async def _is_admin(request: Request) -> bool:
    if "authorization" not in request.headers:
        return False
    try:
        await authenticate(request, api_context(request), kind="admin")
    except ApiError:
        return False
    return True


def create_metrics_app(engine: Engine) -> FastAPI:
    """`/metrics` alone, for `journeys worker` and `journeys router` (JOURNEYS_METRICS_PORT):
    whether the database answers, and the journey counters."""
    app = FastAPI(title="journeys metrics", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    @app.get("/ready")
    async def worker_ready() -> JSONResponse:
        """Served once the process polls Temporal (or routes): ready while the store answers."""
        return _readiness(await _check_database(engine))

    @app.get("/metrics", response_class=PlainTextResponse)
    async def worker_metrics(request: Request) -> PlainTextResponse:
        out = Exposition()
        database = await _check_database(engine) == "ok"
        up = "1 when the part answers, 0 when it does not."
        out.add("journeys_up", "gauge", up, int(database), {"component": "database"})
        if database:
            await _add_journey_samples(request, engine, out)
        REGISTRY.write(out)  # this process's provider calls
        return PlainTextResponse(out.text(), media_type=PROMETHEUS_TEXT)

    return app


async def _add_journey_samples(request: Request, engine: Engine, out: Exposition) -> None:
    try:
        samples = await _journey_samples(request, engine)
    except Exception:  # the store is slow or gone: the scrape still reports the rest
        _warn("metrics: reading the journey counters failed", engine)
        samples = []
    for sample in samples:
        out.add(sample.name, sample.kind, sample.help, sample.value, sample.labels)


JOURNEY_METRICS_EVERY = 15.0  # seconds a scrape may reuse the last reading of the counters


async def _journey_samples(request: Request, engine: Engine) -> list[Sample]:
    state = request.app.state
    lock = getattr(state, "journey_samples_lock", None)
    if lock is None:
        lock = state.journey_samples_lock = asyncio.Lock()
    async with lock:  # one reading at a time: concurrent scrapes wait for it, not repeat it
        cached: tuple[float, list[Sample]] | None = getattr(state, "journey_samples", None)
        if cached is None or time.monotonic() - cached[0] > JOURNEY_METRICS_EVERY:

            def read() -> list[Sample]:
                with session_scope(engine) as session:
                    return list(journey_samples(session))

            cached = state.journey_samples = (time.monotonic(), await _in_thread(read))
        return cached[1]


BACKLOG_HELP = "Events stored and not yet routed to Temporal."
LEASED_HELP = "Unrouted events claimed by a live router right now."
LAG_HELP = "Age of the oldest unrouted event (0 when none waits)."
ROUTED_HELP = "Events routed to Temporal by every router, as counted in the events table."
DEAD_LETTERS_HELP = "Events given up on after failures of their own, waiting for an operator."


async def _events_section(request: Request, limit: float) -> dict[str, Any]:
    """The `events` part of /health; `lagging` once the oldest unrouted event passes `limit`."""
    try:
        b = await _backlog(request)
    except Exception:
        _warn("health: reading the routing backlog failed", api_context(request).engine)
        return {"status": ERROR}
    lagging = bool(limit) and b.lag_seconds > limit
    return {
        "status": "lagging" if lagging else "ok",
        "backlog": b.backlog,
        "leased": b.leased,
        "routing_lag_seconds": round(b.lag_seconds, 3),
        "routing_lag_limit_seconds": limit or None,
        "routed_total": b.routed_total,
        "drain_rate_per_second": round(b.drain_rate, 3),
        "drain_window_seconds": b.window,
        # Not routing lag, so never 503: `journeys events dead-letter list` shows them.
        "dead_letters": b.dead_letters,
    }


async def _backlog(request: Request) -> RoutingBacklog:
    engine, state = api_context(request).engine, request.app.state
    base: tuple[float, RoutedCount] | None = getattr(state, "routed_count", None)
    if base is None or time.monotonic() - base[0] > RECOUNT_EVERY:
        counted = await _in_thread(count_routed, engine)
        base = state.routed_count = (time.monotonic(), counted)
    return await _in_thread(routing_backlog, engine, DRAIN_WINDOW, base[1])


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout=DB_TIMEOUT)


# Anyone may poll these endpoints, as often as they like: while a part is down, say why
# once per WARN_EVERY seconds (with the traceback), not once per request.
WARN_EVERY = 30.0
_warned: weakref.WeakKeyDictionary[object, dict[str, float]] = weakref.WeakKeyDictionary()


def _warn(what: str, part: object, traceback: bool = True) -> None:
    """Log `what` (with the exception being handled) unless it was logged for this `part`
    (the engine, the Temporal client) less than WARN_EVERY seconds ago."""
    now = time.monotonic()
    last = _warned.setdefault(part, {})
    if now - last.get(what, -WARN_EVERY) < WARN_EVERY:
        return
    last[what] = now
    log.warning("%s (said once per %.0f s while it lasts)", what, WARN_EVERY, exc_info=traceback)


async def _check_database(engine: Engine) -> str:
    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout=DB_TIMEOUT)
        return "ok"
    except Exception:
        _warn("health: the database does not answer", engine)
        return ERROR


async def _check_temporal(client: Client) -> str:
    try:
        serving = await client.service_client.check_health(timeout=timedelta(seconds=3))
    except Exception:
        _warn("health: Temporal does not answer", client)
        return ERROR
    if not serving:
        _warn("health: the Temporal server answers but is not serving", client, traceback=False)
        return ERROR
    return "ok"
