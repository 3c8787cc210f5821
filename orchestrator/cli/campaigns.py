"""`journeys campaigns list|pause|resume|cancel`: campaigns as an operator sees them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from .main import _beside_dev, _existing_store, _fail, _settings, data_dir_option, main


@main.group()
def campaigns() -> None:
    """Campaigns (journeys with `schedule:` in their trigger): their state and sends, and
    pausing, resuming or cancelling one."""


@campaigns.command("list")
@data_dir_option
def campaigns_list(data_dir: Path | None) -> None:
    """List deployed campaigns: schedule, throttle, state, and their latest dispatch."""
    from ..campaigns.control import summaries
    from ..store.db import session_scope
    from .tables import render_table

    engine = _existing_store(_settings(data_dir=data_dir))
    try:
        with session_scope(engine) as session:
            rows = summaries(session)
    finally:
        engine.dispose()
    if not rows:
        click.echo(
            "no campaigns deployed: a journey becomes one with `trigger: {schedule: ..., "
            "segment: ...}` (docs/journeys.md#campaigns)"
        )
        return
    header = ("campaign", "state", "schedule", "throttle", "last due", "released", "waves")
    table = [
        (
            r.journey_id,
            r.status,
            r.schedule,
            r.throttle,
            f"{r.last_due} ({r.last_status})" if r.last_due else "not yet",
            str(r.recipients),
            r.waves,
        )
        for r in rows
    ]
    click.echo(render_table(header, table))


def _change(journey_id: str, action: str, data_dir: Path | None) -> None:
    from ..campaigns.control import CampaignError, change
    from ..campaigns.schedules import sync_campaign_schedules
    from ..processes.worker import connect
    from ..store.db import session_scope

    settings = _beside_dev(_settings(data_dir=data_dir))
    engine = _existing_store(settings)
    try:
        with session_scope(engine) as session:
            state = change(session, journey_id, action)
    except CampaignError as exc:
        engine.dispose()
        _fail(str(exc))
    said = {
        "paused": "paused: nothing more is sent until `journeys campaigns resume`",
        "active": "resumed: held sends go out within minutes, the next due times send",
        "cancelled": "cancelled: nothing more is sent (`resume` makes its next due times send)",
    }
    click.echo(f"campaign {journey_id} {said[state]}")

    async def follow() -> None:
        client = await connect(settings)
        await sync_campaign_schedules(
            client, engine, settings.task_queue, settings.default_timezone
        )

    try:
        asyncio.run(asyncio.wait_for(follow(), timeout=15))
    except Exception as exc:  # the store holds the state: workers apply it at their next sync
        address = settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"
        why = (
            f"Temporal is not reachable at {address}"
            if isinstance(exc, RuntimeError | TimeoutError)
            else f"{type(exc).__name__}: {str(exc)[:200]}"
        )
        click.echo(
            f"note: its Temporal schedule was not updated ({why}); sends already follow "
            "the new state, and a worker updates the schedule within five minutes of "
            "reaching Temporal"
        )
    finally:
        engine.dispose()


@campaigns.command("pause")
@click.argument("journey_id", metavar="CAMPAIGN")
@data_dir_option
def campaigns_pause(journey_id: str, data_dir: Path | None) -> None:
    """Hold CAMPAIGN: no member is released and no message sent until resumed."""
    _change(journey_id, "pause", data_dir)


@campaigns.command("resume")
@click.argument("journey_id", metavar="CAMPAIGN")
@data_dir_option
def campaigns_resume(journey_id: str, data_dir: Path | None) -> None:
    """Let a paused CAMPAIGN go on (or a cancelled one send at its next due time)."""
    _change(journey_id, "resume", data_dir)


@campaigns.command("cancel")
@click.argument("journey_id", metavar="CAMPAIGN")
@data_dir_option
def campaigns_cancel(journey_id: str, data_dir: Path | None) -> None:
    """Stop CAMPAIGN for good: what it has not sent yet is never sent."""
    _change(journey_id, "cancel", data_dir)
