"""Who visits the shop and what each one does: a plan of Segment calls, decided by a seed.

Four kinds of shopper, as a shop sees them:

- `browses`: looks at a few products, anonymously, and leaves;
- `leaves_cart`: adds to a cart, anonymously, and leaves (no address to remind);
- `leaves_checkout`: adds to a cart, signs in at checkout (alias + identify with email,
  phone, timezone, locale, consent), starts the checkout and leaves: the shopper an
  abandoned-cart journey is for;
- `buys`: the same, then completes the order (the journey's exit and goal).

The same seed gives the same shoppers, ids, carts and orders. Message ids are left to
the Segment client (random), so running a plan twice sends new events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .catalog import CURRENCY, SHOP_URL, product

KINDS = ("browses", "leaves_cart", "leaves_checkout", "buys")
WEIGHTS = (2, 2, 3, 3)
PEOPLE = [
    ("Ann", "Europe/Belgrade", "sr-Latn-RS"),
    ("Olga", "Europe/Moscow", "ru-RU"),
    ("Lena", "Europe/Berlin", "de-DE"),
    ("Mia", "America/New_York", "en-US"),
    ("Yuki", "Asia/Tokyo", "ja-JP"),
    ("Omar", "Asia/Dubai", "ar-AE"),
    ("Tom", "Europe/London", "en-GB"),
]


@dataclass(frozen=True)
class Call:
    """One Segment call: the client method and its keyword arguments."""

    method: str  # identify | track | page | screen | alias
    kwargs: dict[str, Any]


@dataclass
class Shopper:
    number: int
    kind: str
    anonymous_id: str
    user_id: str | None = None  # once signed in
    email: str | None = None
    marketing_email: bool = False
    device_token: str | None = None  # shoppers on the app
    cart_id: str | None = None
    order_id: str | None = None
    revenue: float | None = None
    calls: list[Call] = field(default_factory=list)

    @property
    def contact_id(self) -> str:
        """Where the shop's events end up: the userId once signed in."""
        return self.user_id or self.anonymous_id

    def describe(self) -> str:
        who = f"{self.anonymous_id} -> {self.user_id}" if self.user_id else self.anonymous_id
        parts = [f"{self.kind:<15}", who]
        if self.cart_id:
            parts.append(f"cart {self.cart_id}")
        if self.order_id:
            parts.append(f"order {self.order_id} {self.revenue:.2f} {CURRENCY}")
        if self.email:
            parts.append(
                f"{self.email} (marketing email {'yes' if self.marketing_email else 'no'})"
            )
        return "  ".join(parts)


def plan(count: int, seed: int) -> list[Shopper]:
    """`count` shoppers and their calls, the same for the same seed."""
    rng = random.Random(seed)
    return [_shopper(rng, seed, n) for n in range(1, count + 1)]


def _shopper(rng: random.Random, seed: int, number: int) -> Shopper:
    kind = rng.choices(KINDS, WEIGHTS)[0]
    first_name, tz, locale = rng.choice(PEOPLE)
    on_app = rng.random() < 0.5
    shopper = Shopper(
        number=number,
        kind=kind,
        anonymous_id=f"anon-{rng.getrandbits(48):012x}",
        device_token=f"fcm-{seed}-{number:03d}-{rng.getrandbits(32):08x}" if on_app else None,
    )
    context: dict[str, Any] = {"timezone": tz, "locale": locale}
    if shopper.device_token:
        context["device"] = {"token": shopper.device_token, "type": "android"}
    ids = {"anonymous_id": shopper.anonymous_id}

    def call(method: str, **kwargs: Any) -> None:
        shopper.calls.append(Call(method, {**ids, "context": dict(context), **kwargs}))

    viewed = rng.sample(range(5), rng.randint(1, 3))
    for index in viewed:
        item = product(index)
        if on_app:
            call("screen", name="Product", properties={"product_id": item["product_id"]})
        else:
            call(
                "page",
                category="Products",
                name=item["name"],
                properties={"url": item["url"], "title": item["name"]},
            )
        call("track", event="Product Viewed", properties=item)
    if kind == "browses":
        return shopper

    shopper.cart_id = f"cart-{seed}-{number:03d}"
    cart_url = f"{SHOP_URL}/cart/{shopper.cart_id}"
    cart = [product(i, rng.randint(1, 2)) for i in viewed[: rng.randint(1, len(viewed))]]
    for item in cart:
        call(
            "track",
            event="Product Added",
            properties={**item, "cart_id": shopper.cart_id, "cart_url": cart_url},
        )
    call("track", event="Cart Viewed", properties={"cart_id": shopper.cart_id, "products": cart})
    if kind == "leaves_cart":
        return shopper

    # Checkout: the shopper signs in; the anonymous history becomes theirs.
    shopper.user_id = f"shopper-{seed}-{number:03d}"
    shopper.email = f"{shopper.user_id}@example.com"
    shopper.marketing_email = rng.random() < 0.85
    consent: dict[str, Any] = {"email": {"marketing": shopper.marketing_email}}
    if shopper.device_token:
        consent["push"] = {"marketing": True}
    shopper.calls.append(
        Call(
            "alias",
            {"previous_id": shopper.anonymous_id, "user_id": shopper.user_id, "context": context},
        )
    )
    ids["user_id"] = shopper.user_id
    call(
        "identify",
        traits={
            "email": shopper.email,
            "phone": f"+38160{rng.randint(1_000_000, 9_999_999)}",
            "first_name": first_name,
            "consent": consent,
        },
    )
    subtotal = round(sum(p["price"] * p["quantity"] for p in cart), 2)
    shopper.order_id = f"order-{seed}-{number:03d}"
    shopper.revenue = subtotal
    order = {
        "checkout_id": f"checkout-{seed}-{number:03d}",
        "order_id": shopper.order_id,
        "cart_id": shopper.cart_id,
        "cart_url": cart_url,
        "value": subtotal,
        "revenue": subtotal,
        "currency": CURRENCY,
        "products": cart,
    }
    call("track", event="Checkout Started", properties=order)
    if kind == "leaves_checkout":
        shopper.order_id = shopper.revenue = None
        return shopper
    shipping = 0.0 if subtotal >= 100 else 4.9
    tax = round(subtotal * 0.2, 2)
    completed = {**order, "shipping": shipping, "tax": tax, "total": subtotal + shipping + tax}
    call("track", event="Order Completed", properties=completed)
    return shopper
