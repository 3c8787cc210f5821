"""The playbook's journey language: segment and identify triggers, one run per order,
marketing actions, `wait_for` on several events with `save_as`, `number`/`coalesce`.

Exact `file:line:column: message` texts, as in test_dsl_validation: each says where
the mistake is and what was expected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.dsl import JourneyError, load_journey
from orchestrator.dsl.conditions import ConditionError, check_condition, evaluate
from orchestrator.dsl.models import IDENTIFY, ActionStep, Journey, WaitForStep
from orchestrator.workflows.journey import workflow_id

HEAD = "id: welcome\nname: Welcome\n"
EVENT = "trigger: {event: A}\nsteps:\n"


def load(tmp_path: Path, body: str) -> Journey:
    path = tmp_path / "j.yaml"
    path.write_text(HEAD + body)
    return load_journey(path).journey


def problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> list[str]:
    monkeypatch.chdir(tmp_path)
    Path("j.yaml").write_text(HEAD + body)
    with pytest.raises(JourneyError) as caught:
        load_journey(Path("j.yaml"))
    return [str(p) for p in caught.value.problems]


BROKEN = {
    "trigger-without-source": (
        "trigger: {where: 'true'}\nsteps: [exit]\n",
        "j.yaml:3:1: trigger needs exactly one of 'event', 'segment', 'date' or 'identify: true'",
    ),
    "trigger-with-two-sources": (
        "trigger: {event: A, segment: b}\nsteps: [exit]\n",
        "j.yaml:3:1: trigger needs exactly one of 'event', 'segment', 'date' or 'identify: true'",
    ),
    "when-on-an-event-trigger": (
        "trigger: {event: A, when: exited}\nsteps: [exit]\n",
        "j.yaml:3:1: 'when' belongs to a segment trigger: `segment: <name>, when: exited`",
    ),
    # A date or identify trigger has no exit to wait for: `when` was ignored silently.
    "when-on-a-date-trigger": (
        "trigger: {date: contact.traits.birthday, when: exited}\nsteps: [exit]\n",
        "j.yaml:3:1: 'when' belongs to a segment trigger: `segment: <name>, when: exited`",
    ),
    "when-on-an-identify-trigger": (
        "trigger: {identify: true, when: exited}\nsteps: [exit]\n",
        "j.yaml:3:1: 'when' belongs to a segment trigger: `segment: <name>, when: exited`",
    ),
    "discount-not-a-number": (
        EVENT + "  - action: {type: issue_coupon, campaign: c, prefix: T, discount: ten}\n",
        "j.yaml:5:68: invalid discount 'ten': expected like 10% or 500",
    ),
    "discount-over-100-percent": (
        EVENT + "  - action: {type: issue_coupon, campaign: c, prefix: T, discount: 120%}\n",
        "j.yaml:5:68: a discount of 120% is more than 100%",
    ),
    "amount-without-currency": (
        EVENT + "  - action: {type: issue_coupon, campaign: c, prefix: T, discount: 500}\n",
        "j.yaml:5:5: an amount discount needs its 'currency' (e.g. currency: RUB)",
    ),
    "lowercase-prefix": (
        EVENT + "  - action: {type: issue_coupon, campaign: c, prefix: thanks, discount: 5%}\n",
        "j.yaml:5:55: invalid prefix 'thanks': expected 1-16 capital letters or digits, "
        "like THANKS",
    ),
    "webhook-url-not-http": (
        EVENT + "  - action: {type: webhook, url: 'ftp://x'}\n",
        "j.yaml:5:34: invalid url 'ftp://x': expected http(s)://host/path, "
        "or ${NAME_WEBHOOK_URL} parts",
    ),
    "webhook-url-reading-another-setting": (
        EVENT + "  - action: {type: webhook, url: 'https://x.example/${DATABASE_URL}'}\n",
        "j.yaml:5:34: invalid url variable ${DATABASE_URL}: only environment variables named "
        "like SUPPORT_WEBHOOK_URL (ending in _WEBHOOK_URL) may be used",
    ),
    "unknown-action-type": (
        EVENT + "  - action: {type: award_pionts}\n",
        "j.yaml:5:20: invalid value 'award_pionts' for type (expected one of: update_contact, "
        "award_points, issue_coupon, webhook, track)",
    ),
    "save-as-on-a-message-wait": (
        EVENT
        + "  - send: {id: s, channel: email, template: t}\n"
        + "  - wait_for: {message: s, timeout: 1d, save_as: x}\n",
        "j.yaml:6:5: save_as keeps the event a wait_for matched: it needs 'event'",
    ),
    "broken-multiplier-condition": (
        EVENT + "  - action: {type: award_points, multipliers: [{if: 'contact.x ==', times: 2}]}\n",
        "j.yaml:5:54: invalid condition 'contact.x ==': invalid syntax",
    ),
    "reserved-trait-name": (
        EVENT + "  - action: {type: update_contact, set: {_applied_actions: []}}\n",
        "j.yaml:5:42: invalid trait name '_applied_actions': expected a name not starting "
        "with '_' (those are ours), like vip",
    ),
    "duration-without-unit": (
        EVENT + "  - wait: 30\n",
        "j.yaml:5:11: invalid duration 30: add its unit, e.g. 30d, 30h or 30m (s, m, h, d or w)",
    ),
    "one-run-per-not-a-property": (
        "trigger: {event: A}\nentry: {one_run_per: 'order id'}\nsteps: [exit]\n",
        "j.yaml:4:22: invalid one_run_per 'order id': expected a trigger property, like order_id",
    ),
}


@pytest.mark.parametrize("body,expected", BROKEN.values(), ids=BROKEN.keys())
def test_playbook_mistakes_are_reported_where_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, expected: str
) -> None:
    assert problems(tmp_path, monkeypatch, body) == [expected]


def test_segment_and_identify_triggers_name_the_events_that_start_runs(tmp_path: Path) -> None:
    entered = load(tmp_path, "trigger: {segment: big_spenders}\nsteps: [exit]\n").trigger
    exited = load(tmp_path, "trigger: {segment: vip, when: exited}\nsteps: [exit]\n").trigger
    signup = load(tmp_path, "trigger: {identify: true}\nsteps: [exit]\n").trigger
    assert (entered.name, exited.name, signup.name) == (
        "Segment Entered",
        "Segment Exited",
        IDENTIFY,
    )
    assert entered.accepts_segment({"segment": "big_spenders"})
    assert not entered.accepts_segment({"segment": "vip"})


def test_actions_and_multi_event_waits_survive_the_json_round_trip(tmp_path: Path) -> None:
    journey = load(
        tmp_path,
        EVENT
        + "  - action: {type: issue_coupon, campaign: c, prefix: T, discount: 500, currency: RUB}\n"
        + "    on_failure: [exit]\n"
        + "  - wait_for: {event: [Survey Answered, SMS Received], timeout: 5d, save_as: answer}\n",
    )
    again = Journey.model_validate(journey.model_dump(mode="json", by_alias=True))
    assert again == journey
    action, wait = again.steps
    assert isinstance(action, ActionStep) and isinstance(wait, WaitForStep)
    assert action.action.discount.kind == "amount" and action.action.discount.value == 500  # type: ignore[union-attr]
    assert action.on_failure[0].id == "steps.0.on_failure.0"
    assert wait.wait_for.events == ("Survey Answered", "SMS Received")


def test_number_reads_replies_and_coalesce_takes_the_first_value() -> None:
    answer = {"journey": {"answer": {"properties": {"number": 0}}}}
    assert evaluate(
        "coalesce(journey.answer.properties.score, journey.answer.properties.number) <= 6", answer
    )
    assert evaluate('number(" 9 ") == 9 and number("9.") == 9 and number("7.5") == 7.5', {})
    assert evaluate('number("nine") == null and number(true) == null and number("nan") == null', {})
    with pytest.raises(ConditionError, match="takes 1 to 10 arguments"):
        check_condition("coalesce()")


def test_one_run_per_order_gives_each_order_its_own_workflow_id() -> None:
    assert workflow_id("post_purchase", "ann") == "journey:post_purchase:ann"
    assert workflow_id("post_purchase", "ann", "o-1") == "journey:post_purchase:ann:o-1"
    odd = workflow_id("post_purchase", "ann", "a:b" * 100)
    assert odd.startswith("journey:post_purchase:ann:h") and len(odd) < 80


def test_a_trigger_naming_a_segment_segments_yaml_lacks_is_refused(
    tmp_path: Path, sqlite_engine
) -> None:  # type: ignore[no-untyped-def]
    from orchestrator.deployment.deploy import InvalidJourneys, deploy

    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "vip.yaml").write_text(HEAD + "trigger: {segment: big_spender}\nsteps: [exit]\n")
    (journeys / "segments.yaml").write_text(
        "big_spenders:\n  spent: { more_than: 5000, within: 30d }\n"
    )
    with pytest.raises(InvalidJourneys) as caught:
        deploy(sqlite_engine, journeys, None)  # type: ignore[arg-type]
    expected = (
        f"{journeys / 'vip.yaml'}:3:20: unknown segment 'big_spender': segments.yaml "
        "defines big_spenders; did you mean 'big_spenders'?"
    )
    assert [str(p) for p in caught.value.problems] == [expected]


def test_a_journey_file_validated_alone_uses_the_segments_of_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`journeys validate --strict journeys/big_spenders.yaml` passed with `segment:
    big_spender`, which `journeys validate journeys/` (and deploy) refuses."""
    from click.testing import CliRunner

    from orchestrator.cli import main

    monkeypatch.chdir(tmp_path)
    Path("journeys").mkdir()
    Path("templates").mkdir()
    Path("journeys/vip.yaml").write_text(HEAD + "trigger: {segment: big_spender}\nsteps: [exit]\n")
    Path("journeys/other.yaml").write_text(
        HEAD.replace("welcome", "other") + "trigger: {segment: big_spenders}\nsteps: [exit]\n"
    )
    Path("journeys/segments.yaml").write_text(
        "big_spenders:\n  spent: { more_than: 5000, within: 30d }\n"
    )
    problem = (
        "journeys/vip.yaml:3:20: unknown segment 'big_spender': segments.yaml defines "
        "big_spenders; did you mean 'big_spenders'?"
    )
    for target in ("journeys/vip.yaml", "journeys"):
        result = CliRunner().invoke(main, ["validate", "--strict", target])
        assert result.exit_code == 1, result.output
        assert result.stdout.splitlines() == [problem]
    alone = CliRunner().invoke(main, ["validate", "--strict", "journeys/other.yaml"])
    assert alone.exit_code == 0, alone.output
    # Without a segments.yaml in its folder, no segment exists for it to start on.
    Path("journeys/segments.yaml").unlink()
    result = CliRunner().invoke(main, ["validate", "journeys/other.yaml"])
    assert result.stdout.splitlines() == [
        "journeys/other.yaml:3:20: unknown segment 'big_spenders': segments.yaml defines none"
    ]
