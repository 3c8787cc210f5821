"""Click tracking: links in messages go through our signed redirect, `GET /c/{token}`,
which records the click and sends the recipient on.

Rewriting is checked on its own (email HTML and text, SMS, push) and through the send
pipeline's prepare step (the journey's `tracking:` read from its deployed version);
clicks go through the real API on SQLite and PostgreSQL, and the last test follows a
real journey from the SMS to the run that waited for the click.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
import pytest_asyncio
from harness import Bench, save_histories, write_journey, write_message
from sqlalchemy import Engine
from sqlmodel import col, select
from temporalio.testing import ActivityEnvironment

from channels.console import ConsoleChannel
from orchestrator.activities.sending import SendActivities
from orchestrator.api import create_app
from orchestrator.dsl import Journey, JourneyError, load_journey
from orchestrator.dsl.loader import spec_hash
from orchestrator.feedback.own_events import INTERNAL_ONLY
from orchestrator.feedback.recording import click_key
from orchestrator.rendering import Renderer
from orchestrator.rendering.sms import sms_length
from orchestrator.services.click_links import LinkRewriter, host_allowed, with_utm
from orchestrator.services.links import MessageLinks
from orchestrator.services.privacy import erase_contact
from orchestrator.settings import Settings
from orchestrator.store.db import session_scope
from orchestrator.store.engagement import ENGAGEMENT_EVENTS, record_engagement
from orchestrator.store.tables import Contact, Event, JourneyRun, JourneyVersion, Message
from orchestrator.workflows import types as t

PUBLIC_URL = "https://crm.shop.example"
LINKS = MessageLinks(PUBLIC_URL, "click-test-secret")
SHOP = "https://shop.example.com"
CART = f"{SHOP}/cart/c9?ref=mail&lang=en#items"
PRODUCT = f"{SHOP}/p/wool-scarf"
IMAGE = f"{SHOP}/img/scarf.jpg"
CLICK_EVENTS = ("Email Link Clicked", "SMS Link Clicked", "Push Link Clicked")

TEMPLATES = {
    "promo/email.subject": "Your cart {{ '" + CART + "' }}",
    "promo/email.html": (
        '<html><body><p><a href="' + CART + '">Your cart</a></p>'
        '<p><img src="' + IMAGE + '" alt="Scarf"></p>'
        '<p><a class="button" href="' + PRODUCT + '">Wool scarf</a>'
        ' <a href="' + CART + '">Back to your cart</a>'
        ' <a href="mailto:care@shop.example.com">Write to us</a></p>'
        '<p><a href="{{ message.view_url }}">View in browser</a>'
        ' <a href="{{ message.unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    ),
    "promo/email.text": (
        "Your cart: " + CART + "\nThe scarf (" + PRODUCT + ").\n"
        "Unsubscribe: {{ message.unsubscribe_url }}"
    ),
    "promo/sms.body": "Shop: your cart is waiting: " + CART + " Reply STOP to opt out",
    "promo/push.title": "Your cart is waiting",
    "promo/push.body": "Tap to finish your order",
    "promo/push.link": CART,
    "promo/push.image": IMAGE,
}


def write_templates(root: Path) -> Path:
    for name, text in TEMPLATES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def spec(tracking: dict[str, Any] | None = None, journey_id: str = "cart_promo") -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": journey_id,
        "name": "Cart promo",
        "trigger": {"event": "Product Added"},
        "steps": [{"send": {"id": "promo", "channel": "email", "template": "promo"}}],
    }
    if tracking is not None:
        raw["tracking"] = tracking
    return Journey.model_validate(raw).model_dump(mode="json", by_alias=True)


class Store:
    """A deployed journey, a contact on it, and the send pipeline's prepare step."""

    def __init__(self, engine: Engine, templates: Path) -> None:
        self.engine, self.templates = engine, templates
        self.versions = 0

    def deploy(self, tracking: dict[str, Any] | None = None) -> int:
        self.versions += 1
        journey = spec(tracking)
        with session_scope(self.engine) as session:
            session.add(
                JourneyVersion(
                    journey_id="cart_promo",
                    version=self.versions,
                    spec_hash=f"h{self.versions}",
                    spec=journey,
                )
            )
        return self.versions

    def prepare(
        self,
        user: str,
        channel: str,
        version: int | None = None,
        settings: Settings | None = None,
    ) -> Message:
        """Render `promo` for `user` on `channel`, as the journey's run on `version`."""
        workflow_id = f"journey:cart_promo:{user}"
        with session_scope(self.engine) as session:
            if session.get(Contact, user) is None:
                session.add(
                    Contact(
                        id=user,
                        email=f"{user}@example.com",
                        phone="+15550001111",
                        push_tokens=["device-1"],
                    )
                )
            session.add(
                JourneyRun(
                    workflow_id=workflow_id,
                    entry_seq=1,
                    journey_id="cart_promo",
                    version=version if version is not None else self.versions,
                    contact_id=user,
                )
            )
        sends = SendActivities(
            self.engine,
            Renderer(self.templates),
            {c: ConsoleChannel() for c in ("email", "sms", "push")},
            LINKS,
            settings or Settings(marketing_cap="none", message_cap="none"),
        )
        request = t.SendRequest(
            workflow_id=workflow_id,
            entry_seq=1,
            step_id="promo",
            journey_id="cart_promo",
            contact_id=user,
            channel=channel,
            template="promo",
            category="transactional",
            trigger_event_id=None,
        )
        prepared = ActivityEnvironment().run(sends.prepare_message, request)
        assert prepared.status == "ready", prepared
        return message(self.engine, prepared.message_id or "")


