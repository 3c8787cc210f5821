"""`journeys stats` and `journeys explain`: the reporting model as terminal text or JSON.

Both read `orchestrator.analytics`, the model the API and the dashboard read too, so
the terminal never shows a number the others do not.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from ..analytics.stats import (
    JourneyHeadline,
    JourneyStats,
    UnknownJourney,
    headlines,
    journey_stats,
)
from ..analytics.story import DEFAULT_EVENTS, contact_story
from ..store.db import session_scope
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
    type=click.IntRange(min=0),
    default=DEFAULT_EVENTS,
    show_default=True,
    help="How many of the newest events to tell.",
)
@click.option("--json", "as_json", is_flag=True, help="The story as JSON, for tools.")
@data_dir_option
def explain(
    contact: str, journey: str | None, events: int, as_json: bool, data_dir: Path | None
) -> None:
    """A contact's story in time order: events, journeys entered or refused and why,
    every step and decision, messages and what policy did to them, points, coupons,
    conversions."""
    engine = _existing_store(_settings(data_dir=data_dir))
    try:
        with session_scope(engine) as session:
            story = contact_story(session, contact, journey, events)
    finally:
        engine.dispose()
    if not story.exists and not story.moments:
        _fail(f"nothing stored for contact {contact!r} (a typo, or erased?)")
    if as_json:
        click.echo(json.dumps(story.to_json(), indent=2, ensure_ascii=False))
        return
    aliases = f" (also {', '.join(story.ids[1:])})" if len(story.ids) > 1 else ""
    click.echo(printable(f"Contact {story.contact_id}{aliases}: {story.points} points"))
    if story.events_shown < story.events_total:
        click.echo(
            f"the newest {story.events_shown} of {story.events_total} events are told "
            "(--events N for more)"
        )
    rows = [(mo.at[:19].replace("T", " "), mo.kind, mo.text) for mo in story.moments]
    click.echo(render_table(("time (UTC)", "what", "story"), rows))


# --- text ------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f} %"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items(), key=lambda kv: -kv[1])) or "-"


def render_headlines(rows: list[JourneyHeadline]) -> str:
    if not rows:
        return "no journey deployed yet (journeys deploy)"
    header = ("journey", "status", "version", "entered", "active", "converted", "rate", "revenue")
    return render_table(
        header,
        [
            (
                r.journey_id,
                r.status,
                r.version,
                r.entered,
                r.active,
                r.converted,
                _pct(r.conversion_rate),
                _money(r.revenue),
            )
            for r in rows
        ],
    )


def render_stats(s: JourneyStats) -> str:
    which = f"version {s.version}" if s.version else "all versions"
    period = _period(s.since, s.until)
    out = [
        printable(f"{s.journey_id}: {s.name or ''} ({which}; {period})"),
        f"entered {s.entered} · active now {s.active} · converted {s.converted} "
        f"({_pct(s.conversion_rate)}) · revenue {_money(s.revenue)} "
        f"({_money(s.revenue_per_entrant)} per entrant)",
        f"finished: {_counts(s.finished)} · exits: {_counts(s.exits)} · "
        f"not entered: {_counts(s.refused)}",
        "",
        "Steps",
        render_table(
            ("step", "kind", "reached", "waiting now", "outcomes"),
            [
                (
                    "  " * st.depth + st.step_id,
                    st.kind,
                    st.reached,
                    st.waiting_now,
                    _counts(st.outcomes),
                )
                for st in s.steps
            ],
        ),
    ]
    if s.messages:
        out += ["", "Messages (unique per message; rates of delivered, bounces of sent)"]
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
                        _counts(ms.not_sent),
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
            diff = (
                "-"
                if c is None
                else (
                    f"{c.rate_difference * 100:+.1f} pts "
                    f"[{c.rate_interval[0] * 100:+.1f}, {c.rate_interval[1] * 100:+.1f}]"
                )
            )
            rows.append(
                (
                    v.variant,
                    v.entrants,
                    v.conversions,
                    _pct(v.conversion_rate),
                    _money(v.revenue_per_entrant),
                    diff,
                    "" if c is None else c.verdict,
                )
            )
        out.append(
            render_table(
                (
                    "variant",
                    "entrants",
                    "converted",
                    "rate",
                    "revenue/entrant",
                    "difference (95 % interval)",
                    "verdict",
                ),
                rows,
            )
        )
        if split.warning:
            out.append(f"warning: {split.warning}")
    return "\n".join(out)


def _period(since: str | None, until: str | None) -> str:
    if since and until:
        return f"entered {since} to {until}"
    if since:
        return f"entered since {since}"
    if until:
        return f"entered until {until}"
    return "every entry"
