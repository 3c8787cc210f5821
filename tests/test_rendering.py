"""What a contact receives: locale choice, formatting, email post-processing, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.rendering import Renderer, RenderError
from orchestrator.rendering.formatting import Formats
from orchestrator.services.links import MessageLinks
from orchestrator.store.context import cart_from_events, product


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def context(**contact: Any) -> dict[str, Any]:
    return {
        "contact": {"first_name": "Ann", "traits": {}, **contact},
        "event": {"name": "Product Added", "properties": {}},
        "message": {"id": "m-1", "channel": "email"},
    }


@pytest.fixture
def greetings(tmp_path: Path) -> Renderer:
    """A message in English (default), Russian, Serbian Latin, Brazilian Portuguese, Arabic."""
    write(
        tmp_path,
        {
            "hello/email.subject": "Hello {{ contact.first_name }}",
            "hello/email.text": "Hi {{ contact.first_name }}\n{% include '_partials/sign.text' %}",
            "hello/push.title": "Hello",
            "hello/push.body": "Hi {{ contact.first_name }}",
            "hello/ru/email.subject": "Здравствуйте, {{ contact.first_name }}",
            "hello/ru/email.text": "Привет\n{% include '_partials/sign.text' %}",
            "hello/sr-Latn/email.subject": "Zdravo, {{ contact.first_name }}",
            "hello/sr-Latn/email.text": "Zdravo",
            "hello/pt-BR/email.subject": "Olá",
            "hello/pt-BR/email.text": "Olá",
            "hello/ar/email.subject": "مرحبا",
            "hello/ar/email.html": '<html dir="{{ message.dir }}" lang="{{ message.lang }}">'
            "<body><p>مرحبا</p></body></html>",
            "_partials/sign.text": "The team",
            "_partials/ru/sign.text": "Команда",
        },
    )
    return Renderer(tmp_path)


@pytest.mark.parametrize(
    ("locale", "version", "subject"),
    [
        ("ru-RU", "ru", "Здравствуйте, Ann"),
        ("ru", "ru", "Здравствуйте, Ann"),
        ("sr-Latn-RS", "sr_Latn", "Zdravo, Ann"),
        ("sr_Latn", "sr_Latn", "Zdravo, Ann"),
        ("pt-BR", "pt_BR", "Olá"),
        ("pt-PT", "en", "Hello Ann"),  # no pt version for Portugal: the default
        ("de-DE", "en", "Hello Ann"),
        (None, "en", "Hello Ann"),
        ("not a locale", "en", "Hello Ann"),
    ],
)
def test_the_contacts_locale_picks_the_version(
    greetings: Renderer, locale: str | None, version: str, subject: str
) -> None:
    rendered = greetings.render("hello", "email", context(locale=locale))
    assert (rendered.locale, rendered.parts["subject"]) == (version, subject)


def test_shared_partials_follow_the_message_locale(greetings: Renderer) -> None:
    assert (
        greetings.render("hello", "email", context(locale="ru")).parts["text"].endswith("Команда")
    )
    assert (
        greetings.render("hello", "email", context(locale="de")).parts["text"].endswith("The team")
    )


def test_a_channel_missing_from_a_translation_falls_back_to_the_default_version(
    greetings: Renderer,
) -> None:
    push = greetings.render("hello", "push", context(locale="ru"))
    assert (push.locale, push.parts["title"]) == ("en", "Hello")


def test_a_translation_or_part_added_later_is_used_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folder listings are cached between renders: a file added to a folder, whether
    it changed a moment ago or long ago, is seen by the next render."""
    import os

    write(tmp_path, {"hi/email.subject": "Hello", "hi/email.text": "Hi"})
    renderer = Renderer(tmp_path)
    ru = context(locale="ru")
    assert renderer.render("hi", "email", ru).parts["subject"] == "Hello"
    write(tmp_path, {"hi/ru/email.subject": "Привет", "hi/ru/email.text": "Привет"})
    assert renderer.render("hi", "email", ru).parts["subject"] == "Привет"  # just changed

    # Listings of folders changed less than 2 s ago are not kept: keep every one here,
    # so what follows is about the cache.
    monkeypatch.setattr("orchestrator.rendering.catalog._RACY_NS", 0)
    long_ago = 1_000_000_000  # 2001
    for folder in (tmp_path / "hi", tmp_path / "hi" / "ru"):
        os.utime(folder, (long_ago, long_ago))
    assert not renderer.has_channel("hi", "push")
    assert renderer.render("hi", "email", ru).parts["subject"] == "Привет"
    write(tmp_path, {"hi/push.title": "Hi", "hi/push.body": "Back soon?"})
    assert renderer.has_channel("hi", "push")
    (tmp_path / "hi" / "ru" / "email.subject").unlink()
    (tmp_path / "hi" / "ru" / "email.text").unlink()
    assert renderer.render("hi", "email", ru).parts["subject"] == "Hello"


