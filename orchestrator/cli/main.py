"""The `journeys` command."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError

from ..settings import Settings, explain


def _settings(**overrides: Any) -> Settings:
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:  # a variable to fix, named, not pydantic's
        *lines, last = explain(exc).splitlines()
        for line in lines:
            click.secho(f"error: {line}", fg="red", err=True)
        _fail(last)
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def _beside_dev(settings: Settings) -> Settings:
    """`settings` reaching the Temporal server of the `journeys dev` running on its data
    directory when TEMPORAL_ADDRESS is unset: it may have been started on another port
    (`journeys dev --temporal-port`)."""
    from ..processes.data_lock import running_dev_temporal

    if settings.temporal_address:
        return settings
    port = (running_dev_temporal(settings.data_dir) or "").rpartition(":")[2]
    return settings.model_copy(update={"temporal_port": int(port)}) if port.isdigit() else settings


def _fail(message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


class _Group(click.Group):
    """Turns configuration and connection errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Abort, click.exceptions.Exit, click.ClickException):
            raise  # click's own (Ctrl-C at a prompt is a RuntimeError too)
        except Exception as exc:
            _explain(exc)  # exits with one line, or returns for what it does not know
            raise


def _explain(exc: Exception) -> None:
    """The one line for an error a user can fix. Imported only when one happens: a
    command starts without them (and `journeys dev` takes Ctrl-C from its first line)."""
    from sqlalchemy.exc import OperationalError

    from channels.errors import ChannelConfigError

    from ..deployment.deploy import InvalidJourneys
    from ..store.db import MissingDriver

    if isinstance(exc, MissingDriver | ChannelConfigError):  # a package or setting to add
        _fail(str(exc))
    if isinstance(exc, InvalidJourneys):
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        _fail(f"{len(exc.problems)} problem(s) found; nothing was deployed")
    if isinstance(exc, ValueError):
        _fail(str(exc))
    if isinstance(exc, OperationalError):
        _fail(f"cannot use the database ({exc.orig}); check DATABASE_URL / --data-dir")
    if isinstance(exc, RuntimeError):  # Temporal connection errors surface as RuntimeError
        _fail(f"{exc}; check TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE")


@click.group(cls=_Group)
def main() -> None:
    """Omnichannel journeys from YAML, run as durable Temporal workflows."""


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The dev state: SQLite store, Temporal dev server state, dev write key and "
    "link-signing key (default ./.journeys).",
)
journeys_dir_option = click.option(
    "--journeys", "journeys_dir", type=click.Path(path_type=Path), help="Journeys folder."
)


retire_all_option = click.option(
    "--retire-all",
    is_flag=True,
    help="Deploy a folder with no journeys in it, retiring every active journey.",
)


def _journeys_folder(settings: Settings, given: Path | None) -> None:
    """Fail unless the journeys folder exists, naming where its path came from."""
    folder = settings.journeys_dir
    if folder.is_dir():
        return
    if given is not None:
        where = f"--journeys {given}"
        fix = "pass the folder that holds the journey files (*.yaml)"
    elif any(name.upper() == "JOURNEYS_JOURNEYS_DIR" for name in os.environ):
        where = f"JOURNEYS_JOURNEYS_DIR={folder}"
        fix = "set it to the folder that holds the journey files, or pass --journeys DIR"
    else:
        where = f"{folder} (the default)"
        fix = "run from a directory that holds journeys/ and templates/, or pass --journeys DIR"
    what = "is a file, not a folder" if folder.exists() else "no such folder"
    _fail(f"no journeys folder at {where}: {what}; {fix}")


