"""Charts drawn on the server as SVG: a sparkline of entries per day and the funnel bars.

No charting library, no script: the numbers are already computed by the reporting model,
an SVG of a few dozen elements draws them in every browser, prints, works offline and
under a strict Content-Security-Policy (no inline styles or scripts), and each chart
carries its numbers as text (`<title>`, `aria-label`) for screen readers and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape


def sparkline(values: list[int], label: str, width: int = 120, height: int = 24) -> Markup:
    """A line of `values` (oldest first) with the last point marked; `label` says it in
    words ("entries per day: 3, 0, 5")."""
    if not values:
        return Markup("")
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    points = [
        (round(i * step, 1), round(height - 2 - (v / top) * (height - 4), 1))
        for i, v in enumerate(values)
    ]
    path = " ".join(f"{x},{y}" for x, y in points)
    last_x, last_y = points[-1]
    return Markup(
        f'<svg class="spark" role="img" aria-label="{escape(label)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(label)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2" fill="currentColor"/></svg>'
    )


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    note: str = ""  # "42 % of entered"


def funnel(bars: list[Bar], title: str, width: int = 640) -> Markup:
    """Horizontal bars, each as long as its count against the first (the entrants)."""
    if not bars:
        return Markup("")
    row, label_w, gap = 28, 230, 8
    height = row * len(bars) + gap
    top = max(bars[0].count, max(b.count for b in bars), 1)
    bar_w = width - label_w - 150
    parts = [
        f'<svg class="funnel" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
    ]
    for i, bar in enumerate(bars):
        y = gap + i * row
        length = max(round(bar_w * bar.count / top), 1 if bar.count else 0)
        text = f"{bar.count:,}" + (f" · {bar.note}" if bar.note else "")
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="fl">'
            f"{escape(_fit(bar.label, 32))}</text>"
            f'<rect x="{label_w}" y="{y}" width="{length}" height="20" rx="2" class="fb"/>'
            f'<text x="{label_w + length + 6}" y="{y + 15}" class="fn">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"
