"""A journey drawn as a diagram: an SVG string, annotated with `JourneyStats` counts.

Server-side SVG, not a JavaScript charting library: the simulator's HTML report and
the dashboard must work offline (no CDN, nothing fetched when the page opens), the
same function draws both so they never disagree, and the output is plain text that
tests can parse and compare byte for byte.

The layout is the journey's own shape, top to bottom: the trigger, each step as a
box, and the steps a branch, a split or a wait's outcome leads to as lanes side by
side under it, each lane's edge labelled with what took it and how many did. Every
subtree is measured first (its width is the sum of its lanes'), then drawn inside a
`<g transform>` of its parent, so no position depends on anything but the journey.
Step ids are the journey's (`str(step.id)`, given by the loader), the same ids
`StepStats` carries, so counts land on the box of their step.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from ..dsl import models as m
from ..dsl.durations import format_duration
from ..dsl.loader import iter_steps
from .stats import NOT_SENT, JourneyStats, MessageStats, StepStats, describe, revenue_text

BOX_WIDTH = 260  # a step's box
LINE = 16  # one line of text in a box
PAD = 8
GAP = 26  # between two boxes: room for the arrow
LANE_GAP = 20  # between two lanes
LANE_MIN = 150  # an empty lane still needs room for its edge label
LANE_HEAD = 44  # from the fork line to the top of a lane: the edge label
MARGIN = 16
CHAR = 6.6  # average width of a 12 px character, to wrap without font metrics
LABEL_LINES = 2

TEXT = "#1f2933"
MUTED = "#52606d"
EDGE = "#7b8794"
FILL = {
    "trigger": ("#e8f0fe", "#4a6fa5"),
    "wait": ("#f5f7fa", "#9aa5b1"),
    "wait_until": ("#f5f7fa", "#9aa5b1"),
    "wait_for": ("#fff7e0", "#c99a2e"),
    "send": ("#e6f4ea", "#3f8f5b"),
    "branch": ("#f3e8fd", "#8a4fbf"),
    "split": ("#f3e8fd", "#8a4fbf"),
    "action": ("#e0f2f1", "#2f8f86"),
    "exit": ("#fde8e8", "#c0392b"),
    "summary": ("#fef9e7", "#b7950b"),
}


@dataclass
class _Frag:
    """Part of the drawing in its own coordinates: x = 0 is its centre line, y = 0 its top."""

    width: int
    height: int
    parts: list[str] = field(default_factory=list)
    ends: bool = False  # every path inside exits: nothing continues below it


@dataclass
class _Lane:
    label: str
    count: int | None
    steps: Sequence[m.Step]


class _Counts:
    """The numbers of one `JourneyStats`, by step id (nothing when there are no stats)."""

    def __init__(self, stats: JourneyStats | None) -> None:
        self.stats = stats
        self.steps: dict[str, StepStats] = {s.step_id: s for s in stats.steps} if stats else {}
        self.messages: dict[str, MessageStats] = (
            {s.step_id: s for s in stats.messages} if stats else {}
        )

    def outcome(self, step_id: str, *names: str, prefix: str | None = None) -> int | None:
        if self.stats is None:
            return None
        outcomes = self.steps[step_id].outcomes if step_id in self.steps else {}
        total = sum(outcomes.get(name, 0) for name in names)
        if prefix is not None:
            total += sum(n for k, n in outcomes.items() if k.startswith(prefix))
        return total


def journey_svg(journey: m.Journey, stats: JourneyStats | None = None) -> str:
    """The journey as an accessible, self-contained SVG; with `stats`, annotated with counts.

    Deterministic: the same journey and stats give the same bytes.
    """
    counts = _Counts(stats)
    body = _stack(
        [_trigger(journey, counts), _sequence(journey.steps, counts), _summary(journey, counts)]
    )
    width, height = body.width + 2 * MARGIN, body.height + 2 * MARGIN
    title = f"Journey {journey.name} ({journey.id})"
    steps = sum(1 for _ in iter_steps(journey.steps, ()))
    desc = f"{steps} steps, drawn top to bottom from the trigger"
    if stats is not None:
        desc += f"; {_n(stats.entered)} entered, {_n(stats.converted)} converted"
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" class="journey-diagram" '
            f'data-journey="{_e(journey.id)}" aria-label="{_e(title)}" '
            f'font-family="system-ui, sans-serif" font-size="12" fill="{TEXT}">',
            f"<title>{_e(title)}</title><desc>{_e(desc)}</desc>",
            f'<g transform="translate({width // 2},{MARGIN})">',
            *body.parts,
            "</g></svg>\n",
        ]
    )


# --- nodes -------------------------------------------------------------------


def _trigger(journey: m.Journey, counts: _Counts) -> _Frag:
    t = journey.trigger
    if t.identify:
        what = "on every identify call"
    elif t.schedule is not None:
        what = f"campaign: {t.campaign_text()}"
    elif t.date is not None:
        what = f"on {t.date_text()}"
    elif t.segment is not None:
        what = f"{'enters' if t.when == 'entered' else 'leaves'} segment {t.segment}"
    else:
        what = f"when {t.event}"
    lines = [_Line(what)]
    if t.where:
        lines.append(_Line(f"where {t.where}", muted=True))
    if journey.entry.if_:
        lines.append(_Line(f"if {journey.entry.if_}", muted=True))
    if counts.stats is not None:
        lines.append(_Line(f"entered {_n(counts.stats.entered)}", strong=True))
        if counts.stats.refused:
            lines.append(_counts_line(_items(counts.stats.refused, "refused: "), muted=True))
    return _box("trigger", f"trigger: {journey.name}", lines, data={"data-node": "trigger"})


def _summary(journey: m.Journey, counts: _Counts) -> _Frag:
    lines: list[_Line] = []
    if journey.goal is not None:
        lines.append(
            _Line(f"goal: {journey.goal.event} within {format_duration(journey.goal.within)}")
        )
    else:
        lines.append(_Line("no goal"))
    if journey.exit_on:
        lines.append(_Line(f"leaves on {', '.join(journey.exit_on)}", muted=True))
    s = counts.stats
    if s is not None:
        if journey.goal is not None or s.converted:
            rate = f" ({_percent(s.conversion_rate)})" if s.conversion_rate is not None else ""
            lines.append(_Line(f"converted {_n(s.converted)}{rate}", strong=True))
            lines.append(_Line(f"revenue {revenue_text(s)}", strong=True))
        if s.finished:
            lines.append(_counts_line(_items(s.finished)))
        if s.exits:
            lines.append(_counts_line(_items(s.exits, "exits: "), muted=True))
    return _box("summary", "goal and exits", lines, data={"data-node": "summary"})


def _step_box(step: m.Step, counts: _Counts) -> _Frag:
    step_id = str(step.id)
    kind = m.step_kind(step) or "step"
    lines = [_Line(describe(step), wrap=True)]
    if counts.stats is not None:
        st = counts.steps.get(step_id)
        reached, waiting = (st.reached, st.waiting_now) if st else (0, 0)
        lines.append(
            _counts_line([f"reached {_n(reached)}", f"waiting now {_n(waiting)}"], strong=True)
        )
        message = counts.messages.get(step_id)
        if message is not None:
            lines.append(
                _counts_line(
                    [
                        f"sent {_n(message.sent)}",
                        f"opened {_n(message.opened)}",
                        f"clicked {_n(message.clicked)}",
                    ]
                )
            )
            if message.not_sent:
                lines.append(_counts_line(_items(message.not_sent, "not sent: "), muted=True))
    return _box(kind, f"{step_id} · {kind}", lines, data={"data-step": step_id})


@dataclass
class _Line:
    text: str
    wrap: bool = False  # the label: up to two lines
    strong: bool = False
    muted: bool = False
    items: list[str] | None = None  # counts: broken between items, never cut


def _counts_line(items: list[str], strong: bool = False, muted: bool = False) -> _Line:
    """Numbers ("sent 280", "opened 110"): broken between items, never cut off."""
    return _Line(" · ".join(items), strong=strong, muted=muted, items=items)


def _box(kind: str, header: str, lines: list[_Line], data: dict[str, str]) -> _Frag:
    """A box: a small header (the step id and kind), its lines, the full text as a tooltip."""
    fill, stroke = FILL.get(kind, FILL["wait"])
    chars = int((BOX_WIDTH - 2 * PAD) / CHAR)
    rows: list[tuple[str, _Line]] = [(_fit(header, chars), _Line(header, muted=True))]
    for line in lines:
        if line.items:
            rows += [(text, line) for text in _pack(line.items, chars)]
        elif line.wrap:
            wrapped = textwrap.wrap(line.text, chars, max_lines=LABEL_LINES, placeholder=" …")
            rows += [(text, line) for text in wrapped or [""]]
        else:
            rows.append((_fit(line.text, chars), line))
    height = 2 * PAD + LINE * len(rows)
    attrs = "".join(f' {k}="{_e(v)}"' for k, v in data.items())
    tooltip = "\n".join([header, *(line.text for line in lines)])
    parts = [
        f'<g class="node {kind}"{attrs}><title>{_e(tooltip)}</title>',
        f'<rect x="{-BOX_WIDTH // 2}" y="0" width="{BOX_WIDTH}" height="{height}" rx="6" '
        f'fill="{fill}" stroke="{stroke}"/>',
    ]
    for i, (text, line) in enumerate(rows):
        y = PAD + LINE * i + 12
        style = ""
        if line.strong:
            style = ' font-weight="600"'
        elif line.muted:
            style = f' fill="{MUTED}" font-size="11"'
        parts.append(f'<text x="0" y="{y}" text-anchor="middle"{style}>{_e(text)}</text>')
    parts.append("</g>")
    return _Frag(BOX_WIDTH, height, parts, ends=kind == "exit")


# --- layout ------------------------------------------------------------------


def _sequence(steps: Sequence[m.Step], counts: _Counts) -> _Frag:
    return _stack([_block(step, counts) for step in steps])


def _stack(frags: list[_Frag]) -> _Frag:
    """Fragments one under the other, joined by arrows."""
    frags = [f for f in frags if f.height]
    if not frags:
        return _Frag(0, 0)
    parts: list[str] = []
    y = 0
    for i, frag in enumerate(frags):
        if i:
            parts += _arrow(0, y, y + GAP)
            y += GAP
        parts.append(_place(frag, 0, y))
        y += frag.height
    return _Frag(max(f.width for f in frags), y, parts, ends=frags[-1].ends)


def _block(step: m.Step, counts: _Counts) -> _Frag:
    """A step's box and, under it, its lanes side by side, joined again below."""
    box = _step_box(step, counts)
    lanes = _lanes(step, counts)
    if not lanes:
        return box
    subs = [_sequence(lane.steps, counts) for lane in lanes]
    widths = [max(LANE_MIN, sub.width) for sub in subs]
    total = sum(widths) + LANE_GAP * (len(lanes) - 1)
    centres, left = [], -total // 2
    for w in widths:
        centres.append(left + w // 2)
        left += w + LANE_GAP
    fork = box.height + 12
    top = fork + LANE_HEAD
    bottom = top + max(sub.height for sub in subs)
    join = bottom + 14
    parts = [*box.parts, _line(0, box.height, 0, fork)]
    parts.append(_line(centres[0], fork, centres[-1], fork))
    going_on = []
    for lane, sub, cx, w in zip(lanes, subs, centres, widths, strict=True):
        if sub.height:
            parts += _arrow(cx, fork, top)
            parts.append(_place(sub, cx, top))
        if not sub.ends:
            parts.append(_line(cx, top + sub.height if sub.height else fork, cx, join))
            going_on.append(cx)
        parts += _edge_label(lane, cx, fork + 18, w)
    if going_on:
        xs = [*going_on, 0]  # the way on continues from the centre line
        parts.append(_line(min(xs), join, max(xs), join))
    return _Frag(max(BOX_WIDTH, total), join, parts, ends=not going_on)


def _lanes(step: m.Step, counts: _Counts) -> list[_Lane]:
    """Where a step leads, with what took each way (its `StepStats.outcomes`)."""
    step_id = str(step.id)
    match step:
        case m.WaitForStep():
            spec = step.wait_for
            if spec.message is not None:
                came = _Lane(spec.engagement, counts.outcome(step_id, prefix="engaged:"), step.then)
            else:
                events = " or ".join(spec.events)
                came = _Lane(events, counts.outcome(step_id, prefix="event:"), step.then)
            timeout = f"timeout ({format_duration(spec.timeout)})"
            return [came, _Lane(timeout, counts.outcome(step_id, "timeout"), step.on_timeout)]
        case m.BranchStep():
            cases = [
                _Lane(f"if {case.if_}", counts.outcome(step_id, f"case {i}"), case.then)
                for i, case in enumerate(step.branch, start=1)
            ]
            return [*cases, _Lane("else", counts.outcome(step_id, "else"), step.else_)]
        case m.SplitStep():
            total = sum(v.weight for v in step.split)
            return [
                _Lane(
                    f"{v.variant} {_percent(v.weight / total)}",
                    counts.outcome(step_id, v.variant),
                    v.then,
                )
                for v in step.split
            ]
        case m.SendStep() if step.on_failure:
            return [
                _Lane("sent", counts.outcome(step_id, "sent"), []),
                _Lane("not sent", counts.outcome(step_id, *NOT_SENT), step.on_failure),
            ]
        case m.ActionStep() if step.on_failure:
            return [_Lane("done", None, []), _Lane("failed", None, step.on_failure)]
    return []


def _edge_label(lane: _Lane, cx: int, y: int, width: int) -> list[str]:
    """What took a lane and how many: on a white halo over the lane's line."""
    count = f" · {_n(lane.count)}" if lane.count is not None else ""
    chars = max(8, int((width - 8) / CHAR))
    text = _fit(lane.label, chars - len(count)) + count
    full = lane.label + count
    return [
        f'<g class="edge-label" data-lane="{_e(lane.label)}"><title>{_e(full)}</title>'
        f'<text x="{cx}" y="{y}" text-anchor="middle" font-size="11" font-weight="600" '
        f'stroke="#ffffff" stroke-width="4" paint-order="stroke">{_e(text)}</text></g>'
    ]


def _place(frag: _Frag, x: int, y: int) -> str:
    return f'<g transform="translate({x},{y})">{"".join(frag.parts)}</g>'


def _line(x1: int, y1: int, x2: int, y2: int) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{EDGE}" stroke-width="1.5"/>'


def _arrow(x: int, y1: int, y2: int) -> list[str]:
    # A drawn head, not a <marker>: marker ids would clash with two diagrams on one page.
    head = f"{x - 4},{y2 - 7} {x + 4},{y2 - 7} {x},{y2}"
    return [_line(x, y1, x, y2 - 6), f'<polygon points="{head}" fill="{EDGE}"/>']


# --- words -------------------------------------------------------------------


def _e(text: str) -> str:
    return escape(text, quote=True)


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(1, chars - 1)].rstrip() + "…"


def _pack(items: list[str], chars: int) -> list[str]:
    rows: list[str] = []
    for item in items:
        if rows and len(rows[-1]) + 3 + len(item) <= chars:
            rows[-1] += " · " + item
        else:
            rows.append(item)
    return rows


def _n(count: int | None) -> str:
    return f"{count or 0:,}"


def _percent(ratio: float) -> str:
    return f"{round(ratio * 100, 1):g} %"


def _items(counts: dict[str, int], prefix: str = "") -> list[str]:
    items = [f"{k} {_n(n)}" for k, n in counts.items()]
    return [prefix + items[0], *items[1:]] if items else []
