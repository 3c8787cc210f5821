"""Products to suggest in a message: what the contact left behind, and what people who
bought their cart also bought (`recommendations` in templates).

Both come from data the store already has, with bounded, indexed queries, so a
send never waits on a scan of the whole shop's history:

- **left behind**: products of the contact's own `Product Viewed` / `Product
  Added` events of the last 30 days, newest first, that they have not bought
  since and that are not in the cart now;
- **also bought**: products bought by other contacts who bought something in the
  cart (or, with an empty cart, something left behind), ranked by how many of
  those people bought them. The cart, the left-behind products and whatever the
  contact ever bought are never suggested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from .context import product, products_of
from .tables import Event, OrderLine

INTEREST_EVENTS = ("Product Viewed", "Product Added")
INTEREST_WINDOW = timedelta(days=30)
INTEREST_MAX_EVENTS = 500  # newest first: a heavy browser's oldest views matter least
# "People who bought X": the most recent buyers only, so a best seller with a million
# buyers costs the same as a niche product.
MAX_BUYERS = 1000
MAX_SEEDS = 50  # products whose buyers are asked about (a cart rarely has more)


def recommendations(
    session: Session,
    contact_id: str,
    cart_products: list[dict[str, Any]],
    now: datetime,
    limit: int = 4,
) -> dict[str, list[dict[str, Any]]]:
    """`{"left_behind": [...], "also_bought": [...]}`, each at most `limit` product dicts
    shaped like `context.product()` (also-bought ones carry `buyers`, a count)."""
    in_cart = _ids(cart_products)
    left_behind = _left_behind(session, contact_id, in_cart, now, limit)
    seeds = in_cart or _ids(left_behind)
    shown = in_cart | _ids(left_behind)
    also_bought = _also_bought(session, contact_id, seeds, shown, now, limit)
    return {"left_behind": left_behind, "also_bought": also_bought}


class LazyRecommendations(Mapping[str, list[dict[str, Any]]]):
    """`recommendations` for a render, computed on first use: most messages never show
    suggestions, and computing them costs a few queries per send."""

    def __init__(self, compute: Callable[[], dict[str, list[dict[str, Any]]]]) -> None:
        self._compute = compute
        self._value: dict[str, list[dict[str, Any]]] | None = None

    def _values(self) -> dict[str, list[dict[str, Any]]]:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def __getitem__(self, key: str) -> list[dict[str, Any]]:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


def empty() -> dict[str, list[dict[str, Any]]]:
    """What templates get when there is nothing to suggest."""
    return {"left_behind": [], "also_bought": []}


def _left_behind(
    session: Session, contact_id: str, in_cart: set[str], now: datetime, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(Event)
        .where(
            Event.contact_id == contact_id,
            col(Event.name).in_(INTEREST_EVENTS),
            Event.timestamp >= now - INTEREST_WINDOW,
            Event.timestamp <= now,
        )
        .order_by(col(Event.timestamp).desc(), col(Event.id).desc())
        .limit(INTEREST_MAX_EVENTS)
    )
    newest: dict[str, dict[str, Any]] = {}  # insertion order: newest interest first
    first_seen: dict[str, datetime] = {}
    for event in session.exec(query):
        for item in products_of(event.properties or {}):
            # Without an id a product cannot be matched to orders (or linked reliably).
            key = _id(item)
            if key is None or key in in_cart:
                continue
            newest.setdefault(key, {**item, "id": key, "quantity": 1, "total": item["price"]})
            first_seen[key] = event.timestamp  # rows come newest first: ends at the oldest
    if not newest:
        return []
    bought = _bought_since(session, contact_id, first_seen)
    return [item for key, item in newest.items() if key not in bought][:limit]


def _bought_since(session: Session, contact_id: str, first_seen: dict[str, datetime]) -> set[str]:
    """Products the contact ordered at or after the first time (in the window) they looked."""
    query = (
        select(OrderLine.product_id, func.max(OrderLine.placed_at))
        .where(
            OrderLine.contact_id == contact_id,
            col(OrderLine.product_id).in_(sorted(first_seen)),
            OrderLine.placed_at >= min(first_seen.values()),
        )
        .group_by(col(OrderLine.product_id))
    )
    return {pid for pid, last in session.exec(query) if last >= first_seen[pid]}


def _also_bought(
    session: Session,
    contact_id: str,
    seeds: set[str],
    shown: set[str],
    now: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    if not seeds or limit <= 0:
        return []
    buyers = (
        select(OrderLine.contact_id)
        .where(
            col(OrderLine.product_id).in_(sorted(seeds)[:MAX_SEEDS]),
            OrderLine.contact_id != contact_id,
            OrderLine.placed_at <= now,
        )
        .group_by(col(OrderLine.contact_id))
        .order_by(func.max(OrderLine.placed_at).desc(), col(OrderLine.contact_id))
        .limit(MAX_BUYERS)
    )
    own = select(OrderLine.product_id).where(OrderLine.contact_id == contact_id)
    count = func.count(func.distinct(OrderLine.contact_id)).label("buyers")
    ranked = (
        select(OrderLine.product_id, count, func.max(OrderLine.id).label("latest"))
        .where(
            col(OrderLine.contact_id).in_(buyers.scalar_subquery()),
            col(OrderLine.product_id).not_in(sorted(shown)),
            col(OrderLine.product_id).not_in(own.scalar_subquery()),
            OrderLine.placed_at <= now,
        )
        .group_by(col(OrderLine.product_id))
        .order_by(count.desc(), func.max(OrderLine.placed_at).desc(), col(OrderLine.product_id))
        .limit(limit)
    )
    top = list(session.exec(ranked))
    if not top:
        return []
    # Names, prices and pictures as the shop last sold each product.
    latest_lines = select(OrderLine).where(col(OrderLine.id).in_([t[2] for t in top]))
    lines = {line.id: line for line in session.exec(latest_lines)}
    return [{**_from_line(lines[latest]), "buyers": int(n)} for _, n, latest in top]


def _from_line(line: OrderLine) -> dict[str, Any]:
    return product(
        {
            "product_id": line.product_id,
            "name": line.name,
            "price": line.price,
            "url": line.url,
            "image_url": line.image_url,
        }
    )


def _id(item: dict[str, Any]) -> str | None:
    value = item.get("id")
    return str(value) if value not in (None, "") else None


def _ids(items: Iterable[dict[str, Any]]) -> set[str]:
    return {key for key in (_id(i) for i in items) if key is not None}
