"""`journeys validate` renders every message a journey sends, in every locale, before launch.

Each test builds a small `journeys/` + `templates/` folder in a temporary working
directory and checks the problem a marketer would see, as `file:line:column: what`.
The last test runs the same command on the repository's own journeys and templates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from harness import write_message
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from orchestrator.cli import main
from orchestrator.deployment.deploy import InvalidJourneys, deploy
from orchestrator.rendering import Renderer
from orchestrator.store.tables import JourneyVersion

ROOT = Path(__file__).resolve().parent.parent


def write_journey(
    template: str, channel: str = "email", trigger: str = "Signed Up", journey_id: str = "welcome"
) -> Path:
    path = Path("journeys") / f"{journey_id}.yaml"
    path.write_text(
        f"id: {journey_id}\n"
        f"name: {journey_id}\n"
        f"trigger: {{event: {trigger}}}\n"
        "steps:\n"
        f"  - send: {{channel: {channel}, template: {template}}}\n",
        encoding="utf-8",
    )
    return path


def validate(*args: str) -> Result:
    return CliRunner().invoke(main, ["validate", *args])


def problems(result: Result) -> list[str]:
    """The problem lines `journeys validate` printed (stdout; the summary goes to stderr)."""
    return result.stdout.splitlines()


def assert_valid(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 journey(s) valid"


def assert_one_problem(result: Result, where: str, *words: str) -> str:
    """Exit 1 and a single problem at `where` (file:line:column) saying each of `words`."""
    assert result.exit_code == 1, result.output
    lines = problems(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{where}: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "1 problem(s) found" in result.stderr
    return lines[0]


def assert_one_warning(result: Result, where: str, *words: str) -> str:
    """`journeys validate --strict` failed on a single warning at `where`."""
    assert result.exit_code == 1, result.output
    lines = problems(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{where}: warning: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "1 warning(s) found; --strict fails on warnings" in result.stderr
    return lines[0]


WELCOME = {"email.subject": "Welcome, {{ contact.first_name }}", "email.text": "Hi\nthere"}


# --- Variables -----------------------------------------------------------------------------


def test_undefined_variable_in_a_translation_only_is_reported_at_its_line(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "ru/email.subject": "Добро пожаловать"})
    write_message("welcome", {"ru/email.text": "Привет\n{{ contact.first_name }}"})
    assert_valid(validate())

    write_message("welcome", {"ru/email.text": "Привет\n{{ contact.nickname }}"})
    result = validate()

    assert result.exit_code == 1
    assert problems(result) == [
        "templates/welcome/ru/email.text:2:1: undefined variable contact.nickname: real sends "
        "never have it: unknown key 'nickname' in contact.nickname (expected one of: id, "
        "email, phone, locale, timezone, traits, first_name, last_name, name, consent, "
        "orders, last_order_at); did you mean contact.traits.nickname?"
    ]


COUPON_JOURNEY = """\
id: welcome
name: welcome
trigger: {event: Signed Up}
steps:
  - action: {type: issue_coupon, campaign: welcome, prefix: HELLO, discount: 10%}
  - send: {channel: email, template: welcome}