@main.command()
@click.option("--port", type=int, help="API port (default 8000).")
@data_dir_option
@click.option(
    "--journeys", "journeys_dir", type=click.Path(path_type=Path), help="Journeys folder."
)
@click.option("--templates", "templates_dir", type=click.Path(path_type=Path), help="Templates.")
@click.option("--temporal-port", type=int, help="gRPC port of the embedded Temporal (7233).")
@click.option("--temporal-ui-port", type=int, help="UI port of the embedded Temporal (8233).")
@retire_all_option
def dev(**options: Any) -> None:
    """Run everything locally: Temporal, database, worker and API."""
    # First, before the slow imports: Ctrl-C from here on ends the start quietly.
    from ..processes.stopping import StopRequested, Stops

    stops = Stops.install()
    try:
        _dev(stops, options)
    except StopRequested:
        click.echo("shutting down...")  # asked to stop before it served: a clean exit


def _dev(stops: Any, options: dict[str, Any]) -> None:
    from ..processes.data_lock import DataDirInUse
    from ..processes.launch import prepare_dev, run_dev
    from ..processes.temporal_server import TemporalServerError

    settings = _settings(
        api_port=options["port"],
        data_dir=options["data_dir"],
        journeys_dir=options["journeys_dir"],
        templates_dir=options["templates_dir"],
        temporal_port=options["temporal_port"],
        temporal_ui_port=options["temporal_ui_port"],
    )
    _journeys_folder(settings, options["journeys_dir"])
    try:
        start = prepare_dev(settings, stops, retire_all=options["retire_all"])
        try:
            with stops.to_loop():
                asyncio.run(run_dev(settings, start, stops))
        finally:
            start.close()
    except (TemporalServerError, DataDirInUse, OSError) as exc:
        _fail(str(exc))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--templates", "templates_dir", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on warnings too (for CI).")
@data_dir_option
def validate(
    paths: tuple[Path, ...], templates_dir: Path | None, strict: bool, data_dir: Path | None
) -> None:
    """Check journeys, segments.yaml and events.yaml, and render every message the
    journeys send in every locale with sample data.

    Exit 1 on any error, and with --strict on any warning too; each is printed as
    file:line:column: what is wrong. Event names are also checked against the names
    the store has received, when there is one (DATABASE_URL, or --data-dir).
    """
    from ..deployment import validate as validate_files
    from ..rendering import Renderer

    settings = _settings(templates_dir=templates_dir, data_dir=data_dir)
    targets = list(paths) or [settings.journeys_dir]
    missing = [p for p in targets if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(map(str, missing))}")
    renderer = Renderer.from_settings(settings)
    not_consulted: list[str] = []  # why the store could not be read, if it was asked

    def read_store() -> set[str] | None:
        names, why = _received_events(settings)
        not_consulted.extend([why] if why else [])
        return names

    # The whole project: messages no journey sends yet are checked too.
    result = validate_files(
        targets,
        renderer,
        unsent=not paths,
        read_received_events=read_store,
        # Hand-written journeys (JOURNEYS_PYTHON_JOURNEYS) may leave the YAML folder empty.
        expect_journeys=not settings.python_journeys,
        default_zone=settings.default_timezone,
    )
    problems, loaded, segments = result.problems, result.journeys, result.segments
    for problem in [*problems, *result.warnings]:  # what must be fixed first, first
        click.echo(str(problem))
    if not_consulted and result.events.unknown:  # the store might have known them
        click.echo(
            f"note: event names were not checked against the store: {not_consulted[0]}",
            err=True,
        )
    warnings = f"{len(result.warnings)} warning(s)"
    if problems:
        also = f", and {warnings}" if result.warnings else ""
        click.secho(f"{len(problems)} problem(s) found{also}", fg="red", err=True)
        sys.exit(1)
    if result.warnings and strict:
        click.secho(f"{warnings} found; --strict fails on warnings", fg="red", err=True)
        sys.exit(1)
    valid = f"{len(loaded)} journey(s) valid"
    if result.segment_files:
        valid = f"{len(loaded)} journey(s) and {len(segments)} segment(s) valid"
    click.echo(valid)
    if result.warnings:
        click.secho(f"{warnings} (journeys validate --strict fails on them)", fg="yellow", err=True)


