"""Orders written from stored `Order Completed` / `Order Refunded` events, on SQLite and
PostgreSQL: once per order id, whatever the shop re-sends."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from orchestrator.api.ingest import store_call, store_calls
from orchestrator.api.segment import AliasCall, IdentifyCall, TrackCall
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Event, Order, OrderLine

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