"""


def test_sample_yaml_provides_values_of_keys_an_earlier_step_keeps(workdir: Path) -> None:
    Path("journeys/welcome.yaml").write_text(COUPON_JOURNEY)
    write_message("welcome", {**WELCOME, "email.text": "Your code: {{ journey.coupon_code }}"})
    write_message("welcome", {"sample.yaml": "journey:\n  coupon_code: SAVE10\n"})
    assert_valid(validate())

    Path("templates/welcome/sample.yaml").unlink()
    assert_one_problem(
        validate(),
        "templates/welcome/email.text:1:1",
        "undefined variable journey.coupon_code: real sends have it (an earlier step of "
        "journeys/welcome.yaml keeps it); give validate a sample value under journey: in "
        "templates/welcome/sample.yaml",
    )


def test_sample_yaml_cannot_supply_a_key_no_real_send_has(workdir: Path) -> None:
    """Sample data stands in for values, never invents keys: a template reading a coupon
    no step issues (or a contact key contacts never have) would fail every real send."""
    write_journey("welcome")
    text = "Your code: {{ journey.coupon_code }}"
    write_message("welcome", {**WELCOME, "email.text": text})
    write_message("welcome", {"sample.yaml": "journey:\n  coupon_code: SAVE10\n"})
    assert_one_problem(
        validate(),
        "templates/welcome/email.text:1:1",
        "undefined variable journey.coupon_code: no step of journeys/welcome.yaml before its "
        "send (line 5) keeps 'coupon_code', so real sends would fail too (journey has: id, "
        "step); keep it with an earlier step",
    )

    write_message(
        "welcome", {"email.text": "Hi {{ contact.vip }}", "sample.yaml": "contact: {vip: yes}\n"}
    )
    assert_one_problem(
        validate(),
        "templates/welcome/email.text:1:1",
        "undefined variable contact.vip: real sends never have it",
        "did you mean contact.traits.vip?",
    )


def test_undefined_value_handed_to_a_partial_is_reported_where_the_message_wrote_it(
    workdir: Path,
) -> None:
    """The partial only uses `items`; `event.properties.colours` was written in the
    message, and that line is the one to fix. The advice never says "add it to the
    sample" alone: that would pass validation while real events without it still fail."""
    write_journey("welcome", trigger="Product Added")
    text = (
        "Hi\n"
        '{% with items=event.properties.colours %}{% include "_partials/list.text" %}'
        "{% endwith %}"
    )
    write_message("welcome", {**WELCOME, "email.text": text})
    Path("templates/_partials").mkdir()
    Path("templates/_partials/list.text").write_text(
        "Colours:\n{% for c in items %}{{ c }}{% endfor %}"
    )

    assert problems(validate()) == [
        "templates/welcome/email.text:2:1: undefined variable event.properties.colours: the "
        "sample data has no 'colours' under event.properties, and real sends fail where the "
        "'Product Added' event lacks it: guard it with `{% if event.properties.colours is "
        "defined %}` or `event.properties.colours | default(…)`; or, if every 'Product "
        "Added' event carries it, mark it required in journeys/events.yaml (Product Added: "
        "properties: colours: {required: true}) and add it to templates/welcome/sample.yaml "
        "so validate can render it"
    ]


def test_a_mistake_in_each_part_is_reported_at_once(workdir: Path) -> None:
    """The subject's mistake used to hide the text's until it was fixed."""
    write_journey("cart_x", trigger="Product Added", journey_id="cart")
    write_message(
        "cart_x",
        {
            "email.subject": "{{ contact.frist_name }}, your cart",
            "email.text": "Still want it?\n{{ contact.nickname }}",
        },
    )
    found = problems(validate())
    assert [line.split(": ")[0] for line in found] == [
        "templates/cart_x/email.subject:1:1",
        "templates/cart_x/email.text:2:1",
    ], found
    assert "did you mean contact.first_name?" in found[0]
    assert "did you mean contact.traits.nickname?" in found[1]


def test_a_misspelt_property_is_told_the_one_the_event_has_first(workdir: Path) -> None:
    """`event.properties.nmae` where the sample Product Added has `name`: the advice to
    declare it required must not come alone, or the typo ends up declared as a property."""
    write_journey("cart_x", trigger="Product Added", journey_id="cart")
    write_message(
        "cart_x",
        {"email.subject": "Your cart", "email.text": "Still want it?\n{{ event.properties.nmae }}"},
    )
    line = assert_one_problem(validate(), "templates/cart_x/email.text:2:1")
    assert line.startswith(
        "templates/cart_x/email.text:2:1: undefined variable event.properties.nmae (did you "
        "mean event.properties.name?): the sample data has no 'nmae' under event.properties"
    ), line


