"""`journeys stats` and `journeys explain`: the reporting model as terminal text or JSON.

Both read `orchestrator.analytics`, the model the API and the dashboard read too, so
the terminal never shows a number the others do not.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlmodel import func, select

from ..analytics.stats import (
    JourneyHeadline,
    JourneyStats,
    UnknownJourney,
    headlines,
    journey_exists,
    journey_stats,
    revenue_text,
)
from ..analytics.story import DEFAULT_EVENTS, MAX_EVENTS, Story, contact_story
from ..settings import Settings
from ..simulation import simulation_folder
from ..store.db import session_scope
from ..store.tables import Contact
from .main import _existing_store, _fail, _settings, data_dir_option, main
from .tables import printable, render_table

_DAY = click.DateTime(formats=["%Y-%m-%d"])


@main.command()
@click.argument("journey", required=False)
@click.option(
    "--since", type=_DAY, help="Runs that entered on or after this day (YYYY-MM-DD, UTC)."
)
@click.option(
    "--until", type=_DAY, help="Runs that entered on or before this day (YYYY-MM-DD, UTC)."
)
@click.option("--version", type=click.IntRange(min=1), help="Only runs of this version.")
@click.option("--json", "as_json", is_flag=True, help="The full report as JSON.")
@data_dir_option
def stats(
    journey: str | None,
    since: datetime | None,
    until: datetime | None,
    version: int | None,
    as_json: bool,
    data_dir: Path | None,
) -> None:
    """What each journey did: entries, conversions and revenue; with JOURNEY, each step,
    message and split variant too. A period selects the runs that entered in it."""
    first, last = (since.date() if since else None), (until.date() if until else None)
    if first and last and first > last:
        _fail(f"--since {first} is after --until {last}: nothing entered in between")
    if version is not None and journey is None:
        _fail("--version needs a journey: journeys stats JOURNEY --version N")
    engine = _existing_store(_settings(data_dir=data_dir))
    try:
        with session_scope(engine) as session:
            if journey is None:
                rows = headlines(session, first, last)
                report: JourneyStats | None = None
            else:
                report = journey_stats(session, journey, first, last, version)
    except UnknownJourney as exc:
        _fail(f"{exc} (see `journeys list`)")
    finally:
        engine.dispose()
    if report is None:
        if as_json:
            click.echo(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
        else:
            click.echo(render_headlines(rows))
    elif as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_stats(report))


@main.command()
@click.argument("contact")
@click.option("--journey", help="Only this journey's part of the story.")
@click.option(
    "--events",
    type=click.IntRange(min=0, max=MAX_EVENTS),
    default=DEFAULT_EVENTS,
    show_default=True,
    help="How many of the newest events to tell.",
)
@click.option("--json", "as_json", is_flag=True, help="The story as JSON, for tools.")
@click.option(
    "--simulation",
    help="A simulated shopper's story, from the simulation of that id (`journeys simulate`).",
)
@data_dir_option
def explain(
    contact: str,
    journey: str | None,
    events: int,
    as_json: bool,
    simulation: str | None,
    data_dir: Path | None,
) -> None:
    """A contact's story in time order: events, journeys entered or refused and why,
    every step and decision, messages and what policy did to them, points, coupons,
    conversions."""
    settings = _settings(data_dir=data_dir)
    if simulation is not None:
        engine = _simulation_store(settings, simulation)
    else:
        engine = _existing_store(settings)
    try:
        with session_scope(engine) as session:
            if journey is not None and not journey_exists(session, journey):
                _fail(f"no journey {journey!r} was ever deployed (see `journeys list`)")
            story = contact_story(session, contact, journey, events)
            first, last = session.exec(select(func.min(Contact.id), func.max(Contact.id))).one()
    finally:
        engine.dispose()
    if not story.exists and not story.moments:
        if simulation is not None:
            _fail(
                f"no shopper {contact!r} in simulation {simulation!r} "
                f"(its shoppers are {first} to {last})"
            )
        _fail(f"nothing stored for contact {contact!r} (a typo, or erased?)")
    if as_json:
        click.echo(json.dumps(story.to_json(), indent=2, ensure_ascii=False))
        return
    click.echo(render_story(story))


def _simulation_store(settings: Settings, simulation: str) -> Any:
    from ..store.db import make_engine, sqlite_url

    folder = simulation_folder(settings.data_dir, simulation)
    if "/" in simulation or simulation.startswith(".") or not (folder / "journeys.db").is_file():
        root = folder.parent
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        _fail(
            f"no simulation {simulation!r} in {root} (simulations there: "
            f"{', '.join(known) or 'none yet: run journeys simulate'})"
        )
    return make_engine(sqlite_url(folder))


def render_story(story: Story) -> str:
    """A contact's story as `journeys explain` prints it (and `journeys simulate`, for a
    contact that broke an invariant): a heading, then one row per moment."""
    aliases = f" (also {', '.join(story.ids[1:])})" if len(story.ids) > 1 else ""
    lines = [printable(f"Contact {story.contact_id}{aliases}: {story.points} points")]
    if story.events_shown < story.events_total:
        lines.append(
            f"the newest {story.events_shown} of {story.events_total} events are told "
            "(--events N for more)"
        )
    rows = [(mo.at[:19].replace("T", " "), mo.kind, mo.text) for mo in story.moments]
    lines.append(render_table(("time (UTC)", "what", "story"), rows))
    return "\n".join(lines)


# --- text ------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f} %"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items(), key=lambda kv: -kv[1])) or "-"


def _time_to_convert(s: JourneyStats) -> list[str]:
    if not s.time_to_convert:
        return []
    spread = ", ".join(f"{bucket} {n}" for bucket, n in s.time_to_convert.items())
    return [f"time to convert: median {s.median_time_to_convert} after entry ({spread})"]


def render_headlines(rows: list[JourneyHeadline]) -> str:
    if not rows:
        return "no journey deployed yet (journeys deploy)"
    header = (
        "journey",
        "status",
        "version",
        "entered",
        "in it now",
        "converted",
        "conversion",
        "revenue",
    )
    return render_table(
        header,
        [
            (
                r.journey_id,
                r.status,
                r.version,
                r.entered,
                r.active,
                r.converted if r.goal or r.converted else "no goal",
                _pct(r.conversion_rate),
                "-" if r.revenue is None else revenue_text(r),
            )
            for r in rows
        ],
    )


def render_stats(s: JourneyStats) -> str:
    which = f"version {s.version}" if s.version else "all versions"
    period = _period(s.since, s.until)
    if s.goal is None and not s.converted:
        outcome = "no goal (add `goal:` to count conversions)"
    else:
        outcome = (
            f"converted {s.converted} ({_pct(s.conversion_rate)}) · revenue "
            f"{revenue_text(s)} ({_money(s.revenue_per_entrant)} per entrant)"
        )
    out = [
        printable(f"{s.journey_id}: {s.name or ''} ({which}; {period})"),
        f"entered {s.entered} · in the journey now {s.active} · {outcome}",
        f"finished: {_counts(s.finished)} · why they left: {_counts(s.exits)} · "
        f"not let in: {_counts(s.refused)}",
        *_time_to_convert(s),
        "",
        "Steps",
        render_table(
            ("step", "what it does", "reached", "waiting now", "outcomes"),
            [
                (
                    "  " * st.depth + _step_name(st.step_id),
                    st.label or st.kind,
                    st.reached,
                    st.waiting_now,
                    _counts(st.outcomes),
                )
                for st in s.steps
            ],
        ),
    ]
    if s.messages:
        out += [
            "",
            "Messages (each counted once per message; bounces of sent, the other rates of "
            "sent and not bounced)",
        ]
        out.append(
            render_table(
                (
                    "step",
                    "sent",
                    "delivered",
                    "opened",
                    "clicked",
                    "bounced",
                    "complained",
                    "unsubscribed",
                    "replied",
                    "not sent",
                    "deferred",
                ),
                [
                    (
                        ms.step_id,
                        ms.sent,
                        f"{ms.delivered} ({_pct(ms.rates['delivery'])})",
                        f"{ms.opened} ({_pct(ms.rates['open'])})",
                        f"{ms.clicked} ({_pct(ms.rates['click'])})",
                        f"{ms.bounced} ({_pct(ms.rates['bounce'])})",
                        ms.complained,
                        f"{ms.unsubscribed} ({_pct(ms.rates['unsubscribe'])})",
                        ms.replied,
                        _not_sent(ms.not_sent, ms.not_sent_reasons),
                        _counts(ms.deferred),
                    )
                    for ms in s.messages
                ],
            )
        )
    for split in s.splits:
        control = split.variants[0].variant
        out += ["", f"Split {split.step_id} (against {control})"]
        rows = []
        for v in split.variants:
            c = v.comparison
            diff, rdiff = "-", "-"
            if c is not None:
                low, high = c.rate_interval
                diff = f"{c.rate_difference * 100:+.1f} pts [{low * 100:+.1f}, {high * 100:+.1f}]"
                rdiff = f"{c.revenue_per_entrant_difference:+,.2f}"
                if c.revenue_interval is not None:
                    rdiff += f" [{c.revenue_interval[0]:+,.2f}, {c.revenue_interval[1]:+,.2f}]"
            rows.append(
                (
                    v.variant,
                    v.entrants,
                    v.conversions,
                    _pct(v.conversion_rate),
                    _money(v.revenue_per_entrant),
                    diff,
                    rdiff,
                    "" if c is None else c.verdict,
                )
            )
        out.append(
            render_table(
                (
                    "variant",
                    "entries",
                    "converted",
                    "conversion",
                    "revenue/entry",
                    "conversion vs first (95 %)",
                    "revenue/entry vs first (95 %)",
                    "verdict",
                ),
                rows,
            )
        )
        if split.warning:
            out.append(f"warning: {split.warning}")
    return "\n".join(out)


def _step_name(step_id: str) -> str:
    """A step's own id; the ones the loader made up (`steps.2.then.0`) say nothing."""
    return "·" if step_id.startswith("steps.") else step_id


def _not_sent(counts: dict[str, int], reasons: dict[str, int]) -> str:
    if not counts:
        return "-"
    parts = []
    for kind, n in counts.items():
        why = [f"{r.split(': ', 1)[1]} {m}" for r, m in reasons.items() if r.startswith(kind)]
        parts.append(f"{kind} {n}" + (f" ({', '.join(why)})" if why else ""))
    return ", ".join(parts)


def _period(since: str | None, until: str | None) -> str:
    if since and until:
        return f"entered {since} to {until}"
    if since:
        return f"entered since {since}"
    if until:
        return f"entered until {until}"
    return "every entry"
