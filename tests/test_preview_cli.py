"""`journeys preview`: what one contact would receive, in the terminal, before anyone does.

Each test builds its messages in a temporary working directory and runs the
command in-process with click's runner, reading what a marketer reads.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from babel.dates import format_time
from babel.numbers import format_currency
from click.testing import CliRunner, Result
from harness import write_message
from sqlmodel import Session

from orchestrator.cli import main
from orchestrator.rendering.samples import EVENT_PROPERTIES
from orchestrator.store.db import make_engine, migrate, sqlite_url
from orchestrator.store.tables import Contact, ContactAlias, Event, JourneyRun

LAYOUT = """\
<!doctype html>
<html lang="{{ message.lang }}" dir="{{ message.dir }}">
<head><style>p { color: #123456; }</style></head>
<body>{% block body %}{% endblock %}</body>
</html>
"""


def write_journey(template: str, trigger: str, channel: str = "email") -> None:
    Path("journeys/j.yaml").write_text(
        f"id: j\nname: J\ntrigger: {{event: {trigger}}}\n"
        f"steps:\n  - send: {{channel: {channel}, template: {template}}}\n",
        encoding="utf-8",
    )


def write_json(name: str, data: Any) -> str:
    Path(name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return name


def preview(*args: str) -> Result:
    return CliRunner().invoke(main, ["preview", *args])


def shown(result: Result) -> str:
    """What a successful preview printed."""
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(result: Result) -> str:
    """The one error line of a failed preview (stderr), with no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


WELCOME = {
    "email.subject": "Welcome, {{ contact.first_name }}",
    "email.text": "Hi {{ contact.first_name }}! Plan: {{ event.properties.price | money }}",
    "ru/email.subject": "Добро пожаловать, {{ contact.first_name }}",
    "ru/email.text": (
        "Привет, {{ contact.first_name }}! Тариф: {{ event.properties.price | money }}\n"
        "Отправлено в {{ event.timestamp | time }}"
    ),
    "sample.yaml": (
        "event:\n"
        "  timestamp: '2026-03-14T15:30:00+00:00'\n"
        "  properties: {price: 5000, currency: RUB}\n"
    ),
}


# --- Who it is for --------------------------------------------------------------------------


def test_identify_call_picks_the_russian_version_and_russian_formats(workdir: Path) -> None:
    write_message("welcome", WELCOME)
    contact = write_json(
        "maria.json",
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"first_name": "Мария"},
            "context": {"locale": "ru-RU", "timezone": "Europe/Moscow"},
        },
    )

    out = shown(preview("welcome", "--contact", contact))

    assert out.splitlines()[0] == "== welcome · email · ru"
    assert "Subject:   Добро пожаловать, Мария" in out
    # Rubles as ru writes them (CLDR's: no-break spaces, a decimal comma), not as en does.
    rubles = format_currency(5000, "RUB", locale="ru_RU")
    assert rubles != format_currency(5000, "RUB", locale="en")
    assert f"Привет, Мария! Тариф: {rubles}" in out
    # 15:30 UTC is 18:30 in the contact's Europe/Moscow.
    assert f"Отправлено в {format_time(time(18, 30), 'short', locale='ru')}" in out


def test_contact_as_a_plain_traits_object(workdir: Path) -> None:
    write_message("welcome", WELCOME)
    ann = write_json("ann.json", {"first_name": "Ann", "locale": "ru"})
    bob = write_json("bob.json", {"first_name": "Bob"})

    out = shown(preview("welcome", "--contact", ann))
    assert out.splitlines()[0] == "== welcome · email · ru"
    assert "Subject:   Добро пожаловать, Ann" in out

    out = shown(preview("welcome", "--contact", bob))
    assert out.splitlines()[0] == "== welcome · email · en"
    assert "Subject:   Welcome, Bob" in out


def test_locale_option_overrides_the_contacts_locale(workdir: Path) -> None:
    write_message("welcome", WELCOME)
    ann = write_json("ann.json", {"first_name": "Ann", "locale": "ru"})

    out = shown(preview("welcome", "--contact", ann, "--locale", "en"))

    assert out.splitlines()[0] == "== welcome · email · en"
    assert "Subject:   Welcome, Ann" in out


# --- What happened ------------------------------------------------------------------------

EVENT_ECHO = {
    "email.subject": "News",
    "email.text": "{{ event.name }}: {{ event.properties.name }}",
}


