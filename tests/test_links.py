"""Links from event and contact data: only absolute http(s) URLs reach a message.

The shipped cart email is rendered with a product, a cart and suggestions whose links
are hostile; every `href` and `src` of the result must be http(s), the templates' own
fallbacks (the cart link, the shop's website) take the dropped links' place, and each
drop says where and why: on the message's timeline and in the worker's log when sent,
in `journeys preview` before.
"""

from __future__ import annotations

import io
import json
import logging
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness import write_message
from sqlalchemy import Engine
from temporalio.testing import ActivityEnvironment

from channels.console import ConsoleChannel
from orchestrator.activities.sending import SendActivities
from orchestrator.cli import main
from orchestrator.rendering import Renderer
from orchestrator.rendering.safe_links import link_problem
from orchestrator.rendering.samples import sample_context
from orchestrator.services.links import MessageLinks
from orchestrator.settings import Settings
from orchestrator.store.context import cart_from_events, product, products_of
from orchestrator.store.db import session_scope
from orchestrator.store.recommendations import LazyRecommendations
from orchestrator.store.tables import Contact, Event, Message, utcnow
from orchestrator.workflows import types as t

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
WEBSITE = "https://www.example.com"  # templates/_brand.yaml

HOSTILE = {
    "javascript": "javascript:alert(document.cookie)",
    "mixed case": "JaVaScRiPt:alert(1)",
    "leading spaces": "   javascript:alert(1)",
    "leading control character": "\x01\x02javascript:alert(1)",
    "tab inside the scheme": "java\tscript:alert(1)",
    "newline inside the scheme": "java\nscript:alert(1)",
    "data": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript": "vbscript:msgbox(1)",
    "protocol-relative": "//evil.example/cart",
    "relative": "/cart/recover/c9",
    "user before the host": "https://shop.example.com@evil.example/",
    "backslashes": "https:\\\\evil.example",
}


class Links(HTMLParser):
    """Every href and src of a document, as a browser reads them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [v or "" for k, v in attrs if k in ("href", "src")]


def cart_context(link: str) -> dict[str, Any]:
    """The shipped cart email's sample data, with `link` as every link the shop sent."""
    renderer = Renderer(TEMPLATES)
    context = sample_context(renderer.message("cart_reminder"), "Product Added")
    properties = {
        "product_id": "p1",
        "name": "Wool scarf",
        "price": 35,
        "url": link,
        "image_url": link,
        "cart_id": "c9",
        "cart_url": link,
    }
    event = {**context["event"], "properties": properties, "products": products_of(properties)}
    hostile = product({"product_id": "p2", "name": "Mittens", "price": 9, "url": link})
    links = MessageLinks("https://crm.example.com", "secret").for_message("m-1")
    return {
        **context,
        "message": {"id": "m-1", **links},
        "event": event,
        "cart": cart_from_events([event], "c9"),
        "recommendations": {"left_behind": [], "also_bought": [{**hostile, "buyers": 3}]},
    }


@pytest.mark.parametrize("link", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_link_from_data_that_is_not_http_never_reaches_a_message(link: str) -> None:
    renderer = Renderer(TEMPLATES)
    context = cart_context(link)
    email = renderer.render("cart_reminder", "email", context)
    hrefs = Links(email.parts["html"]).found
    assert hrefs and all(h.startswith(("https://", "http://", "mailto:")) for h in hrefs), hrefs
    assert not [h for h in hrefs if h.startswith("mailto:") and "@example.com" not in h]
    for part in ("html", "text"):
        assert link.strip() not in email.parts[part]
        assert "evil.example" not in email.parts[part]
    # The templates' own fallbacks take the dropped links' place.
    assert f'href="{WEBSITE}"' in email.parts["html"]
    assert {d.path for d in email.dropped_links} == {
        "event.properties.url",
        "event.properties.image_url",
        "event.properties.cart_url",
        "event.products.0.url",
        "event.products.0.image",
        "event.products.0.image_url",
        "event.products.0.cart_url",  # a product keeps every property it came with
        "cart.url",
        "cart.products.0.url",
        "cart.products.0.image",
        "cart.products.0.image_url",
        "cart.products.0.cart_url",
        "recommendations.also_bought.0.url",
    }
    assert all(d.reason and d.value == link[:200] for d in email.dropped_links)
    push = renderer.render("cart_reminder", "push", context)
    assert push.parts["link"] == WEBSITE and push.parts["image"].startswith("https://")
    sms = renderer.render("cart_reminder", "sms", context)
    assert WEBSITE in sms.parts["body"] and link.strip() not in sms.parts["body"]


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        (HOSTILE["javascript"], "javascript: links are not allowed, only http and https"),
        (HOSTILE["mixed case"], "javascript: links are not allowed, only http and https"),
        (HOSTILE["leading control character"], "javascript: links are not allowed"),
        (HOSTILE["tab inside the scheme"], "a line break, or a control or invisible character"),
        (HOSTILE["data"], "data: links are not allowed, only http and https"),
        (HOSTILE["vbscript"], "vbscript: links are not allowed, only http and https"),
        (HOSTILE["protocol-relative"], "it has no scheme (//host...)"),
        (HOSTILE["relative"], "it is not an absolute URL"),
        (HOSTILE["user before the host"], "a user name before the host"),
        ("https://shop.example.com/\u202egpj.exe", "control or invisible character"),
        ("https://", "it has no host name"),
    ],
)
def test_each_drop_says_why(link: str, reason: str) -> None:
    found, problem = link_problem(link)
    assert found is None and problem is not None and reason in problem