def _received_events(settings: Settings) -> tuple[set[str] | None, str | None]:
    """The event names the store has received, or None and why it was not consulted.

    Only an existing store is read: validating never creates a database."""
    from ..deployment.event_names import store_names
    from ..store.db import make_engine, normalize_url

    url = settings.database_url
    if url is None:
        path = settings.data_dir / "journeys.db"
        if not path.is_file():
            return None, f"no database in {settings.data_dir} (set DATABASE_URL or --data-dir)"
        url = settings.resolved_database_url
    else:
        parsed = normalize_url(url)
        database = parsed.database or ""
        if parsed.get_backend_name() == "sqlite" and not Path(database).is_file():
            return None, f"no database at {database} (DATABASE_URL)"
    engine = make_engine(url)
    try:
        names, why = store_names(engine)
    finally:
        engine.dispose()
    return names, (f"the store: {why}" if why else None)


@main.command()
@click.argument("message")
@click.option(
    "--contact", help="A contact id from the store, or a JSON file: identify call or traits."
)
@click.option(
    "--event",
    "event_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A JSON file: a track call, or just its properties.",
)
@click.option(
    "--journey",
    "journey_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A JSON file of journey values (coupon_code, points_earned...).",
)
@click.option(
    "--channel",
    "channels",
    multiple=True,
    type=click.Choice(["email", "sms", "push"]),
    help="Only this channel (repeatable); default every channel the message has.",
)
@click.option("--locale", help="Render this locale's version (default: the contact's locale).")
@click.option(
    "--out",
    "html_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the email's HTML to this file.",
)
@click.option("--templates", "templates_dir", type=click.Path(path_type=Path))
@data_dir_option
def preview(
    message: str,
    contact: str | None,
    event_file: Path | None,
    journey_file: Path | None,
    channels: tuple[str, ...],
    locale: str | None,
    html_out: Path | None,
    templates_dir: Path | None,
    data_dir: Path | None,
) -> None:
    """Render MESSAGE exactly as it would be sent, with SMS segments and push size.

    Inputs not given come from the message's sample data (templates/MESSAGE/sample.yaml).
    A contact from the store brings its latest run of a journey that sends MESSAGE (the
    run's trigger event and the values its steps kept); what still comes from the
    sample is said on stderr.
    """
    from ..deployment import senders_of
    from ..deployment.template_checks import explained
    from ..rendering import Renderer, RenderError
    from ..rendering.preview import (
        PREVIEW_MESSAGE_ID,
        describe,
        preview_context,
        render_all,
    )
    from ..services.links import MessageLinks

    settings = _settings(templates_dir=templates_dir, data_dir=data_dir)
    renderer = Renderer.from_settings(settings)
    engine = None
    if contact is not None and not Path(contact).is_file():
        engine = _existing_store(settings, f"--contact {contact}: no such file, and ")
    senders = senders_of(message, settings.journeys_dir)
    trigger = senders[0].trigger if senders else None
    inputs = preview_context(
        renderer,
        message,
        contact,
        event_file,
        journey_file,
        engine,
        trigger.name if trigger else None,
        _event_kind(trigger) if trigger else None,
        [journey.id for journey in senders],
    )
    for note in inputs.notes:
        click.echo(note, err=True)  # stdout stays the message alone
    context = inputs.context
    # The preview's message id is not a real message: its links need no real key.
    links = MessageLinks(settings.resolved_public_url, settings.secret_key or "preview")
    try:
        rendered = render_all(
            renderer,
            message,
            context,
            links.for_message(PREVIEW_MESSAGE_ID),
            list(channels),
            locale,
        )
    except RenderError as exc:
        _fail(explained(renderer, message, exc))
    for item in rendered:
        if item.channel == "email" and html_out is not None and item.parts.get("html"):
            html_out.write_text(item.parts["html"], encoding="utf-8")
            click.echo(describe(item, html_out))
        else:
            click.echo(describe(item))
            if item.channel == "email" and html_out is not None:
                click.echo(f"(this email has no HTML part; {html_out} was not written)")
        click.echo()