def test_event_as_a_track_call_or_as_bare_properties(workdir: Path) -> None:
    write_message("news", EVENT_ECHO)
    call = write_json(
        "call.json",
        {"type": "track", "event": "Product Viewed", "properties": {"name": "Kettle"}},
    )
    bare = write_json("bare.json", {"name": "Teapot"})

    assert "Product Viewed: Kettle" in shown(preview("news", "--event", call))
    assert "Sample Event: Teapot" in shown(preview("news", "--event", bare))

    write_journey("news", trigger="Product Added")
    # Bare properties take their name from the trigger of the journey that sends the message.
    assert "Product Added: Teapot" in shown(preview("news", "--event", bare))


def test_without_inputs_the_sample_data_is_used(workdir: Path) -> None:
    write_message(
        "news",
        {
            "email.subject": "News for {{ contact.first_name }}",
            "email.text": (
                "{{ event.name }} / {{ event.properties.name | default('-') }} / "
                "{{ journey.coupon_code }}"
            ),
            "sample.yaml": "journey: {coupon_code: SAVE10}\n",
        },
    )
    out = shown(preview("news"))
    assert "Subject:   News for Alex" in out
    assert "Sample Event / - / SAVE10" in out

    write_journey("news", trigger="Product Added")
    product = EVENT_PROPERTIES["Product Added"]["name"]
    assert f"Product Added / {product} / SAVE10" in shown(preview("news"))


def test_journey_values_from_a_file(workdir: Path) -> None:
    write_message(
        "news",
        {
            "email.subject": "News",
            "email.text": "Code {{ journey.coupon_code }}",
            "sample.yaml": "journey: {coupon_code: SAVE10}\n",
        },
    )
    values = write_json("journey.json", {"coupon_code": "VIP50"})
    assert "Code VIP50" in shown(preview("news", "--journey", values))


# --- Email ----------------------------------------------------------------------------------


def html_message(name: str) -> None:
    write_message(
        name,
        {
            "email.subject": "News",
            "email.html": (
                '{% extends "_layouts/email.html" %}{% block body %}'
                "<p>Hello <b>{{ contact.first_name }}</b></p>"
                '<p><a href="https://shop.example.com/sale">Shop the sale</a></p>'
                "{% endblock %}"
            ),
            "ar/email.subject": "أخبار",
            "ar/email.html": (
                '{% extends "_layouts/email.html" %}{% block body %}'
                "<p>مرحبا {{ contact.first_name }}</p>{% endblock %}"
            ),
        },
    )
    Path("templates/_layouts").mkdir(exist_ok=True)
    Path("templates/_layouts/email.html").write_text(LAYOUT, encoding="utf-8")


def test_arabic_version_is_right_to_left_with_inlined_css(workdir: Path) -> None:
    html_message("news")

    out = shown(preview("news", "--locale", "ar", "--out", "news.html"))

    assert out.splitlines()[0] == "== news · email · ar"
    assert "Subject:   أخبار" in out
    assert "written to news.html" in out
    html = Path("news.html").read_text(encoding="utf-8")
    assert 'dir="rtl"' in html
    assert 'lang="ar"' in html
    assert re.search(r'<p style="color: ?#123456;?">مرحبا Alex</p>', html), html
    assert "<style" not in html


def test_default_version_is_left_to_right(workdir: Path) -> None:
    html_message("news")
    shown(preview("news", "--out", "news.html"))
    html = Path("news.html").read_text(encoding="utf-8")
    assert 'dir="ltr"' in html
    assert 'lang="en"' in html


def test_email_without_a_text_part_shows_generated_plain_text(workdir: Path) -> None:
    html_message("news")

    out = shown(preview("news"))

    assert "Hello Alex" in out
    assert "Shop the sale" in out
    assert "https://shop.example.com/sale" in out
    assert "<p" not in out
    assert "(--out file.html to open it)" in out


# --- SMS and push ---------------------------------------------------------------------------


def test_sms_shows_encoding_and_segments(workdir: Path) -> None:
    write_message(
        "hello",
        {
            "sms.body": "Hi {{ contact.first_name }}, your cart is waiting",
            "ru/sms.body": "Привет, {{ contact.first_name }}, корзина ждёт",
        },
    )
    english, russian = "Hi Alex, your cart is waiting", "Привет, Alex, корзина ждёт"

    out = shown(preview("hello", "--channel", "sms"))
    assert english in out
    assert f"Length: 1 segment (GSM-7, {len(english)} characters, 160 per segment)" in out

    out = shown(preview("hello", "--channel", "sms", "--locale", "ru"))
    assert russian in out
    assert f"Length: 1 segment (UCS-2, {len(russian)} characters, 70 per segment)" in out