def test_product_added_trigger_has_realistic_sample_event_and_cart(workdir: Path) -> None:
    write_journey("cart_x", trigger="Product Added", journey_id="cart")
    write_message(
        "cart_x",
        {
            "email.subject": "Still thinking about {{ event.properties.name }}?",
            "email.text": (
                "{{ event.properties.name }} for {{ event.properties.price | money }}\n"
                "{% for item in cart.products %}- {{ item.name }} x{{ item.quantity }}\n"
                "{% endfor %}{{ cart.item_count }} items, {{ cart.total | money }}"
            ),
        },
    )
    assert not Path("templates/cart_x/sample.yaml").exists()
    # What the message shows unguarded, every Product Added of this shop carries.
    Path("journeys/events.yaml").write_text(
        "Product Added:\n  properties:\n    name: {required: true}\n    price: {required: true}\n"
    )
    assert_valid(validate("--strict"))


CART_KEYS = "(expected one of: id, products, item_count, total, currency, url)"


@pytest.mark.parametrize("written", ["cart.items", "cart['items']"])
def test_cart_items_is_reported_at_its_line_with_the_key_that_exists(
    workdir: Path, written: str
) -> None:
    """`cart.items` (Shopify's name) read Python's dict.items and was explained in Python
    jargon; `cart['items']`, the documented cure, failed the same way."""
    write_journey("cart_x", trigger="Product Added", journey_id="cart")
    write_message(
        "cart_x",
        {
            "email.subject": "Your cart",
            "email.text": f"Your cart:\n{{% for item in {written} %}}{{{{ item.name }}}}"
            "{% endfor %}",
        },
    )
    line = assert_one_problem(validate(), "templates/cart_x/email.text:2:1")
    assert line == (
        "templates/cart_x/email.text:2:1: undefined variable cart.items: real sends never "
        f"have it: unknown key 'items' in cart.items {CART_KEYS}; did you mean cart.products?"
    )
    assert "builtin_function_or_method" not in line


def test_a_key_named_like_a_mapping_method_is_read_with_brackets(workdir: Path) -> None:
    write_journey("order_x", trigger="Order Completed", journey_id="order")
    write_message(
        "order_x",
        {
            "email.subject": "Your order",
            "email.text": "{% for i in event.properties['items'] %}{{ i }}{% endfor %}\n"
            "{% for i in event.properties.items %}{{ i }}{% endfor %}",
            "sample.yaml": "event: {properties: {items: [a, b]}}\n",
        },
    )
    assert_one_problem(
        validate(),
        "templates/order_x/email.text:2:1",
        "event.properties.items is the items() method every mapping has, not its 'items' "
        "key: write event.properties['items'] to read the key",
    )
    # Calling the methods still works: `.items()`, `.get(...)`.
    write_message(
        "order_x",
        {
            "email.text": "{% for k, v in event.properties.items() %}{{ k }}{% endfor %}"
            "{{ event.properties.get('items', []) | length }}"
        },
    )
    assert_valid(validate())


def test_other_triggers_need_sample_yaml_for_their_properties(workdir: Path) -> None:
    write_journey("welcome", trigger="Signed Up")
    write_message("welcome", {**WELCOME, "email.text": "Your plan: {{ event.properties.plan }}"})
    line = assert_one_problem(
        validate(), "templates/welcome/email.text:1:1", "undefined variable", "plan"
    )
    assert line.endswith(
        "or, if every 'Signed Up' event carries it, mark it required in journeys/events.yaml "
        "(Signed Up: properties: plan: {required: true}) and add it to "
        "templates/welcome/sample.yaml so validate can render it"
    )

    # A sample value alone: real Signed Up events without a plan would still fail.
    write_message("welcome", {"sample.yaml": "event:\n  properties:\n    plan: pro\n"})
    assert_one_warning(
        validate("--strict"), "templates/welcome/email.text:1:1", "event.properties.plan may"
    )
    Path("journeys/events.yaml").write_text("Signed Up:\n  properties: {plan: {required: true}}\n")
    assert_valid(validate("--strict"))


# --- Channel limits ------------------------------------------------------------------------