def _event_kind(trigger: Any) -> Any:
    """The stored events a journey's trigger starts runs on."""
    from ..store.context import EventKind

    if trigger.identify:
        return EventKind("identify")
    return EventKind("track", trigger.name, trigger.entered_segment)


def _existing_store(settings: Settings, why: str = "") -> Any:
    from ..store.db import make_engine, migrate

    if settings.database_url is None and not (settings.data_dir / "journeys.db").exists():
        _fail(
            f"{why}no database in {settings.data_dir}: "
            "start `journeys dev` first or set DATABASE_URL"
        )
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return engine


@main.command()
@click.option("--journey", help="Only runs of this journey id.")
@click.option("--contact", help="Only runs of this contact id.")
@click.option("--status", help="Only runs with this status: active, completed or exited.")
@click.option(
    "--last-message",
    "last_message",
    multiple=True,
    help="Only runs whose last message ended so: sent, delivered, opened, clicked, replied, "
    "bounced, failed, suppressed, skipped, deferred, unknown, pending, queued, sending, or "
    "none (no message yet). Repeatable.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON, with each last message in full.")
@data_dir_option
def runs(
    journey: str | None,
    contact: str | None,
    status: str | None,
    last_message: tuple[str, ...],
    limit: int,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """List journey runs, newest first, with how each run's last message ended."""
    import json

    from .runs_table import (
        MESSAGE_OUTCOMES,
        RUN_STATUSES,
        last_messages,
        list_runs,
        render_runs,
        run_statuses,
        runs_as_json,
    )

    unknown = [v for v in last_message if v not in MESSAGE_OUTCOMES]
    if unknown:
        _fail(
            f"--last-message {unknown[0]}: not a way a message ends; use one of "
            f"{', '.join(MESSAGE_OUTCOMES[:-1])}, or {MESSAGE_OUTCOMES[-1]} (no message yet)"
        )
    engine = _existing_store(_settings(data_dir=data_dir))
    if status is not None and status not in RUN_STATUSES:
        known = run_statuses(engine)  # a Python journey may record statuses of its own
        if status not in known:
            engine.dispose()
            hint = ""
            if status in MESSAGE_OUTCOMES[:-1]:  # `--status failed`: how the message ended
                hint = f"; for runs whose last message is {status}: --last-message {status}"
            _fail(f"--status {status}: runs are {_either(known)}{hint}")
    rows = list_runs(
        engine,
        journey=journey,
        contact=contact,
        status=status,
        limit=limit,
        last_message=last_message,
    )
    messages = last_messages(engine, rows)
    engine.dispose()
    if as_json:
        click.echo(json.dumps(runs_as_json(rows, messages), indent=2, ensure_ascii=False))
    else:
        click.echo(render_runs(rows, messages))


def _either(values: list[str]) -> str:
    """`a, b or c`."""
    return f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0]


@main.command("list")
@data_dir_option
def list_journeys(data_dir: Path | None) -> None:
    """List deployed journeys: status, version (and older versions with runs in flight),
    runs active and in total, and the file each was deployed from."""
    from ..store.db import session_scope
    from ..store.versions import journey_summaries
    from .tables import render_table

    engine = _existing_store(_settings(data_dir=data_dir))
    with session_scope(engine) as session:
        rows = journey_summaries(session)
    engine.dispose()
    if not rows:
        click.echo("no journeys deployed: `journeys dev` or `journeys deploy` deploys journeys/")
        return
    header = ("journey", "status", "version", "older in flight", "runs active", "total", "file")
    table = [
        (
            r.journey_id,
            r.status if r.retired_at is None else f"retired {r.retired_at:%Y-%m-%d %H:%M}",
            f"v{r.version}",
            ", ".join(f"v{v}: {n}" for v, n in sorted(r.older_in_flight.items())) or "-",
            str(r.runs_active),
            str(r.runs_total),
            r.source_path or "-",
        )
        for r in rows
    ]
    click.echo(render_table(header, table))


