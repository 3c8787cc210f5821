"""Rows as the plain dicts that conditions and templates see.

Templates get `contact`, `event` (the run's trigger), `cart` and `journey`;
`docs/templates.md` is the reference for every key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import Session, col, func, select

from .tables import Contact, Event, JourneyRun, Order

CART_EVENTS = ("Product Added", "Product Removed", "Cart Viewed", "Checkout Started")
CART_ENDS = ("Order Completed",)
CART_WINDOW = timedelta(days=30)
CART_MAX_EVENTS = 500


def contact_context(contact: Contact | None, session: Session | None = None) -> dict[str, Any]:
    """The contact as conditions and templates see it; with a session, also `orders`
    (how many orders, refunded ones not counted) and `last_order_at`."""
    if contact is None:
        return {}
    # Keys starting with "_" are our bookkeeping (e.g. applied increments), not traits.
    traits = {k: v for k, v in (contact.traits or {}).items() if not k.startswith("_")}
    first = traits.get("first_name") or traits.get("firstName")
    last = traits.get("last_name") or traits.get("lastName")
    return {
        "id": contact.id,
        "email": contact.email,
        "phone": contact.phone,
        "locale": contact.locale,
        "timezone": contact.timezone,
        "traits": traits,
        "first_name": first,
        "last_name": last,
        "name": traits.get("name") or " ".join(p for p in (first, last) if p) or None,
        "consent": dict(contact.consent or {}),
        **(order_summary(session, contact.id) if session is not None else {}),
    }


def order_summary(session: Session, contact_id: str) -> dict[str, Any]:
    query = select(func.count(), func.max(Order.placed_at)).where(
        Order.contact_id == contact_id, col(Order.refunded_at).is_(None)
    )
    count, last = session.exec(query).one()
    return {"orders": int(count or 0), "last_order_at": last.isoformat() if last else None}


def event_context(event: Event | None) -> dict[str, Any]:
    if event is None:
        return {}
    properties = dict(event.properties or {})
    return {
        "id": event.id,
        "name": event.name,
        "type": event.type,
        "properties": properties,
        "context": dict(event.context or {}),
        "timestamp": event.timestamp.isoformat() if event.timestamp else None,
        "products": products_of(properties),
    }


def journey_context(run: JourneyRun | None, journey_id: str, step_id: str) -> dict[str, Any]:
    data = dict(run.data or {}) if run is not None else {}
    return {**data, "id": journey_id, "step": step_id}


def product(raw: dict[str, Any]) -> dict[str, Any]:
    """A Segment e-commerce v2 product with the names templates use, whatever was sent."""
    quantity = _number(raw.get("quantity")) or 1
    price = _number(raw.get("price"))
    return {
        **raw,
        "id": raw.get("product_id") or raw.get("id") or raw.get("sku"),
        "sku": raw.get("sku"),
        "name": raw.get("name") or raw.get("sku") or raw.get("product_id"),
        "price": price,
        "quantity": quantity,
        "total": price * quantity if price is not None else None,
        "image": raw.get("image_url") or raw.get("image"),
        "url": raw.get("url"),
        "variant": raw.get("variant"),
        "brand": raw.get("brand"),
        "category": raw.get("category"),
    }


def products_of(properties: dict[str, Any]) -> list[dict[str, Any]]:
    """`products[]` of cart/order events, or the single product of `Product Added`."""
    listed = properties.get("products")
    if isinstance(listed, list):
        return [product(p) for p in listed if isinstance(p, dict)]
    if any(k in properties for k in ("product_id", "sku", "name")):
        return [product(properties)]
    return []


def cart_from_events(events: list[dict[str, Any]], cart_id: Any = None) -> dict[str, Any]:
    """The cart as the storefront last described it, replayed from its events, oldest first.

    `Cart Viewed` / `Checkout Started` carry the whole cart and replace it;
    `Product Added` / `Product Removed` change one line; `Order Completed`
    empties it. With a `cart_id`, events of other carts are ignored.
    """
    items: dict[str, dict[str, Any]] = {}
    currency = url = None
    for event in events:
        props = event.get("properties") or {}
        if cart_id is not None and props.get("cart_id") not in (None, cart_id):
            continue
        name = event.get("name")
        if name in CART_ENDS:
            items, url = {}, None
            continue
        currency = props.get("currency") or currency
        url = props.get("cart_url") or props.get("recovery_url") or url
        if name in ("Cart Viewed", "Checkout Started") and isinstance(props.get("products"), list):
            items = {_key(p): p for p in products_of(props)}
        elif name == "Product Added":
            for p in products_of(props):
                held = items.get(_key(p))
                if held is not None:
                    p = product({**held, "quantity": held["quantity"] + p["quantity"]})
                items[_key(p)] = p
        elif name == "Product Removed":
            for p in products_of(props):
                items.pop(_key(p), None)
    lines = list(items.values())
    totals = [p["total"] for p in lines if p["total"] is not None]
    return {
        "id": cart_id,
        "products": lines,
        "item_count": sum(int(p["quantity"]) for p in lines),
        "total": sum(totals) if totals else None,
        "currency": currency,
        "url": url,
    }


def cart_context(session: Session, contact_id: str, trigger: Event | None) -> dict[str, Any]:
    """The contact's current cart: events of the last 30 days up to now, not only the trigger."""
    since = trigger.timestamp if trigger else None
    query = select(Event).where(
        Event.contact_id == contact_id, col(Event.name).in_(CART_EVENTS + CART_ENDS)
    )
    if since is not None:
        query = query.where(Event.timestamp >= since - CART_WINDOW)
    rows = session.exec(query.order_by(col(Event.timestamp).desc()).limit(CART_MAX_EVENTS)).all()
    events = [event_context(e) for e in reversed(rows)]
    cart_id = (trigger.properties or {}).get("cart_id") if trigger else None
    if trigger is not None and not any(e["id"] == trigger.id for e in events):
        events.append(event_context(trigger))
    return cart_from_events(events, cart_id)


@dataclass(frozen=True)
class EventKind:
    """The stored events a journey starts on: `track` events of a name (`Segment Entered`
    of one segment, for segment triggers), or every `identify` call."""

    type: str  # track | identify
    name: str | None = None
    segment: str | None = None

    def describe(self) -> str:
        if self.type != "track":
            return f"{self.type} call"
        return f"{self.name} ({self.segment})" if self.segment else str(self.name)


def latest_event(
    session: Session, contact_ids: list[str], kind: EventKind, scan: int = 200
) -> Event | None:
    """The most recent event of `kind` sent under any of `contact_ids` (a contact and its
    aliases); for a segment trigger, among the last `scan` of that name."""
    query = select(Event).where(col(Event.contact_id).in_(contact_ids), Event.type == kind.type)
    if kind.type == "track":
        query = query.where(Event.name == kind.name)
    query = query.order_by(col(Event.timestamp).desc(), col(Event.id).desc())
    if kind.segment is None:
        return session.exec(query.limit(1)).first()
    for event in session.exec(query.limit(scan)):
        if (event.properties or {}).get("segment") == kind.segment:
            return event
    return None


def latest_cart_event(session: Session, contact_id: str) -> Event | None:
    """The contact's most recent cart event: what a cart journey would be triggered by."""
    query = select(Event).where(Event.contact_id == contact_id, col(Event.name).in_(CART_EVENTS))
    return session.exec(query.order_by(col(Event.timestamp).desc()).limit(1)).first()


def _key(item: dict[str, Any]) -> str:
    return str(item.get("id") or item.get("name"))


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return int(number) if number == number.to_integral_value() else float(number)
