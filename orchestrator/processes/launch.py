"""Running the pieces: worker + router, router alone, API, or all at once (`journeys dev`).

Each entry point is an async function that runs until asked to stop (SIGINT,
SIGTERM, SIGHUP or the `stop` event) and then shuts down in reverse order of start:
the API stops accepting, the router releases its claims, the workers stop polling
and let the activities in flight finish (JOURNEYS_SHUTDOWN_GRACE), and only then
does the embedded Temporal server stop.

`journeys dev` starts in two parts. `prepare_dev` checks everything that can refuse
the start while nothing has changed yet: the data directory's lock, the API port
(bound), the Temporal ports, the journeys (validated, not stored). `run_dev` then
starts the Temporal server, connects, and only then deploys and serves. A stop
signal at any point ends the start quietly (`stopping.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client

from channels.base import Channel

from ..api import create_app
from ..api.health import create_metrics_app
from ..deployment.deploy import DeployedVersion, DeployPlan, apply_deploy, deploy, plan_deploy
from ..observability import observe
from ..observability.tracing import shutdown_tracing
from ..rendering import Renderer
from ..services.links import MessageLinks
from ..services.private_files import private_dir, write_private
from ..services.redaction import redact_url
from ..settings import Settings
from ..store.backlog import routing_backlog
from ..store.db import make_engine, migrate
from .data_lock import DataDirLock
from .router import MAX_PAUSE, WARN_EVERY, Router
from .stopping import STOP_SIGNALS, Stops, unless_stopped
from .temporal_server import DevServer
from .worker import WorkerGroup, build_worker, channel_adapters, connect, python_journeys


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: we stop it with everything else."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ListenError(OSError):
    """The API cannot listen where it was told to: the message says where and what to change."""


def listen(
    settings: Settings, port: int | None = None, how: str = "--port or JOURNEYS_API_PORT"
) -> socket.socket:
    """The API's socket, bound before anything else starts: a port in use is one clear
    error at once, instead of a server that half starts (uvicorn would exit from inside
    its task, leaving the rest running and deaf to Ctrl-C)."""
    host, port = settings.api_host, port or settings.api_port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"port {port} is in use ({host}:{port}: {reason}): choose another with {how}"
            ) from None
        raise ListenError(
            f"cannot listen on {host}:{port} ({reason}): choose another port with {how}, "
            "or another address with JOURNEYS_API_HOST"
        ) from None
    # Listening already: from here on no other process can take the port (a bound socket
    # that does not listen would not stop one that also sets SO_REUSEADDR).
    sock.listen(2048)  # uvicorn's backlog
    return sock


async def serve_api(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn on our socket; its `sys.exit` on a failed start becomes an error we can catch."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        raise ListenError(f"the API did not start (uvicorn exited with {exc.code})") from None


def ensure_write_key(data_dir: Path) -> str:
    """The development write key: created once, kept in the data directory."""
    path = data_dir / "write_key"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    key = f"dev_{secrets.token_urlsafe(24)}"
    write_private(path, key + "\n")  # 0600 from its first byte, in a 0700 directory
    return key


def open_store(settings: Settings) -> Engine:
    if settings.database_url is None:  # the SQLite store lives in the data dir
        private_dir(settings.data_dir)
    engine = make_engine(
        settings.resolved_database_url, settings.db_pool_size, settings.db_max_overflow
    )
    migrate(engine)
    return engine


def uvicorn_logs(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging options: in JSON mode its lines go through our JSON handler, and
    no access lines, which carry client addresses and raw paths (the request metrics
    count requests); in text mode its own format, as before."""
    if settings.log_format != "json":
        return {}
    return {"log_config": None, "access_log": False}


