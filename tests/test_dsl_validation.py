"""Broken journeys and the exact `file:line:column: message` a marketer sees for each.

The exact text is the contract: it must say where the mistake is and what
was expected, so any change to a message is a deliberate change to a test.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from textwrap import dedent

import pytest

from orchestrator.deployment import validate
from orchestrator.dsl import Journey, JourneyError, LoadedJourney, load_journey, load_journeys
from orchestrator.dsl.models import BranchStep, SplitStep, Step, WaitForStep
from orchestrator.rendering import Renderer

# Three lines, so `steps:` is line 4 and the first step line 5 in every case below.
HEAD = "id: welcome\nname: Welcome\ntrigger: {event: Signed Up}\n"
KINDS = "wait, wait_until, wait_for, branch, split, send, action, exit"
IDENTIFIER = (
    "lowercase letters, digits and underscores, starting with a letter, at most 63 characters"
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with templates, so problems carry short relative paths."""
    monkeypatch.chdir(tmp_path)
    parts = {
        "welcome": {
            "email.subject": "Welcome, {{ contact.traits.first_name }}",
            "email.html": "<p>Hi {{ contact.traits.first_name }}</p>",
            "email.text": "Hi {{ contact.traits.first_name }}",
            "push.title": "Welcome",
            "push.body": "Tap to start",
            "sms.body": "Welcome! Reply STOP to opt out.",
        },
        "email_only": {"email.subject": "Hi", "email.text": "Hello"},
        "title_only": {"push.title": "Hi"},
        "broken": {
            "email.subject": "Hello",
            "email.html": "<p>Hi</p>\n<p>{{ contact.traits.first_name }</p>\n",
        },
    }
    for name, files in parts.items():
        folder = tmp_path / "templates" / name
        folder.mkdir(parents=True)
        for part, text in files.items():
            (folder / part).write_text(text)
    return tmp_path


def load(text: str) -> LoadedJourney:
    """The journey in `text` as `journeys validate` sees it: its messages rendered too."""
    path = Path("j.yaml")
    path.write_text(text)
    result = validate([path], Renderer(Path("templates")))
    if result.problems:
        raise JourneyError(result.problems)
    return result.journeys[0]


def problems_of(text: str) -> list[str]:
    with pytest.raises(JourneyError) as caught:
        load(text)
    return [str(p) for p in caught.value.problems]


def case(name: str, body: str, *expected: str) -> object:
    return pytest.param(HEAD + dedent(body), list(expected), id=name)


