"""Conversions that do not need the run alive, the trail's idempotency, and the goal
mistakes `journeys validate` catches."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from harness import Bench, tiny_templates, write_journey
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.activities.runs import RunActivities
from orchestrator.deployment.validation import validate
from orchestrator.rendering import Renderer
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, JourneyCount, JourneyRun, TrailEntry
from orchestrator.workflows import types as t


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    yield Bench(
        ts_env, sqlite_engine, tmp_path / "journeys", tiny_templates(tmp_path / "t", ("hello",))
    )


def journey(bench: Bench, text: str) -> None:
    spec = textwrap.dedent(text)
    write_journey(bench.journeys_dir, spec.split("id:", 1)[1].split()[0], spec)
    bench.deploy()


async def test_after_last_message_counts_from_the_last_send_not_the_entry(bench: Bench) -> None:
    journey(
        bench,
        """
        id: slow
        name: Slow nurture
        trigger: { event: Signed Up }
        goal: { event: Order Completed, within: 3d, after: last_message }
        steps:
          - wait: 5d
          - send: { id: hi, channel: email, template: hello }
        """,
    )
    async with bench.worker():
        for user in ("early", "late"):
            await bench.identify(user, email=f"{user}@example.com")
            await bench.track(user, "Signed Up")
            assert await bench.result("slow", user) == "completed"
        sent = {m.contact_id: m.queued_at for m in bench.messages()}
        assert all(sent.values())
        # 7 days after entry (2 after the message): counts; 4 days after the message: not.
        await bench.track(
            "early", "Order Completed", at=sent["early"] + timedelta(days=2), revenue=10
        )
        await bench.track(
            "late", "Order Completed", at=sent["late"] + timedelta(days=4), revenue=10
        )
    runs = {r.contact_id: r for r in bench.runs()}
    assert runs["early"].revenue == 10 and runs["early"].converted_at is not None
    assert runs["late"].converted_at is None


async def test_one_order_converts_the_latest_run_in_its_window_and_where_applies_late(
    bench: Bench,
) -> None:
    journey(
        bench,
        """
        id: per_cart
        name: Per cart
        trigger: { event: Cart Created }
        entry: { one_run_per: cart_id }
        goal: { event: Order Completed, within: 10d, where: "event.properties.revenue > 0" }
        steps:
          - send: { id: hi, channel: email, template: hello }
        """,
    )
    async with bench.worker():
        await bench.identify("kim", email="kim@example.com")
        await bench.track("kim", "Cart Created", cart_id="c1")
        await bench.track("kim", "Cart Created", cart_id="c2")
        await bench.route_all()
        for _ in range(100):  # both runs ran their one step and ended
            if [r.status for r in bench.runs("kim")] == ["completed", "completed"]:
                break
            await bench.env.sleep(timedelta(seconds=1))
        first, second = bench.runs("kim")
        later = max(first.entered_at, second.entered_at) + timedelta(hours=1)
        await bench.track("kim", "Order Completed", at=later, revenue=0)  # fails `where`
        await bench.track("kim", "Order Completed", at=later, order_id="k1", revenue=70)
    first, second = bench.runs("kim")
    newest, older = (second, first) if second.entered_at >= first.entered_at else (first, second)
    assert newest.revenue == 70 and older.converted_at is None
    with session_scope(bench.engine) as session:
        goals = list(session.exec(select(TrailEntry).where(TrailEntry.kind == "goal")))
    assert [(g.workflow_id, g.outcome) for g in goals] == [(newest.workflow_id, "k1")]


def test_recording_a_step_twice_writes_one_trail_row_and_counts_once(
    sqlite_engine: Engine,
) -> None:
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with session_scope(sqlite_engine) as session:
        session.add(Contact(id="ivy"))
        session.add(
            JourneyRun(
                workflow_id="journey:j:ivy",
                entry_seq=1,
                journey_id="j",
                version=1,
                contact_id="ivy",
                entered_at=now,
            )
        )
    decision = t.Decision("split", "ab", "b", now.isoformat(), "weight 1 of 2")
    update = t.RunUpdate("journey:j:ivy", 1, "next", at=now.isoformat(), decisions=[decision])
    activities = RunActivities(sqlite_engine)
    activities.record_step(update)
    activities.record_step(update)  # the activity retried after its commit
    with session_scope(sqlite_engine) as session:
        rows = [(r.step_id, r.kind, r.outcome) for r in session.exec(select(TrailEntry))]
        counts = {(c.step_id, c.metric): c.count for c in session.exec(select(JourneyCount))}
    assert sorted(rows) == [("ab", "split", "b"), ("next", "step", None)]
    assert counts == {("ab", "split:b"): 1, ("next", "reached"): 1}


def test_validate_catches_goal_mistakes(tmp_path: Path) -> None:
    templates = tiny_templates(tmp_path / "t", ("hello",))
    folder = tmp_path / "journeys"
    write_journey(
        folder,
        "quiet",
        textwrap.dedent(
            """\
            id: quiet
            name: Quiet
            trigger: { event: Signed Up }
            goal: { event: Order Completed, within: 3d, after: last_message }
            steps:
              - wait: 1d
            """
        ),
    )
    write_journey(
        folder,
        "padded",
        textwrap.dedent(
            """\
            id: padded
            name: Padded
            trigger: { event: Signed Up }
            goal: { event: Order Completed, within: 14d }
            steps:
              - send: { id: hi, channel: email, template: hello }
              - wait: 13d
            """
        ),
    )
    result = validate([folder], Renderer(templates))
    errors = [str(p) for p in result.problems]
    warnings = [str(p) for p in result.warnings]
    assert any(
        "quiet.yaml:4:" in e
        and "goal.after is last_message, but this journey sends no message" in e
        for e in errors
    ), errors
    assert any(
        "padded.yaml:7:" in w and "ends with `wait: 1w6d`" in w and "remove the wait" in w
        for w in warnings
    ), warnings


def test_a_default_goal_keeps_the_spec_hash_journeys_were_deployed_with() -> None:
    from orchestrator.dsl.models import Goal

    default = Goal.model_validate({"event": "Order Completed", "within": "14d"})
    assert "after" not in default.model_dump(mode="json")  # no new version on upgrade
    later = Goal.model_validate(
        {"event": "Order Completed", "within": "14d", "after": "last_message"}
    )
    assert later.model_dump(mode="json")["after"] == "last_message"


# --- what converts nothing: the write key that sends orders is public ------------------


def goal_store(engine: Engine) -> None:
    """A deployed journey with a 14-day goal, and runs that entered ten days ago."""
    from orchestrator.store.versions import deploy_journey

    spec = {
        "id": "shop",
        "name": "Shop",
        "trigger": {"event": "Cart Created"},
        "goal": {"event": "Order Completed", "within": 14 * 86400},
        "steps": [{"wait": 60, "id": "steps.0"}],
    }
    with session_scope(engine) as session:
        deploy_journey(session, "shop", spec, "hash-1", None)
        runs = [("gus", "", 10), ("hal", "", 10), ("ida", ":c1", 10), ("ida", ":c2", 10)]
        runs += [("kay", "", 1 / 24), ("lou", "", 10)]
        for user, key, days in runs:
            session.add(Contact(id=user)) if key != ":c2" else None
            session.add(
                JourneyRun(
                    workflow_id=f"journey:shop:{user}{key}",
                    entry_seq=1,
                    journey_id="shop",
                    version=1,
                    contact_id=user,
                    entered_at=datetime.now(UTC) - timedelta(days=days, minutes=int(key == ":c2")),
                    status="completed" if user not in ("kay", "lou") else "active",
                )
            )


def order(
    engine: Engine, user: str, at: datetime, seen: datetime | None = None, **props: object
) -> list[JourneyRun]:
    """Store an order stamped `at`; attribute it as the router does, or (`seen`) as a
    live run that saw it at `seen` by its own clock does."""
    from orchestrator.analytics.attribution import attribute_conversion
    from orchestrator.api.ingest import store_call
    from orchestrator.api.segment import TrackCall

    message_id = f"m-{user}-{at.timestamp()}-{hash(str(props.get('revenue')))}"
    call = {"userId": user, "event": "Order Completed", "properties": props}
    store_call(
        engine,
        TrackCall.model_validate({**call, "messageId": message_id, "timestamp": at.isoformat()}),
    )
    with session_scope(engine) as session:
        from orchestrator.store.tables import Event

        event = session.exec(select(Event).where(Event.message_id == message_id)).one()
        found = attribute_conversion(session, event, at=seen)
        return [r.contact_id for r in found]  # type: ignore[misc]


def test_late_resent_and_absurd_orders_convert_nothing_or_carry_no_revenue(
    sqlite_engine: Engine,
) -> None:
    goal_store(sqlite_engine)
    now = datetime.now(UTC)
    # Reported three days after it happened (inside the window then): backdated, no credit.
    assert order(sqlite_engine, "gus", now - timedelta(days=3), order_id="g1", revenue=5) == []
    assert order(sqlite_engine, "gus", now - timedelta(hours=1), order_id="g2", revenue=5) == [
        "gus"
    ]
    # A revenue no shop has: the run converts, without it (and routing goes on).
    assert order(sqlite_engine, "hal", now, order_id="h1", revenue=10**400) == ["hal"]
    # One order re-sent: the first report converts one of Ida's two runs, the copy nothing.
    assert order(sqlite_engine, "ida", now, order_id="i1", revenue=70) == ["ida"]
    assert order(sqlite_engine, "ida", now, order_id="i1", revenue=70.0) == []
    # Seen by a live run just now, but stamped before the run began (2 h late): not its
    # doing. Stamped five days ahead: outside the window, whoever's clock saw it.
    assert order(sqlite_engine, "kay", now - timedelta(hours=2), now, revenue=9) == []
    assert order(sqlite_engine, "lou", now + timedelta(days=5), now, revenue=9) == []
    assert order(sqlite_engine, "lou", now, now, order_id="l2", revenue="8", currency="usd") == [
        "lou"
    ]
    with session_scope(sqlite_engine) as session:
        runs = {r.workflow_id: r for r in session.exec(select(JourneyRun))}
    assert runs["journey:shop:gus"].revenue == 5
    assert runs["journey:shop:hal"].converted_at is not None
    assert runs["journey:shop:hal"].revenue is None
    ida = [runs["journey:shop:ida:c1"], runs["journey:shop:ida:c2"]]
    assert sorted(r.revenue or 0 for r in ida) == [0, 70]
    assert runs["journey:shop:lou"].revenue == 8  # sent as text, read as the orders table does
    from orchestrator.analytics.stats import journey_stats

    with session_scope(sqlite_engine) as session:
        stats = journey_stats(session, "shop")
    # Amounts in different currencies are kept apart: 5 + 70 named none, 8 were dollars.
    assert (stats.converted, stats.revenue_by_currency) == (4, {"": 75.0, "USD": 8.0})


def carts_entered(engine: Engine, *users: str) -> datetime:
    """A journey `cart` with a goal, each of `users` in it since 30 minutes; now."""
    from orchestrator.store.versions import deploy_journey

    spec = {
        "id": "cart",
        "name": "Cart",
        "trigger": {"event": "Cart Created"},
        "goal": {"event": "Order Completed", "within": 86400},
        "steps": [{"wait": 60, "id": "steps.0"}],
    }
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        deploy_journey(session, "cart", spec, "hash-1", None)
        for user in users:
            session.add(Contact(id=user))
            session.add(
                JourneyRun(
                    workflow_id=f"journey:cart:{user}",
                    entry_seq=1,
                    journey_id="cart",
                    version=1,
                    contact_id=user,
                    entered_at=now - timedelta(minutes=30),
                )
            )
    return now


def test_metrics_count_an_order_once_in_its_currency_not_per_conversion_time_bucket(
    sqlite_engine: Engine,
) -> None:
    """By hand: one order of 99 EUR 30 minutes after entry → revenue 99 EUR, once. The
    conversion-time counter (`converted:after:<1h`) carries the amount too: not revenue."""
    from orchestrator.analytics.metrics import journey_samples

    now = carts_entered(sqlite_engine, "ann")
    assert order(sqlite_engine, "ann", now, order_id="a1", revenue=99, currency="eur") == ["ann"]
    with session_scope(sqlite_engine) as session:
        metrics = set(session.exec(select(JourneyCount.metric)))
        samples = list(journey_samples(session))
    assert "converted:after:<1h" in metrics  # the row that used to leak
    revenue = [
        (s.labels, s.value) for s in samples if s.name == "journeys_revenue_attributed_total"
    ]
    assert revenue == [({"journey": "cart", "currency": "EUR"}, 99.0)]
    converted = [(s.labels, s.value) for s in samples if s.name == "journeys_runs_converted_total"]
    assert converted == [({"journey": "cart"}, 1)]


def test_made_up_currencies_add_no_metric_series_but_their_revenue_is_summed_as_other(
    sqlite_engine: Engine,
) -> None:
    """The write key is public: each invented currency would be a new series on /metrics
    for ever. By hand: 10 EUR, 20 "zzzz1" and 30 "€" (not codes) → EUR 10, other 50."""
    from orchestrator.analytics.metrics import journey_samples

    users = {"ann": "EUR", "bob": "zzzz1", "cy": "€"}
    now = carts_entered(sqlite_engine, *users)
    for (user, currency), amount in zip(users.items(), (10, 20, 30), strict=True):
        assert order(sqlite_engine, user, now, order_id=user, revenue=amount, currency=currency)
    with session_scope(sqlite_engine) as session:
        samples = list(journey_samples(session))
    revenue = [
        (s.labels, s.value) for s in samples if s.name == "journeys_revenue_attributed_total"
    ]
    assert revenue == [
        ({"journey": "cart", "currency": "EUR"}, 10.0),
        ({"journey": "cart", "currency": "other"}, 50.0),
    ]
