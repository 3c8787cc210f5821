"""What conditions and templates can read: the keys of `contact`, `event`, `trigger`,
`journey` and `cart`, and which roots each place a condition is written sees.

One definition for both sides of the contract. `journeys validate` refuses
`trigger.product_id` (always null: the id is in `trigger.properties`) against it, and
the runtime builders produce exactly these keys: `store/context.py` builds the contact,
event and cart from these tuples, the actions keep the `journey.*` values named here,
and tests/test_context_roots.py holds every builder to them. A key added at runtime
without being added here fails that test, so the check cannot drift from what
activities provide.

`properties`, `context` (of an event), `traits` and `consent` (of a contact) are the
storefront's own data: any key may be read under them.
"""

from __future__ import annotations

# contact_context(contact, session): a contact as conditions and templates see it.
CONTACT_KEYS = (
    "id",
    "email",
    "phone",
    "locale",
    "timezone",
    "traits",
    "first_name",
    "last_name",
    "name",
    "consent",
    "orders",  # how many orders, refunded ones not counted
    "last_order_at",
)
# event_context(event): the trigger (`trigger`, and `event` where no other event is
# under test) and the event a `where:` looks at.
EVENT_KEYS = ("id", "name", "type", "properties", "context", "timestamp", "products")
# cart_from_events(...): the contact's current cart (templates only).
CART_KEYS = ("id", "products", "item_count", "total", "currency", "url")
# What other platforms call a key (Shopify's `cart.items`, `line_items`): a "did you mean".
KEY_SYNONYMS = {"items": "products", "line_items": "products", "lines": "products"}
# Keys under which any name may be read: what storefronts send.
FREE_KEYS = {"contact": ("traits", "consent"), "event": ("properties", "context")}

# What steps keep on the run (`journey.<key>`).
COUPON_FIELDS = ("code", "campaign", "kind", "value", "currency", "minimum_order", "expires_at")
POINTS_KEYS = ("points_earned", "points_balance")  # award_points
SAVED_EVENT_KEYS = ("name", "properties", "timestamp")  # wait_for: {save_as: key}
# What templates also see under `journey` (journey_context): not conditions.
TEMPLATE_JOURNEY_KEYS = ("id", "step")

ROOTS = ("contact", "event", "trigger", "journey")

# The roots each place a condition can be written sees, as its activity builds them.
# A root left out is null there: the router checks `trigger.where` against the
# contact and the event alone; `entry.if` runs before any step has kept anything.
SITE_ROOTS: dict[str, tuple[str, ...]] = {
    "trigger.where": ("contact", "event"),
    "entry.if": ("contact", "event", "trigger"),
    "goal.where": ROOTS,
    "wait_for.where": ROOTS,
    "branch": ROOTS,
    "multiplier": ROOTS,
}


# Where `event` is not the trigger but the event a `where:` tests (a goal's, a wait_for's).
# Everywhere else `event` is the run's trigger, as is `trigger`.
EVENT_UNDER_TEST = frozenset({"goal.where", "wait_for.where"})


def coupon_keys(save_as: str) -> tuple[str, ...]:
    """`journey.<save_as>_code`, `_kind`… as an issue_coupon step keeps them."""
    return tuple(f"{save_as}_{field}" for field in COUPON_FIELDS)


def record_keys(root: str) -> tuple[str, ...]:
    """The fixed keys of a root's record (`event` and `trigger` are both events)."""
    return {"contact": CONTACT_KEYS, "event": EVENT_KEYS, "trigger": EVENT_KEYS}.get(root, ())


def free_keys(root: str) -> tuple[str, ...]:
    return FREE_KEYS.get("event" if root == "trigger" else root, ())


# What an invariant reads (docs/invariants.md), as `simulation/invariant_context.py`
# builds it from the store: a message that was sent, its run, the contact, an order.
INVARIANT_MESSAGE_KEYS = (
    "journey",
    "version",
    "step",
    "channel",
    "category",
    "template",
    "status",
    "locale",
    "local_hour",
    "local_time",
    "local_weekday",
    "at",
    "content",
    "after_conversion",
    "hours_since_order",
    "orders_before",
    "has_coupon",
)
INVARIANT_RUN_KEYS = (
    "journey",
    "version",
    "status",
    "exit_reason",
    "converted",
    "current_step",
    "messages_sent",
    "messages_not_sent",
    "reason",
    "entered_at",
)
INVARIANT_CONTACT_KEYS = ("id", "email", "phone", "locale", "timezone", "traits", "consent")
INVARIANT_ORDER_KEYS = ("id", "revenue", "at", "properties")
INVARIANT_KEYS: dict[str, tuple[str, ...]] = {
    "message": INVARIANT_MESSAGE_KEYS,
    "run": INVARIANT_RUN_KEYS,
    "contact": INVARIANT_CONTACT_KEYS,
    "order": INVARIANT_ORDER_KEYS,
}
INVARIANT_ROOTS = tuple(INVARIANT_KEYS)
# Keys under which any name may be read: what a message said, what the shop sent.
INVARIANT_FREE_KEYS = {
    "message": ("content",),
    "contact": ("traits", "consent"),
    "order": ("properties",),
}
