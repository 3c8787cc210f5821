"""The Segment calls beyond identify/track, batches, aliases, consent, push tokens and keys,
over HTTP (in-process ASGI) against a real database."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest_asyncio
from click.testing import CliRunner
from sqlalchemy import Engine, text
from sqlmodel import select

from orchestrator.api import create_app
from orchestrator.cli import main
from orchestrator.settings import Settings
from orchestrator.store.coupons import issue_coupon
from orchestrator.store.db import session_scope
from orchestrator.store.keys import create_key, revoke_key
from orchestrator.store.tables import Contact, ContactAlias, Event, Order

KEY = "static-write-key"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest_asyncio.fixture
async def api(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, [KEY])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def events(engine: Engine) -> list[Event]:
    with session_scope(engine) as session:
        rows = list(session.exec(select(Event).order_by(Event.id)))
        for row in rows:
            session.expunge(row)
        return rows


def contact(engine: Engine, contact_id: str) -> Contact | None:
    with session_scope(engine) as session:
        row = session.get(Contact, contact_id)
        if row is not None:
            session.expunge(row)
        return row


async def post(api: httpx.AsyncClient, path: str, body: Any, key: str = KEY) -> httpx.Response:
    return await api.post(path, headers=basic(key), json=body)


async def test_page_screen_group_are_stored_with_their_names(api, engine) -> None:  # type: ignore[no-untyped-def]
    calls = [
        ("/v1/page", {"anonymousId": "a1", "name": "Shoes", "category": "Catalog",
                      "properties": {"url": "https://shop.example/shoes"}}),
        ("/v1/screen", {"userId": "u1", "name": "Cart", "properties": {"items": 2}}),
        ("/v1/group", {"userId": "u1", "groupId": 77, "traits": {"name": "ACME"}}),
    ]  # fmt: skip
    for path, body in calls:
        r = await post(api, path, body)
        assert r.status_code == 200, r.text
    stored = [(e.type, e.name, e.contact_id, e.properties) for e in events(engine)]
    assert stored == [
        ("page", "Shoes", "a1", {"url": "https://shop.example/shoes", "category": "Catalog"}),
        ("screen", "Cart", "u1", {"items": 2}),
        ("group", None, "u1", {"group_id": "77", "traits": {"name": "ACME"}}),
    ]
    r = await post(api, "/v1/group", {"userId": "u1"})
    assert (r.status_code, r.json()["field"]) == (400, "groupId")


async def test_a_batch_is_stored_whole_with_the_batch_context_and_clock(api, engine) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    fast = now + timedelta(hours=3)  # the sender's clock is three hours fast
    body = {
        "batch": [
            {"type": "identify", "userId": "u2", "traits": {"email": "u2@example.com"},
             "messageId": "b-1", "timestamp": (fast - timedelta(minutes=1)).isoformat()},
            {"type": "track", "userId": "u2", "event": "Product Added", "messageId": "b-2",
             "properties": {"cart_id": "c9"}, "context": {"locale": "ru-RU"},
             "timestamp": fast.isoformat()},
        ],
        "context": {"timezone": "Europe/Moscow", "locale": "en-US"},
        "sentAt": fast.isoformat(),
    }  # fmt: skip
    r = await post(api, "/v1/batch", body)
    assert r.status_code == 200 and r.json() == {"success": True}
    identify, added = events(engine)
    assert identify.context == {"timezone": "Europe/Moscow", "locale": "en-US"}
    assert added.context == {"timezone": "Europe/Moscow", "locale": "ru-RU"}  # its own wins
    assert abs(identify.timestamp - (now - timedelta(minutes=1))) < timedelta(seconds=30)
    assert abs(added.timestamp - now) < timedelta(seconds=30)
    person = contact(engine, "u2")
    assert person is not None and (person.email, person.timezone) == (
        "u2@example.com",
        "Europe/Moscow",
    )
    # The client retries the whole batch after a timeout, with one call added: only that is new.
    body["batch"].append(
        {"type": "track", "userId": "u2", "event": "Cart Viewed", "messageId": "b-3"}
    )
    assert (await post(api, "/v1/batch", body)).status_code == 200
    assert [e.message_id for e in events(engine)] == ["b-1", "b-2", "b-3"]


async def test_one_bad_call_refuses_the_whole_batch_and_names_it(api, engine) -> None:  # type: ignore[no-untyped-def]
    good = {"type": "track", "userId": "u", "event": "Cart Viewed"}
    cases = [
        ([good, {"type": "track", "userId": "u"}], 400, "batch.1.event", "Field required"),
        ([good, {"userId": "u", "event": "X"}], 400, "batch.1.type", "type must be one of"),
        ([good, {"type": "track", "event": "X"}], 400, "batch.1", "batch.1: userId or anonymousId"),
        ([good, "nope"], 400, "batch.1", "must be a JSON object"),
        ([good, {**good, "properties": {"x": "y" * 33_000}}], 413, "batch.1", "32768"),
        ([good, {"type": "identify", "userId": "u", "traits": {"consent": {"fax": True}}}],
         400, "batch.1.traits", "unknown channel 'fax'"),
    ]  # fmt: skip
    for batch, status, field, message in cases:
        r = await post(api, "/v1/batch", {"batch": batch})
        assert r.status_code == status, (batch, r.text)
        assert message in r.json()["error"], r.json()
        assert r.json().get("field") == field
    r = await post(api, "/v1/batch", {"calls": []})
    assert (r.status_code, r.json()["field"]) == (400, "batch")
    big = [{**good, "properties": {"x": "y" * 30_000}} for _ in range(18)]  # ~540 KB
    r = await post(api, "/v1/batch", {"batch": big})
    assert r.status_code == 413 and "512000" in r.json()["error"]
    assert events(engine) == []


async def test_anonymous_cart_merges_into_the_identified_shopper(api, engine) -> None:  # type: ignore[no-untyped-def]
    device = {"device": {"token": "tokA"}}
    no_sms = {"consent": {"sms": False}}
    await post(api, "/v1/identify", {"anonymousId": "anon-1", "context": device, "traits": no_sms})
    await post(api, "/v1/track", {"anonymousId": "anon-1", "event": "Product Added",
                                  "properties": {"cart_id": "c1"}})  # fmt: skip
    await post(api, "/v1/identify", {"userId": "ann", "traits": {"email": "ann@example.com"}})
    r = await post(api, "/v1/alias", {"previousId": "anon-1", "userId": "ann"})
    assert r.status_code == 200
    # Later calls under the old id land on the merged contact.
    await post(api, "/v1/track", {"anonymousId": "anon-1", "event": "Checkout Started"})
    assert contact(engine, "anon-1") is None
    ann = contact(engine, "ann")
    assert ann is not None and ann.email == "ann@example.com" and ann.push_tokens == ["tokA"]
    assert ann.consent == {"sms": {"marketing": False, "transactional": False}}
    assert {e.contact_id for e in events(engine)} == {"ann"}
    with session_scope(engine) as session:
        assert session.get(ContactAlias, "anon-1").contact_id == "ann"  # type: ignore[union-attr]
    r = await post(api, "/v1/alias", {"previousId": "anon-1"})
    assert r.status_code == 400 and "userId is required" in r.json()["error"]


async def test_identify_with_both_ids_merges_and_an_opt_out_survives_it(api, engine) -> None:  # type: ignore[no-untyped-def]
    no_marketing = {"consent": {"email": {"marketing": False}}}
    receipts = {"consent": {"email": {"transactional": True}}}
    await post(api, "/v1/identify", {"anonymousId": "anon-2", "traits": no_marketing})
    await post(api, "/v1/identify", {"userId": "bob", "anonymousId": "anon-2", "traits": receipts})
    bob = contact(engine, "bob")
    assert bob is not None
    assert bob.consent == {"email": {"marketing": False, "transactional": True}}
    assert contact(engine, "anon-2") is None


async def test_consent_from_identify_is_validated_and_merged(api, engine) -> None:  # type: ignore[no-untyped-def]
    r = await post(api, "/v1/identify", {"userId": "c", "traits": {"consent": {"email": "yes"}}})
    assert r.status_code == 400 and r.json()["field"] == "traits"
    assert "email: expected true, false" in r.json()["error"]
    await post(api, "/v1/identify", {"userId": "c", "traits": {"consent": {"email": True}}})
    await post(
        api, "/v1/identify", {"userId": "c", "traits": {"consent": {"email": {"marketing": False}}}}
    )
    person = contact(engine, "c")
    assert person is not None
    assert person.consent == {"email": {"marketing": False, "transactional": True}}
    assert "consent" not in person.traits


async def test_push_tokens_are_registered_and_removed(api, engine) -> None:  # type: ignore[no-untyped-def]
    for token in ("t1", "t2", "t1"):
        r = await post(api, "/v1/contacts/dana/push-tokens", {"token": token})
        assert r.status_code == 200, r.text
    assert contact(engine, "dana").push_tokens == ["t2", "t1"]  # type: ignore[union-attr]
    r = await api.delete("/v1/contacts/dana/push-tokens/t2", headers=basic(KEY))
    assert r.status_code == 200
    assert contact(engine, "dana").push_tokens == ["t1"]  # type: ignore[union-attr]
    r = await post(api, "/v1/contacts/dana/push-tokens", {"token": ""})
    assert (r.status_code, r.json()["field"]) == (400, "token")
    r = await api.post("/v1/contacts/dana/push-tokens", json={"token": "x"})
    assert r.status_code == 401


async def test_a_client_sending_too_fast_gets_429_with_retry_after(engine) -> None:  # type: ignore[no-untyped-def]
    # 0.5 calls/s with a burst of 1: a second call right after the first must wait ~2 s.
    app = create_app(engine, [KEY], settings=Settings(ingest_rate_limit=0.5))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        first = await post(api, "/v1/track", {"userId": "u", "event": "Tick", "messageId": "t1"})
        second = await post(api, "/v1/track", {"userId": "u", "event": "Tick", "messageId": "t2"})
        assert first.status_code == 200
        assert second.status_code == 429 and "too many calls" in second.json()["error"]
        assert second.headers["Retry-After"] in ("1", "2")
        # The limit is per key: another key is not slowed down, and a batch larger than
        # the burst still goes through on a full bucket.
        other = create_key(engine, "other-shop")
        calls = [{"type": "track", "userId": "u", "event": "Tick"}] * 5
        assert (await post(api, "/v1/batch", {"batch": calls}, other)).status_code == 200
    assert len(events(engine)) == 6


async def test_stored_keys_authenticate_every_way_and_revocation_is_immediate(api, engine) -> None:  # type: ignore[no-untyped-def]
    key = create_key(engine, "storefront")
    call = {"userId": "u", "event": "Cart Viewed"}
    assert (await post(api, "/v1/track", call, key)).status_code == 200
    assert (await api.post("/v1/track", json={**call, "writeKey": key})).status_code == 200
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await api.post("/v1/track", headers=bearer, json=call)).status_code == 200
    revoke_key(engine, "storefront")
    r = await post(api, "/v1/track", call, key)
    assert r.status_code == 401 and r.json()["error"] == "invalid or revoked write key"
    assert len(events(engine)) == 3


def test_keys_cli_shows_a_key_once_and_keeps_only_its_hash(workdir, engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "shop-prod"])
    assert created.exit_code == 0, created.output
    raw = created.stdout.strip().splitlines()[0]
    assert raw.startswith("wk_") and len(raw) > 40
    admin = runner.invoke(main, ["keys", "create", "ops", "--admin"])
    assert admin.stdout.startswith("ak_")
    again = runner.invoke(main, ["keys", "create", "shop-prod"])
    assert again.exit_code == 1 and "already exists" in again.output
    listing = runner.invoke(main, ["keys", "list"]).stdout
    assert "shop-prod" in listing and "write" in listing and raw[:10] in listing
    assert raw not in listing
    with engine.connect() as connection:
        dump = json.dumps(
            [list(map(str, row)) for row in connection.execute(text("SELECT * FROM api_keys"))]
        )
    assert raw not in dump and raw[10:] not in dump
    revoked = runner.invoke(main, ["keys", "revoke", "shop-prod"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in runner.invoke(main, ["keys", "list"]).stdout
    twice = runner.invoke(main, ["keys", "revoke", "shop-prod"])
    assert twice.exit_code == 1 and "no active key named 'shop-prod'" in twice.output


async def test_a_shared_browser_does_not_merge_two_identified_shoppers(api, engine) -> None:  # type: ignore[no-untyped-def]
    # Alice signs in on a shared computer, signs out without a reset, then Bob signs in.
    await post(api, "/v1/identify", {"userId": "alice", "anonymousId": "browser-1",
                                     "traits": {"email": "alice@example.com"}})  # fmt: skip
    await post(api, "/v1/identify", {"userId": "bob", "anonymousId": "browser-1"})
    await post(api, "/v1/track", {"userId": "alice", "event": "Order Completed"})
    alice, bob = contact(engine, "alice"), contact(engine, "bob")
    assert alice is not None and alice.email == "alice@example.com"
    assert bob is not None and bob.email is None
    assert [e.contact_id for e in events(engine)] == ["alice", "bob", "alice"]
    # An explicit alias still merges two identified contacts, with the shop server's admin
    # key: the public write key could otherwise take any customer over.
    merge = {"previousId": "bob", "userId": "alice"}
    assert (await post(api, "/v1/alias", merge)).status_code == 403
    admin = create_key(engine, "shop-server", "admin")
    assert (await api.post("/v1/alias", headers=bearer(admin), json=merge)).status_code == 200
    assert contact(engine, "bob") is None


def test_concurrent_merges_leave_one_contact_and_no_loops(engine) -> None:  # type: ignore[no-untyped-def]
    """alias(anon→a) racing alias(a→b), and alias(x→y) racing alias(y→x): each round ends
    with one contact and every alias pointing at it (a retry absorbs a lost race)."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.api.ingest import store_calls
    from orchestrator.api.segment import AliasCall, TrackCall

    def alias(previous: str, user: str) -> None:
        call = AliasCall.model_validate({"previousId": previous, "userId": user})
        for _ in range(5):
            try:
                store_calls(engine, [call], admin=True)  # identified contacts: an admin key
                return
            except Exception:  # a deadlock or busy database: the client retries
                continue

    for round_ in range(8):
        anon, a, b = f"anon{round_}", f"a{round_}", f"b{round_}"
        seed = [TrackCall.model_validate({"userId": x, "event": "Seen"}) for x in (anon, a, b)]
        store_calls(engine, seed)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda pair: alias(*pair), [(anon, a), (a, b)]))
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda pair: alias(*pair), [(f"x{round_}", f"y{round_}"),
                                                       (f"y{round_}", f"x{round_}")]))  # fmt: skip
        with session_scope(engine) as session:
            survivors = {c.id for c in session.exec(select(Contact)) if c.id.endswith(str(round_))}
            aliases = {
                r.alias_id: r.contact_id
                for r in session.exec(select(ContactAlias))
                if r.alias_id.endswith(str(round_))
            }
            owners = {e.contact_id for e in session.exec(select(Event)) if e.message_id}
        assert len(survivors & {anon, a, b}) == 1, (round_, survivors, aliases)
        assert len(survivors & {f"x{round_}", f"y{round_}"}) == 1, (round_, survivors, aliases)
        assert all(k != v for k, v in aliases.items()), aliases
        assert set(aliases.values()) <= survivors, (aliases, survivors)
        assert owners <= {c for c in owners if not c.endswith(str(round_))} | survivors