def test_http_links_stay_as_sent_trimmed() -> None:
    assert link_problem("  HTTPS://Shop.example.com/p/1?utm=a#x \n") == (
        "HTTPS://Shop.example.com/p/1?utm=a#x",
        None,
    )
    assert link_problem("https://shop.example.com/red shoes") == (
        "https://shop.example.com/red%20shoes",
        None,
    )
    email = Renderer(TEMPLATES).render(
        "cart_reminder", "email", cart_context("https://shop.example.com/cart/c9")
    )
    assert email.dropped_links == ()
    assert 'href="https://shop.example.com/cart/c9"' in email.parts["html"]


def test_suggestions_are_still_computed_only_when_a_message_shows_them(tmp_path: Path) -> None:
    calls = []

    def compute() -> dict[str, list[dict[str, Any]]]:
        calls.append(1)
        return {"left_behind": [], "also_bought": [product({"name": "X", "url": "data:,x"})]}

    write_message("plain", {"email.subject": "Hi", "email.text": "Hi"}, tmp_path)
    write_message(
        "suggests",
        {"email.subject": "Hi", "email.text": "{{ recommendations.also_bought[0].url }}"},
        tmp_path,
    )
    renderer = Renderer(tmp_path)
    plain = renderer.render("plain", "email", {"recommendations": LazyRecommendations(compute)})
    assert calls == [] and plain.dropped_links == ()
    shown = renderer.render("suggests", "email", {"recommendations": LazyRecommendations(compute)})
    assert calls == [1] and shown.parts["text"] == ""
    assert [d.path for d in shown.dropped_links] == ["recommendations.also_bought.0.url"]


def test_a_send_records_and_logs_each_dropped_link(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    with session_scope(sqlite_engine) as session:
        session.add(Contact(id="ann", email="ann@example.com"))
        event = Event(
            message_id="m-1",
            type="track",
            name="Product Added",
            contact_id="ann",
            properties={"product_id": "p1", "name": "Scarf", "url": HOSTILE["javascript"]},
            context={},
            timestamp=now,
            received_at=now,
        )
        session.add(event)
        session.flush()
        event_id = event.id
    stream = io.StringIO()
    sends = SendActivities(
        sqlite_engine,
        Renderer(TEMPLATES),
        {"email": ConsoleChannel(stream)},
        MessageLinks("https://crm.example.com", "secret"),
        Settings(marketing_cap="none", message_cap="none"),
    )
    request = t.SendRequest(
        workflow_id="journey:abandoned_cart:ann",
        entry_seq=1,
        step_id="reminder",
        journey_id="abandoned_cart",
        contact_id="ann",
        channel="email",
        template="cart_reminder",
        category="transactional",
        trigger_event_id=event_id,
    )
    with caplog.at_level(logging.WARNING):
        prepared = ActivityEnvironment().run(sends.prepare_message, request)
    assert prepared.status == "ready"
    with session_scope(sqlite_engine) as session:
        row = session.get(Message, prepared.message_id)
        assert row is not None
        assert "javascript:" not in json.dumps(row.content)
        dropped = [e["detail"] for e in row.timeline if e.get("check") == "links"]
    expected = "event.products.0.url: javascript: links are not allowed, only http and https"
    assert expected in dropped
    assert f"message {prepared.message_id}: link {expected}" in caplog.text


def test_preview_shows_each_dropped_link_and_why(workdir: Path) -> None:
    write_message(
        "cart",
        {
            "email.subject": "Your cart",
            "email.html": "<a href=\"{{ cart.url or 'https://shop.example.com' }}\">Cart</a>",
        },
    )
    Path("event.json").write_text(
        json.dumps({"event": "Product Added", "properties": {"cart_url": HOSTILE["vbscript"]}})
    )
    result = CliRunner().invoke(main, ["preview", "cart", "--event", "event.json"])
    assert result.exit_code == 0, result.output
    assert "Dropped links (only absolute http and https links reach a message):" in result.stdout
    assert (
        "  event.properties.cart_url = 'vbscript:msgbox(1)': "
        "vbscript: links are not allowed, only http and https"
    ) in result.stdout
    assert "  cart.url = 'vbscript:msgbox(1)'" in result.stdout
