"""Running the pieces: worker + router, router alone, API, or all at once (`journeys dev`).

Each entry point is an async function that runs until asked to stop (SIGINT /
SIGTERM or the `stop` event) and then shuts down in reverse order of start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client

from ..api import create_app
from ..deployment.deploy import deploy
from ..rendering import Renderer
from ..services.links import MessageLinks
from ..services.private_files import private_dir, write_private
from ..settings import Settings
from ..store.backlog import routing_backlog
from ..store.db import make_engine, migrate
from .router import MAX_PAUSE, WARN_EVERY, Router
from .temporal_server import DevServer
from .worker import build_worker, connect, python_journeys


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: we stop it with everything else."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def ensure_write_key(data_dir: Path) -> str:
    """The development write key: created once, kept in the data directory."""
    path = data_dir / "write_key"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    key = f"dev_{secrets.token_urlsafe(24)}"
    write_private(path, key + "\n")  # 0600 from its first byte, in a 0700 directory
    return key


def open_store(settings: Settings) -> Engine:
    private_dir(settings.data_dir)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return engine


def configure_logging() -> None:
    """Warnings and errors on stderr, one line each with time, level and source.

    What goes wrong in a running journey (a failed send, a paused router) is logged at
    WARNING where it is decided; without a handler Python would print bare messages.
    Leaves a configuration the embedding program made alone.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def make_router(client: Client, engine: Engine, settings: Settings) -> Router:
    return Router(
        client,
        engine,
        settings.task_queue,
        settings.router_interval,
        python_journeys=python_journeys(settings),
        lease=settings.router_lease,
    )


async def stop_router(router: Router, task: asyncio.Task[None]) -> None:
    """Let the sweep in progress finish (deliveries marked, the rest released), then end."""
    router.stop()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=router.lease)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_dev(
    settings: Settings, stop: asyncio.Event | None = None, announce: bool = True
) -> None:
    """Temporal (embedded unless TEMPORAL_ADDRESS), store, worker, router and API."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    configure_logging()
    write_key = ensure_write_key(settings.data_dir)
    engine = open_store(settings)
    server: DevServer | None = None
    try:
        # The folder is the whole project here: its journeys become exactly the active set.
        versions = deploy(engine, settings.journeys_dir, Renderer.from_settings(settings))
        if settings.temporal_address:
            client = await connect(settings)
            ui = settings.temporal_ui_url or "(managed by your Temporal deployment)"
        else:
            server = DevServer(
                db_file=settings.data_dir / "temporal.db",
                port=settings.temporal_port,
                ui_port=settings.temporal_ui_port,
                synchronous=settings.temporal_sqlite_synchronous,
                log_file=settings.data_dir / "temporal.log",
            )
            await server.start()
            client = await connect(settings, server.address)
            ui = server.ui_url
        if announce:
            for version in versions:
                print(version.describe(settings.journeys_dir), flush=True)
        await _serve_all(settings, engine, client, [write_key, *settings.write_keys], stop, ui)
    finally:
        if server is not None:
            server.stop()
        engine.dispose()


async def _serve_all(
    settings: Settings,
    engine: Engine,
    client: Client,
    write_keys: list[str],
    stop: asyncio.Event,
    ui: str,
) -> None:
    router = make_router(client, engine, settings)
    app = create_app(
        engine, write_keys, client, router.wake, MessageLinks.from_settings(settings), settings
    )
    http = _Server(
        uvicorn.Config(
            app, host=settings.api_host, port=settings.api_port, log_level="warning", lifespan="off"
        )
    )
    worker = build_worker(client, engine, settings)
    async with worker:
        router_task = asyncio.create_task(router.run())
        http_task = asyncio.create_task(http.serve())
        while not http.started and not http_task.done():
            await asyncio.sleep(0.05)
        if http_task.done():
            http_task.result()  # raises why the API could not start (port in use...)
        print(f"API: http://{settings.api_host}:{settings.api_port}", flush=True)
        print(f"Temporal UI: {ui}", flush=True)
        print(f"write key: {write_keys[0]}", flush=True)
        await stop.wait()
        print("shutting down...", flush=True)
        http.should_exit = True
        await http_task
        router_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await router_task


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Production worker: runs journeys and routes stored events to Temporal (unless
    JOURNEYS_ROUTER=off: `journeys router` processes route)."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    configure_logging()
    engine = open_store(settings)
    try:
        # Its checkout may be older than what is deployed: it never changes the active set.
        renderer = Renderer.from_settings(settings)
        deploy(engine, settings.journeys_dir, renderer, retire_missing=False)
        client = await connect(settings)
        router = make_router(client, engine, settings) if settings.router else None
        async with build_worker(client, engine, settings):
            router_task = asyncio.create_task(router.run()) if router else None
            await stop.wait()
            if router and router_task:
                await stop_router(router, router_task)
    finally:
        engine.dispose()


async def run_router(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Only the event router: as many as wanted against one database (docs/routing.md).

    Starts even while Temporal is unreachable, and waits for it, warning with the backlog.
    """
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    configure_logging()
    engine = open_store(settings)
    try:
        client = await _connect_when_up(settings, engine, stop)
        if client is None:
            return
        router = make_router(client, engine, settings)
        print(
            f"router {router.name}: routing events to {client.service_client.config.target_host} "
            f"(namespace {settings.temporal_namespace}, task queue {settings.task_queue})",
            flush=True,
        )
        task = asyncio.create_task(router.run())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done():
            task.result()  # raises why the router ended
        await stop_router(router, task)
    finally:
        engine.dispose()


async def _connect_when_up(
    settings: Settings, engine: Engine, stop: asyncio.Event
) -> Client | None:
    """Connect, retrying while Temporal is unreachable (warning with the backlog every
    WARN_EVERY s); None when stopped meanwhile."""
    warned = -WARN_EVERY
    while not stop.is_set():
        try:
            return await connect(settings)
        except RuntimeError as exc:
            if time.monotonic() - warned >= WARN_EVERY:
                warned = time.monotonic()
                try:
                    b = routing_backlog(engine)
                    waiting = f"{b.backlog} events waiting, the oldest for {b.lag_seconds:.0f} s"
                except SQLAlchemyError as db_exc:
                    waiting = f"backlog unknown ({type(db_exc).__name__})"
                logging.getLogger("orchestrator.processes.router").warning(
                    "Temporal is unreachable (%s); %s; retrying every %.0f s",
                    exc,
                    waiting,
                    MAX_PAUSE,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=MAX_PAUSE)
    return None


async def run_api(settings: Settings, write_keys: list[str]) -> None:
    """Production API: stateless; events are routed by the workers."""
    engine = open_store(settings)
    # Lazy: the API starts, and acknowledges events, while Temporal is unreachable.
    client = await connect(settings, lazy=True)
    try:
        app = create_app(
            engine,
            write_keys,
            client,
            links=MessageLinks.from_settings(settings),
            settings=settings,
        )
        config = uvicorn.Config(app, host=settings.api_host, port=settings.api_port)
        await uvicorn.Server(config).serve()
    finally:
        engine.dispose()