async def test_odd_values_get_400_naming_the_field(api, engine) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ("/v1/identify", {"userId": "u", "traits": {"phone": "+1" + "5" * 40}}, "traits.phone"),
        ("/v1/identify", {"userId": "u", "traits": {"email": "x" * 400 + "@ex.com"}},
         "traits.email"),
        ("/v1/track", {"userId": "   ", "event": "X"}, None),
        ("/v1/track", {"userId": "u", "event": "X", "timestamp": "9999-12-31T23:59:59-14:00"},
         "timestamp"),
    ]  # fmt: skip
    for path, body, field in cases:
        r = await post(api, path, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json().get("field") == field and r.json()["code"] == "invalid_request"
    assert events(engine) == []


async def test_sent_at_without_a_timestamp_means_it_happened_now(api, engine) -> None:  # type: ignore[no-untyped-def]
    skewed = datetime(2020, 1, 1, tzinfo=UTC)  # a device clock years behind
    r = await post(api, "/v1/track", {"userId": "u", "event": "X", "sentAt": skewed.isoformat()})
    assert r.status_code == 200
    [event] = events(engine)
    assert abs(event.timestamp - datetime.now(UTC)) < timedelta(minutes=1)


async def test_extra_keys_in_a_call_do_not_reset_its_rate_limit(engine) -> None:  # type: ignore[no-untyped-def]
    app = create_app(engine, [KEY], settings=Settings(ingest_rate_limit=0.5))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        statuses = []
        for i in range(4):
            headers = {**basic(KEY), "X-Write-Key": f"junk-{i}"}
            r = await api.post("/v1/track", headers=headers, json={"userId": "u", "event": "T"})
            statuses.append(r.status_code)
    assert statuses == [200, 429, 429, 429]


NOT_ONE_ADDRESS = {
    "header injection": ("x@example.com\r\nBcc: other@example.net", "a line break (CR/LF)"),
    "bare line feed": ("x@example.com\nBcc: other@example.net", "a line break (CR/LF)"),
    "unicode line separator": ("x@example.com\u2028Bcc: o@example.net", "a line break"),
    "tab inside": ("x@exam\tple.com", "control character U+0009"),
    "zero-width space": ("x\u200b@example.com", "control character U+200B"),
    "two addresses": ("a@example.com, b@example.net", "more than one address"),
    "a display name": ("Ann <ann@example.com>", "more than one address, or has a name"),
    # RFC 2047: mail programs show it decoded, as "ceo@bank.example, cfo@bank.example@…".
    "an encoded word": (
        "=?utf-8?q?ceo=40bank.example=2C_cfo=40bank.example?=@evil.example",
        "an encoded word",
    ),
    "a space": ("ann smith@example.com", "a space"),
    "no at": ("ann.example.com", "exactly one @"),
    "two ats": ("ann@@example.com", "exactly one @"),
    "no domain": ("ann@", "no domain after @"),
    "no dot in the domain": ("ann@localhost", "needs a dot"),
    "not a host name": ("ann@exa_mple.com", "not a host name"),
    "dots in a row": ("ann..b@example.com", "two in a row"),
    "not text": (42, "not text"),
}


async def test_an_email_that_is_not_one_address_is_refused_naming_the_field(api, engine) -> None:  # type: ignore[no-untyped-def]
    await post(api, "/v1/identify", {"userId": "ann", "traits": {"email": "ann@example.com"}})
    for name, (email, why) in NOT_ONE_ADDRESS.items():
        r = await post(api, "/v1/identify", {"userId": "ann", "traits": {"email": email}})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["field"] == "traits.email", name
        assert r.json()["error"].startswith("traits.email is not one email address: "), name
        assert why in r.json()["error"], (name, r.json()["error"])
        # The advice comes once: "send only the address (send just the address, …)" did not.
        assert r.json()["error"].count("the address") == 1, (name, r.json()["error"])
        assert r.json()["error"].count("ann@example.com") == 1, (name, r.json()["error"])
    r = await post(api, "/v1/identify", {"userId": "ann", "traits": {"email": "Ann <a@b.example>"}})
    assert r.json()["error"] == (
        "traits.email is not one email address: it is more than one address, or has a name "
        "(send just the address, as text, like ann@example.com; an empty string removes it)"
    )
    # RudderStack sends identify traits as context.traits; a batch names the call.
    injected = NOT_ONE_ADDRESS["header injection"][0]
    r = await post(
        api, "/v1/identify", {"userId": "ann", "context": {"traits": {"email": injected}}}
    )
    assert (r.status_code, r.json()["field"]) == (400, "context.traits.email")
    batch = [{"type": "track", "userId": "ann", "event": "X"},
             {"type": "identify", "userId": "ann", "traits": {"email": injected}}]  # fmt: skip
    r = await post(api, "/v1/batch", {"batch": batch})
    assert (r.status_code, r.json()["field"]) == (400, "batch.1.traits.email")
    # Nothing of it was stored: the address and the events are as before.
    ann = contact(engine, "ann")
    assert ann is not None and ann.email == "ann@example.com"
    assert ann.traits["email"] == "ann@example.com"
    assert len(events(engine)) == 1


async def test_good_addresses_are_kept_trimmed_and_an_empty_one_removes_it(api, engine) -> None:  # type: ignore[no-untyped-def]
    for email in (
        "  Ann.O'Neil+shop@Example.COM\r\n",
        "ann@bücher.example",
        "ánn@xn--bcher-kva.example",
    ):
        r = await post(api, "/v1/identify", {"userId": "ann", "traits": {"email": email}})
        assert r.status_code == 200, r.text
        stored = contact(engine, "ann")
        assert stored is not None and stored.email == stored.traits["email"] == email.strip()
    r = await post(api, "/v1/identify", {"userId": "ann", "traits": {"email": ""}})
    assert r.status_code == 200 and contact(engine, "ann").email is None  # type: ignore[union-attr]


async def test_a_phone_with_a_line_break_is_refused(api, engine) -> None:  # type: ignore[no-untyped-def]
    r = await post(api, "/v1/identify", {"userId": "ann", "traits": {"phone": "+1555\r\n0100"}})
    assert (r.status_code, r.json()["field"]) == (400, "traits.phone")
    assert "line break" in r.json()["error"]
    r = await post(api, "/v1/identify", {"userId": "ann", "traits": {"phone": " +1 555 0100 "}})
    assert r.status_code == 200 and contact(engine, "ann").phone == "+1 555 0100"  # type: ignore[union-attr]


async def test_a_contact_id_that_cannot_be_a_url_segment_is_refused_naming_the_field(
    api, engine
) -> None:  # type: ignore[no-untyped-def]
    """Contact ids go into URLs (`/v1/contacts/{id}`: export, erasure, points, push tokens):
    an id with `/`, or `.` / `..`, could be stored but never reached there."""
    cases = [
        ("/v1/identify", {"userId": "shop/1042", "traits": {"email": "a@example.com"}}, "userId"),
        ("/v1/track", {"anonymousId": "dev/ice", "event": "Product Viewed"}, "anonymousId"),
        ("/v1/track", {"userId": "..", "event": "Product Viewed"}, "userId"),
        ("/v1/page", {"userId": ".", "name": "Home"}, "userId"),
        ("/v1/alias", {"userId": "ok", "previousId": "anon/1"}, "previousId"),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "u/2", "event": "X"}]},
         "batch.0.userId"),
    ]  # fmt: skip
    for path, body, field in cases:
        r = await post(api, path, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["field"] == field, r.json()
        said = r.json()["error"]
        assert "'/'" in said and "'.' or '..'" in said and "any other characters" in said, said
    r = await post(api, "/v1/contacts/%2E%2E/push-tokens", {"token": "t"})
    assert (r.status_code, r.json()["field"]) == (400, "contact_id")
    assert events(engine) == []
    with session_scope(engine) as session:
        assert session.exec(select(Contact)).all() == []
    # Every other character is fine: spaces, colons, dots inside, percent signs, scripts.
    for user in ("shop:1042", "ann b", "a.b", "50%", "Мария", "..."):
        r = await post(api, "/v1/track", {"userId": user, "event": "X"})
        assert r.status_code == 200, (user, r.text)


# --- who may merge whom -----------------------------------------------------------------


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def alias_row(engine: Engine, alias_id: str) -> str | None:
    with session_scope(engine) as session:
        row = session.get(ContactAlias, alias_id)
        return row.contact_id if row else None


def order_owners(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return {o.order_id: o.contact_id for o in session.exec(select(Order))}


async def test_a_write_key_cannot_alias_an_identified_customer_into_another(api, engine) -> None:  # type: ignore[no-untyped-def]
    """The public write key aliasing a customer into the attacker's contact would hand over
    their coupons, points, orders and every later message. Refused with 403 naming
    `previousId`, nothing of the call (or its batch) stored; an admin key may merge."""
    await post(api, "/v1/identify", {"userId": "vic", "traits": {"email": "vic@example.com"}})
    order = {"order_id": "o-6001", "revenue": 300}
    await post(api, "/v1/track", {"userId": "vic", "event": "Order Completed", "properties": order})
    with session_scope(engine) as session:
        code = issue_coupon(
            session, "vic", campaign="thanks", prefix="THANKS", kind="percent", value=10,
            idempotency_key="thanks:vic", now=datetime.now(UTC),
        ).code  # fmt: skip
    await post(api, "/v1/identify", {"userId": "att", "traits": {"email": "att@evil.example"}})
    stored = len(events(engine))
    refused = await post(api, "/v1/alias", {"previousId": "vic", "userId": "att"})
    assert (refused.status_code, refused.json()["field"]) == (403, "previousId"), refused.text
    assert refused.json()["code"] == "forbidden"
    said = refused.json()["error"]
    assert "'vic' is an identified contact" in said and "admin key" in said, said
    in_batch = await post(api, "/v1/batch", {"batch": [
        {"type": "track", "userId": "att", "event": "Cart Viewed"},
        {"type": "alias", "previousId": "vic", "userId": "att"},
    ]})  # fmt: skip
    assert (in_batch.status_code, in_batch.json()["field"]) == (403, "batch.1.previousId")
    # An alias of the customer is the customer: no way around it.
    await post(api, "/v1/alias", {"previousId": "vic-old-device", "userId": "vic"})
    around = await post(api, "/v1/alias", {"previousId": "vic-old-device", "userId": "att"})
    assert (around.status_code, around.json()["field"]) == (403, "previousId")
    assert len(events(engine)) == stored + 1  # only vic's own alias call
    victim = contact(engine, "vic")
    assert victim is not None and victim.email == "vic@example.com"
    assert alias_row(engine, "vic") is None and order_owners(engine) == {"o-6001": "vic"}
    redeem = await api.post(
        f"/v1/coupons/{code}/redeem", headers=basic(KEY), json={"order_id": "a1", "userId": "att"}
    )
    assert (redeem.status_code, redeem.json()["reason"]) == (403, "other_contact")
    # The shop's server, with an admin key in Authorization, may merge two customers.
    admin = create_key(engine, "shop-server", "admin")
    misplaced = await api.post(
        "/v1/alias", json={"previousId": "vic", "userId": "att", "writeKey": admin}
    )
    assert misplaced.status_code == 401 and contact(engine, "vic") is not None
    merged = await api.post(
        "/v1/alias", headers=bearer(admin), json={"previousId": "vic", "userId": "att"}
    )
    assert merged.status_code == 200, merged.text
    assert contact(engine, "vic") is None and alias_row(engine, "vic") == "att"
    assert order_owners(engine) == {"o-6001": "att"}


async def test_an_identified_anonymous_id_is_never_merged_by_a_call_carrying_both_ids(
    api, engine
) -> None:  # type: ignore[no-untyped-def]
    """`{userId: att, anonymousId: vic}` on any call used to fold vic into att. Now the
    call is stored under its userId and vic stays vic, whatever the key: only an explicit
    alias merges identified contacts."""
    await post(api, "/v1/identify", {"userId": "vic3", "traits": {"email": "vic3@example.com",
                                                                 "first_name": "Vic"}})  # fmt: skip
    await post(api, "/v1/track", {"userId": "vic4", "event": "Product Viewed"})  # a userId only
    await post(api, "/v1/identify", {"anonymousId": "guest-5", "traits": {"phone": "+15550005"}})
    await post(api, "/v1/track", {"anonymousId": "guest-6", "event": "Order Completed",
                                  "properties": {"order_id": "g-6", "revenue": 40}})  # fmt: skip
    admin = create_key(engine, "shop-server", "admin")
    for n, victim in enumerate(("vic3", "vic4", "guest-5", "guest-6")):
        call = {"userId": f"att{n}", "anonymousId": victim, "event": "Page Viewed"}
        r = await post(api, "/v1/track", call, key=KEY if n % 2 else admin)
        assert r.status_code == 200, r.text
        assert contact(engine, victim) is not None and alias_row(engine, victim) is None
        assert events(engine)[-1].contact_id == f"att{n}"
    vic3 = contact(engine, "vic3")
    assert vic3 is not None and vic3.email == "vic3@example.com"
    assert vic3.traits == {"email": "vic3@example.com", "first_name": "Vic"}
    assert contact(engine, "att0").email is None  # type: ignore[union-attr]
    assert order_owners(engine) == {"g-6": "guest-6"}
    # A guest who ordered (or left a phone) is a customer too: a write key may not alias
    # them; the shop's server may, with its admin key.
    r = await post(api, "/v1/alias", {"previousId": "guest-6", "userId": "gail"})
    assert (r.status_code, r.json()["field"]) == (403, "previousId")
    r = await api.post(
        "/v1/alias", headers=bearer(admin), json={"previousId": "guest-6", "userId": "gail"}
    )
    assert r.status_code == 200 and order_owners(engine) == {"g-6": "gail"}


async def test_a_never_identified_anonymous_visitor_still_follows_the_shopper(api, engine) -> None:  # type: ignore[no-untyped-def]
    """What write keys may merge: ids only ever sent as an anonymousId, with no email,
    phone or order, into the userId, by alias or by a call carrying both; and an id never
    seen. Traits without an address (a name, consent) and device tokens keep it anonymous."""
    traits = {"first_name": "Al", "consent": {"sms": False}}
    device = {"device": {"token": "t"}}
    await post(api, "/v1/identify", {"anonymousId": "anon-a", "context": device, "traits": traits})
    await post(api, "/v1/track", {"anonymousId": "anon-a", "event": "Product Added"})
    await post(api, "/v1/track", {"anonymousId": "anon-b", "event": "Product Added"})
    calls = [
        ("/v1/alias", {"previousId": "anon-a", "userId": "al"}),
        ("/v1/track", {"userId": "bo", "anonymousId": "anon-b", "event": "Signed In"}),
        ("/v1/alias", {"previousId": "never-seen", "userId": "al"}),
    ]
    for path, body in calls:
        r = await post(api, path, body)
        assert r.status_code == 200, r.text
    assert (alias_row(engine, "anon-a"), alias_row(engine, "anon-b")) == ("al", "bo")
    assert alias_row(engine, "never-seen") == "al"
    al = contact(engine, "al")
    assert al is not None and al.push_tokens == ["t"] and al.traits == {"first_name": "Al"}
    # An app that registers its device before anyone signs in: merged at sign-in too.
    r = await post(api, "/v1/contacts/anon-app/push-tokens", {"token": "fcm-1"})
    assert r.status_code == 200
    r = await post(api, "/v1/identify", {"userId": "cy", "anonymousId": "anon-app"})
    assert r.status_code == 200 and alias_row(engine, "anon-app") == "cy"
    assert contact(engine, "cy").push_tokens == ["fcm-1"]  # type: ignore[union-attr]
    # Once a userId, never anonymous again: 'al' cannot be folded into someone else.
    r = await post(api, "/v1/alias", {"previousId": "al", "userId": "bo"})
    assert (r.status_code, r.json()["field"]) == (403, "previousId")


async def test_ids_with_control_or_format_characters_are_refused_naming_the_field(
    api, engine
) -> None:  # type: ignore[no-untyped-def]
    """A line break in a userId forged lines in the dev log; an escape sequence in one
    ran in the terminal of whoever listed runs. Refused like a bad email, 400 naming the
    field; nothing of the call stored."""
    forged_log = "lg1\n2026-12-06 05:30:00,000 CRITICAL orchestrator.security: admin key leaked"
    cases = [
        ("/v1/identify", {"userId": forged_log, "traits": {"first_name": "X"}}, "userId"),
        ("/v1/track", {"anonymousId": "a\x1b]0;pwned\x07", "event": "Product Viewed"},
         "anonymousId"),
        ("/v1/page", {"userId": "u\r1", "name": "Home"}, "userId"),
        ("/v1/alias", {"userId": "ok", "previousId": "anon\u202egpj.exe"}, "previousId"),
        ("/v1/track", {"userId": "zero\u200bwidth", "event": "X"}, "userId"),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "u\t2", "event": "X"}]},
         "batch.0.userId"),
    ]  # fmt: skip
    for path, body, field in cases:
        r = await post(api, path, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["field"] == field, r.json()
        said = r.json()["error"]
        assert "control or invisible character U+" in said, said
        assert "\n" not in said and "\x1b" not in said and "\u202e" not in said, said
    r = await post(api, "/v1/contacts/ann%0Aforged/push-tokens", {"token": "t"})
    assert (r.status_code, r.json()["field"]) == (400, "contact_id"), r.text
    assert events(engine) == []
    with session_scope(engine) as session:
        assert session.exec(select(Contact)).all() == []