@main.command("deploy")
@journeys_dir_option
@click.option("--templates", "templates_dir", type=click.Path(path_type=Path), help="Templates.")
@data_dir_option
@retire_all_option
@click.option(
    "--rollback",
    nargs=2,
    metavar="JOURNEY VERSION",
    help="Make an older version current for new entries (and keep it so), deploy nothing.",
)
@click.option(
    "--release",
    multiple=True,
    metavar="JOURNEY",
    help="Deploy JOURNEY's file although it was rolled back (repeatable).",
)
def deploy_command(
    journeys_dir: Path | None,
    templates_dir: Path | None,
    data_dir: Path | None,
    retire_all: bool,
    rollback: tuple[str, str] | None,
    release: tuple[str, ...],
) -> None:
    """Make the journeys folder exactly the deployed set: validate everything, store new
    versions (a journey's spec and the template files it sends with), retire journeys whose
    file is gone and reactivate those whose file is back.

    Runs in flight finish on their version, with its templates. `journeys worker` never
    retires a journey (its checkout may be older than what is deployed): run this after a
    rollout. `--rollback JOURNEY V` makes version V current again; deploys from files then
    leave that journey on it until `--release JOURNEY`.
    """
    from ..deployment import deploy
    from ..rendering import Renderer

    settings = _settings(journeys_dir=journeys_dir, templates_dir=templates_dir, data_dir=data_dir)
    if rollback:
        _roll_back(settings, *rollback)
        return
    _journeys_folder(settings, journeys_dir)
    engine = _store(settings)
    try:
        versions = deploy(
            engine,
            settings.journeys_dir,
            Renderer.from_settings(settings),
            retire_all=retire_all,
            release=release,
        )
    finally:
        engine.dispose()
    for version in versions:
        click.echo(version.describe(settings.journeys_dir))
    if not versions:
        click.echo(f"no journeys in {settings.journeys_dir}: nothing deployed, nothing retired")


def _roll_back(settings: Any, journey_id: str, version_text: str) -> None:
    from ..dsl.models import Journey
    from ..store.date_plans import plan_dates
    from ..store.db import session_scope
    from ..store.tables import utcnow
    from ..store.versions import RollbackRefused, roll_back

    number = version_text.removeprefix("v")
    if not number.isdigit():
        _fail(f"--rollback {journey_id} {version_text}: the version is a number, e.g. 2 or v2")
    engine = _store(settings)
    try:
        with session_scope(engine) as session:
            row = roll_back(session, journey_id, int(number))
            current, pinned = row.version, bool(row.templates)
            trait = Journey.model_validate(row.spec).trigger.trait
            if trait is not None:  # current again: watches that ended meanwhile, new contacts
                plan_dates(session, journey_id, current, trait, f"@{utcnow():%Y%m%dT%H%M%S%f}")
    except RollbackRefused as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    click.echo(
        f"journey: {journey_id} rolled back to v{current}: new entries start on it, runs in "
        f"flight stay on theirs; deploys leave it there until "
        f"`journeys deploy --release {journey_id}`"
    )
    if not pinned:  # deployed before templates were pinned: it has no files of its own
        click.echo(
            f"note: v{current} was deployed before templates were pinned: it sends the "
            f"templates folder as it is now ({settings.templates_dir}), not its old files"
        )


@main.command()
@data_dir_option
def worker(data_dir: Path | None) -> None:
    """Run a worker (and event router, unless JOURNEYS_ROUTER=off) against TEMPORAL_ADDRESS
    and DATABASE_URL."""
    from ..processes.launch import run_worker

    settings = _settings(data_dir=data_dir)
    if not settings.temporal_address:
        _fail("TEMPORAL_ADDRESS is not set (use `journeys dev` for the embedded server)")
    if not settings.journeys_dir.is_dir():
        _fail(f"no journeys folder at {settings.journeys_dir}: set JOURNEYS_JOURNEYS_DIR")
    _require_secret(settings)
    asyncio.run(run_worker(settings))


