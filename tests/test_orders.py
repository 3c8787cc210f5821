"""Orders written from stored `Order Completed` / `Order Refunded` events, on SQLite and
PostgreSQL: once per order id, whatever the shop re-sends."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from orchestrator.api.ingest import store_call, store_calls
from orchestrator.api.segment import AliasCall, IdentifyCall, TrackCall
from orchestrator.store import loyalty
from orchestrator.store.coupons import issue_coupon
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Coupon, Event, Order, OrderLine

PRODUCTS = [
    {
        "product_id": "p-1",
        "sku": "TEA-01",
        "name": "Green tea",
        "price": 12.5,
        "quantity": 2,
        "url": "https://shop.example/tea",
        "image_url": "https://shop.example/tea.jpg",
    },
    {"sku": "CUP-9", "name": "Cup", "price": "8.00"},
    {"name": ""},  # nothing to know the product by: skipped
]


def track_call(user: str, event: str, message_id: str = "", **props: Any) -> TrackCall:
    return TrackCall.model_validate(
        {
            "userId": user,
            "event": event,
            "properties": props,
            "messageId": message_id or str(uuid.uuid4()),
            "timestamp": "2026-05-04T10:00:00Z",
        }
    )


def orders(engine: Engine) -> list[Order]:
    with session_scope(engine) as session:
        return list(session.exec(select(Order).order_by(col(Order.id))))


def lines(engine: Engine) -> list[tuple[str, str, float | None, float]]:
    with session_scope(engine) as session:
        rows = session.exec(select(OrderLine).order_by(col(OrderLine.id)))
        return [(r.order_id, r.product_id, r.price, r.quantity) for r in rows]


def test_an_order_and_its_lines_are_written_once_however_often_the_shop_sends_it(
    engine: Engine,
) -> None:
    completed = track_call(
        "ann",
        "Order Completed",
        order_id=1001,
        revenue="33.00",
        total=38,
        currency="eur",
        coupon=" spring-AB ",
        products=PRODUCTS,
    )
    assert store_call(engine, completed)
    assert not store_call(engine, completed)  # the client's retry: same messageId
    resent = completed.model_copy(update={"message_id": str(uuid.uuid4())})
    assert store_call(engine, resent)  # a new event, the same order
    [order] = orders(engine)
    assert (order.order_id, order.contact_id, order.revenue, order.total, order.currency) == (
        "1001",
        "ann",
        33.0,
        38.0,
        "EUR",
    )
    assert order.coupon == "spring-AB"
    assert order.placed_at.isoformat() == "2026-05-04T10:00:00+00:00"
    with session_scope(engine) as session:
        first = session.exec(select(Event.id).order_by(col(Event.id))).first()
        [line] = session.exec(select(OrderLine).where(OrderLine.product_id == "p-1"))
    assert order.event_id == first
    assert lines(engine) == [("1001", "p-1", 12.5, 2), ("1001", "CUP-9", 8.0, 1)]
    assert (line.name, line.url, line.image_url) == (
        "Green tea",
        "https://shop.example/tea",
        "https://shop.example/tea.jpg",
    )


def test_two_reports_of_one_order_in_one_batch_make_one_order(engine: Engine) -> None:
    calls = [
        track_call("ann", "Order Completed", order_id="o-7", total=10, products=PRODUCTS[:1]),
        track_call("ann", "Order Completed", order_id="o-7", total=10, products=PRODUCTS[:1]),
    ]
    assert store_calls(engine, calls) == 2  # both events are kept
    assert [o.order_id for o in orders(engine)] == ["o-7"]
    assert len(lines(engine)) == 1


def test_an_order_without_an_order_id_is_kept_under_its_event(engine: Engine) -> None:
    store_call(engine, track_call("ann", "Order Completed", total=15))
    store_call(engine, track_call("ann", "Product Viewed", product_id="p-1"))  # not an order
    with session_scope(engine) as session:
        event_id = session.exec(select(Event.id).where(Event.name == "Order Completed")).one()
    assert [(o.order_id, o.revenue) for o in orders(engine)] == [(f"event:{event_id}", 15.0)]


def test_an_order_placed_as_a_guest_moves_with_the_merge(engine: Engine) -> None:
    """A guest who ordered is a customer: a call carrying both ids does not merge it (the
    public write key could claim anyone's guest orders that way); the shop's server
    merges it with an alias sent with its admin key."""
    guest = track_call("anon-1", "Order Completed", order_id="g-1", products=PRODUCTS)
    store_call(engine, guest.model_copy(update={"user_id": None, "anonymous_id": "anon-1"}))
    signed_in = {"userId": "ann", "anonymousId": "anon-1", "messageId": str(uuid.uuid4())}
    store_call(engine, IdentifyCall.model_validate(signed_in))
    assert [o.contact_id for o in orders(engine)] == ["anon-1"]
    alias = {"userId": "ann", "previousId": "anon-1", "messageId": str(uuid.uuid4())}
    store_call(engine, AliasCall.model_validate(alias), admin=True)
    with session_scope(engine) as session:
        owners = set(session.exec(select(OrderLine.contact_id)))
    assert [o.contact_id for o in orders(engine)] == ["ann"]
    assert owners == {"ann"}


def test_only_a_full_refund_marks_the_order_refunded(engine: Engine) -> None:
    store_call(engine, track_call("ann", "Order Completed", order_id="o-1", revenue=100))
    store_call(engine, track_call("ann", "Order Completed", order_id="o-2", revenue=100))
    # Partial refunds: by amount, then by the products sent back (2 x 12.5).
    store_call(engine, track_call("ann", "Order Refunded", order_id="o-1", total=40))
    store_call(engine, track_call("ann", "Order Refunded", order_id="o-1", products=PRODUCTS[:1]))
    store_call(engine, track_call("ann", "Order Refunded", order_id="o-2", revenue=100))
    store_call(engine, track_call("ann", "Order Refunded", order_id="unknown-order"))
    store_call(engine, track_call("ann", "Order Refunded"))  # no order id: nothing to do
    refunded = {o.order_id: o.refunded_at for o in orders(engine)}
    assert refunded["o-1"] is None
    assert refunded["o-2"] is not None
    store_call(engine, track_call("ann", "Order Refunded", order_id="o-1", total=35))
    assert {o.order_id: o.refunded_at for o in orders(engine)}["o-1"] is not None


# --- whose order it is ------------------------------------------------------------------


def points(engine: Engine, contact_id: str) -> int:
    with session_scope(engine) as session:
        return loyalty.balance(session, contact_id, datetime.now(UTC))


def earn_for_order(engine: Engine, contact_id: str, order_id: str, amount: int) -> None:
    """What the post-purchase journey's `award_points` writes for an order."""
    with session_scope(engine) as session:
        loyalty.earn(
            session,
            contact_id,
            amount,
            idempotency_key=f"journey:post_purchase:{contact_id}:{order_id}:points:1",
            now=datetime.now(UTC),
            order_id=order_id,
        )


def test_a_refund_sent_by_someone_else_takes_nothing_from_the_buyer(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone holding the public write key could refund anyone's order: the buyer lost the
    points and the order dropped out of segments. A refund now only touches an order of
    its own contact (or one of its ids), and says so in the log when it is not theirs."""
    store_call(engine, track_call("vic1", "Order Completed", order_id="o-5001", revenue=100))
    earn_for_order(engine, "vic1", "o-5001", 100)
    with caplog.at_level(logging.WARNING, logger="orchestrator.store.orders"):
        store_call(engine, track_call("att1", "Order Refunded", order_id="o-5001"))
    assert points(engine, "vic1") == 100
    assert [(o.order_id, o.contact_id, o.refunded_at) for o in orders(engine)] == [
        ("o-5001", "vic1", None)
    ]
    assert "o-5001" in caplog.text and "another contact's" in caplog.text
    # The buyer's own refund, sent under the id they had before signing in, counts.
    store_calls(
        engine,
        [
            IdentifyCall.model_validate(
                {"userId": "vic1", "anonymousId": "vic1-phone", "messageId": str(uuid.uuid4())}
            ),
            track_call("vic1-phone", "Order Refunded", order_id="o-5001", revenue=25).model_copy(
                update={"user_id": None, "anonymous_id": "vic1-phone"}
            ),
        ],
    )
    assert points(engine, "vic1") == 75
    store_call(engine, track_call("vic1", "Order Refunded", order_id="o-5001"))
    assert points(engine, "vic1") == 0
    assert orders(engine)[0].refunded_at is not None


def test_an_order_id_reported_for_a_second_contact_is_refused_and_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """`att5` reports order o-7001 first (revenue 1), then the real buyer `vic5` reports it
    (revenue 6,000, with vic5's coupon). The second report used to be dropped silently.
    Now it is refused visibly (a warning naming the order), nothing of it is attributed to
    att5, and vic5's coupon is not used up on an order we do not hold as theirs."""
    with session_scope(engine) as session:
        code = issue_coupon(
            session, "vic5", campaign="thanks", prefix="THANKS", kind="percent", value=10,
            idempotency_key="thanks:vic5", now=datetime.now(UTC),
        ).code  # fmt: skip
    store_call(engine, track_call("att5", "Order Completed", order_id="o-7001", revenue=1))
    with caplog.at_level(logging.WARNING, logger="orchestrator.store.orders"):
        stored = store_call(
            engine,
            track_call("vic5", "Order Completed", order_id="o-7001", revenue=6000,
                       coupon=code, products=PRODUCTS[:1]),
        )  # fmt: skip
    assert stored  # the event is kept: it is what the shop said
    assert [(o.order_id, o.contact_id, o.revenue) for o in orders(engine)] == [
        ("o-7001", "att5", 1.0)
    ]
    assert lines(engine) == []
    [warning] = [r for r in caplog.records if "o-7001" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "another contact" in warning.getMessage() and "not recorded" in warning.getMessage()
    with session_scope(engine) as session:
        coupon = session.get(Coupon, code)
        assert coupon is not None and coupon.redeemed_at is None
    # Points the journeys gave each of them for "o-7001": att5's refund takes back att5's.
    earn_for_order(engine, "att5", "o-7001", 1)
    earn_for_order(engine, "vic5", "o-7001", 6000)
    store_call(engine, track_call("att5", "Order Refunded", order_id="o-7001"))
    assert (points(engine, "att5"), points(engine, "vic5")) == (0, 6000)
    # The same contact re-sending its order is no conflict: quiet, and it stays one order.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="orchestrator.store.orders"):
        store_call(engine, track_call("att5", "Order Completed", order_id="o-7001", revenue=1))
    assert caplog.records == [] and len(orders(engine)) == 1