def test_long_russian_sms_is_counted_in_67_character_segments(workdir: Path) -> None:
    write_message("hello", {"sms.body": "Ж" * 140})
    out = shown(preview("hello"))
    assert "Length: 3 segments (UCS-2, 140 characters, 67 per segment)" in out


def test_push_shows_its_payload_size_in_bytes(workdir: Path) -> None:
    write_message("hello", {"push.title": "Sale", "push.body": "Privet", "ru/push.body": "Привет"})
    write_message("hello", {"ru/push.title": "Sale"})

    def payload(*args: str) -> int:
        out = shown(preview("hello", *args))
        assert "Title: Sale" in out
        found = re.search(r"^Payload: (\d+) of 4096 bytes$", out, re.MULTILINE)
        assert found, out
        return int(found.group(1))

    latin, cyrillic = payload(), payload("--locale", "ru")
    assert 0 < latin < 4096
    assert cyrillic - latin == len("Привет".encode()) - len("Privet")  # bytes, not characters


# --- Mistakes ---------------------------------------------------------------------------------


def test_channel_the_message_does_not_have(workdir: Path) -> None:
    write_message("news", {**EVENT_ECHO, "push.title": "Hi", "push.body": "There"})
    line = refused(preview("news", "--channel", "sms"))
    assert line == "error: message 'news' has no complete sms version (it has: email, push)"


def test_unknown_message(workdir: Path) -> None:
    line = refused(preview("nope"))
    assert line == "error: no message 'nope': no folder templates/nope/"


def test_a_misspelt_message_gets_the_one_meant(workdir: Path) -> None:
    write_message("welcome", {"email.subject": "Hi", "email.text": "Hello"})
    write_message("_partials", {"welcome.text": "a partial, never a message"})
    line = refused(preview("welcom"))
    assert (
        line == "error: no message 'welcom': no folder templates/welcom/; did you mean 'welcome'?"
    )
    line = refused(preview("Welcome"))
    assert line.endswith("did you mean 'welcome'?")


def test_contact_id_without_a_database(workdir: Path) -> None:
    write_message("news", EVENT_ECHO)
    line = refused(preview("news", "--contact", "u1"))
    assert "--contact u1" in line
    assert "DATABASE_URL" in line


def test_malformed_event_json_is_one_line(workdir: Path) -> None:
    write_message("news", EVENT_ECHO)
    Path("bad.json").write_text('{"event": "Product Added",', encoding="utf-8")
    line = refused(preview("news", "--event", "bad.json"))
    assert line.startswith("error: --event bad.json: not valid JSON")


def test_event_json_that_is_not_an_object(workdir: Path) -> None:
    write_message("news", EVENT_ECHO)
    line = refused(preview("news", "--event", write_json("list.json", [1, 2])))
    assert line == "error: --event list.json: expected a JSON object"


def test_undefined_variable_is_reported_at_its_line(workdir: Path) -> None:
    write_message("news", {"email.subject": "News", "email.text": "Hi\n{{ contact.nickname }}"})
    line = refused(preview("news"))
    assert line.startswith("error: templates/news/email.text:2: undefined variable")
    assert "nickname" in line


def test_preview_explains_an_unknown_key_as_validate_does(workdir: Path) -> None:
    write_message(
        "news",
        {
            "email.subject": "News",
            "sms.body": "{% for i in cart.items %}{{ i.name }}{% endfor %} in your cart",
        },
    )
    line = refused(preview("news", "--channel", "sms"))
    assert line == (
        "error: templates/news/sms.body:1: undefined variable cart.items: real sends never "
        "have it: unknown key 'items' in cart.items (expected one of: id, products, "
        "item_count, total, currency, url); did you mean cart.products?"
    )


# --- A contact from the store ---------------------------------------------------------------


