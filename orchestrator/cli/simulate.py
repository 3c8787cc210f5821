"""`journeys simulate` and `journeys check`: what journeys will do, before launch.

Both run `orchestrator.simulation` and print its report; the journeys' numbers are
rendered by the same functions as `journeys stats`, so a simulated funnel reads like
a live one. A broken invariant makes either command exit 1.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..settings import Settings
from ..simulation import simulation_folder
from ..simulation.saved import save_report
from .main import _fail, _journeys_folder, _settings, data_dir_option, main
from .reports import render_stats, render_story
from .tables import printable, render_table

SAMPLE_LINES = 12  # of a sample's text part, in the terminal report
templates_option = click.option(
    "--templates", "templates_dir", type=click.Path(path_type=Path), help="Templates folder."
)
_BARS = " ▁▂▃▄▅▆▇█"


def simulation_id(journey_ids: list[str], seed: int) -> str:
    name = "+".join(journey_ids)
    if len(name) > 80:
        name = f"{journey_ids[0]}+{len(journey_ids) - 1}-more"
    return re.sub(r"[^A-Za-z0-9_+.-]", "_", f"{name}-seed{seed}")


@main.command()
@click.argument("journeys", nargs=-1, required=True)
@click.option("--contacts", type=click.IntRange(1, 100_000), help="Shoppers (scenario: 300).")
@click.option("--days", type=click.IntRange(1, 366), help="Simulated days (scenario: 30).")
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Scenario file (default: journeys/scenarios/<first journey>.yaml, else built-in).",
)
@click.option("--seed", type=int, help="Random seed: the same seed gives the same report.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write an HTML report.",
)
@click.option(
    "--journeys", "journeys_dir", type=click.Path(path_type=Path), help="Journeys folder."
)
@click.option("--templates", "templates_dir", type=click.Path(path_type=Path), help="Templates.")
@data_dir_option
def simulate(
    journeys: tuple[str, ...],
    contacts: int | None,
    days: int | None,
    scenario_file: Path | None,
    seed: int | None,
    as_json: bool,
    html_file: Path | None,
    journeys_dir: Path | None,
    templates_dir: Path | None,
    data_dir: Path | None,
) -> None:
    """Run JOURNEYS over synthetic shoppers in simulated time: weeks in seconds, on the
    journeys' real code and send policies, with nothing sent and the live store untouched.
    Prints what `journeys stats` would show, messages by local hour, samples and the
    invariants; exits 1 when an invariant breaks."""
    settings = _settings(data_dir=data_dir, journeys_dir=journeys_dir, templates_dir=templates_dir)
    _journeys_folder(settings, journeys_dir)
    if html_file is not None and not html_file.parent.is_dir():
        _fail(f"--html {html_file}: no folder {html_file.parent}; create it or pick another")
    report, simulation = _simulate(
        settings, list(journeys), scenario_file, contacts, days, seed, quiet=as_json
    )
    models = {j.journey.id: j.journey for j in simulation.journeys}
    save_report(simulation.folder, report, models)  # the dashboard's "last simulation"
    _show(report, as_json, html_file, models)
    if not report["ok"]:
        sys.exit(1)


@main.command()
@click.option(
    "--contacts",
    type=click.IntRange(1, 100_000),
    help="Shoppers for the journeys without a scenario of their own (default 300).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    help="Days for the journeys without a scenario of their own (default 30).",
)
@click.option("--seed", type=int, help="Random seed.")
@click.option(
    "--journeys", "journeys_dir", type=click.Path(path_type=Path), help="Journeys folder."
)
@click.option("--templates", "templates_dir", type=click.Path(path_type=Path), help="Templates.")
@data_dir_option
def check(
    contacts: int | None,
    days: int | None,
    seed: int | None,
    journeys_dir: Path | None,
    templates_dir: Path | None,
    data_dir: Path | None,
) -> None:
    """Simulate every journey (each with its scenario in journeys/scenarios/, as written;
    the others together on the default one) and check every invariant: for a journeys
    repository's CI. Exits 1 when one breaks, a message does not render, or nobody
    entered a journey."""
    from ..deployment.validation import validate
    from ..dsl.scenario import SCENARIOS_FOLDER
    from ..rendering import Renderer

    settings = _settings(data_dir=data_dir, journeys_dir=journeys_dir, templates_dir=templates_dir)
    _journeys_folder(settings, journeys_dir)
    result = validate([settings.journeys_dir], Renderer.from_settings(settings))
    if result.problems:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        _fail(f"{len(result.problems)} problem(s) found: fix them (journeys validate) first")
    ids = [item.journey.id for item in result.journeys]
    scenarios = settings.journeys_dir / SCENARIOS_FOLDER
    own = [j for j in ids if (scenarios / f"{j}.yaml").is_file()]
    groups = [[j] for j in own]
    rest = [j for j in ids if j not in own]
    if rest:
        groups.append(rest)
    failed = 0
    for group in groups:
        own_scenario = len(group) == 1 and group[0] in own
        sizes = (None, None) if own_scenario else (contacts, days)
        report, _ = _simulate(settings, group, None, *sizes, seed, quiet=False)
        click.echo(_summary(report))
        failed += not report["ok"]
    if failed:
        _fail(f"{failed} of {len(groups)} simulation(s) broke an invariant")
    click.echo(f"all invariants hold in {len(groups)} simulation(s) of {len(ids)} journey(s)")


def _simulate(
    settings: Settings,
    journey_ids: list[str],
    scenario_file: Path | None,
    contacts: int | None,
    days: int | None,
    seed: int | None,
    quiet: bool,
) -> tuple[dict[str, Any], Any]:
    from ..dsl.invariants import load_project_invariants
    from ..dsl.problems import JourneyError
    from ..dsl.scenario import load_scenario, scenario_for
    from ..services.private_files import private_dir
    from ..simulation.invariants import check_invariants
    from ..simulation.report import build_report, scenario_label
    from ..simulation.runner import SimulationError, Simulator

    try:
        if scenario_file is not None:
            scenario, path = load_scenario(scenario_file), scenario_file
        else:
            scenario, path = scenario_for(settings.journeys_dir, journey_ids)
        project = load_project_invariants(settings.journeys_dir)
    except JourneyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        _fail(f"{len(exc.problems)} problem(s) found; nothing was simulated")
    overrides = {"contacts": contacts, "days": days, "seed": seed}
    scenario = scenario.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    folder = simulation_folder(settings.data_dir, simulation_id(journey_ids, scenario.seed))
    private_dir(settings.data_dir)  # it holds the simulations' stores: owner only
    show = not quiet and sys.stderr.isatty()
    bar = _ProgressBar(scenario.days, scenario.contacts) if show else None
    simulator = Simulator(settings, journey_ids, scenario, folder, scenario_path=path, progress=bar)
    try:
        simulation = asyncio.run(simulator.run())
    except SimulationError as exc:
        _fail(str(exc))
    finally:
        if bar is not None:
            bar.close()
    invariants = check_invariants(
        simulation.engine, simulation.journeys, project, settings.default_timezone
    )
    label = scenario_label(path, Path.cwd())
    report = build_report(simulation, invariants, settings.default_timezone, label)
    if not invariants.ok:
        click.echo(render_violations(invariants, simulation.engine), err=True)
    simulation.engine.dispose()
    return report, simulation


def render_violations(report: Any, engine: Any, limit: int = 3) -> str:
    """Each broken rule with its count, then offending contacts (the first of each rule,
    then the next ones up to `limit`): what they broke and their story, as `journeys
    explain` tells it."""
    from sqlmodel import Session

    from ..analytics.story import contact_story

    if report.ok:
        return ""
    lines = []
    for result in report.broken:
        people = len(result.contacts)
        lines.append(
            f"invariant broken: {result.name} ({result.declared_at}): {result.broken} "
            f"violation(s) by {people} contact(s), of {result.checked} checked"
        )
    firsts = [result.contacts[0] for result in report.broken if result.contacts]
    shown = list(dict.fromkeys([*firsts, *report.offending_contacts()]))
    for contact_id in shown[: max(limit, len(dict.fromkeys(firsts)))]:
        lines += ["", f"contact {contact_id}:"]
        for result in report.broken:
            for v in result.examples:
                if v.contact_id == contact_id:
                    lines.append(f"  broke {result.name}: {v.what}")
        with Session(engine) as session:
            lines.append(render_story(contact_story(session, contact_id)))
    return "\n".join(lines)


class _ProgressBar:
    """Simulated days and shoppers so far, on one terminal line."""

    def __init__(self, days: int, contacts: int) -> None:
        self.days, self.contacts = days, contacts

    def __call__(self, progress: Any) -> None:
        width = 30
        done = int(width * progress.day / max(progress.days, 1))
        line = (
            f"\rsimulating [{'#' * done}{'.' * (width - done)}] day {progress.day}/"
            f"{progress.days} · {progress.contacts_entered}/{progress.contacts} shoppers in"
        )
        click.echo(line, nl=False, err=True)

    def close(self) -> None:
        click.echo("", err=True)


def _show(
    report: dict[str, Any], as_json: bool, html_file: Path | None, models: dict[str, Any]
) -> None:
    if html_file is not None:
        from ..simulation.html_report import render_html

        html_file.write_text(render_html(report, models), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    click.echo(render_report(report))
    if html_file is not None:
        click.echo(f"HTML report: {html_file}")


def render_report(report: dict[str, Any]) -> str:
    from ..simulation.html_report import journey_stats_from_json

    sim = report["simulation"]
    start = datetime.fromisoformat(sim["start"]).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        printable(
            f"Simulation {sim['id']}: {sim['contacts']} shoppers over {sim['days']} days from "
            f"{start} (seed {sim['seed']}, scenario {sim['scenario']}); nothing was sent"
        ),
    ]
    orders = {why: n for why, n in report.get("orders", {}).items() if n}
    if orders:
        out.append(
            "orders placed: "
            + ", ".join(f"{n} {why}" for why, n in orders.items())
            + " (conversions below count them all: compare with a run where nobody buys anyway)"
        )
    if report.get("webhook_calls"):
        out.append(
            f"webhook actions: {report['webhook_calls']}, answered by the simulator "
            "(no other system was called)"
        )
    out.append("")
    for stats in report["journeys"]:
        out += [render_stats(journey_stats_from_json(stats)), ""]
    out += ["Messages by hour of the recipient's day (0h ... 23h)"]
    rows = []
    for journey_id, channels in report["messages_by_local_hour"].items():
        for channel, hours in channels.items():
            rows.append((journey_id, channel, sum(hours), _sparkline(hours), _busiest(hours)))
    if rows:
        out.append(render_table(("journey", "channel", "sent", "by hour", "busiest"), rows))
    else:
        out.append("no message was sent")
    out += ["", "Samples (one per message, channel and locale)"]
    for sample in report["samples"][:12]:
        out.append(
            printable(
                f"--- {sample['journey']} / {sample['step']} · {sample['channel']} · "
                f"{sample['locale'] or '-'} · to {sample['contact']}"
            )
        )
        for part, value in sample["content"].items():
            if part == "html":
                out.append(
                    f"  html: {len(value):,} characters (the text part below; --html shows it)"
                )
            elif isinstance(value, str):
                lines = value.splitlines() or [""]
                shown = lines[:SAMPLE_LINES] + (["…"] if len(lines) > SAMPLE_LINES else [])
                out.append(printable(f"  {part}: {shown[0]}"))
                out += [printable(f"    {line}".rstrip()) for line in shown[1:]]
    out += ["", _invariants(report)]
    if report.get("problems"):
        out += ["", "Problems (the simulation fails)"] + [
            printable(f"  {p}") for p in report["problems"]
        ]
    if report.get("warnings"):
        out += ["", "Not exercised"] + [printable(f"  {w}") for w in report["warnings"]]
    out += ["", _next(report)]
    return "\n".join(out)


def _invariants(report: dict[str, Any]) -> str:
    rules = report["invariants"]
    if not rules:
        return "Invariants: none declared (journeys/invariants.yaml, or `invariants:` in a journey)"
    lines = ["Invariants"]
    for rule in rules:
        mark = "ok    " if not rule["violations"] else "BROKEN"
        lines.append(
            printable(
                f"  {mark} {rule['name']} ({rule['where']}): {rule['checked']} checked, "
                f"{rule['violations']} broken"
            )
        )
    return "\n".join(lines)


def _next(report: dict[str, Any]) -> str:
    sim = report["simulation"]
    contact = next((s["contact"] for s in report["samples"]), None)
    lines = []
    if contact:
        lines.append(f"One shopper's story: journeys explain {contact} --simulation {sim['id']}")
    lines.append(
        "Go live: `journeys dev`, then send events to the API (README, 'A five-minute tour')"
    )
    return "\n".join(lines)


def _summary(report: dict[str, Any]) -> str:
    sim = report["simulation"]
    broken = [r for r in report["invariants"] if r["violations"]]
    verdict = "ok" if not broken else f"{len(broken)} invariant(s) broken"
    if report.get("problems"):
        verdict += "; " + "; ".join(report["problems"])
    entered = ", ".join(f"{s['journey_id']} {s['entered']} entered" for s in report["journeys"])
    line = (
        f"{', '.join(sim['journeys'])}: {sim['contacts']} shoppers, {sim['days']} days, "
        f"{len(report['invariants'])} invariant(s): {verdict} ({entered})"
    )
    if not report["ok"]:
        line += (
            f"\n  the whole report: journeys simulate {' '.join(sim['journeys'])} "
            f"--contacts {sim['contacts']} --days {sim['days']} --seed {sim['seed']}"
        )
        line += f" (stored as simulation {sim['id']}, for journeys explain --simulation)"
    return line


def _sparkline(hours: list[int]) -> str:
    top = max(hours) or 1
    return "".join(_BARS[0 if not n else max(1, round(8 * n / top))] for n in hours)


def _busiest(hours: list[int]) -> str:
    if not any(hours):
        return "-"
    hour = max(range(24), key=lambda h: (hours[h], -h))
    return f"{hour:02d}:00-{hour:02d}:59 ({hours[hour]})"
