"""`journeys stats` and `explain` on a scripted set of contacts, on the time-skipping
server with the real store: every number below was worked out by hand from the script.

The script (journey `promo`: a 50/50 split `experiment`, each variant one email; then
`look` waits a day for `Cart Viewed`; on timeout `tier` sends gold members a nudge):

| contact | variant | email           | Cart Viewed | order (revenue)                    |
|---------|---------|-----------------|-------------|------------------------------------|
| u0 gold | a       | opens offer_a   | -           | 80 at entry + 8 d (outside 7 d)    |
| u2      | a       | clicks twice    | yes         | 40 while the run waits             |
| u3      | a       | -               | -           | -; signs up again: refused         |
| u6      | a       | no address      | -           | -                                  |
| u1 gold | b       | -               | -           | 50 at entry + 2 d (run ended)      |
| u4      | b       | -               | yes         | 100 while the run waits            |
| u5      | b       | -               | -           | 30 at + 3 d and 70 at + 4 d        |
| u10     | b       | opted out       | -           | -                                  |
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from click.testing import CliRunner
from harness import Bench, save_histories, tiny_templates, write_journey
from sqlmodel import select

from orchestrator.analytics import significance as sig
from orchestrator.analytics.stats import journey_stats
from orchestrator.analytics.story import contact_story
from orchestrator.api import create_app
from orchestrator.cli.main import main
from orchestrator.store.db import session_scope
from orchestrator.store.keys import create_key
from orchestrator.store.tables import Contact, TrailEntry
from orchestrator.workflows.journey import split_bucket

A, B = ["u0", "u2", "u3", "u6"], ["u1", "u4", "u5", "u10"]

PROMO = """
id: promo
name: Promo test
trigger: { event: Signed Up }
goal: { event: Order Completed, within: 7d }
steps:
  - id: experiment
    split:
      - variant: a
        weight: 50
        then: [{ send: { id: offer_a, channel: email, template: variant_a } }]
      - variant: b
        weight: 50
        then: [{ send: { id: offer_b, channel: email, template: variant_b } }]
  - id: look
    wait_for: { event: Cart Viewed, timeout: 1d }
    on_timeout:
      - id: tier
        branch:
          - if: contact.traits.tier == "gold"
            then: [{ send: { id: gold_nudge, channel: email, template: gold } }]
