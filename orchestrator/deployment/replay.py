"""The proof a deploy breaks no run in flight: replay their recorded histories against
the workflow code this process runs.

A journey edit alone cannot break a run (each run carries its version's spec); a
change to the workflow code shipped with it can, when it makes a run's next replay
take a different path (a non-determinism error, the run stuck). Replaying the live
histories of a sample of runs in flight, before the new code meets them, finds that.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from ..store.db import session_scope
from ..store.tables import JourneyRun
from ..workflows.journey import JourneyWorkflow

DEFAULT_SAMPLE = 50


@dataclass
class ReplayReport:
    """`checked` histories replayed, `broke` those that did not (workflow id -> why),
    `missing` runs the store has as active that Temporal does not know (any more)."""

    in_flight: int = 0
    checked: int = 0
    broke: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unavailable: str | None = None  # why Temporal could not be asked
    skipped: bool = False  # not asked to (`--replay 0`)

    @property
    def proven(self) -> bool:
        return self.unavailable is None and not self.skipped and not self.broke

    def sentence(self) -> str:
        if self.skipped:
            return "replay: skipped (--replay 0)"
        if self.unavailable is not None:
            return f"replay not done: {self.unavailable}"
        if not self.in_flight:
            return "replay: no run in flight, nothing to break"
        sample = "" if self.checked >= self.in_flight else f" (a sample of {self.in_flight})"
        text = (
            f"replay: {self.checked} histories of runs in flight{sample} replayed against "
            f"this code, {len(self.broke)} broke"
        )
        if self.missing:
            text += f"; {len(self.missing)} not found in Temporal (finished or removed)"
        return text


def sample_runs(engine: Engine, journey_ids: Iterable[str], limit: int) -> tuple[int, list[str]]:
    """How many runs of these journeys are in flight, and the workflow ids of the
    newest `limit` of them (the newest have the most history still ahead)."""
    ids = sorted(set(journey_ids))
    with session_scope(engine) as session:
        rows = session.exec(
            select(JourneyRun.workflow_id)
            .where(col(JourneyRun.journey_id).in_(ids), JourneyRun.status == "active")
            .order_by(col(JourneyRun.id).desc())
        ).all()
    unique = list(dict.fromkeys(rows))
    return len(unique), unique[:limit]


async def replay_in_flight(
    client: Client,
    engine: Engine,
    journey_ids: Iterable[str],
    limit: int = DEFAULT_SAMPLE,
    workflows: Sequence[type] = (JourneyWorkflow,),
) -> ReplayReport:
    """Fetch and replay the histories of up to `limit` runs in flight against
    `workflows` (the code this process runs)."""
    total, workflow_ids = sample_runs(engine, journey_ids, limit)
    report = ReplayReport(in_flight=total)
    replayer = Replayer(workflows=list(workflows))
    for workflow_id in workflow_ids:
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                report.missing.append(workflow_id)
                continue
            raise
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        report.checked += 1
        if result.replay_failure is not None:
            report.broke[workflow_id] = _why(result.replay_failure)
    return report


def _why(failure: BaseException) -> str:
    """The core SDK's own message, without the debug dump of its failure structure."""
    text = str(failure)
    inner = re.search(r'message: "([^"]+)"', text)
    return f"{type(failure).__name__}: {inner[1] if inner else text}"


async def connect_and_replay(
    connect: Callable[[], Awaitable[Client]],
    engine: Engine,
    journey_ids: Iterable[str],
    limit: int,
    timeout: float = 15,
) -> ReplayReport:
    """`replay_in_flight` through a client from `connect()`; an unreachable Temporal is
    reported, not raised: the rest of a diff stands without it."""
    ids = list(journey_ids)
    total, _ = sample_runs(engine, ids, 0)
    if limit <= 0:
        return ReplayReport(in_flight=total, skipped=True)
    if not total:
        return ReplayReport()
    try:
        client = await asyncio.wait_for(connect(), timeout)
    except (RuntimeError, OSError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        return ReplayReport(in_flight=total, unavailable=f"cannot reach Temporal ({why})")
    try:
        return await replay_in_flight(client, engine, ids, limit)
    except RPCError as exc:
        return ReplayReport(in_flight=total, unavailable=f"Temporal refused ({exc.message})")
