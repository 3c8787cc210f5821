"""The simulation report as one HTML page: `journeys simulate ... --html FILE`.

One file with inline CSS and server-drawn SVG (`analytics.diagram`), no script and
nothing fetched, so it opens offline, can be mailed or attached to a ticket, and shows
the same diagram as the dashboard. The page's Content-Security-Policy forbids scripts
and remote loads, and sample emails render in `<iframe sandbox="">`: message content
comes from templates and contact data, so every string is escaped and user content
carries `dir="auto"` to read right for Arabic or Hebrew.
"""

from __future__ import annotations

from dataclasses import fields
from html import escape
from typing import Any

from ..analytics.diagram import journey_svg
from ..analytics.stats import (
    Comparison,
    JourneyStats,
    MessageStats,
    SplitStats,
    StepStats,
    VariantStats,
    revenue_text,
)
from ..dsl.models import Journey

POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
HOURS = 24
MESSAGE_COLUMNS = ("sent", "delivered", "opened", "clicked", "bounced", "unsubscribed")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1f2933; margin: 0 auto;
  max-width: 1100px; padding: 1rem 1.5rem 3rem; }
h1 { margin-bottom: .25rem; } h2 { border-bottom: 2px solid #e4e7eb; padding-bottom: .25rem;
  margin-top: 2.5rem; } h3 { margin-top: 1.5rem; }
dl.facts { display: flex; flex-wrap: wrap; gap: .25rem 1.5rem; margin: .5rem 0; }
dl.facts div { display: flex; gap: .4rem; } dt { color: #52606d; } dd { margin: 0;
  font-weight: 600; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #e4e7eb; padding: .25rem .6rem; text-align: start;
  vertical-align: top; }