@main.command()
@data_dir_option
def router(data_dir: Path | None) -> None:
    """Route stored events to Temporal, without a worker; several may run at once.

    Run workers with JOURNEYS_ROUTER=off when routers run on their own (docs/routing.md).
    """
    from ..processes.launch import run_router

    settings = _settings(data_dir=data_dir)
    if not settings.temporal_address:
        _fail("TEMPORAL_ADDRESS is not set (use `journeys dev` for the embedded server)")
    asyncio.run(run_router(settings))


@main.command()
@click.option("--port", type=int)
@data_dir_option
def api(port: int | None, data_dir: Path | None) -> None:
    """Run the HTTP API against TEMPORAL_ADDRESS and DATABASE_URL."""
    from ..processes.launch import ListenError, run_api
    from ..services.links import is_placeholder
    from ..store.keys import list_keys

    settings = _settings(api_port=port, data_dir=data_dir)
    if not settings.temporal_address:
        _fail(
            "TEMPORAL_ADDRESS is not set: the API stops a contact's runs on erasure and "
            "reports Temporal's health through it (use `journeys dev` for the embedded server)"
        )
    if any(is_placeholder(key) for key in settings.write_keys):
        _fail(
            "JOURNEYS_WRITE_KEYS holds the template's placeholder (REPLACE_ME): set real keys, "
            "or create them with `journeys keys create NAME`"
        )
    engine = _store(settings)
    live = [k for k in list_keys(engine) if k.revoked_at is None and k.kind == "write"]
    engine.dispose()
    if not settings.write_keys and not live:
        _fail(
            "no write key: create one with `journeys keys create NAME` "
            '(or set JOURNEYS_WRITE_KEYS to a JSON list, e.g. ["key1"])'
        )
    _require_secret(settings)
    try:
        asyncio.run(run_api(settings, settings.write_keys))
    except ListenError as exc:
        _fail(str(exc))


def _store(settings: Settings) -> Any:
    """The store, created and migrated if need be (keys may be made before the first start)."""
    from ..processes.launch import open_store

    return open_store(settings)


@main.group()
def keys() -> None:
    """API keys: write keys for storefronts, server keys for the shop's back end
    (transactional messages), admin keys for contact export, erasure and reports."""


@keys.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An admin key (GET/DELETE /v1/contacts/...).")
@click.option(
    "--server", is_flag=True, help="A server key (POST /v1/messages), for the shop's back end."
)
@data_dir_option
def keys_create(name: str, admin: bool, server: bool, data_dir: Path | None) -> None:
    """Create a key called NAME and print it (it is shown only this once)."""
    from ..store.keys import create_key

    if admin and server:
        _fail("a key is either --admin or --server (an admin key also sends messages)")
    kind = "admin" if admin else "server" if server else "write"
    engine = _store(_settings(data_dir=data_dir))
    raw = create_key(engine, name, kind)
    engine.dispose()
    click.echo(raw)
    click.echo(f"{kind} key {name!r} created; store it now, only its hash is kept", err=True)


@keys.command("list")
@data_dir_option
def keys_list(data_dir: Path | None) -> None:
    """List keys: name, kind, prefix, when created and last used, revoked or not."""
    from ..store.keys import list_keys
    from .tables import render_table

    engine = _store(_settings(data_dir=data_dir))
    rows = list_keys(engine)
    engine.dispose()
    if not rows:
        click.echo("no keys yet: journeys keys create NAME [--server | --admin]")
        return
    header = ("name", "kind", "prefix", "created", "last used", "state")
    table = [
        (
            k.name,
            k.kind,
            k.prefix + "…",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
            f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active",
        )
        for k in rows
    ]
    click.echo(render_table(header, table))


