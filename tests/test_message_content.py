"""Messages as sent by a running journey: personal, localized, linked, and never blank.

Real store, router, workflow and send activity on the time-skipping server;
the console channel records what would go to the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest_asyncio
from harness import Bench, write_journey
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.rendering.formatting import Formats
from orchestrator.services.links import MessageLinks
from orchestrator.store.db import session_scope
from orchestrator.store.tables import JourneyRun

JOURNEY = """\
id: cart_items
name: Cart items
trigger: {event: Product Added}
steps:
  - wait: 1h
  - send: {id: reminder, channel: email, template: cart_items}
"""
TEMPLATES = {
    "cart_items/email.subject": "{{ contact.first_name or 'Hi' }}, your cart",
    "cart_items/email.html": (
        "<html><body><ul>{% for item in cart.products %}"
        "<li>{{ item.name }} x{{ item.quantity }} {{ item.total | money }}</li>{% endfor %}</ul>"
        # No step of this journey keeps a code (tests set one on the run): guarded, as
        # `journeys validate` requires of a value real sends may lack.
        "{% if journey.coupon_code is defined %}<p>{{ journey.coupon_code }}</p>{% endif %}"
        '<a href="{{ message.unsubscribe_url }}">Unsubscribe</a></body></html>'
    ),
    "cart_items/ru/email.subject": "{{ contact.first_name }}, ваша корзина",
    "cart_items/ru/email.html": (
        "<html><body><ul>{% for item in cart.products %}"
        "<li>{{ item.name }} x{{ item.quantity }} {{ item.total | money }}</li>{% endfor %}</ul>"
        "<p>Итого: {{ cart.total | money }}</p>"
        "{% if journey.coupon_code is defined %}<p>{{ journey.coupon_code }}</p>{% endif %}"
        '<a href="{{ message.unsubscribe_url }}">Отписаться</a></body></html>'
    ),
    "broken/email.subject": "Hi",
    "broken/email.text": "Hello\n{{ contact.traits.nickname }}\n",
}


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    for name, text in TEMPLATES.items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    write_journey(tmp_path / "journeys", "cart_items", JOURNEY)
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", tmp_path / "templates")
    bench.deploy()
    yield bench


async def set_run_data(bench: Bench, user: str, **values: object) -> None:
    """What an earlier action step (issue coupon, award points) leaves for later steps."""
    for _ in range(200):  # the run row appears once the workflow has entered
        with session_scope(bench.engine) as session:
            run = session.exec(select(JourneyRun).where(JourneyRun.contact_id == user)).first()
            if run is not None:
                run.data = {**run.data, **values}
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no journey run for {user}")


async def test_a_russian_shopper_gets_her_whole_cart_in_russian(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify(
            "masha", email="masha@example.com", first_name="Маша", context={"locale": "ru-RU"}
        )
        cart = {"cart_id": "c9", "currency": "RUB"}
        await bench.track(
            "masha", "Product Added", product_id="p1", name="Кеды", price=4990, **cart
        )
        await bench.track(
            "masha", "Product Added", product_id="p2", name="Носки", price=300, quantity=2, **cart
        )
        await set_run_data(bench, "masha", coupon_code="MASHA-10")
        await bench.result("cart_items", "masha")
    [email] = bench.messages("masha")
    assert (email.status, email.locale) == ("sent", "ru")
    assert email.content["subject"] == "Маша, ваша корзина"
    html = unescape(email.content["html"])  # css-inline writes U+00A0 as &nbsp;
    # Her locale and the cart's currency (how ru writes rubles is CLDR's: test_formatting.py).
    rubles = Formats("ru", "RUB").money
    assert f"Кеды x1 {rubles(4990)}" in html
    assert f"Носки x2 {rubles(600)}" in html  # added after the trigger, still in the cart
    assert f"Итого: {rubles(5590)}" in html
    assert "MASHA-10" in html
    assert "Отписаться" in email.content["text"]  # generated from the HTML
    links = MessageLinks(bench.settings.resolved_public_url, "bench-secret")
    assert links.for_message(email.id)["unsubscribe_url"] in html


async def test_the_sent_email_can_be_viewed_in_a_browser(bench: Bench, ts_env) -> None:
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com", first_name="<b>Ann</b>")
        await bench.track("ann", "Product Added", product_id="p1", name="Hat", price=20)
        await set_run_data(bench, "ann", coupon_code="ANN-5")
        await bench.result("cart_items", "ann")
    [email] = bench.messages("ann")
    assert email.locale == "en"
    links = MessageLinks(bench.settings.resolved_public_url, "bench-secret")
    app = create_app(bench.engine, ["key"], links=links)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        view = links.for_message(email.id)["view_url"].removeprefix(links.public_url)
        page = await http.get(view)
        assert page.status_code == 200
        assert "Hat x1 $20.00" in page.text and "ANN-5" in page.text
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'
        assert page.headers["x-robots-tag"] == "noindex"
        forged = MessageLinks(links.public_url, "guess").for_message(email.id)["view_url"]
        assert (await http.get(forged.removeprefix(links.public_url))).status_code == 404
        assert (await http.get("/m/not-a-token")).status_code == 404


async def test_a_missing_variable_fails_the_send_instead_of_sending_blanks(
    bench: Bench, ts_env, tmp_path: Path
) -> None:
    write_journey(
        tmp_path / "journeys",
        "cart_items",
        JOURNEY.replace("template: cart_items", "template: broken"),
    )
    # Deploy checks render the sample, which has the trait; Bob has none. (A template
    # edited after deploy no longer reaches runs: they render their version's files.)
    (tmp_path / "templates" / "broken" / "sample.yaml").write_text(
        "contact: {traits: {nickname: Al}}\n"
    )
    (tmp_path / "templates" / "broken" / "email.text").write_text(
        "Hello\n{{ contact.traits.nickname }}\n"
    )
    bench.deploy()
    async with bench.worker():
        await bench.identify("bob", email="bob@example.com")
        await bench.track("bob", "Product Added", product_id="p1", name="Hat", price=20)
        await ts_env.sleep(timedelta(hours=2))
        await bench.result("cart_items", "bob")
    [email] = bench.messages("bob")
    assert email.status == "failed"
    assert email.error == (
        "template broken: undefined variable: contact.traits.nickname (broken/email.text:2)"
    )
    assert bench.console.getvalue() == ""  # the provider was never called