def message(engine: Engine, message_id: str) -> Message:
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        assert row is not None
        session.expunge(row)
        return row


def clicks(engine: Engine) -> list[Event]:
    with session_scope(engine) as session:
        query = select(Event).where(col(Event.name).in_(CLICK_EVENTS)).order_by(col(Event.id))
        rows = list(session.exec(query))
        for row in rows:
            session.expunge(row)
        return rows


@pytest.fixture
def store(sqlite_engine: Engine, tmp_path: Path) -> Store:
    return Store(sqlite_engine, write_templates(tmp_path / "templates"))


def redirect(index: int, message_id: str) -> str:
    return LINKS.click_url(message_id, index)


# --- rewriting --------------------------------------------------------------------------


def test_email_links_go_through_the_redirect_images_and_our_own_links_do_not(
    store: Store,
) -> None:
    store.deploy()
    row = store.prepare("ann", "email")
    html, text = row.content["html"], row.content["text"]
    # One index per URL, in the order the message shows them, HTML and text alike.
    assert row.content["links"] == [CART, PRODUCT]
    cart, product = redirect(0, row.id), redirect(1, row.id)
    assert html.count(f'href="{cart}"') == 2 and html.count(f'href="{product}"') == 1
    assert f'src="{IMAGE}"' in html  # an image is fetched by the mail client, never a click
    assert 'href="mailto:care@shop.example.com"' in html
    own = LINKS.for_message(row.id)
    assert f'href="{own["view_url"]}"' in html and f'href="{own["unsubscribe_url"]}"' in html
    assert CART not in html and PRODUCT not in html
    assert text == (
        f"Your cart: {cart}\nThe scarf ({product}).\nUnsubscribe: {own['unsubscribe_url']}"
    )
    assert row.content["subject"] == f"Your cart {CART}"  # nobody clicks a subject


def test_sms_and_push_links_go_through_the_redirect(store: Store) -> None:
    store.deploy()
    sms = store.prepare("ann", "sms")
    assert sms.content["body"] == (
        f"Shop: your cart is waiting: {redirect(0, sms.id)} Reply STOP to opt out"
    )
    assert sms.content["links"] == [CART]
    push = store.prepare("bob", "push")
    assert push.content["link"] == redirect(0, push.id)
    assert push.content["image"] == IMAGE
    assert push.content["links"] == [CART]


