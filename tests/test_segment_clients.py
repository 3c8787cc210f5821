"""The official analytics clients, unmodified, against the real API on a loopback port.

Segment's `segment-analytics-python` and RudderStack's `rudder-sdk-python` are pointed
at us by configuration only (host, write key). Both POST every call to `/v1/batch`
(Segment: Basic auth plus `writeKey` in the body; RudderStack: Basic auth and a
gzip-compressed body). What they send must land in the store as a storefront
developer expects: contacts merged from anonymous to identified, e-commerce events
with their properties, timestamps as the device meant them, one row per messageId
however often the client retries.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from live_api import Recorder, serve
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient
from segment.analytics.request import post as segment_post
from sqlalchemy import Engine
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, ContactAlias, Event

KEY = "wk_storefront_test"

RED_SHOES = {
    "product_id": "p-red-shoes",
    "sku": "RS-42",
    "name": "Red shoes",
    "brand": "Fernwood",
    "category": "Shoes",
    "variant": "42",
    "price": 59.9,
    "quantity": 1,
    "url": "https://shop.example/p/red-shoes",
    "image_url": "https://shop.example/img/red-shoes.jpg",
}
ORDER = {
    "checkout_id": "co-1",
    "order_id": "o-1001",
    "revenue": 59.9,
    "shipping": 4.5,
    "tax": 12.0,
    "currency": "EUR",
    "products": [RED_SHOES],
}
ANN_TRAITS = {
    "email": "ann@example.com",
    "phone": "+381601234567",
    "first_name": "Ann",
    "consent": {"email": {"marketing": True}},
}
ANN_CONTEXT = {
    "timezone": "Europe/Belgrade",
    "locale": "sr-RS",
    "device": {"token": "fcm-token-ann"},
}
# (type, name) of the calls `shop_session` makes, in order.
SESSION_CALLS = [
    ("page", "Red shoes"),
    ("track", "Product Viewed"),
    ("track", "Product Added"),
    ("screen", "Cart"),
    ("alias", None),
    ("identify", None),
    ("track", "Checkout Started"),
    ("track", "Order Completed"),
    ("group", None),
]


@dataclass
class LiveApi:
    url: str
    engine: Engine
    recorder: Recorder
    woken: list[int] = field(default_factory=list)


def live_api(engine: Engine, lose_answers: int = 0) -> Iterator[LiveApi]:
    woken: list[int] = []
    recorder = Recorder(create_app(engine, [KEY], on_stored=lambda: woken.append(1)))
    recorder.lose_answers = lose_answers
    with serve(recorder) as url:
        yield LiveApi(url, engine, recorder, woken)


@pytest.fixture
def api(engine: Engine) -> Iterator[LiveApi]:
    yield from live_api(engine)


@pytest.fixture
def flaky_api(engine: Engine) -> Iterator[LiveApi]:
    """Commits the first POST, then answers it 503 (the acknowledgement was lost)."""
    yield from live_api(engine, lose_answers=1)


def segment_client(api: LiveApi, **options: Any) -> SegmentClient:
    options.setdefault("sync_mode", True)
    return SegmentClient(KEY, host=api.url, **options)


def rudder_client(api: LiveApi, **options: Any) -> RudderClient:
    options.setdefault("sync_mode", True)
    return RudderClient(KEY, host=api.url, **options)


def shop_session(client: Any, anonymous_id: str, user_id: str, alias: bool = True) -> list[str]:
    """Browse anonymously, add to cart, sign in at checkout, buy. Returns the messageIds.

    With `alias`, the anonymous id is merged by an alias call; without, by an
    identify that carries both ids.
    """
    sent = [
        client.page(
            anonymous_id=anonymous_id,
            category="Products",
            name="Red shoes",
            properties={"url": RED_SHOES["url"], "path": "/p/red-shoes"},
        ),
        client.track(anonymous_id=anonymous_id, event="Product Viewed", properties=RED_SHOES),
        client.track(
            anonymous_id=anonymous_id,
            event="Product Added",
            properties={**RED_SHOES, "cart_id": "cart-1", "cart_url": "https://shop.example/c/1"},
        ),
        client.screen(anonymous_id=anonymous_id, name="Cart", properties={"cart_id": "cart-1"}),
    ]
    if alias:
        sent.append(client.alias(previous_id=anonymous_id, user_id=user_id))
        sent.append(client.identify(user_id=user_id, traits=ANN_TRAITS, context=fresh(ANN_CONTEXT)))
    else:
        sent.append(client.track(user_id=user_id, anonymous_id=anonymous_id, event="Signed In"))
        sent.append(
            client.identify(
                user_id=user_id,
                anonymous_id=anonymous_id,
                traits=ANN_TRAITS,
                context=fresh(ANN_CONTEXT),
            )
        )
    sent += [
        client.track(
            user_id=user_id,
            event="Checkout Started",
            properties={**ORDER, "cart_id": "cart-1", "value": 76.4},
        ),
        client.track(user_id=user_id, event="Order Completed", properties=ORDER),
        client.group(user_id=user_id, group_id="household-7", traits={"name": "The Smiths"}),
    ]
    assert all(ok for ok, _ in sent)
    return [msg["messageId"] for _, msg in sent]


def fresh(context: dict[str, Any]) -> dict[str, Any]:
    """A copy: both clients write `library` (RudderStack also `traits`) into the context
    they are given."""
    return copy.deepcopy(context)


def stored_events(engine: Engine) -> list[Event]:
    with session_scope(engine) as session:
        return list(session.exec(select(Event).order_by(Event.id)))


def contact(engine: Engine, contact_id: str) -> Contact | None:
    with session_scope(engine) as session:
        return session.get(Contact, contact_id)


def alias_of(engine: Engine, alias_id: str) -> str | None:
    with session_scope(engine) as session:
        row = session.get(ContactAlias, alias_id)
        return row.contact_id if row else None


def by_name(events: list[Event]) -> dict[str, Event]:
    return {e.name: e for e in events if e.name}


# --- Segment ---------------------------------------------------------------------


def test_segment_client_shop_session_lands_in_the_store(api: LiveApi) -> None:
    client = segment_client(api)
    message_ids = shop_session(client, "anon-7f3a", "ann")

    events = stored_events(api.engine)
    assert [(e.type, e.name) for e in events] == SESSION_CALLS
    assert [e.message_id for e in events] == message_ids
    # The anonymous cart is on Ann's contact now; her anonymous id points at her.
    assert {e.contact_id for e in events} == {"ann"}
    assert contact(api.engine, "anon-7f3a") is None
    assert alias_of(api.engine, "anon-7f3a") == "ann"
    ann = contact(api.engine, "ann")
    assert ann is not None
    assert (ann.email, ann.phone, ann.timezone, ann.locale) == (
        "ann@example.com",
        "+381601234567",
        "Europe/Belgrade",
        "sr-RS",
    )
    assert ann.push_tokens == ["fcm-token-ann"]
    assert ann.consent == {"email": {"marketing": True}}
    assert ann.traits["first_name"] == "Ann"

    named = by_name(events)
    assert named["Product Added"].properties["cart_id"] == "cart-1"
    assert named["Product Added"].properties["price"] == 59.9
    order = named["Order Completed"].properties
    assert (order["order_id"], order["revenue"], order["currency"]) == ("o-1001", 59.9, "EUR")
    assert order["products"] == [RED_SHOES]
    assert named["Red shoes"].type == "page"
    assert named["Red shoes"].properties == {
        "url": RED_SHOES["url"],
        "path": "/p/red-shoes",
        "category": "Products",
    }
    group = events[-1]
    assert group.properties == {"group_id": "household-7", "traits": {"name": "The Smiths"}}
    alias = events[4]
    assert alias.properties == {"previous_id": "anon-7f3a"}
    assert events[0].context["library"]["name"] == "analytics-python"
    # Every call went to /v1/batch with the key as the Basic username.
    posts = api.recorder.posts()
    assert len(posts) == len(SESSION_CALLS)
    assert all(c.headers["authorization"].startswith("Basic ") for c in posts)
    assert api.woken == [1] * len(SESSION_CALLS)


def test_segment_client_gzip_bodies_are_accepted(api: LiveApi) -> None:
    client = segment_client(api, gzip=True)
    shop_session(client, "anon-gz", "gus")
    assert [(e.type, e.name) for e in stored_events(api.engine)] == SESSION_CALLS
    assert {c.headers.get("content-encoding") for c in api.recorder.posts()} == {"gzip"}


def test_events_sent_late_keep_the_time_they_happened(api: LiveApi) -> None:
    """A call queued offline three days ago is stored at its own time, not at arrival."""
    happened = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    client = segment_client(api)
    client.track(user_id="ann", event="Product Added", timestamp=happened, properties={})
    [event] = stored_events(api.engine)
    assert abs(event.timestamp - happened) < timedelta(minutes=1)


def test_a_fast_device_clock_is_corrected_from_sent_at(api: LiveApi) -> None:
    """A device two hours fast: timestamp and sentAt both read +2 h. The library's own
    uploader sends the batch; we store receivedAt - (sentAt - timestamp)."""
    now = datetime.now(UTC)
    device_now = now + timedelta(hours=2)
    item = {
        "type": "track",
        "userId": "ann",
        "event": "Cart Viewed",
        "properties": {"cart_id": "cart-1"},
        "messageId": "skewed-1",
        "timestamp": (device_now - timedelta(minutes=5)).isoformat(),
    }
    segment_post(KEY, api.url, batch=[item], sentAt=device_now.isoformat())
    [event] = stored_events(api.engine)
    # Exactly five minutes before it arrived (give the arrival itself a generous margin).
    assert abs(event.timestamp - (event.received_at - timedelta(minutes=5))) < timedelta(seconds=1)
    assert abs(event.timestamp - (now - timedelta(minutes=5))) < timedelta(minutes=1)


def test_segment_client_retry_after_a_lost_answer_stores_each_event_once(
    flaky_api: LiveApi,
) -> None:
    """The first batch is committed but its answer lost (503): the client's retry
    carries the same messageIds, is acknowledged, and stores nothing twice."""
    errors: list[Exception] = []
    client = segment_client(flaky_api, sync_mode=False, on_error=lambda e, batch: errors.append(e))
    sent = [
        client.track(user_id="ann", event="Product Added", properties={"cart_id": "c-9"}),
        client.track(user_id="ann", event="Checkout Started", properties={"cart_id": "c-9"}),
        client.track(user_id="ann", event="Order Completed", properties={"order_id": "o-9"}),
    ]
    client.flush()
    client.join()

    assert errors == []
    posts = flaky_api.recorder.posts()
    assert [(c.app_status, c.sent_status) for c in posts] == [(200, 503), (200, 200)]
    assert posts[1].headers.get("x-retry-count") == "1"
    events = stored_events(flaky_api.engine)
    assert sorted(e.message_id for e in events) == sorted(m["messageId"] for _, m in sent)
    assert flaky_api.woken == [1]  # the retry was new to no one


def test_segment_client_with_a_wrong_key_reports_an_error_and_nothing_is_stored(
    api: LiveApi,
) -> None:
    errors: list[Exception] = []
    client = SegmentClient("wk_not_a_key", host=api.url, on_error=lambda e, batch: errors.append(e))
    client.identify(user_id="ann", traits={"email": "ann@example.com"})
    client.track(user_id="ann", event="Product Added", properties={"cart_id": "c"})
    client.flush()
    client.join()

    [error] = errors
    assert error.status == 401  # type: ignore[attr-defined]
    assert "invalid or revoked write key" in error.message  # type: ignore[attr-defined]
    assert len(api.recorder.posts()) == 1  # a 401 is not retried
    assert stored_events(api.engine) == []
    assert contact(api.engine, "ann") is None


# --- RudderStack -----------------------------------------------------------------


def test_rudderstack_client_shop_session_lands_in_the_store(api: LiveApi) -> None:
    """RudderStack gzips every batch by default and merges through identify(userId,
    anonymousId) here; events and ids land as with Segment."""
    client = rudder_client(api)
    message_ids = shop_session(client, "anon-rs1", "rita", alias=False)

    events = stored_events(api.engine)
    expected = [c for c in SESSION_CALLS if c[0] != "alias"]
    expected[4:4] = [("track", "Signed In")]
    assert [(e.type, e.name) for e in events] == expected
    assert [e.message_id for e in events] == message_ids
    assert {e.contact_id for e in events} == {"rita"}
    assert alias_of(api.engine, "anon-rs1") == "rita"
    rita = contact(api.engine, "rita")
    assert rita is not None
    assert (rita.timezone, rita.locale, rita.push_tokens) == (
        "Europe/Belgrade",
        "sr-RS",
        ["fcm-token-ann"],
    )
    order = by_name(events)["Order Completed"].properties
    assert (order["order_id"], order["revenue"], order["products"]) == ("o-1001", 59.9, [RED_SHOES])
    assert by_name(events)["Product Added"].properties["cart_id"] == "cart-1"
    assert {c.headers.get("content-encoding") for c in api.recorder.posts()} == {"gzip"}


def test_rudderstack_identify_traits_reach_the_contact(api: LiveApi) -> None:
    client = rudder_client(api)
    client.identify(user_id="rita", traits=ANN_TRAITS, context=fresh(ANN_CONTEXT))
    rita = contact(api.engine, "rita")
    assert rita is not None
    assert (rita.email, rita.consent) == ("ann@example.com", {"email": {"marketing": True}})


def test_rudderstack_retry_after_a_lost_answer_stores_each_event_once(
    flaky_api: LiveApi,
) -> None:
    errors: list[Exception] = []
    client = rudder_client(flaky_api, sync_mode=False, on_error=lambda e, b: errors.append(e))
    sent = [
        client.track(user_id="rita", event="Product Added", properties={"cart_id": "c-5"}),
        client.track(user_id="rita", event="Order Completed", properties={"order_id": "o-5"}),
    ]
    client.flush()
    client.join()

    assert errors == []
    posts = flaky_api.recorder.posts()
    assert [(c.app_status, c.sent_status) for c in posts] == [(200, 503), (200, 200)]
    events = stored_events(flaky_api.engine)
    assert sorted(e.message_id for e in events) == sorted(m["messageId"] for _, m in sent)


def test_rudderstack_client_with_a_wrong_key_reports_an_error_and_nothing_is_stored(
    api: LiveApi,
) -> None:
    errors: list[Exception] = []
    client = RudderClient(
        "wk_not_a_key", host=api.url, max_retries=0, on_error=lambda e, b: errors.append(e)
    )
    client.track(user_id="rita", event="Product Added", properties={"cart_id": "c"})
    client.flush()
    client.join()

    assert len(errors) == 1
    assert [c.sent_status for c in api.recorder.posts()] == [401]
    assert stored_events(api.engine) == []


def test_rudderstack_client_does_not_retry_a_rejected_batch(api: LiveApi) -> None:
    errors: list[Exception] = []
    client = RudderClient(
        "wk_not_a_key", host=api.url, max_retries=1, on_error=lambda e, b: errors.append(e)
    )
    client.track(user_id="rita", event="Product Added", properties={"cart_id": "c"})
    client.flush()
    client.join()
    assert len(api.recorder.posts()) == 1
    assert getattr(errors[0], "status", None) == 401