def store_with(contact: Contact, added: list[tuple[str, str, float, str, timedelta]]) -> str:
    """A store at `store/journeys.db` holding `contact` and a `Product Added` per tuple.

    Each tuple is (product_id, name, price, cart_id, age). Returns the --data-dir.
    """
    engine = make_engine(sqlite_url(Path("store")))
    migrate(engine)
    now = datetime.now(UTC)
    with Session(engine) as session:
        session.add(contact)
        for n, (product_id, name, price, cart_id, age) in enumerate(added):
            properties = {
                "product_id": product_id,
                "name": name,
                "price": price,
                "quantity": 1,
                "cart_id": cart_id,
                "currency": "RUB",
            }
            session.add(
                Event(
                    message_id=f"m{n}",
                    type="track",
                    name="Product Added",
                    contact_id=contact.id,
                    properties=properties,
                    timestamp=now - age,
                )
            )
        session.commit()
    engine.dispose()
    return "store"


CART = {
    "email.subject": "Your cart",
    "email.text": "{% for item in cart.products %}- {{ item.name }}\n{% endfor %}",
    "ru/email.subject": "{{ contact.first_name }}, ваша корзина",
    "ru/email.text": (
        "{% for item in cart.products %}- {{ item.name }}\n{% endfor %}"
        "Итого: {{ cart.total | money }}"
    ),
}


def test_contact_from_the_store_gets_the_cart_replayed_from_its_events(workdir: Path) -> None:
    data_dir = store_with(
        Contact(id="u1", traits={"first_name": "Мария"}, locale="ru"),
        [
            ("p1", "Kettle", 30, "c1", timedelta(hours=2)),
            ("p2", "Teapot", 12, "c1", timedelta(hours=1)),
        ],
    )
    write_message("cart_x", CART)

    out = shown(preview("cart_x", "--contact", "u1", "--data-dir", data_dir))

    assert out.splitlines()[0] == "== cart_x · email · ru"
    assert "Subject:   Мария, ваша корзина" in out
    assert "- Kettle\n- Teapot\n" in out
    assert f"Итого: {format_currency(42, 'RUB', locale='ru')}" in out


def test_contact_from_the_store_gets_only_their_current_cart(workdir: Path) -> None:
    data_dir = store_with(
        Contact(id="u1", traits={"first_name": "Ann"}, locale="en"),
        [
            ("p1", "Old kettle", 30, "c-old", timedelta(days=90)),
            ("p2", "Teapot", 12, "c-now", timedelta(hours=1)),
        ],
    )
    write_message("cart_x", CART)

    out = shown(preview("cart_x", "--contact", "u1", "--data-dir", data_dir))

    assert "- Teapot\n" in out
    assert "Old kettle" not in out


def test_unknown_contact_id_in_the_store(workdir: Path) -> None:
    data_dir = store_with(Contact(id="u1", traits={}), [])
    write_message("news", EVENT_ECHO)
    line = refused(preview("news", "--contact", "ghost", "--data-dir", data_dir))
    assert "--contact ghost" in line
    assert "no contact with that id" in line


# --- The contact's own trigger event --------------------------------------------------------

VIEWED = {
    "email.subject": "{{ event.properties.name }} for {{ event.properties.price | money }}",
    "email.text": "Still thinking about {{ event.properties.name }}?",
    "sample.yaml": "event:\n  properties: {name: Sample shoes, price: 99}\n",
}
AT = datetime(2026, 3, 14, 15, 30, tzinfo=UTC)


def store_events(
    contact: Contact,
    events: list[tuple[str, dict[str, Any], datetime, str]],
    others: tuple[tuple[str, str], ...] = (),
) -> str:
    """A store holding `contact` and its events (name, properties, when, messageId);
    `others`: (alias id, contact id) pairs. Returns the --data-dir."""
    engine = make_engine(sqlite_url(Path("store")))
    migrate(engine)
    with Session(engine) as session:
        session.add(contact)
        for alias_id, contact_id in others:
            session.add(ContactAlias(alias_id=alias_id, contact_id=contact_id))
        for name, properties, when, message_id in events:
            contact_id = properties.pop("_contact", contact.id)
            session.add(
                Event(
                    message_id=message_id,
                    type="track",
                    name=name,
                    contact_id=contact_id,
                    properties=properties,
                    timestamp=when,
                )
            )
        session.commit()
    engine.dispose()
    return "store"


def viewed_store() -> str:
    return store_events(
        Contact(id="u1", traits={"first_name": "Ann"}, locale="en"),
        [
            ("Product Viewed", {"name": "Kettle", "price": 30}, AT - timedelta(hours=2), "m-old"),
            ("Product Viewed", {"name": "Teapot", "price": 12}, AT, "m-new"),
            ("Product Added", {"name": "Cup", "price": 5}, AT + timedelta(hours=1), "m-cart"),
            (
                "Product Viewed",
                {"name": "Sofa", "price": 900, "_contact": "u2"},
                AT + timedelta(hours=2),
                "m-u2",
            ),
        ],
        others=(("anon-1", "u1"),),
    )