RUSSIAN_SMS = "Ж" * 250  # UCS-2: 67 characters a segment, so 4 segments


def test_sms_over_the_segment_limit_and_the_setting_that_raises_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_journey("welcome", channel="sms")
    write_message("welcome", {"sms.body": "Welcome!", "ru/sms.body": RUSSIAN_SMS})

    line = assert_one_problem(
        validate(), "templates/welcome/ru/sms.body:1:1", "4 segments (UCS-2", "250 characters"
    )
    assert "the limit is 3 segments (JOURNEYS_SMS_MAX_SEGMENTS)" in line

    monkeypatch.setenv("JOURNEYS_SMS_MAX_SEGMENTS", "4")
    assert_valid(validate())


def test_push_payload_over_4096_bytes(workdir: Path) -> None:
    write_journey("welcome", channel="push")
    # 1500 Cyrillic letters are 3000 bytes in UTF-8: under the limit as characters, not bytes.
    write_message("welcome", {"push.title": "Привет", "push.body": "Ж" * 1500})
    assert_valid(validate())

    write_message("welcome", {"push.body": "Ж" * 2100})
    assert_one_problem(validate(), "templates/welcome/push.body:1:1", "FCM accepts 4096")


def test_subject_that_renders_two_lines_is_refused(workdir: Path) -> None:
    write_journey("welcome")
    subject = "Welcome{% if contact.first_name %}\n{{ contact.first_name }}{% endif %}!"
    write_message("welcome", {**WELCOME, "email.subject": subject})
    assert_one_problem(
        validate(), "templates/welcome/email.subject:1:1", "email.subject must be one line (CR/LF"
    )


# --- Where a syntax error is --------------------------------------------------------------


# --- Optional trigger properties -----------------------------------------------------------

BROWSE = {
    "email.subject": "Still thinking about {{ event.properties.name }}?",
    "email.text": "Hi {{ contact.first_name or 'there' }},\n\n"
    "{{ event.properties.name }} is {{ event.properties.price | money }}.",
}


def optional(expression: str, event: str) -> str:
    """The advice of the warning for an unguarded optional property of the trigger."""
    prop = expression.rsplit(".", 1)[1]
    return (
        f"{expression} may be missing: the Segment spec makes every property of {event!r} "
        "optional, and this message fails to send without it; guard it with "
        f"`{{% if {expression} is defined %}}` or `{expression} | default(…)`, or, if every "
        f"{event!r} event your storefront sends has it, mark it required in "
        f"journeys/events.yaml ({event}: properties: {prop}: {{required: true}})"
    )


def test_an_optional_trigger_property_shown_without_a_guard_is_a_warning(workdir: Path) -> None:
    """The README's own failure: a Product Viewed journey showing the price validated
    (the sample Product Viewed has a price), then every real view without one failed."""
    write_journey("browse", trigger="Product Viewed", journey_id="browse")
    write_message("browse", BROWSE)
    result = validate("--strict")
    assert result.exit_code == 1
    assert problems(result) == [
        "templates/browse/email.subject:1:1: warning: "
        + optional("event.properties.name", "Product Viewed"),
        "templates/browse/email.text:3:1: warning: "
        + optional("event.properties.name", "Product Viewed"),
        "templates/browse/email.text:3:1: warning: "
        + optional("event.properties.price", "Product Viewed"),
    ]
    assert "3 warning(s) found; --strict fails on warnings" in result.stderr

    # Guarded, it sends without them; a value the sample gives is still checked.
    write_message(
        "browse",
        {
            "email.subject": "Still thinking about {{ event.properties.name | default('it') }}?",
            "email.text": "{% set p = event.properties %}{% if p.price is defined %}"
            "{{ p.get('name') or 'It' }} is {{ p.price | money }}.{% endif %}",
        },
    )
    assert_valid(validate("--strict"))


