"""Workflow code as it was before a change, for upgrade tests. Kept free of test-only
imports, because the workflow sandbox re-imports the module that defines a workflow."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import orchestrator.workflows.types as t
    from orchestrator.workflows.journey import JourneyWorkflow
    from orchestrator.workflows.kit import SENDING


def marketing_request(run: JourneyWorkflow, step_id: str, channel: Any, template: str) -> Any:
    """The SendRequest a run makes for a plain marketing send (no policy, no sender)."""
    return t.SendRequest(
        run.workflow_id,
        run.state.entry_seq,
        step_id,
        run.journey_id,
        run.contact_id,
        channel,
        template,
        "marketing",
        run.trigger_event_id,
    )


@workflow.defn(name="JourneyWorkflow")
class BeforeChannelQueues(JourneyWorkflow):
    """The send as it was before channel queues: one `send_message` activity, no patch."""

    @workflow.run
    async def run(self, input: t.JourneyInput) -> str:
        return await super().run(input)

    async def send(self, step_id: str, channel: Any, template: str, *args: Any) -> Any:
        request = marketing_request(self, step_id, channel, template)
        result = await self._activity_send(t.SEND_MESSAGE, request, SENDING)
        if result.message_id:
            self.state.sent[step_id] = result.message_id
        return result
