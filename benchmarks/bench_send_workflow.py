"""The event -> provider baseline's workflow: runs one activity that sends an email.

In its own importable module (not `__main__`) so the workflow sandbox can load it.
The activity (`SEND_ACTIVITY`) is registered by `event_to_provider.py`: it posts the
email through the bare `sendgrid` SDK.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

SEND_ACTIVITY = "bench_send_email"


@workflow.defn(name="BenchSendWorkflow")
class BenchSendWorkflow:
    def __init__(self) -> None:
        self.signals: list[Any] = []

    @workflow.signal
    def event(self, signal: dict[str, Any]) -> None:
        self.signals.append(signal)

    @workflow.run
    async def run(self, payload: dict[str, Any]) -> None:
        await workflow.execute_activity(
            SEND_ACTIVITY, payload, start_to_close_timeout=timedelta(seconds=30)
        )