def test_html_rewriting_touches_only_the_href_of_a_tags() -> None:
    rewriter = LinkRewriter(redirect=lambda i: f"https://t.example/c/{i}", own=LINKS.points_here)
    html = (
        '<a title="1 > 0" HREF="https://a.example/x?p=1&amp;q=2">a</a>'
        "<a href='https://a.example/x?p=1&amp;q=2' data-href=\"https://b.example/\">again</a>"
        '<a data-href="https://b.example/" href=https://c.example/>unquoted</a>'
        '<abbr href="https://d.example/">not a link</abbr><area href="https://e.example/">'
        '<link href="https://f.example/style.css"><img src="https://g.example/i.png">'
        '<a href="javascript:alert(1)">js</a><a href="https://crm.shop.example/u/tok">own</a>'
        '<a name="top">anchor</a><a href="#top">up</a>'
    )
    assert rewriter.html(html) == (
        '<a title="1 > 0" HREF="https://t.example/c/0">a</a>'
        '<a href="https://t.example/c/0" data-href="https://b.example/">again</a>'
        '<a data-href="https://b.example/" href="https://t.example/c/1">unquoted</a>'
        '<abbr href="https://d.example/">not a link</abbr><area href="https://e.example/">'
        '<link href="https://f.example/style.css"><img src="https://g.example/i.png">'
        '<a href="javascript:alert(1)">js</a><a href="https://crm.shop.example/u/tok">own</a>'
        '<a name="top">anchor</a><a href="#top">up</a>'
    )
    # The URL as a browser reads the attribute: `&amp;` is `&`.
    assert rewriter.links == ["https://a.example/x?p=1&q=2", "https://c.example/"]


def test_links_in_text_keep_the_punctuation_around_them() -> None:
    rewriter = LinkRewriter(redirect=lambda i: f"R{i}", own=LINKS.points_here)
    text = (
        "See https://a.example/x. Or (https://a.example/y_(1)), https://a.example/z!\n"
        "<https://a.example/x> and again https://a.example/x?\n"
        "Not ours to change: https://crm.shop.example/m/tok, mailto:x@y.example, "
        "ftp://a.example/f, user@https://a.example"
    )
    assert rewriter.text(text) == (
        "See R0. Or (R1), R2!\n<R0> and again R0?\n"
        "Not ours to change: https://crm.shop.example/m/tok, mailto:x@y.example, "
        "ftp://a.example/f, user@https://a.example"
    )
    assert rewriter.links == [
        "https://a.example/x",
        "https://a.example/y_(1)",
        "https://a.example/z",
    ]


def test_own_links_are_the_public_url_and_nothing_like_it() -> None:
    assert LINKS.points_here("https://crm.shop.example/u/tok")
    assert LINKS.points_here("HTTPS://CRM.shop.example/s/tok?score=9")
    assert LINKS.points_here("https://crm.shop.example")
    assert not LINKS.points_here("https://crm.shop.example.evil.example/u/tok")
    assert not LINKS.points_here("https://crm.shop.examplex/")
    assert not LINKS.points_here("http://crm.shop.example/u/tok")  # another scheme is not us


# --- UTM --------------------------------------------------------------------------------

UTM = {"utm_source": "shop_emails", "utm_medium": "email", "utm_campaign": "j", "utm_content": "s"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://shop.example.com/p/1",
            "https://shop.example.com/p/1?utm_source=shop_emails&utm_medium=email"
            "&utm_campaign=j&utm_content=s",
        ),
        (  # other parameters, their order and the fragment are kept exactly
            "https://shop.example.com/p/1?b=2&a=1&a=3&empty=#reviews?x=1",
            "https://shop.example.com/p/1?b=2&a=1&a=3&empty=&utm_source=shop_emails"
            "&utm_medium=email&utm_campaign=j&utm_content=s#reviews?x=1",
        ),
        (  # a parameter the link already has is never overwritten
            "https://shop.example.com/?utm_source=newsletter&utm_campaign=spring#top",
            "https://shop.example.com/?utm_source=newsletter&utm_campaign=spring"
            "&utm_medium=email&utm_content=s#top",
        ),
        (
            "https://shop.example.com/?",
            "https://shop.example.com/?utm_source=shop_emails&utm_medium=email"
            "&utm_campaign=j&utm_content=s",
        ),
        (  # all four there: the link is left as it is
            "https://s.example/?utm_content=a&utm_campaign=b&utm_medium=c&utm_source=d",
            "https://s.example/?utm_content=a&utm_campaign=b&utm_medium=c&utm_source=d",
        ),
    ],
)
def test_utm_parameters_are_added_never_overwritten(url: str, expected: str) -> None:
    assert with_utm(url, UTM) == expected