def say(line: str) -> None:
    """Print one of the process's own lines. Whoever reads stdout may be gone (`journeys
    dev | tee dev.log`: Ctrl+C ends `tee` too): the process goes on, and stops, without
    it, its output dropped from then on (Python's advice for SIGPIPE)."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT (Ctrl-C), SIGTERM (a deploy) and SIGHUP (the terminal closed) stop cleanly."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)


def make_router(client: Client, engine: Engine, settings: Settings) -> Router:
    return Router(
        client,
        engine,
        settings.task_queue,
        settings.router_interval,
        python_journeys=python_journeys(settings),
        lease=settings.router_lease,
        dead_letter_after=settings.dead_letter_after,
        default_timezone=settings.default_timezone,
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


@dataclass
class DevStart:
    """What `prepare_dev` checked and holds until `journeys dev` exits."""

    lock: DataDirLock
    sock: socket.socket
    engine: Engine
    plan: DeployPlan
    adapters: dict[str, Channel]
    server: DevServer | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.server is not None:
            self.server.stop()  # after the workers: their shutdown needs it to answer
        self.sock.close()
        self.engine.dispose()
        self.lock.release()
        shutdown_tracing()  # the spans still buffered go out


def prepare_dev(settings: Settings, stops: Stops, retire_all: bool = False) -> DevStart:
    """Everything that can refuse to start `journeys dev`, before anything changes.

    In this order: the data directory's lock (one `journeys dev` per directory), the
    API's socket (bound and listening), the embedded Temporal server's binary and ports,
    the channel adapters' settings, the store (migrated) and the journeys (validated;
    `run_dev` stores them once Temporal is up). A stop signal interrupts it anywhere
    but in the migrations (`stops.held()`).
    """
    observe(settings, "journeys-dev")
    with contextlib.ExitStack() as undo:
        embedded = None if settings.temporal_address else f"127.0.0.1:{settings.temporal_port}"
        lock = DataDirLock(settings.data_dir).acquire(temporal=embedded)
        undo.callback(lock.release)
        sock = listen(settings)
        undo.callback(sock.close)
        server = None
        if not settings.temporal_address:
            server = DevServer(
                db_file=settings.data_dir / "temporal.db",
                port=settings.temporal_port,
                ui_port=settings.temporal_ui_port,
                synchronous=settings.temporal_sqlite_synchronous,
                log_file=settings.data_dir / "temporal.log",
            )
            server.check()
        # Those of the channels this worker delivers on, as build_worker would make them.
        channels = [c for c in ("email", "push", "sms") if c in settings.worker_queues]
        adapters = channel_adapters(settings, channels)
        python_journeys(settings)  # importable, or a clear error now
        with stops.held():
            engine = open_store(settings)
        undo.callback(engine.dispose)
        # The folder is the whole project here: its journeys become exactly the active set.
        plan = plan_deploy(
            engine,
            settings.journeys_dir,
            Renderer.from_settings(settings),
            retire_all=retire_all,
        )
        undo.pop_all()
    return DevStart(lock, sock, engine, plan, adapters, server)


async def run_dev(settings: Settings, start: DevStart, stops: Stops, announce: bool = True) -> None:
    """Temporal (embedded unless TEMPORAL_ADDRESS), then the deploy, worker, router and API.

    A stop before it serves raises StopRequested once what started has stopped.
    """
    stop = asyncio.Event()
    stops.attach(stop)
    server = start.server
    try:
        if server is not None:
            await unless_stopped(stop, stops, server.start())
            client = await unless_stopped(stop, stops, connect(settings, server.address))
            ui = server.ui_url
        else:
            client = await unless_stopped(stop, stops, connect(settings))
            ui = settings.temporal_ui_url or "(managed by your Temporal deployment)"
        write_key = ensure_write_key(settings.data_dir)
        versions = apply_deploy(start.engine, start.plan)
        if announce:
            for version in versions:
                say(version.describe(settings.journeys_dir))
        await _serve_all(
            settings, start, client, [write_key, *settings.write_keys], stop, stops, ui
        )
    finally:
        # The workers have stopped by now (their shutdown needs the server to answer).
        if server is not None:
            server.stop()


async def _serve_all(
    settings: Settings,
    start: DevStart,
    client: Client,
    write_keys: list[str],
    stop: asyncio.Event,
    stops: Stops,
    ui: str,
) -> None:
    engine = start.engine
    router = make_router(client, engine, settings)
    app = create_app(
        engine,
        write_keys,
        client,
        router.wake,
        MessageLinks.from_settings(settings),
        settings,
        python_journeys=[cls.journey_id for cls in router.python_journeys],
        dashboard_dev=True,
    )
    http = _Server(
        uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            lifespan="off",
            **uvicorn_logs(settings),
        )
    )
    worker = build_worker(client, engine, settings, start.adapters)
    async with worker:  # leaving it: polling stops, activities in flight finish
        router_task = asyncio.create_task(router.run())
        http_task = asyncio.create_task(serve_api(http, start.sock))
        try:
            while not http.started and not http_task.done() and not stop.is_set():
                await asyncio.sleep(0.05)
            if http_task.done():
                http_task.result()  # raises why the API could not start
            if stop.is_set():  # asked to stop while starting: no announcement
                raise stops.stopped()
            say(f"API: http://{settings.api_host}:{settings.api_port}")
            say(f"Dashboard: http://{settings.api_host}:{settings.api_port}/dashboard/")
            say(f"Temporal UI: {ui}")
            say(f"write key: {write_keys[0]}")
            await stop.wait()
            say("shutting down...")
        finally:
            http.should_exit = True
            with contextlib.suppress(ListenError):
                await http_task
            await asyncio.gather(stop_router(router, router_task), worker.shutdown())


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Production worker: runs journeys and routes stored events to Temporal (unless
    JOURNEYS_ROUTER=off: `journeys router` processes route)."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    observe(settings, "journeys-worker")
    engine = open_store(settings)
    try:
        # Its checkout may be older than what is deployed: it never changes the active set.
        renderer = Renderer.from_settings(settings)
        versions = deploy(engine, settings.journeys_dir, renderer, retire_missing=False)
        for channel in [c for c in ("email", "push", "sms") if c in settings.worker_queues]:
            if settings.adapter_for(channel) == "console":
                logging.getLogger("orchestrator.processes.worker").warning(
                    "%s messages are printed by the console adapter, not sent: set "
                    "JOURNEYS_%s_CHANNEL to a provider's adapter (or leave this worker off "
                    "that queue with JOURNEYS_WORKER_QUEUES)",
                    channel,
                    channel.upper(),
                )
        # Started before Temporal (a fresh cluster, an outage): wait for it, do not exit.
        client = await _connect_when_up(settings, engine, stop, "worker")
        if client is None:
            return
        router = make_router(client, engine, settings) if settings.router else None
        group = build_worker(client, engine, settings)
        async with group, serve_metrics(engine, settings):
            router_task = asyncio.create_task(router.run()) if router else None
            say(worker_ready_line(client, group, versions, settings))
            await stop.wait()
            stopping = time.monotonic()
            routing = [stop_router(router, router_task)] if router and router_task else []
            await asyncio.gather(group.shutdown(), *routing)  # polling stops at once
        say(
            f"worker {client.identity}: stopped in {time.monotonic() - stopping:.1f} s "
            f"(activities in flight finished; grace {settings.shutdown_grace:g} s)"
        )
    finally:
        engine.dispose()
        shutdown_tracing()  # the spans still buffered go out


def worker_ready_line(
    client: Client, group: WorkerGroup, versions: list[DeployedVersion], settings: Settings
) -> str:
    """One line saying what this worker runs and against what, in the router's style."""
    journeys = [f"{v.journey_id} v{v.version}" for v in versions if v.status == "active"]
    journeys += [f"{cls.journey_id} (Python)" for cls in python_journeys(settings)]
    channels = [c for c in ("email", "push", "sms") if c in settings.worker_queues]
    sends = ", ".join(f"{c} {settings.adapter_for(c)}" for c in channels) or "none"
    return (
        f"worker {client.identity}: ready; journeys {', '.join(journeys) or 'none'}; "
        f"sends {sends}; task queues {', '.join(group.task_queues)}; "
        f"Temporal {client.service_client.config.target_host} "
        f"(namespace {settings.temporal_namespace}); "
        f"database {redact_url(settings.resolved_database_url)}; "
        f"router {'on' if settings.router else 'off'}"
        + (f"; metrics :{settings.metrics_port}/metrics" if settings.metrics_port else "")
    )


