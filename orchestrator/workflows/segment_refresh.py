"""`SegmentRefreshWorkflow`: one scheduled re-evaluation of one segment.

A Temporal Schedule (`segment:<name>`, see orchestrator/segments/schedules.py)
starts it; the workflow only fixes the evaluation time with `workflow.now()`
(the same on every replay and activity retry) and hands the work to the
`refresh_segment` activity, which runs the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

REFRESH_SEGMENT = "refresh_segment"
SEGMENT_REFRESH_WORKFLOW = "SegmentRefreshWorkflow"


@dataclass
class SegmentRefreshInput:
    name: str


@dataclass
class RefreshSegmentRequest:
    name: str
    now: str  # ISO 8601, the workflow's time: windows end here


@dataclass
class RefreshSegmentResult:
    entered: int = 0
    exited: int = 0
    skipped: str | None = None  # why nothing was evaluated (segment removed meanwhile)


@workflow.defn(name=SEGMENT_REFRESH_WORKFLOW)
class SegmentRefreshWorkflow:
    @workflow.run
    async def run(self, input: SegmentRefreshInput) -> RefreshSegmentResult:
        return await workflow.execute_activity(
            REFRESH_SEGMENT,
            RefreshSegmentRequest(name=input.name, now=workflow.now().isoformat()),
            result_type=RefreshSegmentResult,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10),
        )