def test_a_property_the_tracking_plan_marks_required_needs_no_guard(workdir: Path) -> None:
    write_journey("browse", trigger="Product Viewed", journey_id="browse")
    write_message("browse", BROWSE)
    Path("journeys/events.yaml").write_text(
        "Product Viewed:\n  properties:\n    name: {required: true}\n"
        "    price:\n      description: the price shown on the page\n      required: true\n"
        "    currency: three letters\n"
    )
    assert_valid(validate("--strict"))


def test_an_unguarded_property_under_another_guard_is_still_found(workdir: Path) -> None:
    """`{% if order_id %}…{{ props.revenue }}…` fails on an order with an id and no
    revenue: each optional property is also taken away on its own."""
    write_journey("thanks", trigger="Order Completed", journey_id="thanks")
    write_message(
        "thanks",
        {
            "email.subject": "Thank you",
            "email.text": "{% set props = event.properties %}\n"
            "{% if props.get('order_id') %}Order {{ props.order_id }}: "
            "{{ props.revenue | money }}{% endif %}",
        },
    )
    line = assert_one_warning(validate("--strict"), "templates/thanks/email.text:2:1")
    assert line.startswith(
        "templates/thanks/email.text:2:1: warning: props.revenue (the trigger's 'revenue') "
        "may be missing: the Segment spec makes every property of 'Order Completed' optional"
    )


def test_an_identify_journey_is_told_to_read_the_contact(workdir: Path) -> None:
    Path("journeys/hello.yaml").write_text(
        "id: hello\nname: Hello\ntrigger: {identify: true}\n"
        "steps:\n  - send: {channel: email, template: hello}\n"
    )
    write_message(
        "hello",
        {
            "email.subject": "Hi {{ event.properties.first_name }}",
            "email.text": "Hello",
            "sample.yaml": "event: {properties: {first_name: Ann}}\n",
        },
    )
    line = assert_one_warning(validate("--strict"), "templates/hello/email.subject:1:1")
    assert line.endswith(
        "event.properties.first_name may be missing: an identify call has only the traits "
        "it sends, and this message fails to send without it; guard it with "
        "`{% if event.properties.first_name is defined %}` or "
        "`event.properties.first_name | default(…)`, or read contact.traits.first_name, "
        "which keeps what earlier calls sent"
    )


def test_a_campaign_message_may_show_what_every_campaign_due_event_carries(
    workdir: Path,
) -> None:
    """We store each member's `Campaign Due` with its journey, segment, dispatch and local
    due time (campaigns/dispatch.py): a message may show them unguarded. Validate said
    `due` "may be missing" and told the storefront to send it, and --strict failed."""
    Path("journeys/segments.yaml").write_text(
        "newsletter:\n  trait: { name: newsletter, equals: true }\n"
    )
    Path("journeys/picks.yaml").write_text(
        "id: picks\nname: Picks\n"
        'trigger: { schedule: "0 10 1 * *", local_time: true, segment: newsletter }\n'
        "steps:\n  - send: {channel: email, template: picks}\n"
    )
    sample = (
        "event: {properties: {journey: picks, segment: newsletter, "
        'dispatch: "picks@2027-03-01T10:00", due: "2027-03-01 10:00", issue: 3}}\n'
    )
    write_message(
        "picks",
        {
            "email.subject": "Picks for {{ event.properties.due[:10] | date('LLLL') }}",
            "email.text": "{{ event.properties.segment }} {{ event.properties.dispatch }}"
            " {{ event.properties.journey }}",
            "sample.yaml": sample,
        },
    )
    result = validate("--strict")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 journey(s) and 1 segment(s) valid"

    # Anything else is still the campaign's own guess.
    write_message("picks", {"email.text": "Issue {{ event.properties.issue }}"})
    line = assert_one_warning(validate("--strict"), "templates/picks/email.text:1:1")
    assert "event.properties.issue may be missing: we do not record it with every" in line


def test_syntax_error_in_a_shared_partial_is_reported_at_the_partial(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "email.text": 'Hi\n{% include "_partials/footer.text" %}'})
    Path("templates/_partials").mkdir()
    Path("templates/_partials/footer.text").write_text("My Shop\n{{ brand.name }\n")

    assert_one_problem(
        validate(), "templates/_partials/footer.text:2:1", "template syntax error", "'}'"
    )