def test_a_stored_contact_gets_its_own_latest_trigger_event(workdir: Path) -> None:
    data_dir = viewed_store()
    write_message("viewed", VIEWED)
    write_journey("viewed", "Product Viewed")

    result = preview("viewed", "--contact", "u1", "--data-dir", data_dir)

    out = shown(result)
    assert "Subject:   Teapot for $12.00" in out
    assert "Still thinking about Teapot?" in out
    assert result.stderr.splitlines() == [
        "event: Product Viewed of 2026-03-14 15:30:00 UTC (message id m-new), "
        "the latest of contact u1"
    ]


def test_an_alias_finds_the_merged_contact_and_its_events(workdir: Path) -> None:
    data_dir = viewed_store()
    write_message("viewed", VIEWED)
    write_journey("viewed", "Product Viewed")

    result = preview("viewed", "--contact", "anon-1", "--data-dir", data_dir)

    assert "Subject:   Teapot for $12.00" in shown(result)
    assert "(message id m-new)" in result.stderr


def test_a_contact_without_the_trigger_event_gets_the_sample_and_is_told(workdir: Path) -> None:
    data_dir = store_events(Contact(id="u1", traits={"first_name": "Ann"}), [])
    write_message("viewed", VIEWED)
    write_journey("viewed", "Product Viewed")

    result = preview("viewed", "--contact", "u1", "--data-dir", data_dir)

    assert "Subject:   Sample shoes for $99.00" in shown(result)
    assert result.stderr.splitlines() == [
        "event: sample data (contact u1 has no Product Viewed event stored)"
    ]


def test_an_event_file_wins_over_the_contacts_own_events(workdir: Path) -> None:
    data_dir = viewed_store()
    write_message("viewed", VIEWED)
    write_journey("viewed", "Product Viewed")
    event = write_json("lamp.json", {"name": "Lamp", "price": 40})

    result = preview("viewed", "--contact", "u1", "--event", event, "--data-dir", data_dir)

    assert "Subject:   Lamp for $40.00" in shown(result)
    assert result.stderr == ""


def test_a_segment_trigger_uses_the_entry_into_its_own_segment(workdir: Path) -> None:
    data_dir = store_events(
        Contact(id="u1", traits={}),
        [
            ("Segment Entered", {"segment": "vips"}, AT - timedelta(days=1), "m-vips"),
            ("Segment Entered", {"segment": "lapsed"}, AT, "m-lapsed"),
        ],
    )
    write_message(
        "vip", {"email.subject": "Welcome to {{ event.properties.segment }}", "email.text": "Hi"}
    )
    Path("journeys/vip.yaml").write_text(
        "id: vip\nname: VIP\ntrigger: {segment: vips}\n"
        "steps:\n  - send: {channel: email, template: vip}\n",
        encoding="utf-8",
    )

    result = preview("vip", "--contact", "u1", "--data-dir", data_dir)

    assert "Subject:   Welcome to vips" in shown(result)
    assert result.stderr.splitlines() == [
        "event: Segment Entered (vips) of 2026-03-13 15:30:00 UTC (message id m-vips), "
        "the latest of contact u1"
    ]


# --- The journey values: the contact's own run, or samples said to be ------------------------

THANKS = {
    "email.subject": "You earned {{ journey.points_earned }} points",
    "email.text": (
        "Order {{ event.properties.order_id }}: {{ journey.points_earned }} points, "
        "{{ journey.points_balance }} in all. Your code: {{ journey.coupon_code }}"
    ),
    "sample.yaml": (
        "event:\n  properties: {order_id: sample-1, revenue: 148}\n"
        "journey:\n  points_earned: 148\n  points_balance: 1540\n"
        "  coupon_code: THANKS-7QX2K9PM\n"
    ),
}
ORDER_JOURNEY = (
    "id: post_purchase\nname: Thanks\ntrigger: {event: Order Completed}\n"
    "entry: {one_run_per: order_id}\n"
    "steps:\n  - send: {channel: email, template: thanks}\n"
)


