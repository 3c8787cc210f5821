"""`journeys events dead-letter list|retry|drop`: events the routers gave up on.

The store decides (`store/dead_letters.py`): these commands need the database only,
not Temporal; a retried event is routed by the next sweep of any router. Each says
first which store it read: "no dead letters" from a forgotten DATABASE_URL's local
SQLite would be a false all-clear, so without DATABASE_URL and a store in the data dir
they refuse rather than read (or create) an empty one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import click
from sqlalchemy import Engine

from ..services.redaction import redact_url
from .main import _existing_store, _fail, _settings, data_dir_option, main


@main.group()
def events() -> None:
    """Stored events: those that could not be routed to Temporal."""


@events.group("dead-letter")
def dead_letter() -> None:
    """Events that failed to route JOURNEYS_DEAD_LETTER_AFTER times for reasons of their
    own: they no longer hold back their contact's later events and wait for you."""


@dead_letter.command("list")
@click.option("--dropped", is_flag=True, help="The dropped ones too, with a state column.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
@data_dir_option
def dead_letter_list(dropped: bool, as_json: bool, data_dir: Path | None) -> None:
    """List dead letters, oldest event first: contact, event, attempts, last error, when."""
    from ..store.dead_letters import letters
    from .tables import render_table

    engine = _store(data_dir, err=as_json)  # --json: stdout stays one JSON document
    try:
        rows = letters(engine, dropped=dropped)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no dead letters: every event was routed or is being retried")
        return
    header = ("event", "contact", "name", "attempts", "last failed", "error")
    if dropped:
        header = (*header[:5], "state", header[5])
    table = []
    for r in rows:
        cells: list[object] = [
            r.event_id,
            r.contact_id,
            r.name or r.event_type,
            r.attempts,
            f"{r.last_failed_at:%Y-%m-%d %H:%M:%S}",
            r.error,
        ]
        if dropped:
            cells.insert(5, r.status)
        table.append(cells)
    click.echo(render_table(header, table))


ids_argument = click.argument("event_ids", metavar="ID...", nargs=-1, type=int)
all_option = click.option("--all", "every", is_flag=True, help="Every waiting dead letter.")


@dead_letter.command("retry")
@ids_argument
@all_option
@data_dir_option
def dead_letter_retry(event_ids: tuple[int, ...], every: bool, data_dir: Path | None) -> None:
    """Put dead letters back for routing, attempts reset (fix the cause first): each is
    routed before its contact's events still waiting, in the order they were stored."""
    from ..store.dead_letters import retry

    done = _act(retry, event_ids, every, data_dir)
    if done:
        click.echo(f"{_events(done)} put back for routing: the next sweep routes them")


@dead_letter.command("drop")
@ids_argument
@all_option
@data_dir_option
def dead_letter_drop(event_ids: tuple[int, ...], every: bool, data_dir: Path | None) -> None:
    """Give up on dead letters: never routed; kept (`list --dropped`) for the record."""
    from ..store.dead_letters import drop

    done = _act(drop, event_ids, every, data_dir)
    if done:
        click.echo(f"{_events(done)} dropped: never routed, listed with `list --dropped`")


def _act(
    action: Callable[..., list[int]],
    event_ids: Sequence[int],
    every: bool,
    data_dir: Path | None,
) -> list[int]:
    from ..store.dead_letters import DeadLetterError

    if every and event_ids:
        _fail("IDs and --all cannot be combined: name the events, or --all for every waiting one")
    if not every and not event_ids:
        _fail("name the events (IDs as `journeys events dead-letter list` shows) or --all")
    engine = _store(data_dir)
    try:
        done = action(engine, None if every else list(event_ids))
    except DeadLetterError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    if not done:
        click.echo("no dead letters waiting: nothing to do")
    return done


def _store(data_dir: Path | None, err: bool = False) -> Engine:
    """The store the routers use, named first (`store: <url>`, password hidden); refused
    when DATABASE_URL is unset and the data dir holds none."""
    settings = _settings(data_dir=data_dir)
    local = settings.data_dir / "journeys.db"
    if settings.database_url is None and not local.exists():
        _fail(
            f"no store to read dead letters from: DATABASE_URL is not set and there is no "
            f"{local}; set DATABASE_URL to the database the routers use (or --data-dir "
            "to the data directory of `journeys dev`)"
        )
    click.echo(f"store: {redact_url(settings.resolved_database_url)}", err=err)
    return _existing_store(settings)


def _events(ids: Sequence[int]) -> str:
    return f"{len(ids)} event(s) ({', '.join(str(i) for i in ids)})"
