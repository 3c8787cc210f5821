"""Orders from the storefront's own events: `Order Completed` and `Order Refunded`.

Ingestion calls `record_order_event` for every newly stored track event, in the
same transaction, so an order exists exactly when its event does (Segment
e-commerce v2 properties: `order_id`, `revenue`, `total`, `currency`, `coupon`,
`products[]`).

- `Order Completed` writes the order and its lines once per `order_id`: a re-sent
  event (another messageId, same order) changes nothing. Without an `order_id` the
  order is keyed `event:<event id>`, so it still counts. Its `coupon`, when it is one
  of ours and the order's contact may use it, is marked redeemed; codes the shop made
  itself, or that it accepted against our rules (another customer's, expired, used),
  are left alone and logged: an order is never refused for its coupon.
- An order is its contact's (and their other ids'). Events come with the public write
  key, so a second contact reporting an `order_id` already stored is refused and logged
  at WARNING: the order, its lines, revenue and coupon are neither attributed to the
  first contact nor taken from them. The event itself is kept (it is what was sent).
- `Order Refunded` takes back the order's loyalty points in proportion to what was
  refunded so far (`revenue` or `total` of every refund of the order by its contact, or
  the sum of its `products`, over the order's revenue). A refund without an amount is a
  full refund, which also sets `refunded_at`. A refund of another contact's order
  changes nothing, and says so in the log.

Time: `placed_at` and `refunded_at` are the event's own time (the shop's word, for
reports), but whatever is decided "now" (a coupon's expiry, when it was redeemed, the
points ledger) is the server's receive time: a client's timestamp can be backdated.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import Session, col, select

from .context import products_of
from .coupons import CouponRejected, redeem_coupon
from .identity import aliases_of, canonical_id
from .loyalty import reverse_order
from .tables import Event, Order, OrderLine

ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
FULL = 1 - 1e-9  # refunded fractions this close to 1 are the whole order

log = logging.getLogger(__name__)


def record_order_event(session: Session, event: Event) -> None:
    """Write what a stored track event says about orders; other events are ignored."""
    if event.type != "track":
        return
    if event.name == ORDER_COMPLETED:
        _completed(session, event)
    elif event.name == ORDER_REFUNDED:
        _refunded(session, event)


def order_id_of(properties: dict[str, Any], name: str = "order_id") -> str | None:
    """The storefront's order id (or another id property) as text: shops send numbers too,
    and `1002`, `1002.0` and `" 1002"` are the same order."""
    value = properties.get(name)
    if isinstance(value, bool | dict | list) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text[:255] or None


def run_key(one_run_per: str, event: Event) -> str:
    """The key of the run a trigger starts in a journey with `one_run_per`: the property's
    value, or the event's own id when it lacks one (every order gets its thank-you)."""
    return order_id_of(event.properties or {}, one_run_per) or f"event-{event.id}"


def _completed(session: Session, event: Event) -> None:
    props = event.properties or {}
    order_id = order_id_of(props) or f"event:{event.id}"
    stored = session.exec(
        select(Order.contact_id, Order.event_id).where(Order.order_id == order_id)
    ).first()
    if stored is not None:
        owner, first_event = stored
        if not _same_contact(session, owner, event.contact_id):
            # Someone else's order id: by mistake or to squat it (the write key is public).
            log.warning(
                "Order Completed event %s: order %r is another contact's (first reported by "
                "event %s): not recorded for this event's contact, its revenue, products and "
                "coupon left out; the order stays with its first contact",
                event.id,
                order_id,
                first_event,
            )
        return  # the shop re-sent it: the first report stands
    revenue, total = amount_of(props.get("revenue")), amount_of(props.get("total"))
    coupon = props.get("coupon")
    coupon = coupon.strip()[:64] or None if isinstance(coupon, str) else None
    currency = props.get("currency")
    order = Order(
        order_id=order_id,
        contact_id=event.contact_id,
        revenue=revenue if revenue is not None else total,
        total=total,
        currency=currency.strip().upper()[:8] or None if isinstance(currency, str) else None,
        coupon=coupon,
        event_id=event.id,
        placed_at=event.timestamp,
    )
    session.add(order)
    for item in products_of(props):
        product_id = item["id"] if item["id"] not in (None, "") else item["name"]
        if product_id in (None, ""):
            continue  # nothing to recommend it by
        session.add(
            OrderLine(
                order_id=order_id,
                contact_id=event.contact_id,
                product_id=str(product_id)[:255],
                name=_text(item.get("name"), 500),
                price=amount_of(item.get("price")),
                quantity=amount_of(item.get("quantity")) or 1,
                url=_text(item.get("url"), 2000),
                image_url=_text(item.get("image"), 2000),
                placed_at=event.timestamp,
            )
        )
    session.flush()
    if coupon:
        try:
            # The same rule as the checkout's redeem call: a code is its owner's (or
            # shareable). Events come with the public write key and no guessing limit,
            # so an order naming someone else's code must neither use it up nor take
            # its journey's conversion; a redeem at checkout for this order stands.
            redeem_coupon(
                session,
                coupon,
                order_id=order_id,
                now=event.received_at,  # not the client's timestamp: it can be backdated
                contact_id=event.contact_id,
                revenue=order.revenue,
            )
        except CouponRejected as exc:
            level = logging.WARNING if exc.reason == "other_contact" else logging.INFO
            log.log(
                level, "order %s: coupon not marked redeemed (%s): %s", order_id, exc.reason, exc
            )