def test_the_journey_asks_for_utm_and_the_redirect_leads_to_the_decorated_url(
    store: Store,
) -> None:
    store.deploy({"utm": {"source": "shop_emails"}})
    row = store.prepare("ann", "sms")
    tail = "utm_source=shop_emails&utm_medium=sms&utm_campaign=cart_promo&utm_content=promo"
    assert row.content["links"] == [f"{SHOP}/cart/c9?ref=mail&lang=en&{tail}#items"]
    assert row.content["body"].split()[5] == redirect(0, row.id)


def test_clicks_false_sends_links_as_rendered_with_utm_if_asked(store: Store) -> None:
    off = store.deploy({"clicks": False})
    row = store.prepare("ann", "email", off)
    assert "links" not in row.content
    escaped = CART.replace("&", "&amp;")
    assert row.content["html"].count(f'href="{escaped}"') == 2
    assert "/c/" not in row.content["html"]
    assert CART in row.content["text"]

    utm_only = store.deploy({"clicks": False, "utm": {"source": "shop_emails"}})
    row = store.prepare("bob", "email", utm_only)
    tail = "utm_source=shop_emails&amp;utm_medium=email&amp;utm_campaign=cart_promo"
    assert f'href="{SHOP}/cart/c9?ref=mail&amp;lang=en&amp;{tail}' in row.content["html"]
    assert "links" not in row.content and "/c/" not in row.content["html"]


def test_the_setting_turns_click_tracking_off_everywhere(store: Store) -> None:
    store.deploy()
    settings = Settings(marketing_cap="none", message_cap="none", click_tracking=False)
    row = store.prepare("ann", "sms", settings=settings)
    assert row.content["body"] == f"Shop: your cart is waiting: {CART} Reply STOP to opt out"
    assert "links" not in row.content


def test_only_links_to_the_shops_domains_are_tracked_when_it_names_them(store: Store) -> None:
    """A link a storefront event put in the message (public write key) to another host
    is sent as it is: our redirect never hides a foreign host behind the shop's domain."""
    store.deploy()
    for user, domains, tracked in (("ann", ["example.com"], True), ("bob", ["shop.ex"], False)):
        settings = Settings(
            marketing_cap="none", message_cap="none", click_tracking_domains=domains
        )
        row = store.prepare(user, "sms", settings=settings)
        assert ("links" in row.content) is tracked, (domains, row.content)
        assert (CART in row.content["body"]) is not tracked
    assert host_allowed("https://www.example.com/x", ["example.com"])
    assert host_allowed("https://EXAMPLE.com./x", ["example.com"])
    assert not host_allowed("https://evil-example.com/x", ["example.com"])
    assert not host_allowed("https://example.com.evil.net/x", ["example.com"])
    assert host_allowed("https://anything.net/", [])


def test_hand_written_journeys_get_the_defaults(store: Store) -> None:
    row = store.prepare("ann", "sms", version=0)  # a Python journey: no deployed version
    assert row.content["links"] == [CART]
    assert row.content["body"].split()[5] == redirect(0, row.id)


def test_an_sms_that_would_outgrow_its_segments_keeps_its_links(store: Store) -> None:
    """A rewrite never makes an SMS fail: when the redirect would not fit, the link stays."""
    store.deploy({"utm": {"source": "shop_emails"}})
    settings = Settings(
        marketing_cap="none", message_cap="none", click_tracking=False, sms_max_segments=1
    )
    row = store.prepare("ann", "sms", settings=settings)
    assert row.content["body"] == f"Shop: your cart is waiting: {CART} Reply STOP to opt out"


