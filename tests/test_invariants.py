"""Invariants (docs/invariants.md): each kind on a store written by hand, with what
breaks worked out by hand; and the mistakes `journeys validate` must catch, located.

The store is built row by row (contacts, `Order Completed` events, runs, messages),
as a simulation would leave it, so each rule is checked on exactly the facts it reads.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session

from orchestrator.cli.main import main
from orchestrator.cli.simulate import render_violations
from orchestrator.dsl.conditions import ConditionError, evaluate, parse
from orchestrator.dsl.invariants import load_project_invariants, read_invariants
from orchestrator.dsl.loader import journey_files, load_journey, spec_hash
from orchestrator.dsl.models import Journey
from orchestrator.dsl.problems import JourneyError
from orchestrator.dsl.roots import (
    INVARIANT_CONTACT_KEYS,
    INVARIANT_MESSAGE_KEYS,
    INVARIANT_ORDER_KEYS,
    INVARIANT_RUN_KEYS,
)
from orchestrator.simulation.invariant_context import read_facts
from orchestrator.simulation.invariants import (
    InvariantReport,
    check_invariants,
)
from orchestrator.store.tables import Contact, Coupon, Event, JourneyRun, Message

PLAYBOOK = Path(__file__).resolve().parent.parent / "journeys"
T0 = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)  # a Monday; London is on UTC in January


class Store:
    """Rows as a simulation writes them; ids are counters, so every run is the same."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = Session(engine)
        self.n = 0

    def contact(self, cid: str, timezone: str | None = None, **fields: Any) -> str:
        self.session.add(Contact(id=cid, timezone=timezone, **fields))
        return cid

    def order(self, cid: str, order_id: str, at: datetime) -> int:
        self.n += 1
        event = Event(
            message_id=f"order-{self.n}",
            type="track",
            name="Order Completed",
            contact_id=cid,
            properties={"order_id": order_id, "revenue": 50},
            timestamp=at,
        )
        self.session.add(event)
        self.session.flush()
        assert event.id is not None
        return event.id

    def run(
        self, cid: str, journey: str, at: datetime, trigger: int | None = None, **fields: Any
    ) -> JourneyRun:
        self.n += 1
        run = JourneyRun(
            workflow_id=f"{journey}-{cid}-{self.n}",
            entry_seq=1,
            journey_id=journey,
            version=1,
            contact_id=cid,
            trigger_event_id=trigger,
            entered_at=at,
            status=fields.pop("status", "completed"),
            **fields,
        )
        self.session.add(run)
        return run

    def message(
        self,
        run: JourneyRun,
        step: str,
        sent_at: datetime | None,
        channel: str = "email",
        category: str = "marketing",
        **fields: Any,
    ) -> None:
        self.n += 1
        self.session.add(
            Message(
                id=f"m{self.n}",
                idempotency_key=f"{run.workflow_id}:{step}:{self.n}",
                workflow_id=run.workflow_id,
                entry_seq=run.entry_seq,
                step_id=step,
                journey_id=run.journey_id,
                contact_id=run.contact_id,
                channel=channel,
                adapter="console",
                template=step,
                category=category,
                status=fields.pop("status", "sent" if sent_at else "pending"),
                sent_at=sent_at,
                created_at=sent_at or run.entered_at,
                **fields,
            )
        )

    def sent(self, cid: str, journey: str, step: str, at: datetime, **fields: Any) -> None:
        """A run of `journey` that sent one message at `at`."""
        self.message(self.run(cid, journey, at), step, at, **fields)

    def commit(self) -> None:
        self.session.commit()
        self.session.close()


def rules(tmp_path: Path, text: str) -> list[Any]:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "invariants.yaml").write_text(textwrap.dedent(text))
    return load_project_invariants(folder)


def check(store: Store, tmp_path: Path, text: str, tz: str = "UTC") -> InvariantReport:
    store.commit()
    return check_invariants(store.engine, [], rules(tmp_path, text), tz)


def broken(report: InvariantReport, index: int = 0) -> list[tuple[str, str]]:
    return [(v.contact_id, v.what) for v in report.results[index].examples]


NIGHT_SMS = """
invariants:
  - name: no marketing SMS at night
    never: >-
      message.channel == "sms" and message.category == "marketing"
      and (message.local_hour >= 21 or message.local_hour < 8)
"""


