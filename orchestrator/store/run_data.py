"""Values a run's steps keep for later steps: the `journey.*` of conditions and templates.

A coupon code, the points just earned, a support ticket id, the answer to a survey:
each lands in `journey_runs.data` of the run (workflow id and entry) that produced it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from .tables import JourneyRun

MAX_DATA_BYTES = 64 * 1024  # what one run may keep in all: these are notes, not documents


class RunDataTooLarge(ValueError):
    pass


def find_run(session: Session, workflow_id: str, entry_seq: int) -> JourneyRun | None:
    query = select(JourneyRun).where(
        JourneyRun.workflow_id == workflow_id, JourneyRun.entry_seq == entry_seq
    )
    return session.exec(query).first()


def run_data(session: Session, workflow_id: str, entry_seq: int) -> dict[str, Any]:
    run = find_run(session, workflow_id, entry_seq) if workflow_id else None
    return dict(run.data or {}) if run is not None else {}


def save_run_data(
    session: Session, workflow_id: str, entry_seq: int, values: dict[str, Any]
) -> None:
    """Merge `values` into the run's data (a later step's value replaces an earlier one)."""
    run = find_run(session, workflow_id, entry_seq)
    if run is None:
        return  # the run record is gone (erased contact): nothing to keep
    data = {**(run.data or {}), **values}
    size = len(json.dumps(data, default=str))
    if size > MAX_DATA_BYTES:
        raise RunDataTooLarge(
            f"the run would keep {size} bytes of data (limit {MAX_DATA_BYTES}): "
            f"store less (keys {sorted(values)})"
        )
    run.data = data
