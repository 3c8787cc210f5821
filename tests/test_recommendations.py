"""Recommendations as a shopper meets them: what she left behind, what people who bought
her cart also bought, and the cart reminder that shows them.

Store tests run on SQLite and PostgreSQL (`engine`); orders are written as rows, the way
ingestion leaves them. The last test sends the real `cart_reminder` through a journey.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest_asyncio
from harness import Bench, write_journey, write_message
from sqlalchemy import Engine

from orchestrator.deployment.template_checks import check_message
from orchestrator.rendering import Renderer
from orchestrator.rendering.samples import sample_context
from orchestrator.services.links import MessageLinks
from orchestrator.store.context import product
from orchestrator.store.db import session_scope
from orchestrator.store.recommendations import recommendations
from orchestrator.store.tables import Event, Order, OrderLine

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def interest(engine: Engine, contact: str, event: str, days: float, **props: Any) -> None:
    with session_scope(engine) as session:
        session.add(
            Event(
                message_id=f"e{next(_seq)}",
                type="track",
                name=event,
                contact_id=contact,
                properties=props,
                timestamp=ago(days),
                routed_at=ago(days),
            )
        )


def order(engine: Engine, contact: str, days: float, *products: str) -> None:
    """An order of `contact`, placed `days` ago, with one line per product id."""
    order_id = f"o{next(_seq)}"
    with session_scope(engine) as session:
        session.add(Order(order_id=order_id, contact_id=contact, placed_at=ago(days)))
        for pid in products:
            session.add(
                OrderLine(
                    order_id=order_id,
                    contact_id=contact,
                    product_id=pid,
                    name=f"Product {pid}",
                    price=10.0,
                    url=f"https://shop.example/p/{pid}",
                    image_url=f"https://shop.example/img/{pid}.jpg",
                    placed_at=ago(days),
                )
            )


def suggest(engine: Engine, cart: list[str], contact: str = "ann", limit: int = 4) -> Any:
    with session_scope(engine) as session:
        products = [product({"product_id": p}) for p in cart]
        return recommendations(session, contact, products, NOW, limit)


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in items]


def test_left_behind_is_what_she_looked_at_and_neither_bought_since_nor_has_in_her_cart(
    engine: Engine,
) -> None:
    viewed = "Product Viewed"
    interest(engine, "ann", viewed, 40, product_id="old", name="Too long ago")
    interest(engine, "ann", viewed, 6, product_id="lamp", name="Lamp", price=45)
    interest(engine, "ann", viewed, 5, product_id="rug", name="Rug")
    interest(engine, "ann", "Product Added", 4, product_id="vase", name="Vase")
    interest(engine, "ann", viewed, 3, product_id="mug", name="Mug")
    interest(engine, "ann", viewed, 2, product_id="lamp", name="Lamp", price=39)
    interest(engine, "ann", "Product Added", 1, product_id="sofa", name="Sofa")
    interest(engine, "ann", "Order Completed", 1, products=[{"product_id": "chair"}])
    interest(engine, "bob", viewed, 1, product_id="bobs", name="Someone else's")
    interest(engine, "ann", viewed, -1, product_id="later", name="After the send time")
    order(engine, "ann", 4.5, "rug")  # bought after looking: not left behind
    order(engine, "ann", 10, "mug")  # bought before looking again: she may want another

    found = suggest(engine, cart=["sofa"])

    # Newest interest first, each product once; the sofa is in her cart.
    assert ids(found["left_behind"]) == ["lamp", "mug", "vase"]
    lamp = found["left_behind"][0]
    assert (lamp["name"], lamp["price"], lamp["quantity"]) == ("Lamp", 39, 1)  # as last seen


def test_also_bought_ranks_by_distinct_buyers_and_never_suggests_her_cart_or_her_purchases(
    engine: Engine,
) -> None:
    order(engine, "u1", 3, "kettle", "tea", "cups")
    order(engine, "u1", 2, "tea")  # the same buyer twice counts once
    order(engine, "u2", 5, "kettle", "tea")
    order(engine, "u3", 9, "kettle", "cups", "filter")
    order(engine, "u4", 1, "tea", "filter", "scale")  # did not buy the kettle
    order(engine, "u5", 4, "toaster", "cups")  # bought another product in her cart
    order(engine, "ann", 30, "cups")  # she has cups already
    order(engine, "ann", 20, "kettle")  # her own purchase of the cart product is no signal

    found = suggest(engine, cart=["kettle", "toaster"])

    assert ids(found["also_bought"]) == ["tea", "filter"]
    assert [p["buyers"] for p in found["also_bought"]] == [2, 1]
    tea = found["also_bought"][0]
    assert tea["name"] == "Product tea" and tea["price"] == 10.0
    assert tea["url"] == "https://shop.example/p/tea"
    assert tea["image"] == "https://shop.example/img/tea.jpg"
    assert found["left_behind"] == []


def test_an_empty_cart_asks_what_buyers_of_her_left_behind_products_bought(
    engine: Engine,
) -> None:
    interest(engine, "ann", "Product Viewed", 2, product_id="tent", name="Tent")
    order(engine, "u1", 3, "tent", "stakes")
    order(engine, "u2", 3, "tent", "stakes", "lantern")
    order(engine, "u2", 1, "tent")

    found = suggest(engine, cart=[])

    assert ids(found["left_behind"]) == ["tent"]
    assert ids(found["also_bought"]) == ["stakes", "lantern"]  # never the tent twice


def test_nothing_to_go_on_gives_empty_lists_and_limit_bounds_both(engine: Engine) -> None:
    assert suggest(engine, cart=[]) == {"left_behind": [], "also_bought": []}
    assert suggest(engine, cart=["unknown"]) == {"left_behind": [], "also_bought": []}

    for n in range(6):
        interest(engine, "ann", "Product Viewed", n + 1, product_id=f"seen{n}")
        order(engine, f"u{n}", 2, "seed", f"other{n}")
    found = suggest(engine, cart=["seed"], limit=2)
    assert ids(found["left_behind"]) == ["seen0", "seen1"]
    assert len(found["also_bought"]) == 2


# --- the cart reminder that shows them -------------------------------------------------

JOURNEY = """\
id: cart_recs
name: Cart reminder with suggestions
trigger: {event: Product Added}
steps:
  - wait: 1h
  - send: {id: reminder, channel: email, template: cart_reminder}