@keys.command("revoke")
@click.argument("name")
@data_dir_option
def keys_revoke(name: str, data_dir: Path | None) -> None:
    """Revoke the key called NAME: calls with it are refused from now on."""
    from ..store.keys import revoke_key

    engine = _store(_settings(data_dir=data_dir))
    done = revoke_key(engine, name)
    engine.dispose()
    if not done:
        _fail(f"no active key named {name!r} (see journeys keys list)")
    click.echo(f"key {name!r} revoked")


@main.group()
def segments() -> None:
    """Segments from journeys/segments.yaml: who is in them, and refreshing them now."""


@segments.command("list")
@data_dir_option
def segments_list(data_dir: Path | None) -> None:
    """List the deployed segments: members now, last refresh, schedule, description."""
    from ..segments.membership import summaries
    from ..store.db import session_scope
    from .tables import render_table

    engine = _existing_store(_settings(data_dir=data_dir))
    with session_scope(engine) as session:
        rows = summaries(session)
    engine.dispose()
    if not rows:
        click.echo("no segments deployed: add journeys/segments.yaml (docs/segments.md)")
        return
    header = ("name", "members", "refreshed", "refresh", "description")
    table = [
        (
            r.name if r.active else f"{r.name} (removed)",
            str(r.members),
            f"{r.refreshed_at:%Y-%m-%d %H:%M}" if r.refreshed_at else "never",
            r.refresh,
            r.description or "",
        )
        for r in rows
    ]
    click.echo(render_table(header, table))


@segments.command("preview")
@click.argument("name")
@click.option("--sample", type=click.IntRange(0, 1000), default=10, show_default=True)
@journeys_dir_option
@data_dir_option
def segments_preview(
    name: str, sample: int, journeys_dir: Path | None, data_dir: Path | None
) -> None:
    """Count who matches segment NAME of segments.yaml right now, and show a sample.

    Reads the file as it is (deployed or not) and writes nothing.
    """
    from ..segments.loader import SEGMENTS_FILE, load_segments
    from ..segments.membership import preview
    from ..store.db import session_scope
    from ..store.tables import utcnow
    from .tables import printable

    settings = _settings(data_dir=data_dir, journeys_dir=journeys_dir)
    path = settings.journeys_dir / SEGMENTS_FILE
    if not path.is_file():
        _fail(f"no {path}: segments are defined there (docs/segments.md)")
    loaded, problems = load_segments(path)
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        _fail(f"{len(problems)} problem(s) in {path}")
    found = {item.name: item for item in loaded}
    if name not in found:
        _fail(f"no segment {name!r} in {path}; segments: {', '.join(found) or 'none'}")
    item = found[name]
    engine = _existing_store(settings)
    with session_scope(engine) as session:
        seen = preview(session, name, item.segment, utcnow(), sample)
    engine.dispose()
    title = f"{name}: {item.segment.description}" if item.segment.description else name
    click.echo(title)
    click.echo(f"{seen.count} contact(s) match now")
    for contact_id, email in seen.sample:
        shown = printable(contact_id)
        click.echo(f"  {shown}  {printable(email)}" if email else f"  {shown}")
    if 0 < len(seen.sample) < seen.count:
        click.echo(f"  ... showing {len(seen.sample)} of {seen.count} (--sample N for more)")
    click.echo(
        f"stored members: {seen.members}; the next refresh would add {seen.entering} "
        f"and remove {seen.leaving}"
    )


@segments.command("refresh")
@click.argument("name")
@data_dir_option
def segments_refresh(name: str, data_dir: Path | None) -> None:
    """Re-evaluate deployed segment NAME now: new members enter, leavers exit.

    Their Segment Entered / Segment Exited events start journeys once a worker routes them.
    """
    from ..segments.membership import UnknownSegment, refresh
    from ..store.db import session_scope
    from ..store.tables import utcnow

    engine = _existing_store(_settings(data_dir=data_dir))
    try:
        with session_scope(engine) as session:
            change = refresh(session, name, utcnow())
    except UnknownSegment as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    click.echo(f"{name}: {change.entered} entered, {change.exited} exited")


