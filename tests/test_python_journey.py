"""`examples/python_journey`: a hand-written journey gets the same machinery as YAML ones."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from harness import ROOT, Bench

from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact

EXAMPLE = ROOT / "examples" / "python_journey"


def bench_for(ts_env, engine) -> Bench:  # type: ignore[no-untyped-def]
    return Bench(
        ts_env,
        engine,
        EXAMPLE / "journeys",
        EXAMPLE / "templates",
        python_journeys=["examples.python_journey.vip_welcome:VipWelcome"],
    )


async def test_welcome_then_order_marks_buyer(ts_env, sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    bench = bench_for(ts_env, sqlite_engine)
    async with bench.worker():
        await bench.identify("vip1", email="vip1@example.com", first_name="Vera")
        await bench.track("vip1", "VIP Joined")
        await ts_env.sleep(timedelta(days=1))
        await bench.track("vip1", "Order Completed", revenue=120)
        await bench.track("vip1", "Order Completed", revenue=120)  # a second order: no effect
        assert await bench.result("vip_welcome", "vip1") == "completed"
    [welcome] = bench.messages("vip1")
    assert welcome.content["subject"] == "Welcome to the club, Vera"
    with session_scope(bench.engine) as session:
        contact = session.get(Contact, "vip1")
        assert contact is not None and contact.traits["vip_buyer"] is True
    [run] = bench.runs("vip1")
    assert (run.journey_id, run.status, run.revenue) == ("vip_welcome", "completed", 120.0)


async def test_no_order_gets_one_nudge_on_the_best_channel(ts_env, sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    bench = bench_for(ts_env, sqlite_engine)
    async with bench.worker():
        await bench.identify(
            "vip2", email="vip2@example.com", tier="gold", context={"device": {"token": "t-9"}}
        )
        await bench.identify("vip3", email="vip3@example.com", tier="silver")
        for user in ("vip2", "vip3"):
            await bench.track(user, "VIP Joined")
        for user in ("vip2", "vip3"):
            assert await bench.result("vip_welcome", user) == "completed"
    assert [(m.template, m.channel) for m in bench.messages("vip2")] == [
        ("vip_welcome", "email"),
        ("vip_nudge", "push"),
    ]
    assert [(m.template, m.channel) for m in bench.messages("vip3")] == [
        ("vip_welcome", "email"),
        ("vip_nudge", "email"),
    ]


def test_example_readme_exists() -> None:
    assert "JOURNEYS_PYTHON_JOURNEYS" in (EXAMPLE / "README.md").read_text()
    assert Path(EXAMPLE / "vip_welcome.py").is_file()