# --- tokens -----------------------------------------------------------------------------


def test_tokens_are_short_signed_and_their_own() -> None:
    message_id = str(uuid.uuid4())
    token = LINKS.click_token(message_id, 7)
    assert len(token) == 32 and LINKS.click_target(token) == (message_id, 7)
    assert LINKS.click_target(LINKS.click_token(message_id, 255)) == (message_id, 255)
    assert LINKS.click_target(LINKS.click_token("m-1", 0)) == ("m-1", 0)  # not a UUID: longer
    with pytest.raises(ValueError):
        LINKS.click_token(message_id, 256)
    # Another key, another link kind, or a character changed: not ours.
    assert MessageLinks(PUBLIC_URL, "other").click_target(token) is None
    assert LINKS.click_target(LINKS.token(message_id)) is None
    assert LINKS.message_id(token) is None
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    assert LINKS.click_target(flipped) is None
    assert LINKS.click_target(token + "=") is None and LINKS.click_target(token[:-1]) is None
    # The token says nothing but the message id, which is random.
    assert "ann" not in token


def test_a_redirect_link_fits_an_sms() -> None:
    """`https://shop.example.com/c/<token>` is 59 characters, GSM-7 throughout."""
    typical = MessageLinks("https://shop.example.com", "secret")
    for _ in range(50):
        url = typical.click_url(str(uuid.uuid4()), 255)
        assert len(url) <= 60, url
        assert sms_length(url).encoding == "GSM-7"


# --- the redirect -----------------------------------------------------------------------


class Recipient:
    """A person with a browser (and their mail scanner) reaching our API."""

    def __init__(self, engine: Engine, links: MessageLinks = LINKS) -> None:
        self.woken: list[int] = []
        app = create_app(
            engine,
            ["key"],
            links=links,
            settings=Settings(),
            on_stored=lambda: self.woken.append(1),
        )
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)

    async def click(self, url: str, method: str = "GET", **headers: str) -> httpx.Response:
        return await self.http.request(method, url, headers=headers)


@pytest_asyncio.fixture
async def person(engine: Engine) -> AsyncIterator[Recipient]:
    recipient = Recipient(engine)
    async with recipient.http:
        yield recipient


def add_message(engine: Engine, contact_id: str, links: list[Any], channel: str = "email") -> str:
    """A sent message whose content holds `links`, as the send pipeline leaves it."""
    message_id = str(uuid.uuid4())
    with session_scope(engine) as session:
        if session.get(Contact, contact_id) is None and not contact_id.startswith("erased-"):
            session.add(Contact(id=contact_id, email=f"{contact_id}@example.com"))
        session.add(
            Message(
                id=message_id,
                idempotency_key=f"journey:promo:{contact_id}:promo:{message_id}",
                workflow_id=f"journey:promo:{contact_id}",
                entry_seq=1,
                step_id="promo",
                journey_id="promo",
                contact_id=contact_id,
                channel=channel,
                adapter="console",
                template="promo",
                content={"body": "Hi", "links": links},
                status="sent",
            )
        )
    return message_id


def assert_not_found(page: httpx.Response) -> None:
    assert page.status_code == 404, page.text
    assert "location" not in page.headers
    assert "Link not valid" in page.text


