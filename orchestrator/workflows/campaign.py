"""`CampaignWorkflow`: one time a campaign is due, from its schedule to its last member.

Started by the campaign's Temporal Schedule (`campaign:{journey}`). `open_campaign`
records the dispatch and plans its waves (one; or with `local_time`, one per moment the
schedule's local time comes in the members' zones); the workflow sleeps on a durable
timer until each wave and asks `release_campaign` for chunk after chunk of its members,
each chunk their `Campaign Due` events stored by SQL. The activity says when to come
back: at the throttle's pace, once the router has caught up with the chunks before
(bounded fan-out), or later when the campaign is paused; a cancelled campaign ends here.
Long releases continue as new with the plan and the cursor.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    import orchestrator.workflows.types as t

CAMPAIGN_WORKFLOW = "CampaignWorkflow"
OPEN_CAMPAIGN = "open_campaign"
RELEASE_CAMPAIGN = "release_campaign"
CLOSE_CAMPAIGN = "close_campaign"
OPTIONS = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1)),
}
# Opening refreshes the segment: as long as its scheduled refresh may take.
OPEN_OPTIONS = {**OPTIONS, "start_to_close_timeout": timedelta(minutes=30)}
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


def campaign_workflow_id(journey_id: str) -> str:
    """The Schedule's workflow id; Temporal appends each firing's time to it."""
    return f"campaign:{journey_id}"


@workflow.defn(name=CAMPAIGN_WORKFLOW)
class CampaignWorkflow:
    @workflow.run
    async def run(self, request: t.CampaignInput) -> str:
        plan = request.plan
        if plan is None:
            # The moment the Schedule meant, not when a busy worker got to it.
            due = workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()
            plan = await workflow.execute_activity(
                OPEN_CAMPAIGN,
                t.OpenCampaignRequest(request.journey_id, due.isoformat()),
                result_type=t.CampaignPlan,
                **OPEN_OPTIONS,
            )
        if plan.dispatch_id is None:
            return plan.reason or "nothing to send"
        chunks = 0
        cursor = request.cursor
        for index in range(request.wave, len(plan.waves)):
            wave = plan.waves[index]
            wait = (datetime.fromisoformat(wave.at) - workflow.now()).total_seconds()
            if wait > 0:
                await workflow.sleep(timedelta(seconds=wait))
            while True:
                released: t.ReleaseResult = await workflow.execute_activity(
                    RELEASE_CAMPAIGN,
                    t.ReleaseRequest(plan.dispatch_id, wave, cursor, index),
                    result_type=t.ReleaseResult,
                    **OPTIONS,
                )
                if released.status == "cancelled":
                    return "cancelled"
                if released.status == "released":
                    cursor = released.cursor
                    if released.done:
                        break
                if released.wait > 0:
                    await workflow.sleep(timedelta(seconds=released.wait))
                chunks += 1  # a slow throttle makes many: keep each run's history small
                if chunks >= request.chunks_per_run:
                    workflow.continue_as_new(
                        t.CampaignInput(
                            request.journey_id, plan, index, cursor, request.chunks_per_run
                        )
                    )
            cursor = None
        await workflow.execute_activity(CLOSE_CAMPAIGN, plan.dispatch_id, **OPTIONS)
        return f"sent to {len(plan.waves)} wave(s)"
