"""`journeys versions JOURNEY`: every deployed version of a journey, newest first, with
whether new entries start on it, its runs, and what changed since the one before."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .main import _existing_store, _fail, _settings, data_dir_option, main


@main.command("versions")
@click.argument("journey_id", metavar="JOURNEY")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@data_dir_option
def versions_command(journey_id: str, as_json: bool, data_dir: Path | None) -> None:
    """List JOURNEY's deployed versions, newest first: when each was deployed, which one
    new entries start on, its runs in flight and in all, and what changed since the
    version before it (`journeys diff JOURNEY@N JOURNEY@M` compares any two)."""
    from sqlmodel import select

    from ..deployment.history import version_history
    from ..services.spelling import closest_name
    from ..store.db import session_scope
    from ..store.tables import JourneyVersion

    engine = _existing_store(_settings(data_dir=data_dir))
    try:
        with session_scope(engine) as session:
            history = version_history(session, journey_id)
            known = sorted(set(session.exec(select(JourneyVersion.journey_id)).all()))
    finally:
        engine.dispose()
    if not history:
        meant = closest_name(journey_id, known)
        hint = f"; did you mean {meant!r}?" if meant else ""
        listed = f" (deployed: {', '.join(known)})" if known and not meant else ""
        _fail(f"no journey {journey_id!r} was ever deployed{hint}{listed}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "journey": journey_id,
                    "versions": [
                        {
                            "version": v.version,
                            "deployed_at": v.deployed_at.isoformat(),
                            "current": v.active,
                            "rolled_back": v.rolled_back,
                            "retired_at": v.retired_at.isoformat() if v.retired_at else None,
                            "runs_active": v.runs_active,
                            "runs_total": v.runs_total,
                            "changes": list(v.changes),
                            "file": v.source_path,
                        }
                        for v in history
                    ],
                },
                indent=2,
            )
        )
        return
    current = next((v.version for v in history if v.active), None)
    now = f"v{current} is current for new entries" if current else "retired: no new entries"
    if any(v.rolled_back and v.active for v in history):
        now += f" (rolled back; journeys deploy --release {journey_id} deploys the file)"
    click.echo(f"{journey_id}: {len(history)} version(s), {now}")
    for v in history:
        state = ("current, rolled back" if v.rolled_back else "current") if v.active else ""
        if v.retired_at is not None:
            state = f"retired {v.retired_at:%Y-%m-%d %H:%M}"
        line = f"v{v.version}  deployed {v.deployed_at:%Y-%m-%d %H:%M} UTC"
        line += f"  {state}" if state else ""
        line += f"  runs in flight {v.runs_active} of {v.runs_total}"
        click.echo(line)
        if v.version == history[-1].version:
            click.echo("    first version")
        elif not v.changes:
            click.echo("    no change in the steps or templates")
        for change in v.changes:
            click.echo(f"    - {change}")
