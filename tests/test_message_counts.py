"""Message counters: once per status reached and once per engagement kind, whatever the
order and number of the reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import select

from channels.base import Receipt
from orchestrator.activities.sending import SendActivities
from orchestrator.analytics.message_counts import count_engagement
from orchestrator.store.db import session_scope
from orchestrator.store.engagement import record_engagement
from orchestrator.store.tables import Contact, Event, JourneyCount, JourneyRun, Message

ENTERED = datetime(2026, 12, 1, 9, tzinfo=UTC)


def setup(engine: Engine, status: str) -> str:
    message_id = str(uuid.uuid4())
    with session_scope(engine) as session:
        session.add(Contact(id="max", email="max@example.com"))
        session.add(
            JourneyRun(
                workflow_id="journey:j:max",
                entry_seq=1,
                journey_id="j",
                version=1,
                contact_id="max",
                entered_at=ENTERED,
            )
        )
        session.add(
            Message(
                id=message_id,
                idempotency_key="journey:j:max:hi:1",
                workflow_id="journey:j:max",
                entry_seq=1,
                step_id="hi",
                journey_id="j",
                contact_id="max",
                channel="email",
                adapter="console",
                template="hi",
                status=status,
                timeline=[],
            )
        )
    return message_id


def report(engine: Engine, message_id: str, kind: str, n: int) -> None:
    with session_scope(engine) as session:
        event = Event(
            message_id=f"m{n}",
            type="track",
            name=kind,
            contact_id="max",
            timestamp=ENTERED + timedelta(hours=n),
            properties={"message_id": message_id},
        )
        session.add(event)
    with session_scope(engine) as session:
        stored = session.exec(select(Event).where(Event.message_id == f"m{n}")).one()
        session.expunge(stored)
    record_engagement(engine, message_id, kind, stored, count_engagement)


def counted(engine: Engine) -> dict[str, int]:
    with session_scope(engine) as session:
        found: dict[str, int] = {}
        for c in session.exec(select(JourneyCount)):
            assert (c.journey_id, c.version, c.day, c.step_id) == ("j", 1, "2026-12-01", "hi")
            found[c.metric] = found.get(c.metric, 0) + c.count
        return found


def test_engagement_counts_once_per_kind_and_a_click_implies_an_open(sqlite_engine: Engine) -> None:
    message_id = setup(sqlite_engine, "sent")
    report(sqlite_engine, message_id, "clicked", 1)
    report(sqlite_engine, message_id, "clicked", 2)  # a second click
    report(sqlite_engine, message_id, "opened", 3)  # the open a blocked image reported late
    report(sqlite_engine, message_id, "delivered", 4)
    assert counted(sqlite_engine) == {
        "message:clicked": 1,
        "message:opened": 1,
        "message:delivered": 1,
    }


def test_a_delivery_report_before_the_send_is_recorded_still_counts_the_send(
    sqlite_engine: Engine,
) -> None:
    message_id = setup(sqlite_engine, "sending")
    report(sqlite_engine, message_id, "delivered", 1)  # the webhook beat the bookkeeping
    sends = SendActivities(sqlite_engine, None, {}, None)  # type: ignore[arg-type]
    sends._accepted(message_id, Receipt("provider-1"))
    sends._accepted(message_id, Receipt("provider-1"))  # recorded again after a retry
    assert counted(sqlite_engine) == {"message:sent": 1, "message:delivered": 1}


def test_a_report_about_a_message_never_sent_counts_nothing(sqlite_engine: Engine) -> None:
    message_id = setup(sqlite_engine, "suppressed")
    report(sqlite_engine, message_id, "opened", 1)
    assert counted(sqlite_engine) == {}


def test_folding_old_days_into_one_shard_keeps_every_count(engine: Engine) -> None:
    from orchestrator.analytics.counts import Cohort, bump, fold_shards

    old, recent = Cohort("j", 1, "2026-11-01"), Cohort("j", 1, "2026-12-05")
    with session_scope(engine) as session:
        for _ in range(40):  # spread over the shards at random
            bump(session, old, "converted", amount=10.0)
            bump(session, recent, "converted", amount=1.0)
        bump(session, old, "message:sent", "hi", "email")

    def rows() -> list[tuple[str, str, int, int, float, float]]:
        with session_scope(engine) as session:
            return sorted(
                (c.day, c.metric, c.shard, c.count, c.amount, c.amount_sq)
                for c in session.exec(select(JourneyCount))
            )

    before = rows()
    assert len({r[2] for r in before if r[0] == "2026-11-01"}) > 1  # several shards
    with session_scope(engine) as session:
        assert fold_shards(session, "2026-12-01", limit=3) == 3  # a batch at a time
    with session_scope(engine) as session:
        while fold_shards(session, "2026-12-01", limit=3):
            pass
    after = rows()
    old_rows = [r for r in after if r[0] == "2026-11-01"]
    assert old_rows == [
        ("2026-11-01", "converted", 0, 40, 400.0, 4000.0),
        ("2026-11-01", "message:sent", 0, 1, 0.0, 0.0),
    ]
    assert [r for r in after if r[0] == "2026-12-05"] == [
        r for r in before if r[0] == "2026-12-05"
    ]  # recent days keep their shards