def test_undefined_variable_in_a_shared_partial_is_reported_at_the_partial(
    workdir: Path,
) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "email.text": 'Hi\n{% include "_partials/footer.text" %}'})
    Path("templates/_partials").mkdir()
    Path("templates/_partials/footer.text").write_text("My Shop\n{{ brand.address }}\n")

    assert_one_problem(
        validate(),
        "templates/_partials/footer.text:2:1",
        "undefined variable brand.address: add address to templates/_brand.yaml",
    )

    Path("templates/_brand.yaml").write_text("address: 1 Main St\n")
    assert_valid(validate())


def test_syntax_error_in_a_translated_partial_is_reported_at_that_translation(
    workdir: Path,
) -> None:
    write_journey("welcome")
    text = 'Hi\n{% include "_partials/footer.text" %}'
    write_message(
        "welcome",
        {**WELCOME, "email.text": text, "ru/email.subject": "Привет", "ru/email.text": text},
    )
    Path("templates/_partials/ru").mkdir(parents=True)
    Path("templates/_partials/footer.text").write_text("My Shop\n")
    Path("templates/_partials/ru/footer.text").write_text("Мой магазин\n\n{% if %}\n")

    assert_one_problem(
        validate(), "templates/_partials/ru/footer.text:3:1", "template syntax error"
    )


# --- Translation folders and sample files -------------------------------------------------


def test_a_translation_falling_back_to_an_english_partial_is_a_warning(workdir: Path) -> None:
    """The Arabic email would carry the English footer: reported, and --strict fails."""
    write_journey("welcome")
    text = 'Hi\n{% include "_partials/footer.text" %}'
    ar_text = 'مرحبا\n{% include "_partials/footer.text" %}'
    write_message(
        "welcome",
        {**WELCOME, "email.text": text, "ar/email.subject": "مرحبا", "ar/email.text": ar_text},
    )
    Path("templates/_partials").mkdir()
    Path("templates/_partials/footer.text").write_text(
        "{# the legal footer #}--\nYou get this because you signed up at {{ brand.name }}.\n"
    )
    Path("templates/_brand.yaml").write_text("name: My Shop\n")

    result = validate()
    assert result.exit_code == 0, result.output
    assert problems(result) == [
        "templates/welcome/ar/email.text:2:1: warning: the ar version of 'welcome' uses "
        "_partials/footer.text, which has no ar translation: ar contacts would read its "
        "English text; add _partials/ar/footer.text",
        "1 journey(s) valid",
    ]
    assert validate("--strict").exit_code == 1

    Path("templates/_partials/ar").mkdir()
    Path("templates/_partials/ar/footer.text").write_text("--\n{{ brand.name }} تصلك هذه الرسالة\n")
    assert_valid(validate("--strict"))


def test_a_partial_reached_through_the_layout_is_reported_at_the_line_that_leads_to_it(
    workdir: Path,
) -> None:
    write_journey("welcome")
    write_message(
        "welcome",
        {
            **WELCOME,
            "ru/email.subject": "Привет",
            "ru/email.html": '{% extends "_layouts/email.html" %}'
            "{% block content %}<p>Привет</p>{% endblock %}",
        },
    )
    Path("templates/_layouts").mkdir()
    Path("templates/_layouts/email.html").write_text(
        "<html><head><style>p { color: red }</style></head><body>"
        "{% block content %}{% endblock %}"
        '{% include "_partials/footer.html" %}</body></html>'
    )
    Path("templates/_partials").mkdir()
    Path("templates/_partials/footer.html").write_text(
        '<p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a></p>'
    )
    assert problems(validate()) == [
        "templates/welcome/ru/email.html:1:1: warning: the ru version of 'welcome' uses "
        "_partials/footer.html (through _layouts/email.html), which has no ru translation: "
        "ru contacts would read its English text; add _partials/ru/footer.html",
        "1 journey(s) valid",
    ]


