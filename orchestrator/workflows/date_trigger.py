"""`DateTriggerWorkflow`: waits for one contact's date of one journey, then starts the run.

One per (journey, contact), workflow id `date:{journey}:{contact}`, started by the router
when an identify of the contact arrives and, for contacts known before the journey was
deployed, by the deploy's planning events. It asks `plan_date` when the date is next due
(the contact's trait, zone and the journey's active version, all read from the store),
sleeps on a durable timer until then, and at that moment asks `fire_date` to check the
date still holds and to store the `Date Reached` event the router starts the journey's
run with: the run then is an ordinary one, on the journey's current version.

A `recheck` signal (the router sends one with each identify of the contact) plans again,
so a trait changed after the plan moves the wait; a trait removed, a contact erased or a
journey retired ends it. `every: year` plans the next year after each firing; the event's
key (`date:{journey}:{contact}:{day}`) keeps a repeated firing from entering twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import orchestrator.workflows.types as t

DATE_TRIGGER_WORKFLOW = "DateTriggerWorkflow"
PLAN_DATE = "plan_date"
FIRE_DATE = "fire_date"
OPTIONS = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=5)),
}


def date_workflow_id(journey_id: str, contact_id: str) -> str:
    return f"date:{journey_id}:{contact_id}"


PLANS_PER_RUN = 50  # then continue as new: a contact whose traits change daily stays small


@workflow.defn(name=DATE_TRIGGER_WORKFLOW)
class DateTriggerWorkflow:
    def __init__(self) -> None:
        self._recheck = False

    @workflow.signal
    def recheck(self) -> None:
        self._recheck = True

    @workflow.run
    async def run(self, request: t.DateTriggerInput) -> str:
        for _ in range(PLANS_PER_RUN):
            self._recheck = False
            plan: t.DatePlan = await workflow.execute_activity(
                PLAN_DATE,
                t.DatePlanRequest(
                    request.journey_id, request.contact_id, workflow.now().isoformat()
                ),
                result_type=t.DatePlan,
                **OPTIONS,
            )
            if plan.at is None:
                return plan.reason or "no date"
            due = datetime.fromisoformat(plan.at)
            wait = max((due - workflow.now()).total_seconds(), 0.0)
            try:
                await workflow.wait_condition(lambda: self._recheck, timeout=wait)
                continue  # the contact changed: plan again
            except TimeoutError:
                pass
            fired: t.DatePlan = await workflow.execute_activity(
                FIRE_DATE,
                t.DateFireRequest(request.journey_id, request.contact_id, plan.at, plan.day or ""),
                result_type=t.DatePlan,
                **OPTIONS,
            )
            if fired.reason == "once":
                return "fired once"
            await workflow.sleep(timedelta(seconds=1))  # past the moment: plan the next one
        workflow.continue_as_new(request)
