"""The shape every benchmark reports in, so `python -m benchmarks` can put them in one table.

A benchmark script run with `--json FILE` writes one `Report`: its figures, each our
number beside the bare-Temporal (or bare-library) baseline measured in the same run,
and the settings it ran with. The suite (`benchmarks/__main__.py`) reads these files;
it never recomputes a figure.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured quantity: ours, the baseline beside it, and the target if there is one.

    `better` says which way is good ("higher" for rates, "lower" for latencies and
    bytes). The ratio is always oriented so that 1.0 means "as good as the baseline"
    and below 1.0 means worse: ours / baseline for rates, baseline / ours otherwise.
    `target` is a sentence ("ratio >= 0.9", "p99 <= 200 ms"); `met` is whether this run
    met it (None when the figure has no target, or in a quick run whose size cannot
    say).
    """

    measure: str
    ours: float
    unit: str
    baseline: float | None = None
    better: str = "higher"
    target: str | None = None
    met: bool | None = None
    note: str | None = None

    @property
    def ratio(self) -> float | None:
        """None when either side is missing or not positive: no ratio of a negative
        latency (a clock artefact) or of zero can mean "as good as"."""
        if self.baseline is None or not _finite(self.ours) or not _finite(self.baseline):
            return None
        if self.ours <= 0 or self.baseline <= 0:
            return None
        if self.better == "higher":
            return self.ours / self.baseline
        return self.baseline / self.ours

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class Report:
    """What one benchmark script measured in one run."""

    benchmark: str  # e.g. "events -> journey starts"
    figures: list[Figure] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def as_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figures": [f.as_json() for f in self.figures],
            "settings": self.settings,
            "notes": self.notes,
        }

    def write(self, path: str | Path | None) -> None:
        """Write the report to `path` (no-op for None), as `--json FILE` asks."""
        if path is None:
            return
        Path(path).write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")


def load(path: str | Path) -> Report:
    data = json.loads(Path(path).read_text())
    figures = [
        Figure(**{k: v for k, v in f.items() if k != "ratio"}) for f in data.get("figures", [])
    ]
    return Report(data["benchmark"], figures, data.get("settings", {}), data.get("notes", []))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def number(value: float | None, unit: str = "") -> str:
    """A figure as a table shows it: 3 significant digits, the unit after."""
    if not _finite(value):
        return "-"
    assert value is not None
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def summary(report: Report, title: str, measure: int = 58, unit: int = 6, places: int = 1) -> str:
    """A report as the lines a benchmark prints last: each figure beside its baseline,
    the ratio, and the target's verdict."""
    lines = ["", f"{title}:"]
    for f in report.figures:
        base = "-" if f.baseline is None else f"{f.baseline:,.{places}f}"
        ratio = "" if f.ratio is None else f"  ratio {f.ratio:.2f}"
        line = (
            f"  {f.measure:<{measure}} {f.ours:>10,.{places}f} {f.unit:<{unit}} "
            f"baseline {base:>{8 + places}}{ratio}"
        )
        if f.target:
            verdict = {True: "MET", False: "NOT MET", None: "not judged"}[f.met]
            line += f"   target {f.target}: {verdict}"
        lines.append(line)
    lines += [f"  {note}" for note in report.notes]
    return "\n".join(lines)