@pytest.mark.parametrize(
    "partial",
    [
        '{% set note = "Free returns within 30 days" %}<p class="note">{{ note }}</p>',
        '{% set note = "Free returns within " ~ days ~ " days" %}<p>{{ note }}</p>',
        '{% macro note(text="Free returns within 30 days") %}<p>{{ text }}</p>{% endmacro %}'
        "{{ note() }}",
        '{% for line in ["Free returns", "Fast delivery"] %}<li>{{ line }}</li>{% endfor %}',
        "<p>{{ days }} {{ days | plural(one='day', other='days') }}</p>",
    ],
    ids=["set", "set-concat", "macro-default", "loop-over-a-list", "plural"],
)
def test_english_a_partial_holds_in_a_string_needs_a_translation_too(
    workdir: Path, partial: str
) -> None:
    """The words of a partial are often in strings it sets and prints: they reach the
    Russian email in English just like plain text does."""
    write_journey("welcome")
    html = '{% with days=30 %}{% include "_partials/returns.html" %}{% endwith %}'
    write_message("welcome", {**WELCOME, "ru/email.subject": "Привет", "ru/email.html": html})
    Path("templates/_partials").mkdir()
    Path("templates/_partials/returns.html").write_text(partial)
    assert problems(validate()) == [
        "templates/welcome/ru/email.html:1:1: warning: the ru version of 'welcome' uses "
        "_partials/returns.html, which has no ru translation: ru contacts would read its "
        "English text; add _partials/ru/returns.html",
        "1 journey(s) valid",
    ]


def test_a_partial_of_only_markup_and_variables_needs_no_translation(workdir: Path) -> None:
    """A button whose label the message passes in has no words of its own."""
    write_journey("welcome")
    html = (
        '{% with url="https://shop.example", label="Ir a la tienda" %}'
        '{% include "_partials/button.html" %}{% endwith %}'
    )
    write_message("welcome", {**WELCOME, "es/email.subject": "Hola", "es/email.html": html})
    Path("templates/_partials").mkdir()
    Path("templates/_partials/button.html").write_text(
        "{#- A button: set url and label first -#}\n"
        "{% set side = 'right' if message.dir == 'rtl' else 'left' %}"
        '{% set link = url ~ "?utm_source=email" %}'
        '<table align="{{ side }}"><tr>'
        '<td><a href="{{ link }}">{{ label }}</a>&nbsp;&rarr;</td></tr></table>'
    )
    assert_valid(validate("--strict"))


def test_translation_with_only_a_subject_would_send_the_default(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "ru/email.subject": "Добро пожаловать"})
    assert_one_problem(
        validate(),
        "templates/welcome/ru/",
        "the ru version of 'welcome' has no email.html or email.text",
        "ru contacts would get the default email instead",
    )


def test_folder_that_is_not_a_locale_tag(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "russian/email.subject": "Привет"})
    write_message("welcome", {"russian/email.text": "Привет"})
    # A folder has no line: `:1:1` would send an editor to nothing.
    assert_one_problem(
        validate(), "templates/welcome/russian/", "folder 'russian' is not a locale tag"
    )


@pytest.mark.parametrize(
    ("stray", "meant"),
    [
        ("email.preheder", "did you mean email.preheader?"),
        ("email.subjet", "did you mean email.subject?"),
        ("email.body", "did you mean email.html or email.text?"),
        ("push.url", "did you mean push.link?"),
        ("sms.text", "did you mean sms.body?"),
        ("ru/email.txt", "did you mean email.text?"),
        ("ru/sample.yaml", "the message's templates/welcome/sample.yaml serves every version"),
        ("notes.md", "rename it to one of email.subject, "),
    ],
)
def test_a_file_that_is_no_part_is_an_error_not_a_silently_missing_part(
    workdir: Path, stray: str, meant: str
) -> None:
    """`email.preheder` was never rendered: validate passed, and every email went out
    without its preheader."""
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "ru/email.subject": "Привет", "ru/email.text": "Привет"})
    write_message("welcome", {stray: "Don't miss our spring sale", ".DS_Store": ""})
    line = assert_one_problem(
        validate(), f"templates/welcome/{stray}", "so it is never used", meant
    )
    assert "email.preheader" in line or "sample.yaml" in line  # what a folder may hold
    # A message no journey sends yet is checked the same way.
    Path("journeys/welcome.yaml").unlink()
    write_journey("other", journey_id="other")
    write_message("other", WELCOME)
    assert f"templates/welcome/{stray}: " in validate().stdout


