"""The baselines' workflows: bare Temporal, doing no more than the measurement needs.

`BenchWaitWorkflow` (ingest_throughput.py) waits 24 hours and accepts a signal;
`BenchSignalWorkflow` (engagement_signals.py) waits for one signal, then ends.
In their own importable module (not `__main__`) so the workflow sandbox can load them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import bench_probe


@workflow.defn(name="BenchWaitWorkflow")
class BenchWaitWorkflow:
    def __init__(self) -> None:
        self.signals: list[Any] = []

    @workflow.signal
    def event(self, signal: dict[str, Any]) -> None:
        self.signals.append(signal)

    @workflow.run
    async def run(self, payload: dict[str, Any]) -> None:
        if not workflow.unsafe.is_replaying():
            bench_probe.hit(workflow.info().workflow_id)
        await workflow.sleep(timedelta(hours=24))


@workflow.defn(name="BenchSignalWorkflow")
class BenchSignalWorkflow:
    """Waits (up to 5 days) for its `engagement` signal, then ends.

    Probe ids: `waiting:<workflow id>` once its first workflow task ran,
    `handled:<workflow id>` once the run went on after the signal (never in replay).
    """

    def __init__(self) -> None:
        self.handled = False

    @workflow.signal
    def engagement(self, signal: dict[str, Any]) -> None:
        self.handled = True

    @workflow.run
    async def run(self, payload: dict[str, Any]) -> None:
        wid = workflow.info().workflow_id
        if not workflow.unsafe.is_replaying():
            bench_probe.hit(f"waiting:{wid}")
        await workflow.wait_condition(lambda: self.handled, timeout=timedelta(days=5))
        if not workflow.unsafe.is_replaying():
            bench_probe.hit(f"handled:{wid}")