async def test_a_click_is_recorded_once_and_redirects(engine: Engine, person: Recipient) -> None:
    target = f"{CART}&utm_source=shop_emails"
    message_id = add_message(engine, "ann", [PRODUCT, target])
    now = datetime(2030, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    with mock.patch("orchestrator.feedback.recording.utcnow", return_value=now):
        page = await person.click(LINKS.click_url(message_id, 1))
        again = await person.click(LINKS.click_url(message_id, 1))  # a double submit
    later = now + timedelta(minutes=50)  # a loop on the link within the hour: one event
    with mock.patch("orchestrator.feedback.recording.utcnow", return_value=later):
        for _ in range(3):
            await person.click(LINKS.click_url(message_id, 1))
    assert (page.status_code, page.headers["location"]) == (302, target)
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert (again.status_code, again.headers["location"]) == (302, target)
    [event] = clicks(engine)
    assert (event.name, event.contact_id, event.origin) == ("Email Link Clicked", "ann", "internal")
    assert event.message_id == click_key(message_id, 1, now) == f"click:{message_id}:1:528852"
    assert event.properties == {
        "message_id": message_id,
        "url": target,
        "link_index": 1,
        "channel": "email",
        "source": "redirect",
        "journey_id": "promo",
        "template": "promo",
    }
    assert person.woken == [1]  # the router is woken for the new event, once
    # A later click is another event: unique clicks are counted by the reports.
    await person.click(LINKS.click_url(message_id, 0))
    assert [e.properties["url"] for e in clicks(engine)] == [target, PRODUCT]
    # The router records it on the message like any click.
    with session_scope(engine) as session:
        stored = session.get(Event, event.id)
        assert stored is not None
        session.expunge(stored)
    assert record_engagement(engine, message_id, ENGAGEMENT_EVENTS[event.name], stored)
    assert message(engine, message_id).status == "clicked"


@pytest.mark.parametrize(
    ("channel", "name"), [("sms", "SMS Link Clicked"), ("push", "Push Link Clicked")]
)
async def test_sms_and_push_clicks_have_their_own_names(
    engine: Engine, person: Recipient, channel: str, name: str
) -> None:
    message_id = add_message(engine, "ann", [PRODUCT], channel)
    page = await person.click(LINKS.click_url(message_id, 0))
    assert (page.status_code, page.headers["location"]) == (302, PRODUCT)
    [event] = clicks(engine)
    assert (event.name, event.properties["channel"]) == (name, channel)
    assert ENGAGEMENT_EVENTS[name] == "clicked"
    # Only ever ours: a client's `track` with this name is refused.
    assert name in INTERNAL_ONLY and "Email Link Clicked" not in INTERNAL_ONLY


async def test_head_requests_and_prefetches_record_nothing(
    engine: Engine, person: Recipient
) -> None:
    message_id = add_message(engine, "ann", [PRODUCT])
    url = LINKS.click_url(message_id, 0)
    head = await person.click(url, "HEAD")
    prefetch = await person.click(url, **{"Sec-Purpose": "prefetch"})
    for page in (head, prefetch):
        assert (page.status_code, page.headers["location"]) == (302, PRODUCT)
    assert clicks(engine) == [] and person.woken == []


async def test_tampered_tokens_get_a_404_page_never_a_redirect(
    engine: Engine, person: Recipient
) -> None:
    message_id = add_message(engine, "ann", [PRODUCT])
    token = LINKS.click_token(message_id, 0)
    for bad in (
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # bad signature
        LINKS.token(message_id),  # an unsubscribe token
        MessageLinks(PUBLIC_URL, "another-key").click_token(message_id, 0),
        LINKS.click_token(str(uuid.uuid4()), 0),  # signed, but no such message
        LINKS.click_token(message_id, 1),  # signed, but the message has one link
        "x" * 300,
        "not-a-token!",
    ):
        assert_not_found(await person.click(f"/c/{bad}"))
    # Nor is an unsubscribe link a click token.
    assert (await person.click(LINKS.for_message(message_id)["unsubscribe_url"])).status_code == 200
    assert_not_found(await person.click(f"/u/{token}"))
    assert clicks(engine) == []


@pytest.mark.parametrize(
    "stored",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "https://shop.example.com@evil.example/",
        "ftp://files.example/a",
        "/relative",
        None,
        42,
    ],
)
async def test_a_stored_link_that_is_not_http_is_never_redirected_to(
    engine: Engine, person: Recipient, stored: Any
) -> None:
    message_id = add_message(engine, "ann", [stored])
    assert_not_found(await person.click(LINKS.click_url(message_id, 0)))
    assert clicks(engine) == []


