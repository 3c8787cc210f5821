"""`TransactionalMessageWorkflow`: one message asked for over the API, sent now.

Order confirmations and password resets go through the same activities as a journey's
send: `prepare_message` (ledger row, consent for transactional mail, the suppression
list, rendering) on the journeys queue, then `deliver_message` on the channel's queue,
whose rate limit is the provider's quota. The API stored the ledger row before this
workflow existed, so its id, and the status URL built on it, are known at once;
transactional messages skip marketing rules (frequency caps, quiet hours, marketing
opt-outs) but never a channel opt-out or a suppressed address.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from . import types as t
    from .kit import BOOKKEEPING, PREPARING, deliver_prepared

STEP = "send"


@workflow.defn(name=t.MESSAGE_WORKFLOW)
class TransactionalMessageWorkflow:
    @workflow.run
    async def run(self, message: t.MessageInput) -> t.SendResult:
        request = t.SendRequest(
            workflow_id=workflow.info().workflow_id,
            entry_seq=0,
            step_id=STEP,
            journey_id="",
            contact_id=message.contact_id,
            channel=message.channel,
            template=message.template,
            category="transactional",
            trigger_event_id=message.request_event_id,
            now=workflow.now().isoformat(),
            to=message.to,
        )
        try:
            prepared = await workflow.execute_activity(
                t.PREPARE_MESSAGE, request, result_type=t.SendResult, **PREPARING
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            # The store stayed down through every retry: say so on the status URL.
            await self._give_up(t.GiveUpRequest(message.message_id, f"not prepared: {exc.cause}"))
            return t.SendResult(message.message_id, "failed", error=str(exc.cause))
        if prepared.status != "ready" or not prepared.message_id or not prepared.channel:
            return prepared
        return await deliver_prepared(request, prepared, self._give_up)

    async def _give_up(self, request: t.GiveUpRequest) -> None:
        await workflow.execute_local_activity(t.GIVE_UP_MESSAGE, request, **BOOKKEEPING)