@pytest.mark.parametrize(
    ("sample", "where", "reason"),
    [
        pytest.param(
            "customer:\n  first_name: Ann\n",
            "templates/welcome/sample.yaml:1:1",
            "expected a mapping with some of the keys contact, event, cart, journey",
            id="unknown-top-level-key",
        ),
        pytest.param(
            "journey: SAVE10\n",
            "templates/welcome/sample.yaml:1:1",
            "journey must be a mapping",
            id="value-not-a-mapping",
        ),
    ],
)
def test_broken_sample_yaml_is_reported_at_the_sample_file(
    workdir: Path, sample: str, where: str, reason: str
) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "sample.yaml": sample})
    result = validate()
    assert result.exit_code == 1, result.output
    assert len(problems(result)) == 1, result.output
    assert problems(result)[0].startswith(where), result.output
    assert reason in problems(result)[0]


def test_invalid_yaml_in_sample_yaml_is_reported_at_the_sample_file(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "sample.yaml": "journey:\n  coupon_code: [SAVE10\n"})
    result = validate()
    assert result.exit_code == 1, result.output
    assert problems(result)[0].startswith("templates/welcome/sample.yaml:"), result.output
    assert "not valid YAML" in problems(result)[0]
    assert "1 problem(s) found" in result.stderr


def test_invalid_yaml_in_sample_yaml_is_one_problem_line(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "sample.yaml": "journey:\n  coupon_code: [SAVE10\n"})
    result = validate()
    assert result.exit_code == 1
    assert len(problems(result)) == 1, result.stdout


# --- The deploy path of `journeys dev` ----------------------------------------------------


def test_deploy_refuses_a_message_that_does_not_render(
    workdir: Path, sqlite_engine: Engine
) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "email.text": "Hi {{ contact.nickname }}"})

    with pytest.raises(InvalidJourneys) as caught:
        deploy(sqlite_engine, Path("journeys"), Renderer(Path("templates")))

    assert [str(p).split(": real sends")[0] for p in caught.value.problems] == [
        "templates/welcome/email.text:1:1: undefined variable contact.nickname"
    ]
    with Session(sqlite_engine) as session:
        assert session.exec(select(func.count()).select_from(JourneyVersion)).one() == 0

    write_message("welcome", {"email.text": "Hi {{ contact.first_name }}"})
    deployed = deploy(sqlite_engine, Path("journeys"), Renderer(Path("templates")))
    assert [(d.journey_id, d.version) for d in deployed] == [("welcome", 1)]


def test_messages_no_journey_sends_are_checked_when_validating_the_project(
    workdir: Path,
) -> None:
    write_message("welcome", WELCOME)
    write_journey("welcome")
    write_message("draft", {"sms.body": "Hi\n{{ contact.nickname }}"})
    line = assert_one_problem(validate(), "templates/draft/sms.body:2:1", "undefined variable")
    assert "nickname" in line
    assert_valid(validate("journeys"))  # an explicit path checks only what its journeys send


# --- The repository's own journeys (last: another engineer is editing the templates) -------


def test_repository_journeys_and_every_shipped_message_validate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)  # no paths: the journeys, and the messages no journey sends yet
    # --strict, as CI of a journeys repository runs it: no warning either.
    result = CliRunner().invoke(main, ["validate", "--strict"])
    assert result.exit_code == 0, result.output