def test_night_sms_is_judged_in_the_contacts_own_timezone(engine: Engine, tmp_path: Path) -> None:
    """20:05 UTC is 23:05 in Moscow (broken) and 20:05 in London (fine); 17:59 UTC is
    20:59 in Moscow (fine); a contact with no timezone is in the default one."""
    store = Store(engine)
    store.contact("moscow", "Europe/Moscow")
    store.contact("london", "Europe/London")
    store.contact("nowhere")  # the default timezone: Asia/Tokyo, 20:05 UTC is 05:05
    evening = T0.replace(hour=20, minute=5)
    for cid in ("moscow", "london", "nowhere"):
        store.sent(cid, "abandoned_cart", "reminder_push", evening, channel="sms")
    store.sent("moscow", "win_back", "last_offer", T0.replace(hour=17, minute=59), channel="sms")
    # A receipt at night is not marketing; an email is not an SMS.
    store.sent(
        "moscow", "post_purchase", "receipt", evening, channel="sms", category="transactional"
    )
    store.sent("moscow", "welcome", "welcome", evening)

    report = check(store, tmp_path, NIGHT_SMS, tz="Asia/Tokyo")

    assert not report.ok
    assert broken(report) == [
        (
            "moscow",
            'abandoned_cart sms "reminder_push" sent 2026-01-12 23:05 local (Europe/Moscow)',
        ),
        ("nowhere", 'abandoned_cart sms "reminder_push" sent 2026-01-13 05:05 local (Asia/Tokyo)'),
    ]
    assert report.results[0].checked == 6
    assert report.results[0].contacts == ["moscow", "nowhere"]


def test_at_most_three_marketing_messages_in_any_seven_days(engine: Engine, tmp_path: Path) -> None:
    """Four marketing messages 2 days apart (6 days from first to last, two journeys)
    break the cap; four spread over 8 days do not (no 7-day window holds four); a
    transactional message never counts."""
    store = Store(engine)
    store.contact("crowded")
    store.contact("spread")
    for day, journey in ((0, "welcome"), (2, "welcome"), (4, "abandoned_cart"), (6, "win_back")):
        store.sent("crowded", journey, f"m{day}", T0 + timedelta(days=day))
    for hours in (0, 64, 128, 192):  # every 2 days 16 h: first to fourth is 8 days
        store.sent("spread", "welcome", f"m{hours}", T0 + timedelta(hours=hours))
    store.sent(
        "spread", "post_purchase", "thank_you", T0 + timedelta(days=1), category="transactional"
    )

    report = check(
        store,
        tmp_path,
        """
        invariants:
          - name: at most 3 marketing messages a week
            at_most: 3
            of: message.category == "marketing"
            within: 7d
        """,
    )

    assert broken(report) == [
        (
            "crowded",
            "4 matching messages within 1w (at most 3): welcome/m0 01-12 12:00, "
            "welcome/m2 01-14 12:00, abandoned_cart/m4 01-16 12:00, win_back/m6 01-18 12:00",
        )
    ]
    assert report.results[0].checked == 2


def test_a_reminder_after_the_conversion_breaks(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine)
    store.contact("late")
    store.contact("in_time")
    late = store.run("late", "abandoned_cart", T0, converted_at=T0 + timedelta(hours=20))
    store.message(late, "reminder", T0 + timedelta(hours=24))
    in_time = store.run("in_time", "abandoned_cart", T0, converted_at=T0 + timedelta(hours=30))
    store.message(in_time, "reminder", T0 + timedelta(hours=24))

    report = check(
        store,
        tmp_path,
        """
        invariants:
          - never: message.journey == "abandoned_cart" and message.after_conversion
        """,
    )

    assert [c for c, _ in broken(report)] == ["late"]
    assert report.results[0].name == (
        'never: message.journey == "abandoned_cart" and message.after_conversion'
    )