async def test_non_ascii_links_are_sent_encoded(engine: Engine, person: Recipient) -> None:
    message_id = add_message(engine, "ann", ["https://магазин.example/корзина?q=шарф#низ"])
    page = await person.click(LINKS.click_url(message_id, 0))
    assert page.headers["location"] == (
        "https://xn--80aairftm.example/%D0%BA%D0%BE%D1%80%D0%B7%D0%B8%D0%BD%D0%B0"
        "?q=%D1%88%D0%B0%D1%80%D1%84#%D0%BD%D0%B8%D0%B7"
    )


async def test_hosts_map_as_browsers_map_them_or_are_not_redirected_to(
    engine: Engine, person: Recipient
) -> None:
    links = [
        "https://faß.de/",  # UTS 46: xn--fa-hia.de (IDNA 2003 would make it fass.de)
        "https://evil.example\uff3c.shop.example/",  # a full-width backslash: not a host
        "https://a\u3000b.example/",  # an ideographic space
    ]
    message_id = add_message(engine, "ann", links)
    page = await person.click(LINKS.click_url(message_id, 0))
    assert page.headers["location"] == "https://xn--fa-hia.de/"
    for index in (1, 2):
        page = await person.click(LINKS.click_url(message_id, index))
        assert page.status_code == 404 and "location" not in page.headers


async def test_an_erased_contacts_click_records_nothing(engine: Engine, person: Recipient) -> None:
    # A message kept under a tombstone whose links are still there: the recipient gets
    # where the link leads; nothing about them is stored.
    kept = add_message(engine, "erased-0123456789abcdef", [PRODUCT])
    page = await person.click(LINKS.click_url(kept, 0))
    assert (page.status_code, page.headers["location"]) == (302, PRODUCT)
    # Erasure drops what a message said, its links too: the link has nowhere to go.
    message_id = add_message(engine, "ann", [PRODUCT])
    await erase_contact(engine, None, "ann")
    assert_not_found(await person.click(LINKS.click_url(message_id, 0)))
    assert clicks(engine) == [] and person.woken == []


async def test_a_click_through_the_api_on_a_prepared_message(
    engine: Engine, person: Recipient, tmp_path: Path
) -> None:
    """From the send pipeline's content to the click: the redirect leads to the URL with
    the journey's UTM parameters."""
    prepared = Store(engine, write_templates(tmp_path / "templates"))
    prepared.deploy({"utm": {"source": "shop_emails"}})
    row = prepared.prepare("ann", "email")
    cart_link = row.content["html"].split('href="', 1)[1].split('"', 1)[0]
    assert cart_link == LINKS.click_url(row.id, 0)
    page = await person.click(cart_link)
    tail = "utm_source=shop_emails&utm_medium=email&utm_campaign=cart_promo&utm_content=promo"
    assert page.headers["location"] == f"{SHOP}/cart/c9?ref=mail&lang=en&{tail}#items"
    [event] = clicks(engine)
    assert event.properties["url"] == page.headers["location"]


# --- the journey language ---------------------------------------------------------------

HEAD = "id: promo\nname: Promo\ntrigger: {event: Product Added}\n"
STEPS = "steps:\n  - send: {channel: email, template: promo}\n"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "promo.yaml"
    path.write_text(text)
    with pytest.raises(JourneyError) as caught:
        load_journey(path)
    return [str(p).replace(f"{path}:", "promo.yaml:") for p in caught.value.problems]


@pytest.mark.parametrize(
    ("tracking", "expected"),
    [
        (
            "tracking:\n  utm: {source: shop emails}\n",
            "promo.yaml:5:17: invalid utm source 'shop emails': expected letters, digits, _ . "
            "or -, starting with a letter or digit, like shop_emails",
        ),
        (
            "tracking:\n  utm: {source: 'shop&x=1'}\n",
            "promo.yaml:5:17: invalid utm source 'shop&x=1': expected letters, digits, _ . "
            "or -, starting with a letter or digit, like shop_emails",
        ),
        (
            "tracking:\n  clicks: maybe\n",
            "promo.yaml:5:11: expected true or false, got a string",
        ),
        (
            "tracking:\n  utm: {medium: email}\n",
            "promo.yaml:5:3: missing required key 'source' in utm",
        ),
        (
            "tracking:\n  click: false\n",
            "promo.yaml:5:3: unknown key 'click' in tracking (expected one of: clicks, utm)",
        ),
    ],
)
def test_tracking_keys_are_validated(tmp_path: Path, tracking: str, expected: str) -> None:
    assert expected in problems(tmp_path, HEAD + tracking + STEPS)