"""


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path, request) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    templates = tiny_templates(tmp_path / "templates", ("variant_a", "variant_b", "gold"))
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    write_journey(bench.journeys_dir, "promo", textwrap.dedent(PROMO))
    bench.deploy()
    yield bench
    await save_histories(bench, request.node.name)


def message_id(bench: Bench, user: str, step: str) -> str:
    return next(m.id for m in bench.messages(user) if m.step_id == step)


async def run_script(bench: Bench) -> None:
    assert [u for u in A + B if split_bucket("promo", "experiment", u, 100) < 50] == A
    async with bench.worker():
        for user in A + B:
            email = None if user == "u6" else f"{user}@example.com"
            tier = "gold" if user in ("u0", "u1") else "basic"
            await bench.identify(user, email=email, tier=tier)
        with session_scope(bench.engine) as session:
            contact = session.get(Contact, "u10")
            assert contact is not None
            contact.consent = {"email": {"marketing": False}}
        for user in A + B:
            await bench.track(user, "Signed Up")
        for _ in range(200):  # the offers are out before anyone orders
            if len([m for m in bench.messages() if m.status == "sent"]) == 6:
                break
            await asyncio.sleep(0.05)
        await bench.track("u2", "Order Completed", order_id="o-u2", revenue=40)
        await bench.track("u4", "Order Completed", order_id="o-u4", revenue=100)
        for user in ("u2", "u4"):
            await bench.track(user, "Cart Viewed")
        await bench.track("u0", "Email Opened", message_id=message_id(bench, "u0", "offer_a"))
        for _ in range(2):
            clicked = message_id(bench, "u2", "offer_a")
            await bench.track("u2", "Email Link Clicked", message_id=clicked, url="https://shop")
        for user in A + B:
            assert await bench.result("promo", user) == "completed"
        entered = {r.contact_id: r.entered_at for r in bench.runs()}
        for user, days, revenue in (("u1", 2, 50), ("u5", 3, 30), ("u5", 4, 70), ("u0", 8, 80)):
            at = entered[user] + timedelta(days=days)
            await bench.track(
                user, "Order Completed", at=at, order_id=f"o-{user}-{days}", revenue=revenue
            )
        await bench.track("u3", "Signed Up")  # re_entry: never (the default)
        await bench.result("promo", "u3")


async def test_stats_of_a_scripted_journey_equal_the_hand_count(bench: Bench) -> None:
    await run_script(bench)
    with session_scope(bench.engine) as session:
        s = journey_stats(session, "promo")
    assert (s.entered, s.active, s.converted) == (8, 0, 4)  # u2, u4, u1, u5
    assert s.revenue == 220  # 40 + 100 + 50 + 30: u5's second order and u0's late one do not count
    assert (s.conversion_rate, s.revenue_per_entrant) == (0.5, 27.5)
    assert s.finished == {"completed": 8}
    assert s.refused == {"re_entry": 1}

    steps = {st.step_id: st for st in s.steps}
    assert [st.step_id for st in s.steps] == [
        "experiment",
        "offer_a",
        "offer_b",
        "look",
        "tier",
        "gold_nudge",
    ]
    assert {k: steps[k].reached for k in steps} == {
        "experiment": 8,
        "offer_a": 4,
        "offer_b": 4,
        "look": 8,
        "tier": 6,
        "gold_nudge": 2,
    }
    assert steps["experiment"].outcomes == {"a": 4, "b": 4}
    assert steps["look"].outcomes == {"event:Cart Viewed": 2, "timeout": 6}
    assert steps["tier"].outcomes == {"case 1": 2, "else": 4}
    assert steps["offer_a"].outcomes == {"sent": 3, "failed": 1}
    assert steps["offer_b"].outcomes == {"sent": 3, "suppressed": 1}

    messages = {ms.step_id: ms for ms in s.messages}
    a = messages["offer_a"]
    # u0 opened, u2 clicked twice (one unique click, which implies an open and a delivery).
    assert (a.sent, a.delivered, a.opened, a.clicked) == (3, 2, 2, 1)
    assert a.not_sent == {"failed": 1} and a.by_channel == {"email": 3}
    # Rates of the 3 sent (none bounced): 2 opened, 1 clicked; 1 of the 2 openers clicked.
    assert a.rates["open"] == round(2 / 3, 6) and a.rates["click"] == round(1 / 3, 6)
    assert a.rates["click_to_open"] == 0.5
    assert a.rates["delivery"] == round(2 / 3, 6)
    b = messages["offer_b"]
    assert (b.sent, b.opened, b.not_sent) == (3, 0, {"suppressed": 1})
    assert messages["gold_nudge"].sent == 2

    (split,) = s.splits
    va, vb = split.variants
    assert (va.variant, va.entrants, va.conversions, va.revenue) == ("a", 4, 1, 40)
    assert (vb.variant, vb.entrants, vb.conversions, vb.revenue) == ("b", 4, 3, 180)
    assert (va.conversion_rate, vb.conversion_rate) == (0.25, 0.75)
    assert (va.revenue_per_entrant, vb.revenue_per_entrant) == (10, 45)
    c = vb.comparison
    assert c is not None and c.against == "a"
    assert c.rate_difference == 0.5
    _, interval = sig.rate_difference(3, 4, 1, 4)
    assert c.rate_interval == (round(interval.low, 6), round(interval.high, 6))
    # By hand: a = [40, 0, 0, 0] (variance 400), b = [100, 50, 30, 0] (variance 5300 / 3);
    # se = sqrt(400/4 + 5300/12) = 23.2737; 35 ± 1.959964 * se.
    assert c.revenue_per_entrant_difference == 35
    assert c.revenue_interval == (-10.62, 80.62)
    assert c.verdict == "not enough data yet" and split.warning is not None

    # The same numbers through the CLI, as text and JSON.
    out = cli(bench, "stats", "promo", "--json")
    assert json.loads(out) == json.loads(json.dumps(s.to_json()))
    text = cli(bench, "stats", "promo")
    assert "entered 8 · in the journey now 0 · converted 4 (50.0 %) · revenue 220.00" in text
    assert "send variant_a by email" in text and "wait up to 1d for Cart Viewed" in text
    assert "+50.0 pts" in text and "not enough data yet" in text
    listing = cli(bench, "stats")
    assert "promo" in listing and "50.0 %" in listing


async def test_explain_tells_every_decision_with_its_reason(bench: Bench) -> None:
    await run_script(bench)
    with session_scope(bench.engine) as session:
        kinds = {(t.contact_id, t.kind, t.outcome) for t in session.exec(select(TrailEntry))}
        story = contact_story(session, "u2")
    assert ("u2", "split", "a") in kinds and ("u1", "branch", "case 1") in kinds
    assert ("u3", "branch", "else") in kinds and ("u2", "wait", "event:Cart Viewed") in kinds
    assert ("u6", "send", "failed") in kinds and ("u10", "send", "suppressed") in kinds
    assert ("u1", "goal", "o-u1-2") in kinds and ("u3", "refused", "re_entry") in kinds
    texts = [mo.text for mo in story.moments]
    expected = [
        "entered promo (version 1, entry 1): first entry",
        "promo: split experiment chose variant a: weight 50 of 100, drawn from the contact's id",
        "promo: send offer_a sent",
        "promo: converted (order o-u2, revenue 40): Order Completed within 1w of entry",
        "promo: wait look ended by event:Cart Viewed: Cart Viewed arrived",
        "promo: completed: reached the end of the journey",
    ]
    journey_lines = [t for t in texts if t.startswith(("entered", "promo:"))]
    assert [t for t in journey_lines if "reached step" not in t] == expected
    assert any(t.startswith("message offer_a (email, variant_a): clicked") for t in texts)
    out = cli(bench, "explain", "u10")
    assert "suppressed by channel: contact opted out of marketing email" in out
    assert "promo: send offer_b suppressed: contact opted out of marketing email" in out
    assert "promo: wait look timed out: no Cart Viewed within 1d" in out


def cli(bench: Bench, *args: str) -> str:
    env: dict[str, Any] = {"DATABASE_URL": str(bench.engine.url)}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_the_api_and_metrics_show_the_same_numbers(bench: Bench) -> None:
    await run_script(bench)
    with session_scope(bench.engine) as session:
        expected = json.loads(json.dumps(journey_stats(session, "promo").to_json()))
    admin = create_key(bench.engine, "analyst", kind="admin")
    write = create_key(bench.engine, "shop")
    app = create_app(bench.engine, [], client=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        auth = httpx.BasicAuth(admin, "")
        got = await http.get("/v1/journeys/promo/stats", auth=auth)
        assert got.status_code == 200 and got.json()["stats"] == expected
        listed = (await http.get("/v1/journeys", auth=auth)).json()["journeys"]
        assert [(j["journey_id"], j["entered"], j["converted"]) for j in listed] == [
            ("promo", 8, 4)
        ]
        story = (await http.get("/v1/contacts/u2/timeline", auth=auth)).json()
        assert any(m["text"].startswith("promo: converted (order o-u2") for m in story["moments"])
        # A write key (public in a storefront) reads nothing; bad input says what to fix.
        denied = await http.get("/v1/journeys/promo/stats", auth=httpx.BasicAuth(write, ""))
        assert denied.status_code in (401, 403)
        bad = await http.get("/v1/journeys/promo/stats?since=yesterday", auth=auth)
        assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text
        missing = await http.get("/v1/journeys/nope/stats", auth=auth)
        assert missing.status_code == 404 and "nope" in missing.text
        public = (await http.get("/metrics")).text  # the API's port is public
        assert "journeys_up" in public and "journeys_runs_entered_total" not in public
        text = (await http.get("/metrics", auth=auth)).text
    for line in (
        'journeys_runs_entered_total{journey="promo"} 8',
        'journeys_runs_converted_total{journey="promo"} 4',
        'journeys_revenue_attributed_total{journey="promo",currency=""} 220',
        'journeys_runs_active{journey="promo"} 0',
        'journeys_runs_finished_total{journey="promo",status="completed"} 8',
        'journeys_runs_refused_total{journey="promo",reason="re_entry"} 1',
        'journeys_messages_total{journey="promo",channel="email",status="sent"} 8',
        'journeys_messages_total{journey="promo",channel="email",status="clicked"} 1',
        'journeys_messages_total{journey="promo",channel="email",status="failed"} 1',
        'journeys_sends_not_sent_total{journey="promo",channel="email",status="suppressed",'
        'reason="consent"} 1',
    ):
        assert line in text.splitlines(), line