def test_exactly_one_thank_you_per_order(engine: Engine, tmp_path: Path) -> None:
    """Order o1 got two thank-yous (two runs of its event), o2 none, o3 one; a contact
    with no email is left out by `where`."""
    store = Store(engine)
    store.contact("shopper", email="a@example.com")
    store.contact("no_email")
    o1 = store.order("shopper", "o1", T0)
    o2 = store.order("shopper", "o2", T0 + timedelta(days=1))
    o3 = store.order("shopper", "o3", T0 + timedelta(days=2))
    for trigger in (o1, o1, o3):
        run = store.run("shopper", "post_purchase", T0, trigger)
        store.message(run, "thank_you", T0 + timedelta(minutes=1), category="transactional")
    store.run("shopper", "post_purchase", T0 + timedelta(days=1), o2)  # sent nothing
    store.order("no_email", "o4", T0)

    report = check(
        store,
        tmp_path,
        """
        invariants:
          - name: one thank-you per order
            exactly: 1
            of: message.step == "thank_you"
            per: order
            where: contact.email != null
        """,
    )

    assert broken(report) == [
        (
            "shopper",
            "order o1 at 2026-01-12 12:00 UTC: 2 matching messages (expected exactly 1): "
            "post_purchase/thank_you 01-12 12:01, post_purchase/thank_you 01-12 12:01",
        ),
        (
            "shopper",
            "order o2 at 2026-01-13 12:00 UTC: 0 matching messages (expected exactly 1)",
        ),
    ]
    assert report.results[0].checked == 3  # o4's contact has no email


def test_every_run_sends_or_says_why_not(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine)
    for cid in ("silent", "suppressed", "exited", "waiting", "sent"):
        store.contact(cid)
    store.run("silent", "big_spenders", T0)  # completed, nothing sent, nothing said
    run = store.run("suppressed", "nps_survey", T0)
    store.message(run, "survey", None, status="suppressed", error="contact opted out of sms")
    store.run("exited", "abandoned_cart", T0, status="exited", exit_reason="Order Completed")
    store.run("waiting", "win_back", T0, status="active")
    store.sent("sent", "welcome", "welcome", T0)

    report = check(
        store,
        tmp_path,
        """
        invariants:
          - name: every entry gets a message or a reason
            for: run
            where: run.status != "active"
            always: run.messages_sent > 0 or run.reason != null
        """,
    )

    assert broken(report) == [
        (
            "silent",
            "big_spenders run 1 entered 2026-01-12 12:00 UTC: completed, 0 sent, reason: none",
        )
    ]
    assert report.results[0].checked == 4
    facts = {f.id: f for f in read_facts(Session(engine), "UTC")}
    assert facts["suppressed"].runs[0].context["reason"] == "suppressed: contact opted out of sms"
    assert facts["exited"].runs[0].context["reason"] == "Order Completed"


def test_no_promo_code_within_a_day_of_an_order(engine: Engine, tmp_path: Path) -> None:
    store = Store(engine)
    store.contact("buyer")
    store.order("buyer", "o1", T0)
    store.session.add(
        Coupon(
            code="BACK-7KQ2MX9R",
            campaign="win_back",
            contact_id="buyer",
            kind="percent",
            value=20,
            idempotency_key="k1",
        )
    )
    code = {"text": "Take 20% off with code back-7kq2mx9r"}  # codes match in any case
    store.sent("buyer", "win_back", "last_offer", T0 + timedelta(hours=5), content=code)
    store.sent("buyer", "post_purchase", "thank_you", T0 + timedelta(hours=1), content=code)
    store.sent("buyer", "nps_survey", "apology", T0 + timedelta(hours=30), content=code)
    store.sent("buyer", "welcome", "welcome", T0 + timedelta(hours=2), content={"text": "hi"})

    report = check(
        store,
        tmp_path,
        """
        invariants:
          - name: no promo code right after a purchase
            never: >-
              message.has_coupon and message.hours_since_order != null
              and message.hours_since_order < 24 and message.journey != "post_purchase"
        """,
    )

    assert [w for _, w in broken(report)] == [
        'win_back email "last_offer" sent 2026-01-12 17:00 local (UTC)'
    ]


def test_a_journeys_own_invariant_is_about_its_messages_only(
    engine: Engine, tmp_path: Path
) -> None:
    journey = tmp_path / "win_back.yaml"
    journey.write_text(
        textwrap.dedent(
            """
            id: win_back
            name: Win back
            trigger: { event: Lapsed }
            steps:
              - send: { id: miss_you, channel: email, template: win_back }
            invariants:
              - name: no email at all
                never: message.channel == "email"
            """
        )
    )
    store = Store(engine)
    store.contact("c1")
    store.sent("c1", "win_back", "miss_you", T0)
    store.sent("c1", "welcome", "welcome", T0)
    store.commit()

    report = check_invariants(engine, [load_journey(journey)], [], "UTC")

    assert broken(report) == [("c1", 'win_back email "miss_you" sent 2026-01-12 12:00 local (UTC)')]
    assert report.results[0].declared_at == f"{journey}:8:5"
    assert report.results[0].journey == "win_back"


