"""The baseline's workflow: does nothing but wait 24 hours (and accepts a signal).

In its own importable module (not `__main__`) so the workflow sandbox can load it.
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