td.n { text-align: end; font-variant-numeric: tabular-nums; }
th { background: #f5f7fa; }
tr.ok td.status { background: #e6f4ea; color: #1e6b3a; }
tr.fail td.status { background: #fde8e8; color: #a61b1b; font-weight: 600; }
.verdict-ok { color: #1e6b3a; font-weight: 600; } .verdict-fail { color: #a61b1b;
  font-weight: 600; }
.warning { color: #8d6708; }
figure.diagram { overflow-x: auto; margin: 1rem 0; }
.hours { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.sample { border: 1px solid #e4e7eb; border-radius: 6px; padding: .5rem .75rem;
  margin: .75rem 0; }
.sample pre { white-space: pre-wrap; background: #f5f7fa; padding: .5rem; margin: .25rem 0; }
.sample iframe { width: 100%; height: 420px; border: 1px solid #e4e7eb; background: #fff; }
.muted { color: #52606d; }
"""


def render_html(report: dict[str, Any], journeys: dict[str, Journey] | None = None) -> str:
    """The whole page; `journeys`, the models the report's journeys ran (by id), are
    what the diagrams are drawn from: a journey left out gets no diagram."""
    journeys = journeys or {}
    sim = report.get("simulation", {})
    title = f"Simulation {sim.get('id', '')}".strip()
    invariants = report.get("invariants", [])
    samples = report.get("samples", [])
    shown = {s.get("journey_id") for s in report.get("journeys", [])}
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(POLICY)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        _header(report),
    ]
    for data in report.get("journeys", []):
        parts.append(_journey_section(report, data, journeys.get(data.get("journey_id", ""))))
    others = [s for s in samples if s.get("journey") not in shown]
    if others:
        parts += ["<section><h2>Other sample messages</h2>", *map(_sample, others), "</section>"]
    parts += [_invariants(invariants), "</body></html>\n"]
    return "\n".join(parts)


# --- page parts --------------------------------------------------------------


def _header(report: dict[str, Any]) -> str:
    sim = report.get("simulation", {})
    facts = [
        ("seed", sim.get("seed")),
        ("contacts", sim.get("contacts")),
        ("days", sim.get("days")),
        ("start", sim.get("start")),
        ("scenario", sim.get("scenario")),
        ("simulation", sim.get("id")),
    ]
    failing = [i for i in report.get("invariants", []) if i.get("violations")]
    if report.get("ok", not failing):
        verdict = '<p class="verdict-ok">Every invariant holds.</p>'
    else:
        verdict = (
            f'<p class="verdict-fail">{len(failing)} invariant{"s" if len(failing) != 1 else ""}'
            ' violated: see <a href="#invariants">Invariants</a>.</p>'
        )
    links = " · ".join(
        f'<a href="#journey-{_e(j.get("journey_id"))}" dir="auto">'
        f"{_e(j.get('name') or j.get('journey_id'))}</a>"
        for j in report.get("journeys", [])
    )
    return (
        "<header><h1>Journey simulation</h1>"
        + _facts(facts)
        + verdict
        + (f"<nav>{links}</nav>" if links else "")
        + "</header>"
    )


def _journey_section(report: dict[str, Any], data: dict[str, Any], journey: Journey | None) -> str:
    journey_id = data.get("journey_id", "")
    name = data.get("name") or journey_id
    stats = journey_stats_from_json(data)
    parts = [
        f'<section id="journey-{_e(journey_id)}">',
        f'<h2><span dir="auto">{_e(name)}</span> '
        f'<span class="muted">({_e(journey_id)})</span></h2>',
        _headline(stats, report.get("time_to_convert", {}).get(journey_id)),
    ]
    if journey is not None:
        parts.append(f'<figure class="diagram">{journey_svg(journey, stats)}</figure>')
    else:
        parts.append('<p class="muted">No journey definition was given: no diagram.</p>')
    if stats.messages:
        parts += ["<h3>Messages</h3>", _messages(stats.messages)]
    if stats.splits:
        parts += ["<h3>Splits</h3>", *map(_split, stats.splits)]
    hours = report.get("messages_by_local_hour", {}).get(journey_id)
    if hours:
        parts += [
            "<h3>Messages by the contact's local hour</h3>",
            '<div class="hours">',
            *(_hour_chart(channel, counts) for channel, counts in hours.items()),
            "</div>",
        ]
    samples = [s for s in report.get("samples", []) if s.get("journey") == journey_id]
    if samples:
        parts += ["<h3>Sample messages</h3>", *map(_sample, samples)]
    parts.append("</section>")
    return "\n".join(parts)


def _headline(stats: JourneyStats, to_convert: dict[str, Any] | None) -> str:
    facts: list[tuple[str, Any]] = [
        ("entered", _n(stats.entered)),
        ("active", _n(stats.active)),
    ]
    facts += [(f"finished: {k}", _n(v)) for k, v in stats.finished.items()]
    if stats.goal is not None or stats.converted:
        facts += [
            ("goal", stats.goal),
            ("converted", _n(stats.converted)),
            ("conversion rate", _percent(stats.conversion_rate)),
            ("revenue", revenue_text(stats)),
        ]
    if to_convert:
        facts += [
            ("time to convert, median", _hours(to_convert.get("median_hours"))),
            ("90th percentile", _hours(to_convert.get("p90_hours"))),
        ]
    facts += [(f"exit: {k}", _n(v)) for k, v in stats.exits.items()]
    facts += [(f"refused: {k}", _n(v)) for k, v in stats.refused.items()]
    return _facts(facts)


def _messages(messages: list[MessageStats]) -> str:
    head = "".join(f"<th>{c}</th>" for c in ("step", "template", *MESSAGE_COLUMNS))
    rows = []
    for msg in messages:
        cells = [f"<td>{_e(msg.step_id)}</td>", f"<td>{_e(msg.template or '')}</td>"]
        for column in MESSAGE_COLUMNS:
            count = getattr(msg, column)
            rate = msg.rates.get({"opened": "open", "clicked": "click"}.get(column, ""))
            extra = f' <span class="muted">({_percent(rate)})</span>' if rate is not None else ""
            cells.append(f'<td class="n">{_n(count)}{extra}</td>')
        cells.append(f"<td>{_e(_mapping(_not_sent(msg))) or '-'}</td>")
        cells.append(f"<td>{_e(_mapping(msg.deferred)) or '-'}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><thead><tr>{head}<th>not sent, by reason</th><th>deferred</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _not_sent(msg: MessageStats) -> dict[str, int]:
    """Not sent, by reason where there is one ("suppressed: consent"), else by kind."""
    found: dict[str, int] = {}
    for kind, count in msg.not_sent.items():
        reasons = {r: n for r, n in msg.not_sent_reasons.items() if r.startswith(f"{kind}: ")}
        found.update(reasons or {kind: count})
    return found


def _split(split: SplitStats) -> str:
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "variant",
            "weight",
            "entrants",
            "conversions",
            "rate",
            "revenue",
            "per entrant",
            "verdict",
        )
    )
    rows = []
    for v in split.variants:
        verdict = v.comparison.verdict if v.comparison else "control"
        rows.append(
            f"<tr><td>{_e(v.variant)}</td><td class='n'>{_e(v.weight)}</td>"
            f"<td class='n'>{_n(v.entrants)}</td><td class='n'>{_n(v.conversions)}</td>"
            f"<td class='n'>{_percent(v.conversion_rate)}</td>"
            f"<td class='n'>{v.revenue:,.2f}</td>"
            f"<td class='n'>{_money(v.revenue_per_entrant)}</td><td>{_e(verdict)}</td></tr>"
        )
    warning = f'<p class="warning">{_e(split.warning)}</p>' if split.warning else ""
    return (
        f"<h4>{_e(split.step_id)}</h4><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{warning}"
    )


def _hour_chart(channel: str, counts: list[int]) -> str:
    """24 bars, one per local hour: do messages arrive when people are awake?"""
    bar, height, axis = 12, 60, 14
    width = HOURS * (bar + 2)
    top = max(counts, default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height + axis}" viewBox="0 0 {width} {height + axis}" '
        f'aria-label="{_e(channel)} messages by local hour" font-family="system-ui, sans-serif" '
        'font-size="10">',
        f"<title>{_e(channel)}: messages by the contact's local hour</title>",
    ]
    for hour, count in enumerate(counts[:HOURS]):
        h = round(height * count / top)
        x = hour * (bar + 2)
        parts.append(
            f'<rect x="{x}" y="{height - h}" width="{bar}" height="{h}" fill="#4a6fa5">'
            f"<title>{hour:02d}:00 {_e(channel)}: {_n(count)}</title></rect>"
        )
    for hour in (0, 6, 12, 18):
        parts.append(
            f'<text x="{hour * (bar + 2)}" y="{height + axis - 2}" fill="#52606d">{hour:02d}</text>'
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{_e(channel)}</figcaption>{''.join(parts)}</figure>"


def _sample(sample: dict[str, Any]) -> str:
    where = " · ".join(
        str(sample.get(k))
        for k in ("journey", "step", "channel", "locale", "contact")
        if sample.get(k) is not None
    )
    parts = [f'<div class="sample"><p class="muted">{_e(where)}</p>']
    for key, value in (sample.get("content") or {}).items():
        if key == "html":
            # No permissions at all: no script, no forms, no same origin; the page's
            # policy (inherited by srcdoc) keeps remote images and fonts out too.
            parts.append(
                f'<iframe sandbox="" referrerpolicy="no-referrer" loading="lazy" '
                f'title="{_e(sample.get("step") or "")} email" srcdoc="{_e(str(value))}"></iframe>'
            )
        else:
            parts.append(
                f'<div class="muted">{_e(key)}</div><pre dir="auto">{_e(str(value))}</pre>'
            )
    parts.append("</div>")
    return "".join(parts)


def _invariants(invariants: list[dict[str, Any]]) -> str:
    if not invariants:
        return '<section id="invariants"><h2>Invariants</h2><p>None were checked.</p></section>'
    rows = []
    for inv in invariants:
        bad = int(inv.get("violations") or 0)
        status = f"✗ {_n(bad)} violation{'s' if bad != 1 else ''}" if bad else "✓ holds"
        rows.append(
            f'<tr class="{"fail" if bad else "ok"}"><td>{_e(inv.get("name"))}</td>'
            f"<td>{_e(inv.get('where'))}</td><td class='n'>{_n(inv.get('checked'))}</td>"
            f'<td class="status">{status}</td></tr>'
        )
    examples = []
    for inv in invariants:
        if inv.get("violations") and inv.get("examples"):
            items = "".join(
                f'<li><strong>{_e(ex.get("contact"))}</strong>: <span dir="auto">'
                f"{_e(ex.get('what'))}</span></li>"
                for ex in inv["examples"]
            )
            examples.append(f"<h3>{_e(inv.get('name'))}</h3><ul>{items}</ul>")
    failing = "<h3>Failing examples</h3>" + "".join(examples) if examples else ""
    return (
        '<section id="invariants"><h2>Invariants</h2><table><thead><tr><th>invariant</th>'
        "<th>where</th><th>checked</th><th>result</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{failing}</section>"
    )


# --- the report's JSON back into the reporting model ---------------------------


def journey_stats_from_json(data: dict[str, Any]) -> JourneyStats:
    """`JourneyStats.to_json()` read back, so the diagram gets the model it draws from."""
    splits = [
        SplitStats(
            **{
                **_known(SplitStats, s),
                "variants": [
                    VariantStats(
                        **{
                            **_known(VariantStats, v),
                            "comparison": _comparison(v.get("comparison")),
                        }
                    )
                    for v in s.get("variants", [])
                ],
            }
        )
        for s in data.get("splits", [])
    ]
    return JourneyStats(
        **{
            **_known(JourneyStats, data),
            "steps": [StepStats(**_known(StepStats, s)) for s in data.get("steps", [])],
            "messages": [MessageStats(**_known(MessageStats, s)) for s in data.get("messages", [])],
            "splits": splits,
        }
    )


def _comparison(data: dict[str, Any] | None) -> Comparison | None:
    if not data:
        return None
    found = _known(Comparison, data)
    for key in ("rate_interval", "revenue_interval"):
        if found.get(key) is not None:
            found[key] = tuple(found[key])
    return Comparison(**found)


def _known(cls: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The keys `cls` has: a report written by a newer version may carry more."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


# --- words -------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _facts(facts: list[tuple[str, Any]]) -> str:
    items = "".join(
        f'<div><dt>{_e(k)}</dt><dd dir="auto">{_e(v)}</dd></div>' for k, v in facts if v is not None
    )
    return f'<dl class="facts">{items}</dl>'


def _n(count: Any) -> str:
    return f"{int(count or 0):,}"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{round(ratio * 100, 1):g} %"


def _money(amount: float | None) -> str:
    return "-" if amount is None else f"{amount:,.2f}"


def _hours(hours: float | None) -> str | None:
    if hours is None:
        return None
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:g} hours"


def _mapping(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {_n(n)}" for k, n in counts.items())