def test_the_report_is_deterministic_and_tells_the_offenders_story(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    store = Store(sqlite_engine)
    for cid in ("b", "a", "c"):
        store.contact(cid, "Europe/Moscow")
        store.sent(cid, "abandoned_cart", "reminder_push", T0.replace(hour=20), channel="sms")
    report = check(store, tmp_path, NIGHT_SMS)
    again = check_invariants(sqlite_engine, [], rules(tmp_path, NIGHT_SMS), "UTC")

    assert report.to_json() == again.to_json()
    assert [e["contact"] for e in report.to_json()["invariants"][0]["examples"]] == ["a", "b", "c"]
    text = render_violations(report, sqlite_engine, limit=2)
    assert text.startswith(
        "invariant broken: no marketing SMS at night (" + str(tmp_path / "rules/invariants.yaml")
    )
    assert "3 violation(s) by 3 contact(s), of 3 checked" in text.splitlines()[0]
    assert "contact a:" in text and "contact b:" in text and "contact c:" not in text
    assert "Contact a: 0 points" in text  # the story `journeys explain a` tells
    assert "time (UTC)" in text


def test_the_context_has_exactly_the_keys_validation_allows(
    sqlite_engine: Engine,
) -> None:
    store = Store(sqlite_engine)
    store.contact("c1")
    order = store.order("c1", "o1", T0)
    store.message(store.run("c1", "post_purchase", T0, order), "thank_you", T0)
    store.commit()
    with Session(sqlite_engine) as session:
        (facts,) = read_facts(session, "UTC")
    assert tuple(facts.messages[0].context) == INVARIANT_MESSAGE_KEYS
    assert tuple(facts.runs[0].context) == INVARIANT_RUN_KEYS
    assert tuple(facts.context) == INVARIANT_CONTACT_KEYS
    assert tuple(facts.orders[0].context) == INVARIANT_ORDER_KEYS
    assert facts.messages[0].context["hours_since_order"] == 0
    assert facts.messages[0].context["local_weekday"] == "mon"


# --- the language and its validation -----------------------------------------------


def test_journey_conditions_keep_their_roots_and_invariants_have_their_own() -> None:
    with pytest.raises(ConditionError, match="unknown name 'message'"):
        parse('message.channel == "sms"')
    with pytest.raises(ConditionError, match="unknown name 'event'"):
        parse('event.name == "x"', ("message", "run"))
    assert evaluate("message.local_hour >= 21", {"message": {"local_hour": 23}}, ("message",))


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_mistakes_in_invariants_yaml_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "invariants.yaml",
        """
        invariants:
          - never: mesage.channel == "sms"
          - never: message.chanel == "sms"
          - at_most: 3
            of: message.category == "marketing"
            within: 7 days
          - always: run.reason != null
            colour: red
          - at_least: 1
            of: message.step == "x"
            within: 7d
          - at_most: "3"
            of: true
        """,
    )
    found, problems = read_invariants(path)
    assert found == []
    assert [str(p) for p in problems] == [
        f"{path}:2:12: unknown name 'mesage': expected one of message, run, contact, order "
        "or true, false, null",
        f"{path}:3:12: unknown key 'chanel' in message.chanel (expected one of: journey, "
        "version, step, channel, category, template, status, locale, local_hour, local_time, "
        "local_weekday, at, content, after_conversion, hours_since_order, orders_before, "
        "has_coupon); did you mean message.channel?",
        f"{path}:6:13: invalid duration '7 days': expected a number with a unit s, m, h, d "
        "or w, such as 30m, 24h, 2d or 1d12h",
        f"{path}:8:5: unknown key 'colour' in invariant (expected one of: name, for, where, "
        "never, always, at_most, at_least, exactly, of, within, per)",
        f"{path}:9:5: 'within' goes with at_most (a cap in any window of that length); "
        "at_least counts per order or over the whole simulation",
        f"{path}:12:14: expected a whole number, got a string",
    ]
    with pytest.raises(JourneyError):
        load_project_invariants(tmp_path)


