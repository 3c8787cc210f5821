"""A journey written by hand in Python instead of YAML.

It gets everything a YAML journey gets from `JourneyBase`: deduplicated event
and engagement signals, exit-on and goal handling, idempotent sends through
the configured channels, contact actions and run records in the store.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.workflows.kit import JourneyBase
    from orchestrator.workflows.types import JourneyInput


@workflow.defn(name="VipWelcome")
class VipWelcome(JourneyBase):
    """Welcome a new VIP; if they haven't ordered within 3 days, nudge them once."""

    journey_id = "vip_welcome"
    trigger_event = "VIP Joined"
    listens = ("Order Completed",)
    exit_on = ("Account Deleted",)
    goal_event = "Order Completed"
    goal_within = 14 * 86400

    @workflow.run
    async def run(self, input: JourneyInput) -> str:
        async def body() -> None:
            await self.at_step("welcome")
            await self.send("welcome", "email", "vip_welcome")
            order = await self.wait_for_event("Order Completed", timeout=3 * 86400)
            if order is not None:
                await self.at_step("mark_vip_buyer")
                await self.update_contact("mark_vip_buyer", set={"vip_buyer": True})
                return
            await self.at_step("nudge")
            if await self.check('contact.traits.tier == "gold"'):
                await self.send("nudge", ["push", "email"], "vip_nudge")
            else:
                await self.send("nudge", "email", "vip_nudge")

        return await self.run_journey(input.contact_id, input.trigger, body)
