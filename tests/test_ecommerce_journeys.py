"""E-commerce v2 events driving journeys: a goal that matches the cart that started the
run, and an anonymous shopper who signs in at checkout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from harness import Bench, tiny_templates, write_journey

CART_GOAL = """\
id: cart_goal
name: Cart reminder, converted by the order of that cart
trigger: { event: Product Added }
exit_on: [Order Completed]
goal:
  event: Order Completed
  within: 7d
  where: event.properties.cart_id == trigger.properties.cart_id
steps:
  - wait: 1d
  - send: { id: reminder, channel: email, template: nudge }
  - wait: 3d
"""


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    write_journey(tmp_path / "journeys", "cart_goal", CART_GOAL)
    bench = Bench(
        ts_env,
        sqlite_engine,
        tmp_path / "journeys",
        templates_dir=tiny_templates(tmp_path / "templates", ("nudge",)),
    )
    bench.deploy()
    yield bench


async def test_only_the_order_of_the_cart_that_started_the_run_is_a_conversion(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com")
        await bench.identify("bob", email="bob@example.com")
        for user in ("ann", "bob"):
            await bench.track(user, "Product Added", cart_id=f"{user}-cart", price=30)
        await ts_env.sleep(timedelta(hours=2))
        # Ann buys something else (another cart): she leaves, but it is no conversion.
        await bench.track("ann", "Order Completed", order_id="o1", cart_id="other", revenue=9.0)
        await bench.track("bob", "Order Completed", order_id="o2", cart_id="bob-cart", revenue=30.0)
        assert await bench.result("cart_goal", "ann") == "exited"
        assert await bench.result("cart_goal", "bob") == "exited"
    runs = {run.contact_id: run for run in bench.runs()}
    assert (runs["ann"].converted_at, runs["ann"].revenue) == (None, None)
    assert runs["bob"].converted_at is not None and runs["bob"].revenue == 30.0


async def test_an_anonymous_cart_follows_the_shopper_who_signs_in_at_checkout(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.track_anonymous("anon-7", "Product Added", cart_id="c7", price=12)
        # At checkout she signs in: the storefront identifies her with both ids.
        await bench.identify("cat", email="cat@example.com", anonymousId="anon-7")
        await ts_env.sleep(timedelta(hours=25))
        # The reminder of the run started anonymously goes to the identified contact.
        [reminder] = bench.messages()
        assert (reminder.contact_id, reminder.recipient) == ("cat", "cat@example.com")
        await bench.track("cat", "Order Completed", order_id="o7", cart_id="c7", revenue=12.0)
        assert await bench.result("cart_goal", "anon-7") == "exited"
    [run] = bench.runs()
    assert run.contact_id == "cat" and run.workflow_id == "journey:cart_goal:anon-7"
    assert run.converted_at is not None and run.revenue == 12.0