def test_journeys_without_tracking_keep_their_spec_and_version(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(HEAD + STEPS)
    loaded = load_journey(plain)
    assert "tracking" not in loaded.journey.model_dump(mode="json", by_alias=True)
    spelled_out = tmp_path / "spelled.yaml"
    spelled_out.write_text(HEAD + "tracking: {clicks: true}\n" + STEPS)
    assert load_journey(spelled_out).spec_hash == loaded.spec_hash == spec_hash(loaded.journey)
    utm = tmp_path / "utm.yaml"
    utm.write_text(HEAD + "tracking:\n  clicks: false\n  utm: {source: shop_emails}\n" + STEPS)
    journey = load_journey(utm).journey
    assert journey.tracking.clicks is False and journey.tracking.utm is not None
    dumped = journey.model_dump(mode="json", by_alias=True)
    assert dumped["tracking"] == {"clicks": False, "utm": {"source": "shop_emails"}}
    assert Journey.model_validate(dumped) == journey


# --- end to end -------------------------------------------------------------------------

CLICK_JOURNEY = """\
id: sms_promo
name: SMS promo
trigger: {event: Promo Started}
tracking:
  utm: {source: shop_sms}
steps:
  - send: {id: promo, channel: sms, template: promo_sms}
  - wait_for: {message: promo, engagement: clicked, timeout: 2d}
    then:
      - send: {id: thanks, channel: sms, template: thanks_sms}
    on_timeout:
      - exit: no click
"""


@pytest_asyncio.fixture
async def bench(ts_env, sqlite_engine, tmp_path: Path, request) -> AsyncIterator[Bench]:  # type: ignore[no-untyped-def]
    templates = tmp_path / "templates"
    write_message(
        "promo_sms", {"sms.body": f"Shop: new scarves {PRODUCT} STOP to opt out"}, templates
    )
    write_message(
        "thanks_sms", {"sms.body": "Shop: thanks for looking! STOP to opt out"}, templates
    )
    write_journey(tmp_path / "journeys", "sms_promo", CLICK_JOURNEY)
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    bench.deploy()
    yield bench
    await save_histories(bench, request.node.name)


async def test_a_journey_waiting_for_a_click_hears_the_redirect(bench: Bench) -> None:
    links = MessageLinks.from_settings(bench.settings)
    app = create_app(bench.engine, ["key"], links=links, on_stored=bench.router.wake)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as http,
        bench.worker(),
    ):
        await bench.identify("ann", phone="+15550001111")
        await bench.track("ann", "Promo Started")
        promo = await sent_message(bench, "ann", "promo")
        body = promo.content["body"]
        link = links.click_url(promo.id, 0)
        assert body == f"Shop: new scarves {link} STOP to opt out"
        assert sms_length(body).segments == 1
        page = await http.get(link)
        tail = "utm_source=shop_sms&utm_medium=sms&utm_campaign=sms_promo&utm_content=promo"
        assert page.headers["location"] == f"{PRODUCT}?{tail}"
        await bench.route_all()
        await bench.result("sms_promo", "ann")
    steps = {m.step_id: m.status for m in bench.messages("ann")}
    assert steps == {"promo": "clicked", "thanks": "sent"}


async def sent_message(bench: Bench, user: str, step: str) -> Message:
    for _ in range(1200):
        for row in bench.messages(user):
            if row.step_id == step and row.status not in ("pending", "queued", "sending"):
                return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user}'s {step} was not sent: {bench.messages(user)}")