def test_a_release_swapped_in_with_the_same_file_times_is_read_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build tools stamp every file with one time (SOURCE_DATE_EPOCH, tar --mtime): a new
    release under the same path must not be taken for the old one."""
    import os

    monkeypatch.setattr("orchestrator.rendering.catalog._RACY_NS", 0)  # keep every listing

    v1 = write(tmp_path / "v1", {"hi/email.subject": "Hello", "hi/email.text": "Hi"})
    v2 = write(
        tmp_path / "v2",
        {
            "hi/email.subject": "Hello",
            "hi/email.text": "Hi",
            "hi/ru/email.subject": "Привет",
            "hi/ru/email.text": "Привет",
        },
    )
    stamp = 1_700_000_000
    for root in (v1, v2):
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            os.utime(folder, (stamp, stamp))
    current = tmp_path / "current"
    current.symlink_to(v1, target_is_directory=True)
    ru = context(locale="ru")
    assert Renderer(current).render("hi", "email", ru).parts["subject"] == "Hello"
    current.unlink()
    current.symlink_to(v2, target_is_directory=True)
    assert Renderer(current).render("hi", "email", ru).parts["subject"] == "Привет"


def test_a_symlink_loop_beside_the_parts_does_not_break_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setattr("orchestrator.rendering.catalog._RACY_NS", 0)

    write(tmp_path, {"hi/email.subject": "Hello", "hi/email.text": "Hi"})
    (tmp_path / "hi" / "loop").symlink_to(tmp_path / "hi" / "loop")
    os.utime(tmp_path / "hi", (1_000_000_000, 1_000_000_000))
    assert Renderer(tmp_path).render("hi", "email", context()).parts["subject"] == "Hello"


def test_an_explicit_locale_overrides_the_contacts(greetings: Renderer) -> None:
    assert greetings.render("hello", "email", context(locale="ru"), locale="en").locale == "en"


def test_arabic_email_is_right_to_left(greetings: Renderer) -> None:
    html = greetings.render("hello", "email", context(locale="ar-EG")).parts["html"]
    assert 'dir="rtl"' in html and 'lang="ar"' in html
    ltr = Renderer(greetings.templates_dir).render("hello", "email", context(locale="ar"))
    assert ltr.parts["text"] == "مرحبا"  # generated from the HTML


def test_money_dates_and_plurals_follow_locale_currency_and_timezone(tmp_path: Path) -> None:
    # A Russian shop: its default version (the files directly in the folder) is Russian.
    renderer = Renderer(
        write(
            tmp_path,
            {
                "order/sms.body": "{{ event.properties.revenue | money }} · "
                "{{ event.properties.points }} {{ event.properties.points | plural("
                "one='балл', few='балла', many='баллов', other='балла') }} · "
                "{{ '2026-03-14T21:30:00Z' | datetime('short') }}",
            },
        ),
        default_locale="ru",
        sms_max_segments=5,
    )
    ctx = context(locale="ru-RU", timezone="Europe/Moscow")
    ctx["event"]["properties"] = {"revenue": 5000, "currency": "RUB", "points": 5}
    body = renderer.render("order", "sms", ctx).parts["body"]
    # The contact's locale, the event's currency; Moscow is UTC+3: 21:30 UTC is 00:30 the
    # next day. How ru writes them is CLDR's (tests/test_formatting.py checks Formats).
    moscow = Formats("ru", "RUB", "Europe/Moscow")
    local = Formats("ru").datetime("2026-03-15T00:30:00", "short")  # the wall time, in UTC
    assert body == f"{moscow.money(5000)} · 5 баллов · {local}"
    assert moscow.money(5000) != Formats("en").money(5000, "RUB")
    ctx["contact"].update(locale="en-US", timezone="America/New_York")
    ctx["event"]["properties"]["currency"] = "USD"
    english = Renderer(tmp_path / "en")
    write(english.templates_dir, {"order/sms.body": "{{ 1234.5 | money }} {{ 0.25 | percent }}"})
    american = Formats("en_US", "USD")
    assert english.render("order", "sms", ctx).parts["body"] == (
        f"{american.money(1234.5)} {american.percent(0.25)}"
    )


@pytest.mark.parametrize("zone", ["Moscow", "America", "../../etc/passwd", "UTC\x00"])
def test_a_timezone_that_names_no_zone_renders_in_the_default_one(
    tmp_path: Path, zone: str
) -> None:
    """A storefront's `context.timezone` is stored as sent: a misspelt one must not fail
    the contact's every send (`America` is a folder of the zone database, which
    ZoneInfo answers with IsADirectoryError)."""
    renderer = Renderer(
        write(tmp_path, {"at/sms.body": "{{ '2026-03-14T21:30:00Z' | datetime('short') }}"}),
        default_timezone="Europe/Moscow",
    )
    body = renderer.render("at", "sms", context(timezone=zone)).parts["body"]
    assert body == Formats("en", "USD", "Europe/Moscow").datetime("2026-03-14T21:30:00Z", "short")


def test_email_css_is_inlined_preheader_hidden_and_text_generated(tmp_path: Path) -> None:
    renderer = Renderer(
        write(
            tmp_path,
            {
                "promo/email.subject": "Sale",
                "promo/email.preheader": "Up to 50% off, {{ contact.first_name }}",
                "promo/email.html": (
                    "<html><head><style>p.lead { color: #c00; } "
                    "@media (max-width: 600px) { p.lead { font-size: 18px; } }</style></head>"
                    '<body><p class="lead">Big sale</p>'
                    '<p><a href="https://shop.example.com/sale">Shop now</a></p></body></html>'
                ),
            },
        )
    )
    rendered = renderer.render("promo", "email", context())
    html = rendered.parts["html"]
    assert '<p class="lead" style="color: #c00;">Big sale</p>' in html
    assert "@media (max-width: 600px)" in html  # kept for mobile clients
    assert html.index("display:none") < html.index("Big sale")
    assert "Up to 50% off, Ann" in html
    assert rendered.parts["text"] == "Big sale\n\nShop now (https://shop.example.com/sale)"


def test_a_written_text_part_is_kept(greetings: Renderer) -> None:
    assert greetings.render("hello", "email", context()).parts["text"] == "Hi Ann\nThe team"


def test_brand_values_reach_every_template(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "_brand.yaml": "name: Shop\npostal_address: 1 Main St, Springfield\n",
            "hi/sms.body": "{{ brand.name }}, {{ brand.postal_address }}",
        },
    )
    assert Renderer(tmp_path).render("hi", "sms", context()).parts["body"] == (
        "Shop, 1 Main St, Springfield"
    )
    (tmp_path / "_brand.yaml").write_text("- not a mapping\n")
    with pytest.raises(RenderError, match="expected a mapping"):
        Renderer(tmp_path).render("hi", "sms", context())


def test_sms_is_measured_and_refused_over_the_segment_limit(tmp_path: Path) -> None:
    write(tmp_path, {"s/sms.body": "{{ contact.traits.text }}"})
    renderer = Renderer(tmp_path, sms_max_segments=2)
    short = renderer.render("s", "sms", context(traits={"text": "Your order shipped"}))
    assert (short.sms.encoding, short.sms.segments) == ("GSM-7", 1)
    russian = renderer.render("s", "sms", context(traits={"text": "Ваш заказ отправлен" * 5}))
    assert (russian.sms.encoding, russian.sms.segments) == ("UCS-2", 2)
    with pytest.raises(RenderError, match=r"3 segments \(UCS-2, 152 characters"):
        renderer.render("s", "sms", context(traits={"text": "Ваш заказ отправлен" * 8}))


def test_push_payload_over_4_kb_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"p/push.title": "Hi", "p/push.body": "{{ contact.traits.text }}"})
    renderer = Renderer(tmp_path)
    ok = renderer.render("p", "push", context(traits={"text": "x" * 100}))
    # The body, the ids and labels the adapter adds (a fixed allowance), JSON framing.
    assert ok.push_bytes is not None and 500 < ok.push_bytes < 700
    with pytest.raises(RenderError, match="FCM accepts 4096"):
        renderer.render("p", "push", context(traits={"text": "я" * 1900}))  # 2 bytes each


def test_push_image_and_link_must_be_urls(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "p/push.title": "Hi",
            "p/push.body": "Body",
            "p/push.link": "{{ contact.traits.link }}",
            "app/push.title": "Hi",
            "app/push.body": "Body",
            "app/push.link": "shop://cart/{{ contact.traits.cart }}",
            "words/push.title": "Hi",
            "words/push.body": "Body",
            "words/push.link": "open the app",
        },
    )
    renderer = Renderer(tmp_path)
    ok = renderer.render("p", "push", context(traits={"link": "https://shop.example/cart/42"}))
    assert ok.parts["link"] == "https://shop.example/cart/42"
    # A link from data is http(s) or nothing (docs/templates.md); the template's own
    # deep link into the app is the marketer's to write.
    data = renderer.render("p", "push", context(traits={"link": "shop://cart/42"}))
    assert data.parts["link"] == ""
    assert [str(d) for d in data.dropped_links] == [
        "contact.traits.link: shop: links are not allowed, only http and https"
    ]
    app = renderer.render("app", "push", context(traits={"cart": "42"}))
    assert app.parts["link"] == "shop://cart/42"
    with pytest.raises(RenderError, match="must be a URL"):
        renderer.render("words", "push", context())


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "m/email.subject": "Hi",
            "m/email.text": "line one\nline two\n{{ event.properties.total | money }}\n",
        },
    )
    ctx = context()
    ctx["event"]["properties"] = {"total": "lots"}
    with pytest.raises(RenderError) as caught:
        Renderer(tmp_path).render("m", "email", ctx)
    assert caught.value.file == str(tmp_path / "m" / "email.text")
    assert caught.value.line == 3
    assert "is not a number" in caught.value.reason


def test_arithmetic_on_data_is_a_render_error_not_a_crash(tmp_path: Path) -> None:
    """A division by a zero count in the data fails the message (with where), instead of
    failing the send activity on every retry until its attempts run out."""
    write(
        tmp_path,
        {
            "m/email.subject": "Hi",
            "m/email.text": "Per item:\n{{ event.properties.total / event.properties.count }}\n",
        },
    )
    ctx = context()
    ctx["event"]["properties"] = {"total": 10, "count": 0}
    with pytest.raises(RenderError) as caught:
        Renderer(tmp_path).render("m", "email", ctx)
    assert caught.value.file == str(tmp_path / "m" / "email.text")
    assert caught.value.line == 2
    assert "division by zero" in str(caught.value)


def test_message_links_are_signed_and_opaque() -> None:
    links = MessageLinks("https://crm.example.com/", "s3cret")
    urls = links.for_message("9b2c-message")
    token = urls["unsubscribe_url"].rsplit("/", 1)[1]
    assert urls["view_url"] == f"https://crm.example.com/m/{token}"
    assert "9b2c-message" not in token  # no ids in clear text
    assert links.message_id(token) == "9b2c-message"
    assert MessageLinks("https://crm.example.com", "other").message_id(token) is None
    body, sig = token.split(".")
    assert links.message_id(f"{body}.{sig[:-2]}AA") is None
    assert links.message_id("garbage") is None


def test_the_cart_is_replayed_from_its_events() -> None:
    def added(pid: str, price: float, qty: int = 1, cart: str = "c1") -> dict[str, Any]:
        props = {"product_id": pid, "name": pid.title(), "price": price, "quantity": qty}
        return {"name": "Product Added", "properties": {**props, "cart_id": cart}}

    events = [
        {"name": "Order Completed", "properties": {"cart_id": "c1"}},
        added("shoes", 50),
        added("hat", 20),
        added("shoes", 50, 2),
        added("scarf", 15, cart="other-cart"),
        {"name": "Product Removed", "properties": {"product_id": "hat", "cart_id": "c1"}},
        added("socks", 5.5, 2)
        | {
            "properties": added("socks", 5.5, 2)["properties"]
            | {"cart_url": "https://shop.example.com/cart/c1", "currency": "EUR"}
        },
    ]
    cart = cart_from_events(events, "c1")
    assert [(i["name"], i["quantity"], i["total"]) for i in cart["products"]] == [
        ("Shoes", 3, 150),
        ("Socks", 2, 11.0),
    ]
    assert (cart["item_count"], cart["total"], cart["currency"], cart["url"]) == (
        5,
        161.0,
        "EUR",
        "https://shop.example.com/cart/c1",
    )
    checkout = {"name": "Checkout Started", "properties": {"products": [{"sku": "x", "price": 1}]}}
    assert [i["id"] for i in cart_from_events([*events, checkout], "c1")["products"]] == ["x"]
    bought = {"name": "Order Completed", "properties": {"cart_id": "c1"}}
    assert cart_from_events([*events, bought], "c1")["products"] == []


def test_products_get_the_names_templates_use() -> None:
    item = product({"sku": "A-1", "price": "19.90", "quantity": "2", "image_url": "https://i/a"})
    assert (item["id"], item["name"], item["price"], item["quantity"], item["image"]) == (
        "A-1",
        "A-1",
        19.9,
        2,
        "https://i/a",
    )
    assert item["total"] == pytest.approx(39.8)
