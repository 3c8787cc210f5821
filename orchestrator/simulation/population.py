"""The synthetic shoppers of a scenario, and the events that bring them into journeys.

Every draw comes from a random generator seeded by the scenario's seed and what it is
about (`seed:contact:7`), never from one shared sequence: a draw does not depend on the
order things happened in, so the same seed gives the same shoppers and choices even
when the worker's threads finish activities in another order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..dsl.models import Journey
from ..dsl.scenario import Delay, Entry, Product, Purchase, Scenario

FIRST_NAMES = {
    "en": ("Ann", "Ben", "Cleo", "Dan", "Eva", "Finn", "Grace", "Hugo", "Iris", "Jack"),
    "ru": ("Анна", "Борис", "Вера", "Глеб", "Дарья", "Егор", "Жанна", "Иван", "Ксения", "Лев"),  # noqa: RUF001
}
IDENTIFY = "$identify"  # an entry that is the identify call alone
CART_EVENTS = ("Product Added", "Product Viewed", "Cart Viewed", "Checkout Started")
ORDER_COMPLETED = "Order Completed"


def rng(seed: int, *about: object) -> random.Random:
    return random.Random(":".join(str(part) for part in (seed, *about)))


def pick(r: random.Random, weights: dict[str, float]) -> str | None:
    names = [name for name, weight in weights.items() if weight > 0]
    if not names:
        return None
    return r.choices(names, weights=[weights[n] for n in names])[0]


@dataclass
class Shopper:
    id: str
    locale: str
    timezone: str
    traits: dict[str, Any]
    context: dict[str, Any]
    entries: list[tuple[datetime, str, dict[str, Any], Entry]] = field(default_factory=list)


def shoppers(scenario: Scenario, start: datetime, entries: list[Entry]) -> list[Shopper]:
    """The population, each with the entry events it will send, in time order."""
    spread = timedelta(seconds=scenario.entries_over or scenario.days * 86400 // 2)
    width = max(3, len(str(scenario.contacts)))  # sim-001 whatever the population
    found = []
    for n in range(1, scenario.contacts + 1):
        contact = f"sim-{n:0{width}d}"
        r = rng(scenario.seed, "contact", contact)
        pop = scenario.population
        locale = pick(r, pop.locales) or "en"
        zone = pick(r, pop.timezones) or "UTC"
        names = FIRST_NAMES.get(locale.split("-")[0], FIRST_NAMES["en"])
        traits: dict[str, Any] = {"first_name": r.choice(names)}
        for trait, values in sorted(pop.traits.items()):
            value = pick(r, values)
            if value is not None:
                traits[trait] = value
        context: dict[str, Any] = {"locale": locale, "timezone": zone}
        consent: dict[str, Any] = {}
        for channel in ("email", "push", "sms"):
            if r.random() >= pop.channels.get(channel, 0.0):
                continue
            if channel == "email":
                traits["email"] = f"{contact}@example.com"
            elif channel == "sms":
                traits["phone"] = f"+1555{n:07d}"
            else:
                context["device"] = {"token": f"push-token-{contact}"}
            consent[channel] = {
                "marketing": r.random() < pop.consent.get(channel, 1.0),
                "transactional": True,
            }
        traits["consent"] = consent
        shopper = Shopper(contact, locale, zone, traits, context)
        for index, entry in enumerate(entries):
            er = rng(scenario.seed, "entry", contact, index)
            if er.random() >= entry.share:
                continue
            for time_index in range(entry.times):
                at = start + timedelta(seconds=er.uniform(0, spread.total_seconds()))
                props = entry_properties(scenario, entry, er, contact, f"{index}-{time_index}")
                shopper.entries.append((at, entry.event, props, entry))
        shopper.entries.sort(key=lambda item: item[0])
        found.append(shopper)
    return found


def entry_properties(
    scenario: Scenario, entry: Entry, r: random.Random, contact: str, key: str
) -> dict[str, Any]:
    if entry.properties is not None:
        return dict(entry.properties)
    money = {"currency": scenario.currency} if scenario.currency else {}
    if entry.event in CART_EVENTS:
        return {**cart_properties(r.choice(scenario.catalogue), f"{contact}-cart-{key}"), **money}
    if entry.event == ORDER_COMPLETED:
        product = r.choice(scenario.catalogue)
        return {**order_properties(product, f"{contact}-order-{key}", product.price), **money}
    return {}


def cart_properties(product: Product, cart_id: str) -> dict[str, Any]:
    item = _item(product)
    return {**item, "cart_id": cart_id, "products": [item]}


def order_properties(product: Product, order_id: str, revenue: float) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "revenue": round(revenue, 2),
        "total": round(revenue, 2),
        "products": [_item(product)],
    }


def _item(product: Product) -> dict[str, Any]:
    item: dict[str, Any] = {
        "product_id": product.product_id,
        "name": product.name,
        "price": product.price,
    }
    if product.category:
        item["category"] = product.category
    return item


def default_entries(journeys: list[Journey]) -> list[Entry]:
    """What enters the journeys when the scenario names nothing: each trigger's event
    (an identify call is every shopper's first; a segment fills from their orders)."""
    found: list[Entry] = []
    events = []
    for journey in journeys:
        trigger = journey.trigger
        if trigger.identify and IDENTIFY not in events:
            events.append(IDENTIFY)  # the shopper's identify call itself
        elif trigger.event is not None and trigger.event not in events:
            events.append(trigger.event)
        elif trigger.entered_segment is not None and ORDER_COMPLETED not in events:
            events.append(ORDER_COMPLETED)  # segments of this playbook are about orders
    carts = any(event in CART_EVENTS for event in events)
    for event in events:
        if event == ORDER_COMPLETED and carts:  # most orders come from the carts
            found.append(Entry(event=event, share=0.2))
        elif event in CART_EVENTS:  # some would have bought anyway
            buys = Purchase(chance=0.3, after=Delay(min=3600, max=3 * 86400))
            found.append(Entry(event=event, buys=buys))
        else:
            found.append(Entry(event=event))
    return found