"""


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    write_journey(tmp_path / "journeys", "cart_recs", JOURNEY)
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys")  # the repository's templates
    bench.deploy()
    yield bench


async def test_the_cart_reminder_shows_what_buyers_of_her_cart_also_bought(
    bench: Bench, ts_env
) -> None:
    today = datetime.now(UTC)
    with session_scope(bench.engine) as session:
        for buyer in ("u1", "u2"):
            session.add(Order(order_id=f"{buyer}-1", contact_id=buyer, placed_at=today))
            for pid, name in (("throw", "Linen throw"), ("pillow", "Linen pillow")):
                session.add(
                    OrderLine(
                        order_id=f"{buyer}-1",
                        contact_id=buyer,
                        product_id=pid,
                        name=name,
                        price=25.0,
                        url=f"https://shop.example/p/{pid}",
                        placed_at=today - timedelta(days=1),
                    )
                )
    # A view at journey time: the shared time-skipping server may be days ahead of the wall
    # clock after other tests, and "the last 30 days" are counted back from journey time.
    viewed_at = await ts_env.get_current_time()
    with session_scope(bench.engine) as session:
        session.add(
            Event(
                message_id="viewed-lamp",
                type="track",
                name="Product Viewed",
                contact_id="ann",
                properties={"product_id": "lamp", "name": "Reading lamp"},
                timestamp=viewed_at,
                routed_at=viewed_at,
            )
        )
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com", first_name="Ann")
        await bench.track(
            "ann", "Product Added", product_id="throw", name="Linen throw", price=25, cart_id="c1"
        )
        await bench.result("cart_recs", "ann")
    [email] = bench.messages("ann")
    assert email.status == "sent", email.error
    html, text = unescape(email.content["html"]), email.content["text"]
    assert "You may also like" in html and "You may also like" in text
    # The suggestion links to its product through our click redirect.
    pillow = email.content["links"].index("https://shop.example/p/pillow")
    links = MessageLinks.from_settings(bench.settings)
    assert "Linen pillow" in html and links.click_url(email.id, pillow) in html
    assert "Reading lamp" in html and "Reading lamp" in text  # viewed, not bought
    cart, suggestions = html.split("You may also like", 1)
    assert "Linen throw" in cart and "Linen throw" not in suggestions  # never suggested


# --- checked before launch ---------------------------------------------------------------

SUGGESTING = {
    "email.subject": "Hi",
    "email.text": (
        "{% for p in recommendations.also_bought %}{{ p.name }} {{ p.image }}\n{% endfor %}"
        "{{ recommendations.left_behind | length }} left"
    ),
}


def test_validate_renders_suggestions_with_sample_data_or_the_message_sample_yaml(
    tmp_path: Path,
) -> None:
    renderer = Renderer(tmp_path)
    folder = write_message("news", SUGGESTING, tmp_path)
    assert check_message(renderer, "news", ["email"]) == []
    defaults = sample_context(renderer.message("news"), None)["recommendations"]
    assert defaults["left_behind"] and defaults["also_bought"]  # the block is exercised

    (folder / "sample.yaml").write_text(
        "recommendations:\n  also_bought:\n"
        "    - {product_id: p1, name: Mug, image_url: https://x.example/mug.jpg}\n"
    )
    given = sample_context(renderer.message("news"), None)["recommendations"]
    assert [(p["name"], p["image"]) for p in given["also_bought"]] == [
        ("Mug", "https://x.example/mug.jpg")  # the names templates use
    ]
    assert check_message(renderer, "news", ["email"]) == []

    (folder / "sample.yaml").write_text("recommendations: {also_bought: Mug}\n")
    [problem] = check_message(renderer, "news", ["email"])
    assert problem.file == str(folder / "sample.yaml")
    assert "recommendations.also_bought must be a list of products" in problem.message