def _require_secret(settings: Settings) -> None:
    from ..services.links import require_secret

    try:
        require_secret(settings)
    except ValueError as exc:
        _fail(str(exc))


@main.group()
def contacts() -> None:
    """A contact's personal data: export it, or erase it (GDPR access and erasure)."""


@contacts.command("export")
@click.argument("contact_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the JSON to this file (readable by you only) instead of printing it.",
)
@data_dir_option
def contacts_export(contact_id: str, output: Path | None, data_dir: Path | None) -> None:
    """Print everything stored about CONTACT_ID (or one of its aliases) as JSON."""
    import json

    from ..services.privacy import export_contact

    engine = _existing_store(_settings(data_dir=data_dir))
    found = export_contact(engine, contact_id)
    engine.dispose()
    if found is None:
        _fail(f"no contact with id {contact_id!r} (or it was erased)")
    text = json.dumps(found, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
        return
    import os

    # Personal data: readable by its owner only, from the first byte on.
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    click.echo(f"contact {contact_id!r} exported to {output}", err=True)


@contacts.command("erase")
@click.argument("contact_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@data_dir_option
def contacts_erase(contact_id: str, yes: bool, data_dir: Path | None) -> None:
    """Stop CONTACT_ID's journeys and erase its personal data; this cannot be undone.

    Runs are stopped through TEMPORAL_ADDRESS (or the `journeys dev` server); when
    Temporal cannot be reached nothing is erased. Erasing again is harmless.
    """
    from ..processes.worker import connect, python_journeys
    from ..services.privacy import (
        ErasureIncomplete,
        StoreBusy,
        TemporalUnavailable,
        erase_contact,
    )

    settings = _settings(data_dir=data_dir)
    try:  # their runs are stopped too: their ids are needed
        hand_written = [cls.journey_id for cls in python_journeys(settings)]
    except ValueError as exc:
        _fail(f"{exc}: nothing was erased")
    engine = _existing_store(settings)
    if not yes:
        try:
            confirmed = click.confirm(
                f"Erase contact {contact_id!r} and stop its journeys? This cannot be undone"
            )
        except click.Abort:  # end of input, Ctrl-C
            confirmed = False
        if not confirmed:
            engine.dispose()
            _fail("not confirmed: nothing was erased (--yes skips the question)")

    async def erase() -> Any:
        try:
            client = await connect(_beside_dev(settings))
        except RuntimeError as exc:
            raise TemporalUnavailable(
                f"cannot reach Temporal ({exc}): nothing was erased; check TEMPORAL_ADDRESS "
                "and TEMPORAL_NAMESPACE, or start `journeys dev`"
            ) from exc
        return await erase_contact(engine, client, contact_id, hand_written)

    try:
        result = asyncio.run(erase())
    except (TemporalUnavailable, StoreBusy, ErasureIncomplete) as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    if not result.found:
        click.echo(f"nothing stored for contact {contact_id!r} (erased already?)")
        return
    rows = ", ".join(f"{table} {count}" for table, count in result.erased.items())
    click.echo(f"contact {contact_id!r} erased: {result.runs_stopped} running journey(s) stopped")
    click.echo(f"rows erased or scrubbed: {rows}")


from . import backtest as _backtest  # noqa: E402,F401  (registers `backtest`)
from . import campaigns as _campaigns  # noqa: E402,F401  (registers `campaigns`)
from . import dead_letters as _dead_letters  # noqa: E402,F401  (registers `events`)
from . import diff as _diff  # noqa: E402,F401  (registers `diff`)
from . import reports as _reports  # noqa: E402,F401  (registers `stats` and `explain`)
from . import simulate as _simulate  # noqa: E402,F401  (registers `simulate`, `check`)
from . import versions as _versions  # noqa: E402,F401  (registers `versions`)