def test_a_condition_may_only_read_what_its_rule_sees(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "invariants.yaml",
        """
        invariants:
          - for: run
            never: message.channel == "sms"
          - exactly: 1
            of: message.step == "thank_you"
            where: order.revenue > 0
          - never: message.hours_since_order < 1
          - never: message.step == "x"
            within: 1d
          - {}
        """,
    )
    assert [str(p) for p in read_invariants(path)[1]] == [
        f"{path}:3:12: message.channel is always null here: a `never:` invariant for each "
        "run sees only run and contact (use for: message to check each message)",
        f"{path}:6:12: order.revenue is always null here: the `where:` of a count sees only "
        "contact (order is there with per: order)",
        f"{path}:8:5: within belongs to a count (at_most, at_least, exactly): `never:` is "
        "checked on each message on its own",
        f"{path}:10:5: an invariant needs exactly one of never, always, at_most, at_least "
        "or exactly",
    ]


def test_an_invariant_may_not_read_today(tmp_path: Path) -> None:
    """Invariants are checked once the simulation is over: no one "today" to read."""
    path = write(
        tmp_path,
        "invariants.yaml",
        """
        invariants:
          - never: days_since(contact.traits.signed_up_at) < 1 and message.channel == "sms"
        """,
    )
    assert [str(p) for p in read_invariants(path)[1]] == [
        f"{path}:2:12: days_since() cannot be used in an invariant: invariants are checked "
        "once the simulation is over, so there is no one 'today'; compare message.at or "
        'run.entered_at with a date instead (message.at >= "2027-01-15")',
    ]


def test_journeys_validate_reports_a_bad_invariant_in_a_journey_and_in_the_project(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "journeys"
    journey = write(
        folder,
        "welcome.yaml",
        """
        id: welcome
        name: Welcome
        trigger: { event: Signed Up }
        steps:
          - send: { id: welcome, channel: email, template: welcome }
        invariants:
          - at_most: 1
            of: message.step == "welcome"
            within: 7
        """,
    )
    project = write(folder, "invariants.yaml", "invariants:\n  - never: mesage.step == 'x'\n")
    templates = write(tmp_path / "templates" / "welcome", "email.subject", "Hi")
    write(templates.parent, "email.text", "Hello")
    result = CliRunner().invoke(
        main,
        ["validate", str(folder)],
        env={"JOURNEYS_TEMPLATES_DIR": str(tmp_path / "templates")},
    )
    assert result.exit_code == 1, result.output
    assert f"{journey}:9:13: invalid duration 7: add its unit" in result.stdout
    assert f"{project}:2:12: unknown name 'mesage'" in result.stdout


def test_the_shipped_playbook_rules_load_and_the_loader_skips_non_journeys(
    tmp_path: Path,
) -> None:
    names = [d.invariant.title for d in load_project_invariants(PLAYBOOK)]
    assert names == [
        "no marketing SMS at night",
        "at most 3 marketing messages a day",
        "no cart reminder after the order that converted",
        "at most one thank-you per order",
        "no promo code right after a purchase",
        "every entry gets a message or a reason",
    ]
    folder = tmp_path / "j"
    write(folder, "invariants.yaml", "invariants: []\n")
    write(folder / "scenarios", "welcome.yaml", "population: 10\n")
    keep = write(folder / "more", "welcome.yaml", "id: x\n")
    assert list(journey_files([folder])) == [keep]


DEMO = {
    "id": "demo",
    "name": "Demo",
    "trigger": {"event": "Signed Up"},
    "steps": [{"send": {"id": "hello", "channel": "email", "template": "welcome"}}],
}
# spec_hash(DEMO) before journeys could declare invariants: deployed versions keep it.
DEMO_HASH = "7cac0ec9241ac819020c186e5c89fbf7d6edccc6cc89a8fe7b4582e1d4a991d8"


def test_invariants_never_change_the_spec_a_journey_deploys() -> None:
    rule = {"never": 'message.channel == "sms"'}
    for invariants in ([], [rule]):
        journey = Journey.model_validate({**DEMO, "invariants": invariants})
        assert journey.invariants == [] or journey.invariants[0].kind == "never"
        assert spec_hash(journey) == DEMO_HASH
        assert "invariants" not in journey.model_dump(mode="json", by_alias=True)
