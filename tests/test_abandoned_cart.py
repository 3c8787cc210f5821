"""The reference journey, `journeys/abandoned_cart.yaml`, on the time-skipping server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from harness import Bench, save_histories, shipped_journeys

from orchestrator.services.links import MessageLinks


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, request, tmp_path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    bench = Bench(ts_env, sqlite_engine, shipped_journeys(tmp_path / "journeys", "abandoned_cart"))
    bench.deploy()
    yield bench
    await save_histories(bench, request.node.name)


async def test_bought_within_a_day_gets_no_message(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com", first_name="Ann")
        await bench.track("ann", "Product Added", name="Red shoes", price=50)
        await ts_env.sleep(timedelta(hours=3))
        await bench.track("ann", "Order Completed", order_id="o1", revenue=50.0)
        assert await bench.result("abandoned_cart", "ann") == "exited"
    assert bench.messages("ann") == []
    [run] = bench.runs("ann")
    assert run.status == "exited"
    assert run.exit_reason == "event: Order Completed"
    assert run.converted_at is not None and run.revenue == 50.0


async def test_not_bought_and_email_opened_gets_email_only(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify("bob", email="bob@example.com", first_name="Bob")
        await bench.track("bob", "Product Added", name="Blue hat", price=20)
        await ts_env.sleep(timedelta(hours=23))
        assert bench.messages("bob") == []  # nothing before 24 h
        await ts_env.sleep(timedelta(hours=2))
        [email] = bench.messages("bob")
        assert (email.channel, email.status, email.recipient) == (
            "email",
            "sent",
            "bob@example.com",
        )
        assert email.content["subject"] == "Bob, you left something in your cart"
        assert "Blue hat" in email.content["text"]
        await bench.track("bob", "Email Opened", message_id=email.id)
        assert await bench.result("abandoned_cart", "bob") == "completed"
    assert [m.channel for m in bench.messages("bob")] == ["email"]
    assert bench.messages("bob")[0].status == "opened"
    [run] = bench.runs("bob")
    assert (run.status, run.converted_at) == ("completed", None)


async def test_not_bought_not_opened_gets_email_then_push_two_days_later(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify(
            "cy", email="cy@example.com", first_name="Cy", context={"device": {"token": "tok-1"}}
        )
        await bench.track("cy", "Product Added", name="Green bag", price=80)
        await ts_env.sleep(timedelta(hours=25))
        assert [m.channel for m in bench.messages("cy")] == ["email"]
        await ts_env.sleep(timedelta(hours=46))
        assert [m.channel for m in bench.messages("cy")] == ["email"]  # 2 days not yet over
        await ts_env.sleep(timedelta(hours=3))
        assert [m.channel for m in bench.messages("cy")] == ["email", "push"]
        assert await bench.result("abandoned_cart", "cy") == "completed"
    push = bench.messages("cy")[1]
    assert push.recipient == "tok-1"
    assert push.content == {
        "title": "Your cart is waiting",
        "body": "Green bag is still in your cart. Tap to finish your order.",
        "image": "https://www.example.com/static/email/fernwood-logo.png",  # no product image
        # A tap goes through our click redirect (link 0 of the message), which leads to...
        "link": MessageLinks.from_settings(bench.settings).click_url(push.id, 0),
        "links": ["https://www.example.com"],  # ...the shop: the storefront sent no cart_url
    }
    assert "--- push to tok-1" in bench.console.getvalue()
    [run] = bench.runs("cy")
    assert (run.status, run.current_step) == ("completed", "reminder_push")


async def test_an_order_after_the_run_ended_converts_it_once_and_the_next_cart_enters_again(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify("dee", email="dee@example.com", first_name="Dee")
        await bench.track("dee", "Product Added", name="Scarf", price=30)
        await ts_env.sleep(timedelta(hours=25))
        [email] = bench.messages("dee")
        await bench.track("dee", "Email Opened", message_id=email.id)
        assert await bench.result("abandoned_cart", "dee") == "completed"  # no padding wait
        [run] = bench.runs("dee")
        assert run.converted_at is None
        # Days after the run ended, within the goal's 14 days: it converts, once.
        await bench.track(
            "dee",
            "Order Completed",
            at=run.entered_at + timedelta(days=5),
            order_id="d1",
            revenue=30.0,
        )
        await bench.track(
            "dee",
            "Order Completed",
            at=run.entered_at + timedelta(days=6),
            order_id="d2",
            revenue=99.0,
        )
        [run] = bench.runs("dee")
        assert (run.status, run.revenue) == ("completed", 30.0)
        # A week on, a new cart starts a new run (re_entry: after 7d), nothing holds it.
        await ts_env.sleep(timedelta(days=7))
        await bench.track("dee", "Product Added", name="Gloves", price=25)
        await ts_env.sleep(timedelta(hours=1))
        first, second = bench.runs("dee")
        assert (second.entry_seq, second.status) == (2, "active")
        # An order an hour into the second run is the second run's, not the first's.
        await bench.track(
            "dee",
            "Order Completed",
            at=second.entered_at + timedelta(hours=1),
            order_id="d3",
            revenue=25.0,
        )
        first, second = bench.runs("dee")
        assert (first.revenue, second.revenue) == (30.0, 25.0)
        assert await bench.result("abandoned_cart", "dee") == "exited"
