"""`journeys diff [OLD] NEW`: what an edit changes and what deploying it does to the
contacts in flight, with the replay that proves the running code breaks none of them.

Exit status: 0 shown (and, with runs in flight, replayed without a break), 1 an
argument or file diff cannot use, 3 a replayed history broke (deploying this code
would break runs in flight), 4 Temporal could not be reached: everything else is
shown, the replay was not done.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from .main import (
    _beside_dev,
    _existing_store,
    _fail,
    _settings,
    data_dir_option,
    journeys_dir_option,
    main,
)

REPLAY_BROKE = 3
TEMPORAL_UNREACHABLE = 4


@main.command("diff")
@click.argument("sides", nargs=-1, metavar="[OLD] NEW")
@journeys_dir_option
@click.option("--templates", "templates_dir", type=click.Path(path_type=Path), help="Templates.")
@click.option(
    "--replay",
    "replay_limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Replay the histories of up to this many runs in flight (0: do not).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@data_dir_option
def diff_command(
    sides: tuple[str, ...],
    journeys_dir: Path | None,
    templates_dir: Path | None,
    replay_limit: int,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """Show what changed between two versions of a journey, in words, and what deploying
    does to the contacts in flight (they finish on the version they entered).

    OLD and NEW are a journey file, ID@N (deployed version N) or ID: as OLD the deployed
    version, as NEW the file on disk defining it. With NEW alone, OLD is its deployed
    version; with neither, every journey file is compared with its deployed version.
    Exit status: 0 fine, 1 bad argument, 3 a replayed run broke, 4 Temporal unreachable.
    """
    from ..deployment.journey_diff import DiffError, diff, resolve
    from ..deployment.replay import connect_and_replay
    from ..dsl.problems import JourneyError
    from ..processes.worker import connect

    settings = _settings(journeys_dir=journeys_dir, templates_dir=templates_dir, data_dir=data_dir)
    engine = _existing_store(settings)
    try:
        try:
            pairs = resolve(engine, settings.journeys_dir, sides)
        except JourneyError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            _fail(f"{len(exc.problems)} problem(s) found: fix them to compare")
        except DiffError as exc:
            _fail(str(exc))
        diffs = [diff(engine, old, new, settings.templates_dir) for old, new in pairs]
        report = asyncio.run(
            connect_and_replay(
                lambda: connect(_beside_dev(settings)),
                engine,
                [d.journey_id for d in diffs],
                replay_limit,
            )
        )
    finally:
        engine.dispose()
    if as_json:
        replay = {
            "in_flight": report.in_flight,
            "checked": report.checked,
            "broke": report.broke,
            "missing": report.missing,
            "unavailable": report.unavailable,
            "skipped": report.skipped,
            "summary": report.sentence(),
        }
        body = {"journeys": [d.to_json() for d in diffs], "replay": replay}
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        for item in diffs:
            click.echo("\n".join(item.lines()))
        click.echo(report.sentence())
        for workflow_id, why in report.broke.items():
            click.echo(f"  broke: {workflow_id}: {why}")
    if report.broke:
        sys.exit(REPLAY_BROKE)
    if report.unavailable is not None:
        click.secho(
            "warning: Temporal could not be reached, so no replay proves the running code "
            "keeps runs in flight working; check TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE",
            fg="yellow",
            err=True,
        )
        sys.exit(TEMPORAL_UNREACHABLE)
