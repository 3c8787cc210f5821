"""The loyalty ledger on SQLite and PostgreSQL: earning, spending, FIFO expiry, refunds
taken back through real `Order Refunded` events, merges and erasure."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.api.ingest import store_call
from orchestrator.api.segment import IdentifyCall, TrackCall
from orchestrator.services.privacy import erase_rows, export_contact, plan_erasure
from orchestrator.store import loyalty
from orchestrator.store.db import session_scope
from orchestrator.store.tables import LoyaltyEntry, Order

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def earn(engine: Engine, contact: str, points: int, at: datetime, **kw: Any) -> LoyaltyEntry:
    with session_scope(engine) as session:
        key = kw.pop("key", None) or f"test:{uuid.uuid4()}"
        return loyalty.earn(session, contact, points, idempotency_key=key, now=at, **kw)


def spend(engine: Engine, contact: str, points: int, at: datetime, key: str = "") -> LoyaltyEntry:
    with session_scope(engine) as session:
        key = key or f"test:{uuid.uuid4()}"
        return loyalty.redeem(session, contact, points, idempotency_key=key, now=at)


def balance(engine: Engine, contact: str, at: datetime) -> int:
    with session_scope(engine) as session:
        return loyalty.balance(session, contact, at)


def ledger(engine: Engine, contact: str) -> list[tuple[str, int]]:
    """(kind, points), oldest first."""
    with session_scope(engine) as session:
        return [(e.kind, e.points) for e in reversed(loyalty.history(session, contact, 500))]


def track(engine: Engine, user: str, event: str, message_id: str = "", **props: Any) -> bool:
    call = {"userId": user, "event": event, "properties": props}
    call["messageId"] = message_id or str(uuid.uuid4())
    return store_call(engine, TrackCall.model_validate(call))


# --- earning and spending -------------------------------------------------------------


def test_earn_and_redeem_are_idempotent_and_the_balance_is_their_sum(engine: Engine) -> None:
    first = earn(engine, "ann", 120, days(0), key="welcome:ann", note="welcome bonus")
    again = earn(engine, "ann", 120, days(1), key="welcome:ann")  # the activity's retry
    assert again.id == first.id
    spent = spend(engine, "ann", 50, days(2), key="order:o1")
    assert spend(engine, "ann", 50, days(3), key="order:o1").id == spent.id
    assert balance(engine, "ann", days(4)) == 70
    assert ledger(engine, "ann") == [("earn", 120), ("redeem", -50)]
    with pytest.raises(loyalty.IdempotencyConflict, match="already used to earn 120 points"):
        earn(engine, "ann", 300, days(5), key="welcome:ann")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="points must be"):
            earn(engine, "ann", bad, days(5))  # type: ignore[arg-type]
    assert balance(engine, "ann", days(6)) == 70


def test_redeeming_more_than_the_balance_is_refused_and_writes_nothing(engine: Engine) -> None:
    earn(engine, "ann", 40, days(0))
    with pytest.raises(loyalty.InsufficientPoints) as refused:
        spend(engine, "ann", 41, days(1))
    assert (refused.value.balance, refused.value.wanted) == (40, 41)
    assert "has 40 points, fewer than the 41 asked for" in str(refused.value)
    assert ledger(engine, "ann") == [("earn", 40)]
    with pytest.raises(loyalty.InsufficientPoints):
        spend(engine, "nobody", 1, days(1))


def test_two_redemptions_at_once_cannot_spend_the_same_points(engine: Engine) -> None:
    earn(engine, "ann", 100, days(0))
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def redeem(n: int) -> None:
        start.wait()
        try:
            spend(engine, "ann", 60, days(1), key=f"race:{n}")
            outcomes.append("spent")
        except loyalty.InsufficientPoints as exc:
            outcomes.append(f"refused at {exc.balance}")

    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused at 40", "spent"]
    assert balance(engine, "ann", days(2)) == 40


# --- expiry: the oldest points are spent first ------------------------------------------


def test_points_spent_first_are_the_oldest_so_the_newer_expiring_ones_expire(
    engine: Engine,
) -> None:
    earn(engine, "ann", 50, days(0))  # never expires, and is older
    expiring = earn(engine, "ann", 100, days(1), expires_at=days(31))
    spend(engine, "ann", 80, days(2))  # 50 of the old points, then 30 of the expiring
    assert balance(engine, "ann", days(30)) == 70
    # "Expiring earned minus everything spent" would leave 50 here; FIFO leaves none.
    assert balance(engine, "ann", days(31)) == 0
    assert balance(engine, "ann", days(400)) == 0  # written once
    assert ledger(engine, "ann") == [("earn", 50), ("earn", 100), ("redeem", -80), ("expire", -70)]
    with session_scope(engine) as session:
        expired = session.exec(select(LoyaltyEntry).where(LoyaltyEntry.kind == "expire")).one()
    assert (expired.idempotency_key, expired.created_at) == (f"expire:{expiring.id}", days(31))


def test_the_balance_read_for_a_story_writes_nothing_and_agrees(engine: Engine) -> None:
    earn(engine, "ann", 50, days(0))
    earn(engine, "ann", 100, days(1), expires_at=days(31))
    spend(engine, "ann", 80, days(2))
    with session_scope(engine) as session:
        seen = [loyalty.balance_seen(session, "ann", days(d)) for d in (30, 31, 400)]
    assert seen == [70, 0, 0]
    assert ledger(engine, "ann") == [("earn", 50), ("earn", 100), ("redeem", -80)]  # no expiry
    assert balance(engine, "ann", days(31)) == 0  # the writing one agrees, and writes it


def test_each_earning_expires_with_what_is_left_of_it(engine: Engine) -> None:
    earn(engine, "ann", 100, days(0), expires_at=days(30))
    earn(engine, "ann", 100, days(1), expires_at=days(60))
    spend(engine, "ann", 150, days(10))  # all of the first, half of the second
    assert balance(engine, "ann", days(31)) == 50  # the first had nothing left to expire
    earn(engine, "ann", 20, days(40))
    with pytest.raises(loyalty.InsufficientPoints):
        spend(engine, "ann", 71, days(45))
    assert balance(engine, "ann", days(61)) == 20
    # The expiry is dated when it happened: after the later earning.
    assert ledger(engine, "ann") == [
        ("earn", 100),
        ("earn", 100),
        ("redeem", -150),
        ("earn", 20),
        ("expire", -50),
    ]


def test_points_that_expired_cannot_be_spent_and_later_spending_uses_live_ones(
    engine: Engine,
) -> None:
    earn(engine, "ann", 100, days(0), expires_at=days(30))
    earn(engine, "ann", 20, days(40))
    with pytest.raises(loyalty.InsufficientPoints) as refused:
        spend(engine, "ann", 30, days(45))
    assert refused.value.balance == 20
    spend(engine, "ann", 20, days(46))
    assert balance(engine, "ann", days(100)) == 0
    assert ledger(engine, "ann") == [("earn", 100), ("expire", -100), ("earn", 20), ("redeem", -20)]


# --- refunds, through real Segment events -----------------------------------------------


def test_refunds_take_back_points_in_proportion_and_never_more_than_earned(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    track(engine, "ann", "Order Completed", order_id="o-1", revenue=200, currency="EUR")
    earn(engine, "ann", 200, now, order_id="o-1", key="journey:points:ann:award:1")
    earn(engine, "ann", 30, now, note="unrelated bonus")
    refund = str(uuid.uuid4())
    assert track(engine, "ann", "Order Refunded", refund, order_id="o-1", total=50)
    assert not track(engine, "ann", "Order Refunded", refund, order_id="o-1", total=50)  # retry
    assert balance(engine, "ann", now) == 180  # a quarter of 200 taken back, once
    track(engine, "ann", "Order Refunded", order_id="o-1", revenue=-50)  # another quarter
    assert balance(engine, "ann", now) == 130
    with session_scope(engine) as session:
        assert session.exec(select(Order.refunded_at)).one() is None  # not all of it yet
    track(engine, "ann", "Order Refunded", order_id="o-1")  # the rest: no amount is all of it
    track(engine, "ann", "Order Refunded", order_id="o-1")
    track(engine, "ann", "Order Refunded", order_id="o-1", total=500)
    assert balance(engine, "ann", now) == 30  # the bonus stays
    assert ledger(engine, "ann") == [
        ("earn", 200),
        ("earn", 30),
        ("reverse", -50),
        ("reverse", -50),
        ("reverse", -100),
    ]
    with session_scope(engine) as session:
        assert session.exec(select(Order.refunded_at)).one() is not None


def test_a_refund_after_the_points_were_spent_leaves_a_debt_the_next_earning_pays(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    track(engine, "ann", "Order Completed", order_id="o-2", total=100)
    earn(engine, "ann", 100, now, order_id="o-2")
    spend(engine, "ann", 100, now)
    track(engine, "ann", "Order Refunded", order_id="o-2")
    assert balance(engine, "ann", now) == -100
    later = now + timedelta(days=1)
    earn(engine, "ann", 150, later, expires_at=later + timedelta(days=10))
    # The debt used the first 100 of the new earning; only 50 were left to expire.
    assert balance(engine, "ann", later + timedelta(days=11)) == 0
    assert ledger(engine, "ann")[-1] == ("expire", -50)


def test_points_that_expired_unspent_are_not_taken_back_again_by_a_refund(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    track(engine, "ann", "Order Completed", order_id="o-3", total=100)
    earn(engine, "ann", 100, now - timedelta(days=90), order_id="o-3", expires_at=now)
    earn(engine, "ann", 10, now - timedelta(days=1))
    track(engine, "ann", "Order Refunded", order_id="o-3")
    assert balance(engine, "ann", now) == 10


# --- merges and erasure -----------------------------------------------------------------


def test_a_merge_moves_the_points_and_the_merged_id_still_finds_them(engine: Engine) -> None:
    now = datetime.now(UTC)
    earn(engine, "anon-7", 25, now, note="browsed as a guest")
    earn(engine, "ann", 10, now)
    store_call(
        engine,
        IdentifyCall.model_validate(
            {"userId": "ann", "anonymousId": "anon-7", "messageId": str(uuid.uuid4())}
        ),
    )
    assert balance(engine, "ann", now) == 35
    assert balance(engine, "anon-7", now) == 35  # the alias reads the same ledger
    spend(engine, "anon-7", 30, now)
    with session_scope(engine) as session:
        owners = set(session.exec(select(LoyaltyEntry.contact_id)))
    assert owners == {"ann"}


def test_export_shows_the_ledger_and_erasure_deletes_it(engine: Engine) -> None:
    now = datetime.now(UTC)
    store_call(
        engine,
        IdentifyCall.model_validate(
            {"userId": "ann@example.com", "traits": {"email": "ann@example.com"}}
        ),
    )
    track(engine, "ann@example.com", "Order Completed", order_id="o-9", total=60)
    earn(engine, "ann@example.com", 60, now, order_id="o-9")
    earn(engine, "bob", 5, now)
    exported = export_contact(engine, "ann@example.com")
    assert exported is not None
    assert [(e["kind"], e["points"]) for e in exported["loyalty_entries"]] == [("earn", 60)]
    assert [o["order_id"] for o in exported["orders"]] == ["o-9"]
    erased = erase_rows(engine, plan_erasure(engine, "ann@example.com"))
    assert (erased["loyalty_entries"], erased["orders"]) == (1, 1)
    with session_scope(engine) as session:
        assert list(session.exec(select(LoyaltyEntry.contact_id))) == ["bob"]
        order = session.exec(select(Order)).one()
    assert order.contact_id.startswith("erased-")  # revenue figures stay, without who
    assert balance(engine, "ann@example.com", now) == 0