def _refunded(session: Session, event: Event) -> None:
    order_id = order_id_of(event.properties or {})
    if order_id is None:
        log.warning("Order Refunded event %s has no order_id: nothing reversed", event.id)
        return
    order = session.exec(select(Order).where(Order.order_id == order_id).with_for_update()).first()
    if order is not None and not _same_contact(session, order.contact_id, event.contact_id):
        log.warning(
            "Order Refunded event %s: order %r is another contact's; nothing reversed",
            event.id,
            order_id,
        )
        return
    fraction = refunded_fraction(session, order_id, event.contact_id)
    if fraction is None:
        log.warning(
            "Order Refunded for %s: partial refund of an order with no known revenue; "
            "nothing reversed",
            order_id,
        )
        return
    if order is not None and fraction >= FULL and order.refunded_at is None:
        order.refunded_at = event.timestamp
        session.add(order)
    fraction = 1.0 if fraction >= FULL else fraction
    reverse_order(session, order_id, event.contact_id, fraction, event.received_at)


def refunded_fraction(session: Session, order_id: str, contact_id: str) -> float | None:
    """How much of the order `contact_id`'s stored `Order Refunded` events took back (0 to
    1); None for a partial refund of an order whose revenue we do not know (or that is
    another contact's).

    Also asked when points are awarded: a refund that arrived before the points were
    given (a quick cancellation, a worker behind) must still take them back. Only the
    contact's own refunds count: anyone may send a refund naming any order id.
    """
    owner = canonical_id(session, contact_id)
    order = session.exec(select(Order).where(Order.order_id == order_id)).first()
    if order is not None and canonical_id(session, order.contact_id) != owner:
        order = None  # not theirs: its revenue is no base for their refunds
    refunds = session.exec(
        select(Event.properties).where(
            col(Event.contact_id).in_({owner, *aliases_of(session, owner)}),
            Event.name == ORDER_REFUNDED,
            Event.type == "track",
        )
    )
    amounts = [_refundamount_of(p) for p in refunds if order_id_of(p or {}) == order_id]
    if not amounts:
        return 0.0
    if any(a is None for a in amounts):
        return 1.0
    base = order.revenue if order is not None else None
    if base is None or base <= 0:
        return None
    return min(1.0, sum(a for a in amounts if a is not None) / base)


def _same_contact(session: Session, a: str, b: str) -> bool:
    """Whether two contact ids are one person (the same id, or merged)."""
    return a == b or canonical_id(session, a) == canonical_id(session, b)


def _refundamount_of(properties: dict[str, Any] | None) -> float | None:
    """This refund's amount; None for a full refund (no amount given)."""
    props = properties or {}
    for name in ("revenue", "total"):
        amount = amount_of(props.get(name))
        if amount is not None:
            return abs(amount)  # some shops send refunds as negative amounts
    lines = [p["total"] for p in products_of(props) if p["total"] is not None]
    return abs(sum(lines)) if lines else None


def amount_of(value: Any) -> float | None:
    """An amount as shops send it (a number, or a number as text), when finite."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if value not in (None, "") else None