BROKEN = [
    case(
        "unknown-top-level-key",
        """\
        descripton: typo
        steps: [exit]
        """,
        "j.yaml:4:1: unknown key 'descripton' in the journey (expected one of: id, name, "
        "description, trigger, entry, exit_on, goal, policy, sender, tracking, steps, "
        "invariants)",
    ),
    case(
        "bad-quiet-hours-and-capped-choice",
        """        policy:
          when_capped: wait
          quiet_hours: { sms: 9pm-8am }
        steps: [exit]
        """,
        "j.yaml:5:16: invalid value 'wait' for when_capped (expected one of: skip, defer)",
        "j.yaml:6:23: invalid quiet hours '9pm-8am': expected HH:MM-HH:MM on a 24-hour "
        "clock, like 21:00-08:00, or none",
    ),
    case(
        "unknown-key-in-send",
        """\
        steps:
          - send:
              channel: email
              tempalte: welcome
        """,
        "j.yaml:5:5: missing required key 'template' in send",
        "j.yaml:7:7: unknown key 'tempalte' in send (expected one of: id, channel, template, "
        "category)",
    ),
    case(
        "missing-template-key",
        """\
        steps:
          - send: {channel: email}
        """,
        "j.yaml:5:5: missing required key 'template' in send",
    ),
    case(
        "wrong-type",
        """\
        exit_on: Order Completed
        steps:
          - wait: 1h
            id: 7
        """,
        "j.yaml:4:10: expected a list, got a string",
        "j.yaml:7:9: expected a string, got a number",
    ),
    case(
        "steps-is-a-mapping",
        """\
        steps:
          wait: 1h
        """,
        "j.yaml:4:1: expected a list, got a mapping",
    ),
    case(
        "unknown-step-kind",
        """\
        steps:
          - sned: {channel: email, template: welcome}
        """,
        f"j.yaml:5:5: unknown step kind 'sned' (expected one of: {KINDS})",
    ),
    case(
        "two-kind-keys",
        """\
        steps:
          - wait: 1h
            send: {channel: email, template: welcome}
        """,
        "j.yaml:6:5: a step must have exactly one kind key, found: wait, send",
    ),
    case(
        "bad-duration",
        """\
        steps:
          - wait: 25x
        """,
        "j.yaml:5:11: invalid duration '25x': expected a number with a unit s, m, h, d or w, "
        "such as 30m, 24h, 2d or 1d12h",
    ),
    case(
        "zero-duration",
        """\
        steps:
          - wait: 0h
        """,
        "j.yaml:5:11: duration '0h' must be longer than zero",
    ),
    case(
        "duration-over-366d",
        """\
        goal: {event: Order Completed, within: 53w}
        steps: [exit]
        """,
        "j.yaml:4:40: duration '53w' is longer than the maximum of 366d",
    ),
    case(
        "bad-condition-syntax",
        """\
        steps:
          - branch:
              - if: contact.traits.age = 18
                then: [exit]
        """,
        "j.yaml:6:32: invalid condition 'contact.traits.age = 18': a single = does not "
        "compare; write == to test equality (contact.traits.age == 18)",
    ),
    case(
        "impossible-date-in-condition",
        """\
        steps:
          - branch:
              - if: date(contact.traits.trial_ends) < date("2027-02-30")
                then: [exit]
        """,
        "j.yaml:6:52: date('2027-02-30'): not a date; write it as YYYY-MM-DD "
        '(date("2027-01-15")), or pass a value such as contact.traits.birthday',
    ),
    case(
        "misspelt-date-function",
        """\
        steps:
          - branch:
              - if: days_sinse(contact.traits.signed_up_at) > 30
                then: [exit]
        """,
        "j.yaml:6:13: did you mean days_since()? only the functions len, lower, upper, "
        "number, coalesce, today, date, days_since, days_until, years_since may be called",
    ),
    case(
        "unknown-name-in-condition",
        """\
        entry:
          if: contact.traits.vip and customer.vip
        steps: [exit]
        """,
        "j.yaml:5:30: unknown name 'customer': expected one of contact, event, trigger, journey "
        "or true, false, null",
    ),
    case(
        "function-call-in-condition",
        """\
        goal: {event: Order Completed, within: 14d, where: "__import__('os')"}
        steps: [exit]
        """,
        "j.yaml:4:53: only the functions len, lower, upper, number, coalesce, today, date, "
        "days_since, days_until, years_since may be called",
    ),
    case(
        "dunder-attribute-in-condition",
        """\
        steps:
          - branch:
              - if: len(contact.traits.__class__) > 0
                then: [exit]
        """,
        "j.yaml:6:17: attribute '__class__' is not allowed",
    ),
    case(
        "dangling-message-reference",
        """\
        steps:
          - send: {id: reminder, channel: email, template: welcome}
          - wait_for: {message: remnder, timeout: 2d}
        """,
        "j.yaml:6:25: wait_for refers to message 'remnder', but no earlier send step has "
        "that id (known: reminder)",
    ),
    case(
        "message-referenced-before-its-send",
        """\
        steps:
          - wait_for: {message: reminder, timeout: 2d}
          - send: {id: reminder, channel: email, template: welcome}
        """,
        "j.yaml:5:25: wait_for refers to message 'reminder' before its send step (line 6): "
        "a wait_for must come after the send it waits on",
    ),
    case(
        "dangling-template-folder",
        """\
        steps:
          - send: {channel: email, template: welcom}
        """,
        "j.yaml:5:38: template 'welcom' not found: no folder templates/welcom/; did you mean "
        "'welcome'?",
    ),
    case(
        "template-missing-a-channel-part",
        """\
        steps:
          - send: {channel: sms, template: email_only}
          - send: {channel: [email, push], template: email_only}
          - send: {channel: preferred, template: title_only}
        """,
        "j.yaml:5:36: template 'email_only' has no complete sms part: missing sms.body in "
        "templates/email_only/",
        "j.yaml:6:46: template 'email_only' has no complete push part: missing push.title "
        "and push.body in templates/email_only/",
        "j.yaml:7:42: template 'title_only' has no complete channel for channel preferred: "
        "templates/title_only/ needs email.subject with email.html or email.text, "
        "or push.title with push.body, or sms.body",
    ),
    case(
        "template-jinja-syntax-error",
        """\
        steps:
          - send: {channel: email, template: broken}
          - send: {channel: email, template: broken}
        """,
        "templates/broken/email.html:2:1: template syntax error: unexpected '}'",
    ),
    case(
        "duplicate-step-id",
        """\
        steps:
          - id: first
            wait: 1h
          - send: {id: first, channel: email, template: welcome}
        """,
        "j.yaml:7:16: duplicate step id 'first' (first used on line 5)",
    ),
    case(
        "send-with-two-different-ids",
        """\
        steps:
          - id: hello
            send: {id: hi, channel: email, template: welcome}
        """,
        "j.yaml:5:9: send step has id 'hello' but its send has id 'hi': keep one of them",
    ),
    case(
        "invalid-step-id",
        """\
        steps:
          - wait: 1h
            id: Step-1
        """,
        f"j.yaml:6:9: invalid id 'Step-1': expected {IDENTIFIER}",
    ),
    case(
        "automatic-ids-are-not-for-authors",
        """\
        steps:
          - wait: 1h
          - wait: 1h
            id: steps.0
        """,
        f"j.yaml:7:9: invalid id 'steps.0': expected {IDENTIFIER}",
    ),
    case(
        "anchor-and-alias",
        """\
        steps:
          - &pause {wait: 1h}
          - *pause
        """,
        "j.yaml:5:5: YAML anchors and aliases are not allowed in journeys",
    ),
    case(
        "duplicate-mapping-key",
        """\
        steps:
          - wait: 1h
            wait: 2h
        """,
        "j.yaml:6:5: duplicate key 'wait' (first defined on line 5)",
    ),
    case(
        "yaml-syntax-error",
        """\
        steps:
          - wait: [1h
        """,
        "j.yaml:6:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 5, column 11)",
    ),
    case(
        "bad-wait-until-time",
        """\
        steps:
          - wait_until: {time: "25:00"}
        """,
        "j.yaml:5:24: invalid time '25:00': expected HH:MM on a 24-hour clock, like 09:30",
    ),
    case(
        "bad-timezone",
        """\
        steps:
          - wait_until:
              time: "09:00"
              timezone: Europe/Pariss
        """,
        "j.yaml:7:17: unknown timezone 'Europe/Pariss': expected an IANA name such as "
        "Europe/Paris, America/New_York or UTC; did you mean Europe/Paris?",
    ),
    case(
        "misspelt-timezones-get-what-was-meant",
        """\
        steps:
          - wait_until: {time: "09:00", timezone: Europe/Belgrad}
          - wait_until: {time: "09:00", timezone: Belgrade}
          - wait_until: {time: "09:00", timezone: america/new_york}
          - wait_until: {time: "09:00", timezone: Atlantis/Capital}
          - wait_until: {time: "09:00", timezone: America}
        """,
        "j.yaml:5:43: unknown timezone 'Europe/Belgrad': expected an IANA name such as "
        "Europe/Paris, America/New_York or UTC; did you mean Europe/Belgrade?",
        "j.yaml:6:43: unknown timezone 'Belgrade': expected an IANA name such as "
        "Europe/Paris, America/New_York or UTC; did you mean Europe/Belgrade?",
        "j.yaml:7:43: unknown timezone 'america/new_york': expected an IANA name such as "
        "Europe/Paris, America/New_York or UTC; did you mean America/New_York?",
        "j.yaml:8:43: unknown timezone 'Atlantis/Capital': expected an IANA name such as "
        "Europe/Paris, America/New_York or UTC",
        # A folder of the zone database: ZoneInfo raises IsADirectoryError for it.
        "j.yaml:9:43: unknown timezone 'America': expected an IANA name such as "
        "Europe/Paris, America/New_York or UTC",
    ),
    case(
        "split-with-one-variant",
        """\
        steps:
          - split:
              - {variant: a, weight: 100}
        """,
        "j.yaml:5:5: split needs at least 2 items, got 1",
    ),
    case(
        "split-weight-zero",
        """\
        steps:
          - split:
              - {variant: a, weight: 0}
              - {variant: b, weight: 1}
        """,
        "j.yaml:6:30: weight must be greater than 0, got 0",
    ),
    case(
        "invalid-channel-literal",
        """\
        steps:
          - send: {channel: fax, template: welcome}
          - send: {channel: [email, fax], template: welcome}
        """,
        "j.yaml:5:21: invalid value 'fax' for channel (expected one of: email, push, sms, "
        "preferred)",
        "j.yaml:6:29: invalid value 'fax' for channel (expected one of: email, push, sms)",
    ),
    case(
        "re-entry-sometimes",
        """\
        entry:
          re_entry: sometimes
        steps: [exit]
        """,
        "j.yaml:5:13: invalid re_entry 'sometimes': expected never, always or after <duration>",
    ),
    case(
        "wait-for-without-target",
        """\
        steps:
          - wait_for: {timeout: 2d}
        """,
        "j.yaml:5:5: wait_for needs exactly one of 'event' or 'message'",
    ),
    case(
        "unknown-action-type-and-key",
        """\
        steps:
          - action: {type: award_pionts}
          - action: {type: update_contact, sett: {vip: true}}
        """,
        "j.yaml:5:20: invalid value 'award_pionts' for type (expected one of: update_contact, "
        "award_points, issue_coupon, webhook, track)",
        "j.yaml:6:36: unknown key 'sett' in action (expected one of: type, set, increment, "
        "unset, tag, untag)",
    ),
    case(
        "errors-deep-inside-nested-steps",
        """\
        steps:
          - branch:
              - if: contact.traits.vip
                then:
                  - wait_for: {event: Order Completed, timeout: 1d}
                    on_timeout:
                      - wait: soon
            else:
              - send: {channel: email, template: welcome}
                then: [exit]
        """,
        "j.yaml:10:23: invalid duration 'soon': expected a number with a unit s, m, h, d or w, "
        "such as 30m, 24h, 2d or 1d12h",
        "j.yaml:13:9: unknown key 'then' in send step (expected one of: send, on_failure, id)",
    ),
    # Keys conditions read: a missing key is null, so a typo would never hold.
    case(
        "condition-reads-a-key-the-trigger-never-has",
        """\
        steps:
          - branch:
              - if: trigger.product_id == "sku-1" and contact.Email != null
                then: [exit]
        """,
        "j.yaml:6:13: unknown key 'product_id' in trigger.product_id (expected one of: id, "
        "name, type, properties, context, timestamp, products); did you mean "
        "trigger.properties.product_id or trigger.products?",
        "j.yaml:6:47: unknown key 'Email' in contact.Email (expected one of: id, email, phone, "
        "locale, timezone, traits, first_name, last_name, name, consent, orders, "
        "last_order_at); did you mean contact.email?",
    ),
    case(
        "condition-in-a-folded-block-reads-a-contact-key-that-is-a-trait",
        """\
        goal:
          event: Order Completed
          within: 7d
          where: >-
            event.properties.total > 100
            and contact.vip
        steps: [exit]
        """,
        "j.yaml:9:9: unknown key 'vip' in contact.vip (expected one of: id, email, phone, "
        "locale, timezone, traits, first_name, last_name, name, consent, orders, "
        "last_order_at); did you mean contact.traits.vip?",
    ),
    case(
        "condition-reads-a-journey-key-no-earlier-step-keeps",
        """\
        steps:
          - branch:
              - if: journey.coupon_code != null
                then: [exit]
          - action: {type: issue_coupon, campaign: c, prefix: C, discount: 5%}
          - wait_for: {event: Order Completed, timeout: 1d, save_as: order}
          - branch:
              - if: journey.coupon_cod != null and journey.order.propertes.total > 1
                then: [exit]
        """,
        "j.yaml:6:13: unknown key 'coupon_code' in journey.coupon_code: no step before this "
        "one keeps a value on the run (issue_coupon, award_points, and webhook or wait_for "
        "with save_as do)",
        "j.yaml:11:13: unknown key 'coupon_cod' in journey.coupon_cod (earlier steps keep: "
        "coupon_code, coupon_campaign, coupon_kind, coupon_value, coupon_currency, "
        "coupon_minimum_order, coupon_expires_at, order); did you mean journey.coupon_code?",
        "j.yaml:11:44: unknown key 'propertes' in journey.order.propertes.total (expected one "
        "of: name, properties, timestamp); did you mean journey.order.properties?",
    ),
    pytest.param(
        "id: welcome\nname: Welcome\n"
        'trigger: {event: Signed Up, where: trigger.properties.plan == "pro"}\n'
        "entry: {if: journey.points_earned > 0}\n"
        "steps: [exit]\n",
        [
            "j.yaml:3:36: trigger.properties.plan is always null in trigger.where, which sees "
            "only contact and event: the event being tested is the trigger, write "
            "event.properties.plan",
            "j.yaml:4:13: journey.points_earned is always null in entry.if, which sees only "
            "contact, event and trigger (no step has kept anything on the run yet)",
        ],
        id="trigger-where-and-entry-if-read-roots-they-do-not-see",
    ),
    # A schema mistake hides nothing else: the checks past the schema run on the rest.
    case(
        "a-schema-mistake-hides-no-other-problem",
        """\
        entry:
          re_entry: after 3 days
        steps:
          - wait_until: {time: "09:30", timezone: Europe/Belgrad}
          - branch:
              - if: contact.tier == "gold"
                then: [exit]
          - wait: 30
          - action: {type: update_contact, set: {_score: 1}}
        """,
        "j.yaml:5:13: invalid duration '3 days': expected a number with a unit s, m, h, d or "
        "w, such as 30m, 24h, 2d or 1d12h",
        "j.yaml:7:43: unknown timezone 'Europe/Belgrad': expected an IANA name such as "
        "Europe/Paris, America/New_York or UTC; did you mean Europe/Belgrade?",
        "j.yaml:9:13: unknown key 'tier' in contact.tier (expected one of: id, email, phone, "
        "locale, timezone, traits, first_name, last_name, name, consent, orders, "
        "last_order_at); did you mean contact.traits.tier?",
        "j.yaml:11:11: invalid duration 30: add its unit, e.g. 30d, 30h or 30m (s, m, h, d or w)",
        "j.yaml:12:42: invalid trait name '_score': expected a name not starting with '_' "
        "(those are ours), like vip",
    ),
    case(
        "a-step-set-aside-for-its-mistake-is-not-held-against-the-others",
        """\
        steps:
          - action: {type: issue_coupon, campaign: c, prefix: c, discount: 5%}
          - send: {id: offer, channel: fax, template: welcome}
          - wait_for: {message: offer, timeout: 1d}
          - branch:
              - if: journey.coupon_code != null and contact.vip
                then: [exit]
          - wait_for: {message: nothing_sent, timeout: 1d}
        """,
        # The coupon and the send are wrong, not the wait_for on `offer` nor the read of
        # the code; what is wrong besides is still found.
        "j.yaml:5:55: invalid prefix 'c': expected 1-16 capital letters or digits, like THANKS",
        "j.yaml:6:32: invalid value 'fax' for channel (expected one of: email, push, sms, "
        "preferred)",
        "j.yaml:9:45: unknown key 'vip' in contact.vip (expected one of: id, email, phone, "
        "locale, timezone, traits, first_name, last_name, name, consent, orders, "
        "last_order_at); did you mean contact.traits.vip?",
        "j.yaml:11:25: wait_for refers to message 'nothing_sent', but no earlier send step has "
        "that id (known: none)",
    ),
    pytest.param(
        "id: cart\nname: Cart\n"
        'trigger: {event: Product Added, where: trigger.product_id == "sku-1"}\n'
        "steps: [exit]\n",
        [
            # The advice is the lookup that works, not `event.product_id` (itself wrong).
            "j.yaml:3:40: trigger.product_id is always null in trigger.where, which sees "
            "only contact and event: the event being tested is the trigger, write "
            "event.properties.product_id",
        ],
        id="trigger-in-trigger-where-is-corrected-to-the-key-that-exists",
    ),
    pytest.param(
        "id: signup\nname: Signup\n"
        "trigger: {identify: true, where: event.traits.consent.email.marketing == true}\n"
        "entry: {if: trigger.traits.plan == 'pro'}\n"
        "steps: [exit]\n",
        [
            "j.yaml:3:34: unknown key 'traits' in event.traits.consent.email.marketing "
            "(expected one of: id, name, type, properties, context, timestamp, products); "
            "an identify call's traits are its properties: did you mean "
            "event.properties.consent.email.marketing?",
            "j.yaml:4:13: unknown key 'traits' in trigger.traits.plan (expected one of: id, "
            "name, type, properties, context, timestamp, products); an identify call's "
            "traits are its properties: did you mean trigger.properties.plan?",
        ],
        id="identify-traits-are-its-properties",
    ),
    pytest.param(
        "id: cart\nname: Cart\ntrigger: {event: Product Added}\n"
        "goal: {event: Order Completed, within: 1d, where: event.traits.vip == true}\n"
        "steps: [exit]\n",
        [
            "j.yaml:4:51: unknown key 'traits' in event.traits.vip (expected one of: id, "
            "name, type, properties, context, timestamp, products); did you mean "
            "contact.traits.vip?",
        ],
        id="a-track-event-has-no-traits-the-contact-has",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_journey_reports_exact_problems(
    workdir: Path, text: str, expected: list[str]
) -> None:
    assert problems_of(text) == expected


def test_empty_and_non_mapping_files(workdir: Path) -> None:
    assert problems_of("") == [
        "j.yaml:1:1: the file is empty: expected a journey with id, name, trigger and steps"
    ]
    assert problems_of("- wait: 1h\n") == ["j.yaml:1:1: expected a mapping, got a list"]


def test_missing_keys_point_at_the_mapping_that_lacks_them(workdir: Path) -> None:
    assert problems_of("id: welcome\nsteps: [exit]\n") == [
        "j.yaml:1:1: missing required key 'name' in the journey",
        "j.yaml:1:1: missing required key 'trigger' in the journey",
    ]


def billion_laughs(levels: int = 9) -> str:
    lines = [HEAD, 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    for n in range(1, levels + 1):
        refs = ",".join([f"*a{n - 1}"] * 9)
        lines.append(f"a{n}: &a{n} [{refs}]\n")
    lines.append(f"steps: [{{wait: 1h, then: *a{levels}}}]\n")
    return "".join(lines)


def test_alias_bomb_is_rejected_quickly_with_flat_memory(workdir: Path) -> None:
    """9 levels of 9 aliases would expand to 9**10 strings; we must never try."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        found = problems_of(billion_laughs())
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == ["j.yaml:4:5: YAML anchors and aliases are not allowed in journeys"]
    assert elapsed < 1.0
    assert peak < 5_000_000


def test_file_size_is_capped(workdir: Path) -> None:
    text = HEAD + "description: " + "x" * 1_000_001 + "\nsteps: [exit]\n"
    assert problems_of(text) == ["j.yaml:1:1: the file is larger than 1 MB"]


def test_duplicate_journey_id_across_files_reports_the_second(workdir: Path) -> None:
    folder = workdir / "journeys"
    folder.mkdir()
    (folder / "a.yaml").write_text(HEAD + "steps: [exit]\n")
    (folder / "b.yml").write_text("# the same id again\n" + HEAD + "steps: [exit]\n")
    (folder / "segments.yaml").write_text("vip: contact.traits.vip\n")  # not a journey
    loaded, problems = load_journeys([Path("journeys")])
    assert [item.path for item in loaded] == [Path("journeys/a.yaml")]
    assert [str(p) for p in problems] == [
        "journeys/b.yml:2:5: duplicate journey id 'welcome': already defined in journeys/a.yaml"
    ]


def test_load_journeys_collects_problems_of_every_file(workdir: Path) -> None:
    folder = workdir / "journeys" / "nested"
    folder.mkdir(parents=True)
    (folder / "bad.yaml").write_text(HEAD + "steps: []\n")
    (workdir / "journeys" / "good.yaml").write_text(HEAD + "steps: [exit]\n")
    loaded, problems = load_journeys([Path("journeys"), Path("missing.yaml")])
    assert [item.journey.id for item in loaded] == ["welcome"]
    assert [str(p) for p in problems] == [
        "journeys/nested/bad.yaml:4:1: steps needs at least 1 item, got 0",
        "missing.yaml:1:1: cannot read the file: No such file or directory",
    ]


EVERY_KIND = HEAD + dedent(
    """\
    steps:
      - wait: 1h
      - send: {id: hello, channel: email, template: welcome}
      - wait_for: {message: hello, engagement: clicked, timeout: 2d}
        then:
          - action: {type: update_contact, set: {engaged: true}}
        on_timeout:
          - send: {channel: [push, sms], template: welcome}
      - branch:
          - if: contact.traits.vip == true
            then:
              - wait_until: {time: "09:00", weekdays: [mon, fri], timezone: Europe/Paris}
          - if: event.properties.total > 100
            then:
              - id: big_spender
                send: {channel: preferred, template: welcome}
        else:
          - exit
      - split:
          - variant: a
            weight: 50
            then:
              - wait: 1d
          - variant: b
            weight: 50
      - exit: done
    """
)


def step_ids(steps: list[Step]) -> list[str | None]:
    """Ids in document order, nested steps right after their parent."""
    ids: list[str | None] = []
    for step in steps:
        ids.append(step.id)
        if isinstance(step, WaitForStep):
            ids += step_ids(step.then) + step_ids(step.on_timeout)
        elif isinstance(step, BranchStep):
            for branch_case in step.branch:
                ids += step_ids(branch_case.then)
            ids += step_ids(step.else_)
        elif isinstance(step, SplitStep):
            for variant in step.split:
                ids += step_ids(variant.then)
    return ids


def test_every_step_kind_loads_and_every_step_gets_an_id(workdir: Path) -> None:
    journey = load(EVERY_KIND).journey
    ids = step_ids(journey.steps)
    assert ids == [
        "steps.0",
        "hello",
        "steps.2",
        "steps.2.then.0",
        "steps.2.on_timeout.0",
        "steps.3",
        "steps.3.branch.0.then.0",
        "big_spender",
        "steps.3.else.0",
        "steps.4",
        "steps.4.split.0.then.0",
        "steps.5",
    ]


def test_loaded_journey_survives_the_json_round_trip_to_a_workflow(workdir: Path) -> None:
    journey = load(EVERY_KIND).journey
    assert Journey.model_validate(journey.model_dump(mode="json", by_alias=True)) == journey


def test_spec_hash_ignores_comments_and_layout_but_not_meaning(workdir: Path) -> None:
    original = load(EVERY_KIND).spec_hash
    commented = "# Welcome series.\n" + EVERY_KIND.replace(
        "  - wait: 1h\n", "  - wait: 1h    # a pause before the first email\n\n"
    )
    assert load(commented).spec_hash == original
    assert load(EVERY_KIND.replace("wait: 1h", "wait: 60m")).spec_hash == original
    assert load(EVERY_KIND.replace("wait: 1h", "wait: 2h")).spec_hash != original
    assert len(original) == 64


def test_the_journey_language_alone_does_not_look_at_templates(workdir: Path) -> None:
    path = Path("j.yaml")
    path.write_text(HEAD + "steps:\n  - send: {channel: sms, template: nowhere}\n")
    loaded = load_journey(path)
    assert loaded.journey.steps[0].id == "steps.0"
    assert loaded.path == path
