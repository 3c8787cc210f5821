"""A simulation's report kept beside its store, so the dashboard can show the last one.

`journeys simulate` writes `report.json` (the `--json` report) and `journeys.json` (the
journeys as simulated, to draw them) into the simulation's folder; the dashboard's
journey page links the newest report that simulated that journey, drawn by
`html_report.render_html` as `--html` would have written it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..dsl.models import Journey
from ..services.private_files import write_private
from . import SIMULATIONS, simulation_folder
from .html_report import render_html

REPORT = "report.json"
MODELS = "journeys.json"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}")


def save_report(folder: Path, report: dict[str, Any], journeys: dict[str, Journey]) -> None:
    write_private(folder / REPORT, json.dumps(report, ensure_ascii=False))
    specs = {jid: j.model_dump(mode="json", by_alias=True) for jid, j in journeys.items()}
    write_private(folder / MODELS, json.dumps(specs, ensure_ascii=False))


def latest_simulation(data_dir: Path, journey_id: str) -> dict[str, Any] | None:
    """The newest saved report that simulated `journey_id`: id, when, contacts, days, ok."""
    root = data_dir / SIMULATIONS
    if not root.is_dir():
        return None
    reports = sorted(
        (p for p in root.glob(f"*/{REPORT}") if p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in reports:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        sim = report.get("simulation") or {}
        if journey_id in (sim.get("journeys") or []):
            return {
                "id": path.parent.name,
                "at": datetime.fromtimestamp(path.stat().st_mtime, UTC),
                "contacts": sim.get("contacts", 0),
                "days": sim.get("days", 0),
                "ok": bool(report.get("ok")),
                "orders": report.get("orders") or {},
            }
    return None


def simulation_page(data_dir: Path, simulation_id: str) -> str | None:
    """The report as a page, or None for an unknown (or malformed) id."""
    if not _ID.fullmatch(simulation_id) or ".." in simulation_id:
        return None
    folder = simulation_folder(data_dir, simulation_id)
    try:
        report = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    models: dict[str, Journey] = {}
    try:
        specs = json.loads((folder / MODELS).read_text(encoding="utf-8"))
        models = {jid: Journey.model_validate(spec) for jid, spec in specs.items()}
    except (OSError, ValueError):
        pass  # the page without its diagrams
    return render_html(report, models)


def with_back_link(html: str, href: str, text: str) -> str:
    """The report as the dashboard serves it: a way back at its top."""
    link = f'<p><a href="{href}">← {text}</a></p>'
    return html.replace("<body>", "<body>" + link, 1)
