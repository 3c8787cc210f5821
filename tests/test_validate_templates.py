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
        "templates/welcome/ru/email.text:2:1: undefined variable: contact.nickname (add it "
        "to the message's sample data, or give it a fallback with `| default(...)`)"
    ]


def test_sample_yaml_provides_variables_the_templates_use(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "email.text": "Your code: {{ journey.coupon_code }}"})
    write_message("welcome", {"sample.yaml": "journey:\n  coupon_code: SAVE10\n"})
    assert_valid(validate())

    Path("templates/welcome/sample.yaml").unlink()
    assert_one_problem(
        validate(), "templates/welcome/email.text:1:1", "undefined variable", "coupon_code"
    )


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
    assert_valid(validate())


def test_cart_items_is_the_mappings_method_and_is_reported_at_its_line(workdir: Path) -> None:
    """In Jinja `cart.items` is dict.items, not a key: a located problem, never a blank list."""
    write_journey("cart_x", trigger="Product Added", journey_id="cart")
    write_message(
        "cart_x",
        {
            "email.subject": "Your cart",
            "email.text": "Your cart:\n{% for item in cart.items %}{{ item.name }}{% endfor %}",
        },
    )
    assert_one_problem(validate(), "templates/cart_x/email.text:2:1", "items")


def test_other_triggers_need_sample_yaml_for_their_properties(workdir: Path) -> None:
    write_journey("welcome", trigger="Signed Up")
    write_message("welcome", {**WELCOME, "email.text": "Your plan: {{ event.properties.plan }}"})
    assert_one_problem(validate(), "templates/welcome/email.text:1:1", "undefined variable", "plan")

    write_message("welcome", {"sample.yaml": "event:\n  properties:\n    plan: pro\n"})
    assert_valid(validate())


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
        validate(), "templates/_partials/footer.text:2:1", "undefined variable", "address"
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


def test_translation_with_only_a_subject_would_send_the_default(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "ru/email.subject": "Добро пожаловать"})
    assert_one_problem(
        validate(),
        "templates/welcome/ru:1:1",
        "the ru version of 'welcome' has no email.html or email.text",
        "ru contacts would get the default email instead",
    )


def test_folder_that_is_not_a_locale_tag(workdir: Path) -> None:
    write_journey("welcome")
    write_message("welcome", {**WELCOME, "russian/email.subject": "Привет"})
    write_message("welcome", {"russian/email.text": "Привет"})
    assert_one_problem(
        validate(), "templates/welcome/russian:1:1", "folder 'russian' is not a locale tag"
    )


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

    assert [str(p).split(" (add it")[0] for p in caught.value.problems] == [
        "templates/welcome/email.text:1:1: undefined variable: contact.nickname"
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
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 0, result.output
