"""The marketing actions on their own: what each writes, what later steps read from the
run (`journey.*`), retries of a webhook, and what happens when an action cannot be done.

Runs on the time-skipping server with the real store, router and console channel; the
webhook goes to a loopback support desk that checks signatures like a real receiver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from fakes.server import Reply
from fakes.support_desk import SECRET, SupportDesk
from harness import Bench, end_open_runs, tiny_templates, write_journey
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from orchestrator.activities.actions import ActionActivities
from orchestrator.store import loyalty
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, Coupon, Event
from orchestrator.workflows import types as t

TICKET = """\
id: ticket
name: Open a ticket, then act on its answer
trigger: { event: Complaint Filed }
entry: { re_entry: always }
steps:
  - id: open_ticket
    action:
      type: webhook
      url: ${DESK_WEBHOOK_URL}/api/tickets
      secret_env: DESK_SECRET
      payload: { reason: complaint }
      save_as: ticket
    on_failure:
      - action: { type: update_contact, set: { needs_call: true } }
  - branch:
      - if: journey.ticket.status == "open"
        then:
          - send: { id: ticket_opened, channel: email, template: opened }
"""

LOYAL = """\
id: loyal
name: Points, codes, tags and an event for another journey
trigger: { event: Joined Club }
steps:
  - id: bonus
    action:
      type: award_points
      points: 50
      multipliers: [{ if: 'contact.traits.tier == "gold"', times: 3 }]
      expire_after: 30d
  - id: club_code
    action:
      { type: issue_coupon, campaign: club, prefix: CLUB, discount: 250, currency: RUB,
        save_as: club }
  - action: { type: update_contact, tag: [club, newsletter], untag: [prospect] }
  - id: announce
    action: { type: track, event: Club Joined, properties: { level: silver } }
"""

FOLLOWER = """\
id: follower
name: Reacts to the event another journey tracked
trigger: { event: Club Joined, where: event.properties.level == "silver" }
steps:
  - send: { id: club_welcome, channel: email, template: opened }
