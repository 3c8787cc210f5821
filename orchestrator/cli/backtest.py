"""`journeys backtest`: recorded events replayed through a draft journey (docs/backtest.md).

Nothing is sent and the live store is only read; the replay runs in a simulation store
under `<data dir>/simulations/backtest-<journey>/`, which `journeys stats --data-dir`
can read afterwards.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from .main import _fail, _settings, data_dir_option, journeys_dir_option, main
from .reports import render_stats

_DAY = click.DateTime(formats=["%Y-%m-%d"])
SAFE = (
    "Nothing was sent (messages went to the simulation's outbox) and the live store was "
    "not written."
)


@main.command()
@click.argument("journey")
@click.option(
    "--events",
    "events_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A recording: Segment calls (track, identify...) as NDJSON, one per line.",
)
@click.option("--from", "first", type=_DAY, help="The store's events from this day (YYYY-MM-DD).")
@click.option("--to", "last", type=_DAY, help="...to this day, included (YYYY-MM-DD, UTC).")
@click.option(
    "--days",
    type=click.IntRange(min=1, max=366),
    help="Simulated days (default: the record's span plus the journey's longest wait).",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the simulation's store of a --from/--to backtest (it holds copies of live "
    "contacts; by default it is deleted once the report is printed).",
)
@journeys_dir_option
@data_dir_option
def backtest(
    journey: str,
    events_file: Path | None,
    first: datetime | None,
    last: datetime | None,
    days: int | None,
    as_json: bool,
    keep: bool,
    journeys_dir: Path | None,
    data_dir: Path | None,
) -> None:
    """Replay recorded events through JOURNEY (a draft is fine) in simulated time and
    report what it would have sent, to whom, and what converted. Nothing is sent and the
    live store is not written.

    The record is --events FILE (Segment NDJSON) or the store's own events --from DAY
    --to DAY. Contacts' recorded orders and engagement stand in for their behaviour."""
    from ..simulation import simulation_folder
    from ..simulation.backtest import Backtest, backtest_report, read_ndjson, read_store

    if (events_file is None) == (first is None and last is None):
        _fail("give either --events FILE or --from DAY --to DAY (not both)")
    if events_file is None and (first is None or last is None):
        _fail("--from and --to go together: the period's first and last day")
    if first and last and first > last:
        _fail(f"--from {first.date()} is after --to {last.date()}")
    settings = _settings(data_dir=data_dir, journeys_dir=journeys_dir)
    if events_file is not None:
        if not events_file.is_file():
            _fail(f"no such file: {events_file}")
        recording = read_ndjson(events_file)
    else:
        assert first is not None and last is not None
        recording = read_store(settings, first.date(), last.date())
    folder = simulation_folder(settings.data_dir, f"backtest-{journey}")
    runner = Backtest(settings, [journey], recording, folder, days=days)
    simulation = asyncio.run(runner.run())
    discard = events_file is None and not keep
    try:
        report = backtest_report(runner, simulation)
    finally:
        simulation.engine.dispose()
        if discard:
            # Copies of live contacts (addresses, traits) must not outlive the report,
            # nor escape `journeys contacts erase`.
            shutil.rmtree(folder, ignore_errors=True)
    if discard:
        report["backtest"]["simulation_store"] = None
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(render_backtest(report))


def render_backtest(report: dict[str, Any]) -> str:
    from ..analytics.stats import JourneyStats, MessageStats, SplitStats, StepStats

    b = report["backtest"]
    rec, sent = b["recorded"], b["would_send"]
    out = [
        f"Backtest of {', '.join(report['simulation']['journeys'])} on {b['source']}: "
        f"{rec['calls']} recorded calls from {rec['contacts']} contacts, "
        f"{rec['first']} to {rec['last']}, replayed over {report['simulation']['days']} "
        "simulated days.",
        SAFE,
        "",
    ]
    for data in report["journeys"]:
        stats = JourneyStats(
            **{
                **data,
                "steps": [StepStats(**s) for s in data["steps"]],
                "messages": [MessageStats(**ms) for ms in data["messages"]],
                "splits": [SplitStats(**sp) for sp in data["splits"]],
            }
        )
        out += [render_stats(stats), ""]
    out.append(f"Would have sent {sent['messages']} message(s) to {sent['contacts']} contact(s):")
    for step, channels in sent["by_step"].items():
        out += [f"  {step} by {channel}: {n}" for channel, n in channels.items()]
    replayed = b["replayed"]
    out.append(
        f"Recorded engagement put on simulated messages: {replayed['engagement_mapped']}; "
        f"dropped (no message of theirs to stand for): {replayed['engagement_dropped']}"
    )
    if rec["not_replayed"]:
        skipped = ", ".join(f"{name} {n}" for name, n in sorted(rec["not_replayed"].items()))
        out.append(f"Not replayed (the simulation makes its own): {skipped}")
    out.append(f"Converted: {len(b['converted'])}")
    for c in b["converted"]:
        revenue = "" if c["revenue"] is None else f", revenue {c['revenue']:,.2f}"
        out.append(
            f"  {c['contact']}: {c['after_entry']} after entry{revenue}, "
            f"after {c['messages_before']} message(s)"
        )
    if b["samples"]:
        out.append("Samples:")
        for s in b["samples"]:
            out.append(f"  {s['step']} by {s['channel']} to {s['contact']}: {s['headline']}")
            if s["text"]:
                out.append(f"    {s['text']}")
    out += ["", SAFE]
    if b["simulation_store"] is None:
        out.append(
            "The simulation's store was deleted: it held copies of live contacts (--keep keeps it)."
        )
    else:
        out.append(
            f"The simulation's store: {b['simulation_store']} "
            f"(journeys stats {report['simulation']['journeys'][0]} --data-dir "
            f"{b['simulation_store']})"
        )
    return "\n".join(out)
