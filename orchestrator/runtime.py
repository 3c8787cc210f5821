"""Running the pieces: worker + router, API, or everything at once (`journeys dev`).

Each entry point is an async function that runs until asked to stop (SIGINT /
SIGTERM or the `stop` event) and then shuts down in reverse order of start.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from sqlalchemy import Engine
from temporalio.client import Client

from .api import create_app
from .deploy import deploy
from .links import MessageLinks
from .rendering import Renderer
from .router import Router
from .settings import Settings
from .store.db import make_engine, migrate
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
    data_dir.mkdir(parents=True, exist_ok=True)
    key = f"dev_{secrets.token_urlsafe(24)}"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def open_store(settings: Settings) -> Engine:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return engine


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
    )


async def run_dev(
    settings: Settings, stop: asyncio.Event | None = None, announce: bool = True
) -> None:
    """Temporal (embedded unless TEMPORAL_ADDRESS), store, worker, router and API."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    write_key = ensure_write_key(settings.data_dir)
    engine = open_store(settings)
    server: DevServer | None = None
    try:
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
            for v in versions:
                print(f"journey: {v.journey_id} v{v.version} ({v.path})", flush=True)
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
    """Production worker: runs journeys and routes stored events to Temporal."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    engine = open_store(settings)
    try:
        deploy(engine, settings.journeys_dir, Renderer.from_settings(settings))
        client = await connect(settings)
        router = make_router(client, engine, settings)
        async with build_worker(client, engine, settings):
            router_task = asyncio.create_task(router.run())
            await stop.wait()
            router_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await router_task
    finally:
        engine.dispose()


async def run_api(settings: Settings, write_keys: list[str]) -> None:
    """Production API: stateless; events are routed by the workers."""
    engine = open_store(settings)
    client = await connect(settings)
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