"""


@pytest.fixture(scope="module")
def desk() -> Iterator[SupportDesk]:
    with SupportDesk() as server:
        yield server


@pytest_asyncio.fixture
async def bench(
    ts_env, sqlite_engine, tmp_path: Path, desk: SupportDesk, monkeypatch
) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    desk.requests.clear()
    desk.tickets.clear()
    desk._scripted.clear()
    monkeypatch.setenv("DESK_WEBHOOK_URL", desk.url)
    monkeypatch.setenv("DESK_SECRET", SECRET)
    journeys = tmp_path / "journeys"
    for name, text in (("ticket", TICKET), ("loyal", LOYAL), ("follower", FOLLOWER)):
        write_journey(journeys, name, text)
    bench = Bench(
        ts_env, sqlite_engine, journeys, templates_dir=tiny_templates(tmp_path / "t", ("opened",))
    )
    bench.deploy()
    yield bench
    await end_open_runs(bench)


def contact(bench: Bench, user: str) -> Contact:
    with session_scope(bench.engine) as session:
        row = session.get(Contact, user)
        assert row is not None
        session.expunge(row)
        return row


async def test_a_webhook_answer_is_kept_on_the_run_and_read_by_a_later_condition(
    bench: Bench, desk: SupportDesk
) -> None:
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com")
        await bench.track("ann", "Complaint Filed")
        assert await bench.result("ticket", "ann") == "completed"
    [request] = desk.requests
    document = request.json()
    assert document["contact"]["email"] == "ann@example.com"
    assert document["payload"] == {"reason": "complaint"}
    assert (
        document["journey"]["id"] == "ticket" and document["trigger"]["name"] == "Complaint Filed"
    )
    [run] = bench.runs("ann")
    assert run.data["ticket"] == {
        "ticket_id": "T-1",
        "status": "open",
        "contact": "ann",
        "reason": "complaint",
    }
    assert [m.step_id for m in bench.messages("ann")] == ["ticket_opened"]


async def test_a_webhook_that_is_down_is_retried_with_the_same_idempotency_key(
    bench: Bench, desk: SupportDesk
) -> None:
    desk.fail_next(Reply(503, {"message": "maintenance"}), Reply(429, headers={"Retry-After": "5"}))
    async with bench.worker():
        await bench.identify("bob", email="bob@example.com")
        await bench.track("bob", "Complaint Filed")
        assert await bench.result("ticket", "bob") == "completed"
    assert len(desk.requests) == 3
    assert len({r.headers["idempotency-key"] for r in desk.requests}) == 1
    assert len(desk.tickets) == 1
    assert bench.runs("bob")[0].data["ticket"]["ticket_id"] == "T-1"


async def test_a_refused_webhook_takes_on_failure_without_retrying(
    bench: Bench, desk: SupportDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESK_SECRET", "a-secret-the-desk-does-not-know")
    async with bench.worker():
        await bench.identify("cy", email="cy@example.com")
        await bench.track("cy", "Complaint Filed")
        assert await bench.result("ticket", "cy") == "completed"
    assert len(desk.requests) == 1  # 401: asking again will not help
    assert contact(bench, "cy").traits["needs_call"] is True
    assert bench.messages("cy") == []  # journey.ticket is null: the branch is not taken
    assert "ticket" not in bench.runs("cy")[0].data


async def test_a_missing_url_setting_is_a_failure_that_names_the_variable(
    bench: Bench,
    desk: SupportDesk,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("DESK_WEBHOOK_URL")
    async with bench.worker():
        await bench.identify("dee", email="dee@example.com")
        await bench.track("dee", "Complaint Filed")
        assert await bench.result("ticket", "dee") == "completed"
    assert desk.requests == []
    assert contact(bench, "dee").traits["needs_call"] is True
    assert "the webhook URL needs the environment variable DESK_WEBHOOK_URL" in caplog.text


async def test_points_codes_tags_and_a_tracked_event_that_starts_another_journey(
    bench: Bench, ts_env
) -> None:
    async with bench.worker():
        await bench.identify("eve", email="eve@example.com", tier="gold", tags=["prospect"])
        await bench.track("eve", "Joined Club")
        assert await bench.result("loyal", "eve") == "completed"
        await bench.route_all()  # the tracked `Club Joined` starts the follower journey
        assert await bench.result("follower", "eve") == "completed"
    [run] = [r for r in bench.runs("eve") if r.journey_id == "loyal"]
    assert (run.data["points_earned"], run.data["points_balance"]) == (150, 150)
    assert run.data["club_kind"] == "amount" and run.data["club_value"] == 250
    assert run.data["club_currency"] == "RUB" and run.data["club_code"].startswith("CLUB-")
    assert contact(bench, "eve").traits["tags"] == ["club", "newsletter"]
    assert [m.step_id for m in bench.messages("eve")] == ["club_welcome"]
    with session_scope(bench.engine) as session:
        # The bonus expires 30 days after it was given (in journey time).
        [earned] = loyalty.history(session, "eve")
        assert loyalty.balance(session, "eve", earned.created_at + timedelta(days=29)) == 150
        assert loyalty.balance(session, "eve", earned.created_at + timedelta(days=31)) == 0
        [event] = session.exec(select(Event).where(Event.name == "Club Joined"))
        assert event.properties == {"level": "silver"} and event.context["journey"]["id"] == "loyal"


def test_a_retried_action_writes_nothing_twice(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    """A crash after the commit and before Temporal heard back means the activity runs
    again: the ledger, the coupon and the tracked event are each written once."""
    with session_scope(sqlite_engine) as session:
        session.add(Contact(id="fay", email="fay@example.com"))
    actions = ActionActivities(sqlite_engine)
    now = datetime(2026, 11, 1, tzinfo=UTC).isoformat()

    def run(step: str, action: dict) -> t.ActionResult:  # type: ignore[type-arg]
        request = t.ActionRequest("wf", 1, step, "j", "fay", None, action, now)
        return ActivityEnvironment().run(actions.run_action, request)

    for _ in range(2):
        run(
            "p",
            {"type": "award_points", "points": 10, "per": 1, "of": "revenue", "multipliers": []},
        )
        coupon = {
            "type": "issue_coupon",
            "campaign": "c",
            "prefix": "C",
            "discount": {"kind": "percent", "value": 5},
        }
        run("c", coupon)
        run("e", {"type": "track", "event": "Did Something", "properties": {}})
    with session_scope(sqlite_engine) as session:
        assert loyalty.balance(session, "fay", datetime(2026, 11, 2, tzinfo=UTC)) == 10
        assert len(session.exec(select(Coupon)).all()) == 1
        assert len(session.exec(select(Event).where(Event.name == "Did Something")).all()) == 1
