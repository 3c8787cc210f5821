"""Sample data a message is rendered with before launch (`journeys validate`, `preview`).

Defaults come from the journey's trigger: the Segment e-commerce v2 events
get realistic properties, so a cart reminder can be checked without writing
anything. Every message also gets sample `recommendations` (products the
contact left behind, and what people who bought their cart also bought), so
a block that shows them is checked too. A message's own `sample.yaml` (keys
`contact`, `event`, `cart`, `journey`, `recommendations`) is merged over them
for whatever else its templates use; `recommendations: {also_bought: []}`
checks the version without suggestions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..store.context import cart_from_events, product, products_of
from .catalog import SAMPLE_FILE, Message

SAMPLE_KEYS = ("contact", "event", "cart", "journey", "recommendations")
SAMPLE_TIME = "2026-03-14T15:30:00+00:00"

_PRODUCTS = [
    {
        "product_id": "sku-101",
        "sku": "sku-101",
        "name": "Running shoes",
        "price": 89.9,
        "quantity": 1,
        "url": "https://shop.example.com/p/running-shoes",
        "image_url": "https://shop.example.com/img/running-shoes.jpg",
        "category": "Shoes",
    },
    {
        "product_id": "sku-202",
        "sku": "sku-202",
        "name": "Sports socks",
        "price": 9.5,
        "quantity": 3,
        "url": "https://shop.example.com/p/sports-socks",
        "image_url": "https://shop.example.com/img/sports-socks.jpg",
        "category": "Accessories",
    },
]
# Not the products above: a suggestion is never something already in the cart.
_LEFT_BEHIND = [
    {
        "product_id": "sku-303",
        "sku": "sku-303",
        "name": "Trail jacket",
        "price": 129.0,
        "url": "https://shop.example.com/p/trail-jacket",
        "image_url": "https://shop.example.com/img/trail-jacket.jpg",
        "category": "Jackets",
    },
]
_ALSO_BOUGHT = [
    {
        "product_id": "sku-404",
        "sku": "sku-404",
        "name": "Water bottle",
        "price": 14.0,
        "url": "https://shop.example.com/p/water-bottle",
        "image_url": "https://shop.example.com/img/water-bottle.jpg",
        "category": "Accessories",
    },
    {
        "product_id": "sku-505",
        "sku": "sku-505",
        "name": "Insoles",
        "price": 19.9,
        "url": "https://shop.example.com/p/insoles",
        "image_url": None,
        "category": "Shoes",
    },
]
_CART = {"cart_id": "cart-1", "cart_url": "https://shop.example.com/cart/cart-1"}
_ORDER = {
    "order_id": "order-1001",
    "checkout_id": "checkout-1",
    "total": 118.4,
    "revenue": 118.4,
    "shipping": 0,
    "tax": 0,
    "currency": "USD",
    "products": _PRODUCTS,
    **_CART,
}
# Segment e-commerce spec v2 shapes, for the events journeys usually start from.
EVENT_PROPERTIES: dict[str, dict[str, Any]] = {
    "Product Added": {**_PRODUCTS[0], **_CART, "currency": "USD"},
    "Product Viewed": {**_PRODUCTS[0], "currency": "USD"},
    "Product Removed": {**_PRODUCTS[1], **_CART, "currency": "USD"},
    "Cart Viewed": {**_CART, "products": _PRODUCTS, "currency": "USD"},
    "Checkout Started": {**_ORDER},
    "Order Completed": {**_ORDER},
    "Order Updated": {**_ORDER},
    "Order Refunded": {**_ORDER},
    "Order Cancelled": {**_ORDER},
}


class SampleError(ValueError):
    """A sample.yaml that cannot be used; says which file and why."""

    def __init__(self, reason: str, file: Path, line: int = 1) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.reason, self.file, self.line = reason, str(file), line


def sample_context(
    message: Message, trigger_event: str | None, journey_id: str = "sample", step_id: str = "send"
) -> dict[str, Any]:
    """The context `journeys validate` renders `message` with."""
    name = trigger_event or "Sample Event"
    context: dict[str, Any] = {
        "contact": {
            "id": "sample-contact",
            "email": "alex@example.com",
            "phone": "+15555550100",
            "locale": None,
            "timezone": "UTC",
            "first_name": "Alex",
            "last_name": "Doe",
            "name": "Alex Doe",
            "traits": {"first_name": "Alex", "last_name": "Doe", "email": "alex@example.com"},
            "consent": {},
            "orders": 1,
            "last_order_at": SAMPLE_TIME,
        },
        "event": {
            "id": 1,
            "name": name,
            "type": "track",
            "properties": copy.deepcopy(EVENT_PROPERTIES.get(name, {})),
            "context": {},
            "timestamp": SAMPLE_TIME,
        },
        "journey": {"id": journey_id, "step": step_id},
        "recommendations": {
            "left_behind": [product(p) for p in _LEFT_BEHIND],
            "also_bought": [{**product(p), "buyers": 12 - i} for i, p in enumerate(_ALSO_BOUGHT)],
        },
    }
    given = load_sample(message)
    merged = _merge(context, {k: v for k, v in given.items() if k != "cart"})
    event = merged["event"]
    event.setdefault("products", products_of(event.get("properties") or {}))
    cart = cart_from_events([event], (event.get("properties") or {}).get("cart_id"))
    merged["cart"] = _merge(cart, given.get("cart") or {})
    merged["recommendations"] = _recommendations(merged["recommendations"], message)
    return merged


def _recommendations(given: dict[str, Any], message: Message) -> dict[str, Any]:
    """Sample suggestions under the names templates use, whatever sample.yaml spelled."""
    out = dict(given)
    for key in ("left_behind", "also_bought"):
        items = out.get(key, [])
        if not isinstance(items, list) or not all(isinstance(p, dict) for p in items):
            raise SampleError(
                f"recommendations.{key} must be a list of products (mappings with "
                "product_id, name, price, url, image_url…)",
                message.folder / SAMPLE_FILE,
            )
        out[key] = [product(p) for p in items]
    return out


def load_sample(message: Message) -> dict[str, Any]:
    path = message.folder / SAMPLE_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SampleError(f"not valid YAML: {reason}", path, line) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SampleError(f"cannot read it: {exc}", path) from None
    if not isinstance(data, dict) or not set(data) <= set(SAMPLE_KEYS):
        keys = ", ".join(SAMPLE_KEYS)
        raise SampleError(f"expected a mapping with some of the keys {keys}", path)
    for key, value in data.items():
        if not isinstance(value, dict):
            raise SampleError(f"{key} must be a mapping, got {type(value).__name__}", path)
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
