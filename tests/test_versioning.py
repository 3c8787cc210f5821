"""Editing a journey deploys a new version; runs in flight finish on the one they started."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from harness import Bench, write_journey
from test_step_kinds import templates

V1 = """
id: promo
name: Promo
trigger: { event: Signed Up }
steps:
  - wait: 1d
  - send: { id: offer, channel: email, template: hello }
"""
V2 = V1.replace("template: hello", "template: late").replace("wait: 1d", "wait: 2d")


async def test_runs_in_flight_keep_their_version(ts_env, sqlite_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates(tmp_path / "templates"))
    write_journey(bench.journeys_dir, "promo", V1)
    assert [(v.journey_id, v.version) for v in bench.deploy()] == [("promo", 1)]
    async with bench.worker():
        await bench.identify("early", email="early@example.com")
        await bench.track("early", "Signed Up")
        await ts_env.sleep(timedelta(hours=1))

        write_journey(bench.journeys_dir, "promo", "# reworded comment only\n" + V1)
        assert [v.version for v in bench.deploy()] == [1]  # comments are not a new version
        write_journey(bench.journeys_dir, "promo", V2)
        assert [v.version for v in bench.deploy()] == [2]

        await bench.identify("late", email="late@example.com")
        await bench.track("late", "Signed Up")
        assert await bench.result("promo", "early") == "completed"
        assert await bench.result("promo", "late") == "completed"
    assert {r.contact_id: r.version for r in bench.runs()} == {"early": 1, "late": 2}
    assert [m.template for m in bench.messages("early")] == ["hello"]  # v1's message
    assert [m.template for m in bench.messages("late")] == ["late"]  # v2's message