def store_run(
    contact: Contact, orders: list[tuple[str, float, datetime, dict[str, Any] | None]]
) -> str:
    """A store holding `contact`, an `Order Completed` per order (id, revenue, when,
    values its post_purchase run kept, or None for no run). Returns the --data-dir."""
    engine = make_engine(sqlite_url(Path("store")))
    migrate(engine)
    with Session(engine) as session:
        session.add(contact)
        for n, (order_id, revenue, when, data) in enumerate(orders):
            event = Event(
                message_id=f"m-{order_id}",
                type="track",
                name="Order Completed",
                contact_id=contact.id,
                properties={"order_id": order_id, "revenue": revenue},
                timestamp=when,
            )
            session.add(event)
            session.flush()
            if data is not None:
                session.add(
                    JourneyRun(
                        workflow_id=f"journey:post_purchase:{contact.id}:{order_id}",
                        entry_seq=n + 1,
                        journey_id="post_purchase",
                        version=1,
                        contact_id=contact.id,
                        trigger_event_id=event.id,
                        data=data,
                        entered_at=when,
                    )
                )
        session.commit()
    engine.dispose()
    return "store"


def test_a_stored_contact_gets_the_values_its_own_run_kept(workdir: Path) -> None:
    """The review's `journeys preview order_thank_you --contact ann`: Ann's email said
    59 points and her own code, not the sample's 148 and THANKS-7QX2K9PM."""
    data_dir = store_run(
        Contact(id="ann", traits={"first_name": "Ann"}),
        [
            ("o1", 59.9, AT, {"points_earned": 59, "coupon_code": "THANKS-JQJ3BNG9"}),
            ("o2", 12.0, AT + timedelta(hours=1), None),  # no run (yet): not the one shown
        ],
    )
    write_message("thanks", THANKS)
    Path("journeys/post_purchase.yaml").write_text(ORDER_JOURNEY, encoding="utf-8")

    result = preview("thanks", "--contact", "ann", "--data-dir", data_dir)

    out = shown(result)
    assert "Subject:   You earned 59 points" in out
    assert "Order o1: 59 points, 1540 in all. Your code: THANKS-JQJ3BNG9" in out
    run = "run post_purchase #1 of ann (entered 2026-03-14 15:30:00 UTC)"
    assert result.stderr.splitlines() == [
        "event: Order Completed of 2026-03-14 15:30:00 UTC (message id m-o1), "
        f"the trigger of {run}",
        f"journey: points_earned, coupon_code from {run}; "
        "samples from templates/thanks/sample.yaml: points_balance",
    ]


def test_without_a_run_the_journey_values_are_said_to_be_samples(workdir: Path) -> None:
    data_dir = store_run(Contact(id="ann", traits={}), [("o1", 59.9, AT, None)])
    write_message("thanks", THANKS)
    Path("journeys/post_purchase.yaml").write_text(ORDER_JOURNEY, encoding="utf-8")
    ann = write_json("ann.json", {"first_name": "Ann"})

    result = preview("thanks", "--contact", "ann", "--data-dir", data_dir)

    assert "Order o1: 148 points" in shown(result)
    assert result.stderr.splitlines()[1] == (
        "journey: samples from templates/thanks/sample.yaml, not real values "
        "(contact ann has no run of post_purchase): points_earned, points_balance, coupon_code"
    )

    result = preview("thanks", "--contact", ann)
    assert "148 points" in shown(result)
    assert result.stderr.splitlines() == [
        "journey: samples from templates/thanks/sample.yaml, not real values "
        "(a contact from a file has no runs): points_earned, points_balance, coupon_code"
    ]

    values = write_json(
        "values.json", {"points_earned": 7, "points_balance": 8, "coupon_code": "X"}
    )
    result = preview("thanks", "--contact", ann, "--journey", values)
    assert "7 points, 8 in all. Your code: X" in shown(result)
    assert result.stderr == ""  # the values given are the ones shown


def test_the_header_writes_the_locale_as_its_folder_is_named(workdir: Path) -> None:
    write_message(
        "news",
        {
            "email.subject": "News",
            "email.text": "Hello",
            "sr-Latn/email.subject": "Vesti",
            "sr-Latn/email.text": "Zdravo",
        },
    )
    contact = write_json("mila.json", {"first_name": "Mila", "locale": "sr_Latn_RS"})

    out = shown(preview("news", "--contact", contact))

    assert out.splitlines()[0] == "== news · email · sr-Latn"
    assert "Subject:   Vesti" in out