@contextlib.asynccontextmanager
async def serve_metrics(engine: Engine, settings: Settings) -> AsyncIterator[None]:
    """`/metrics` on JOURNEYS_METRICS_PORT while the block runs (nothing when unset)."""
    if not settings.metrics_port:
        yield
        return
    server = _Server(
        uvicorn.Config(
            create_metrics_app(engine),
            host=settings.api_host,
            port=settings.metrics_port,
            log_level="warning",
            lifespan="off",
            **uvicorn_logs(settings),
        )
    )
    sock = listen(settings, settings.metrics_port, "JOURNEYS_METRICS_PORT")
    task = asyncio.create_task(serve_api(server, sock))
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            task.result()  # why it could not start
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(ListenError):
            await task


async def run_router(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Only the event router: as many as wanted against one database (docs/routing.md).

    Starts even while Temporal is unreachable, and waits for it, warning with the backlog.
    """
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    observe(settings, "journeys-router")
    engine = open_store(settings)
    try:
        client = await _connect_when_up(settings, engine, stop, "router")
        if client is None:
            return
        router = make_router(client, engine, settings)
        say(
            f"router {router.name}: routing events to {client.service_client.config.target_host} "
            f"(namespace {settings.temporal_namespace}, task queue {settings.task_queue})"
        )
        async with serve_metrics(engine, settings):
            task = asyncio.create_task(router.run())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if task.done():
                task.result()  # raises why the router ended
            stopping = time.monotonic()
            await stop_router(router, task)
        say(
            f"router {router.name}: stopped in {time.monotonic() - stopping:.1f} s "
            "(its sweep finished, its claims released)"
        )
    finally:
        engine.dispose()
        shutdown_tracing()  # the spans still buffered go out


async def _connect_when_up(
    settings: Settings, engine: Engine, stop: asyncio.Event, process: str
) -> Client | None:
    """Connect, retrying while Temporal is unreachable (warning with the backlog every
    WARN_EVERY s); None when stopped meanwhile. `process`: the logger's last part."""
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
                logging.getLogger(f"orchestrator.processes.{process}").warning(
                    "Temporal is unreachable (%s); %s; retrying every %.0f s",
                    exc,
                    waiting,
                    MAX_PAUSE,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=MAX_PAUSE)
    return None


async def run_api(
    settings: Settings, write_keys: list[str], stop: asyncio.Event | None = None
) -> None:
    """Production API: stateless; events are routed by the workers.

    SIGTERM (a rolling deploy), SIGINT or SIGHUP: it stops accepting connections at once
    and lets the requests in flight finish, for at most JOURNEYS_SHUTDOWN_GRACE seconds
    (an event is acknowledged only once committed: a request cut mid-way is one the
    client retries, a finished one is one it need not), then exits 0.
    """
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    with listen(settings) as sock:  # first: a port in use is reported before anything runs
        observe(settings, "journeys-api")
        engine = open_store(settings)
        try:
            # Lazy: the API starts, and acknowledges events, while Temporal is unreachable.
            client = await connect(settings, lazy=True)
            app = create_app(
                engine,
                write_keys,
                client,
                links=MessageLinks.from_settings(settings),
                settings=settings,
                # Erasure stops their runs too: it must know their ids.
                python_journeys=[cls.journey_id for cls in python_journeys(settings)],
            )
            grace = max(1, round(settings.shutdown_grace))
            options = uvicorn_logs(settings)
            if options:
                options["log_level"] = "info"  # its start-up lines, as in text mode
            server = _Server(
                uvicorn.Config(
                    app,
                    host=settings.api_host,
                    port=settings.api_port,
                    timeout_graceful_shutdown=grace,
                    **options,
                )
            )
            serving = asyncio.create_task(serve_api(server, sock))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if serving.done():
                serving.result()  # raises why it ended
                return
            stopping = time.monotonic()
            server.should_exit = True
            await serving
            say(
                f"api {os.getpid()}@{socket.gethostname()}: stopped in "
                f"{time.monotonic() - stopping:.1f} s (requests in flight finished; "
                f"grace {grace} s)"
            )
        finally:
            engine.dispose()
            shutdown_tracing()  # the spans still buffered go out
