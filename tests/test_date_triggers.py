"""Date triggers: `trigger: {date: contact.traits.birthday, every: year, at: "10:00"}`.

The occurrence arithmetic is checked against hand-computed moments; the runs end to end
on the time-skipping server: each contact's date at 10:00 in their own zone, contacts
known before the deploy, traits changed or removed after the plan, erasure.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import Bench, tiny_templates, write_journey
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from orchestrator.dsl.models import DATE_REACHED, Journey
from orchestrator.services.occurrences import next_occurrence
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Event

LISBON, AUCKLAND = ZoneInfo("Europe/Lisbon"), ZoneInfo("Pacific/Auckland")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- when ------------------------------------------------------------------------


def test_a_birthday_at_ten_in_each_contacts_own_zone() -> None:
    born = date(1990, 3, 14)
    after = utc(2027, 1, 10)
    # Lisbon is UTC+0 in March (summer time starts 28 March 2027): 10:00 UTC.
    assert next_occurrence(born, "year", "10:00", 0, LISBON, after).at == utc(2027, 3, 14, 10)  # type: ignore[union-attr]
    # Auckland is UTC+13 until 4 April 2027: 10:00 on the 14th is 21:00 UTC on the 13th.
    assert next_occurrence(born, "year", "10:00", 0, AUCKLAND, after).at == utc(2027, 3, 13, 21)  # type: ignore[union-attr]
    # Just after this year's: next year's.
    assert next_occurrence(born, "year", "10:00", 0, LISBON, utc(2027, 3, 14, 10)).at == utc(  # type: ignore[union-attr]
        2028, 3, 14, 10
    )


def test_leap_day_offsets_and_one_time_dates() -> None:
    leap = date(2000, 2, 29)
    found = next_occurrence(leap, "year", "09:00", 0, LISBON, utc(2027, 1, 1))
    assert found is not None and (found.day, found.at) == (date(2027, 2, 28), utc(2027, 2, 28, 9))
    found = next_occurrence(leap, "year", "09:00", 0, LISBON, utc(2028, 1, 1))
    assert found is not None and found.day == date(2028, 2, 29)
    # Three days before a renewal on 2 March 2027: 27 February (not a leap year).
    found = next_occurrence(date(2025, 3, 2), "year", "10:00", -3, LISBON, utc(2027, 1, 1))
    assert found is not None and found.day == date(2027, 2, 27)
    # A trial ending on 2027-05-01, once, a day before: 30 April; once passed, never.
    trial = date(2027, 5, 1)
    found = next_occurrence(trial, "once", "08:30", -1, LISBON, utc(2027, 1, 1))
    assert found is not None and found.at == utc(2027, 4, 30, 7, 30)  # Lisbon is UTC+1 then
    assert next_occurrence(trial, "once", "08:30", -1, LISBON, utc(2027, 4, 30, 8)) is None


def test_the_trigger_in_yaml() -> None:
    spec = {
        "id": "birthday",
        "name": "Birthday",
        "trigger": {"date": "contact.traits.birthday", "at": "10:00", "offset": "-1d"},
        "steps": [{"send": {"channel": "email", "template": "hello"}}],
    }
    journey = Journey.model_validate(spec)
    assert (journey.trigger.name, journey.trigger.trait, journey.trigger.offset) == (
        DATE_REACHED,
        "birthday",
        -1,
    )
    assert journey.entry.re_entry.mode == "always"  # each year is an entry
    event = Journey.model_validate({**spec, "trigger": {"event": "Signed Up"}})
    assert "date" not in event.model_dump(mode="json")["trigger"]  # old specs keep their hash


# --- end to end ------------------------------------------------------------------

BIRTHDAY = """
id: birthday
name: Birthday
trigger: {{ date: contact.traits.birthday, every: year, at: "10:00" }}
steps:
  - send: {{ id: wish, channel: email, template: hello }}
"""


def dates_reached(bench: Bench) -> dict[str, datetime]:
    with session_scope(bench.engine) as session:
        rows = session.exec(select(Event).where(Event.name == DATE_REACHED)).all()
        return {e.contact_id: e.timestamp for e in rows}


async def advance_to(env: WorkflowEnvironment, bench: Bench, moment: datetime) -> None:
    """Let the server's clock pass `moment`, then route what the date watches stored."""
    await bench.route_all()
    now = await env.get_current_time()
    if moment > now:
        await env.sleep(moment - now)
    await bench.route_all()


async def test_birthdays_come_at_ten_in_auckland_and_lisbon(
    ts_env: WorkflowEnvironment, sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    templates = tiny_templates(tmp_path / "templates", ("hello",))
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    now = await ts_env.get_current_time()
    day = (now + timedelta(days=3)).date()
    birthday = day.replace(year=1990).isoformat()
    # Known before the journey is deployed: the deploy plans them.
    await bench.identify("early", email="e@example.com", birthday=birthday,
                         context={"timezone": "Europe/Lisbon"})  # fmt: skip
    write_journey(bench.journeys_dir, "birthday", BIRTHDAY.format())
    bench.deploy()
    async with bench.worker():
        await bench.route_all()  # the planning events start the early contact's watch
        for user, zone in (("tom", "Pacific/Auckland"), ("ann", "Europe/Lisbon")):
            await bench.identify(user, email=f"{user}@example.com", birthday=birthday,
                                 context={"timezone": zone})  # fmt: skip
        await bench.identify("moved", email="m@example.com", birthday=birthday,
                             context={"timezone": "Europe/Lisbon"})  # fmt: skip
        await bench.identify("gone", email="g@example.com", birthday=birthday)
        await bench.identify("nodate", email="n@example.com", birthday="someday")
        # After the plan: one birthday moves a week on, one is removed.
        moved = (day + timedelta(days=7)).replace(year=1990).isoformat()
        await bench.identify("moved", birthday=moved)
        await bench.identify("gone", birthday=None)
        auckland = datetime(day.year, day.month, day.day, 10, tzinfo=AUCKLAND)
        lisbon = datetime(day.year, day.month, day.day, 10, tzinfo=LISBON)
        await advance_to(ts_env, bench, auckland + timedelta(minutes=1))
        assert dates_reached(bench) == {"tom": auckland.astimezone(UTC)}
        await advance_to(ts_env, bench, lisbon + timedelta(minutes=1))
        assert dates_reached(bench) == {
            "tom": auckland.astimezone(UTC),
            "ann": lisbon.astimezone(UTC),
            "early": lisbon.astimezone(UTC),
        }
        for user in ("tom", "ann", "early"):
            assert await bench.result("birthday", user) == "completed"
        await advance_to(ts_env, bench, lisbon + timedelta(days=7, minutes=1))
        assert dates_reached(bench)["moved"] == (lisbon + timedelta(days=7)).astimezone(UTC)
        assert await bench.result("birthday", "moved") == "completed"
    sent = sorted(m.contact_id for m in bench.messages() if m.status == "sent")
    assert sent == ["ann", "early", "moved", "tom"]  # not gone, not nodate
    for workflow in ("date:birthday:tom", "date:birthday:ann"):  # next year's is planned
        await bench.client.get_workflow_handle(workflow).terminate(reason="test over")


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (
            "{ date: traits.birthday }",
            "birthday.yaml:3:18: date must name a contact trait holding a date, like "
            "contact.traits.birthday; got 'traits.birthday'",
        ),
        (
            '{ date: contact.traits.birthday, at: "10am" }',
            'birthday.yaml:3:47: at is a local time HH:MM on a 24-hour clock, like "10:00"; '
            "got '10am'",
        ),
        (
            # Unquoted, YAML reads 10:00 as the number 600 (and 09:00 as text).
            "{ date: contact.traits.birthday, at: 10:00 }",
            "birthday.yaml:3:47: expected a string, got a number: YAML reads 10:00 without "
            'quotes as a number; write "10:00"',
        ),
        (
            '{ date: contact.traits.birthday, offset: "-3 days" }',
            "birthday.yaml:3:51: offset is whole days before (-3d) or after (3d) the date, or "
            "0d; got '-3 days'",
        ),
        (
            "{ date: contact.traits.birthday, every: month }",
            "birthday.yaml:3:50: invalid value 'month' for every (expected one of: year, once)",
        ),
        (
            '{ event: Signed Up, at: "10:00" }',
            "birthday.yaml:3:1: 'at' belongs to a date trigger: `date: contact.traits.birthday, "
            'every: year, at: "10:00"`',
        ),
        (
            "{ date: contact.traits.birthday }\nentry: { re_entry: never }",
            "birthday.yaml:1:1: a yearly date trigger enters each contact once a year: re_entry "
            "never would send only the first year; leave re_entry out (always) or use every: once",
        ),
    ],
)
def test_validate_says_what_is_wrong(trigger: str, message: str, tmp_path: Path) -> None:
    from orchestrator.dsl.loader import load_journeys

    write_journey(
        tmp_path,
        "birthday",
        f"id: birthday\nname: B\ntrigger: {trigger}\nsteps:\n"
        "  - send: { channel: email, template: hello }\n",
    )
    _, problems = load_journeys([tmp_path])
    assert [str(p).replace(f"{tmp_path}/", "") for p in problems] == [message]


async def test_erasure_ends_the_date_watch(
    ts_env: WorkflowEnvironment, sqlite_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    from orchestrator.services.privacy import erase_contact

    templates = tiny_templates(tmp_path / "templates", ("hello",))
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    write_journey(bench.journeys_dir, "birthday", BIRTHDAY.format())
    bench.deploy()
    async with bench.worker():
        await bench.identify("eve", email="eve@example.com", birthday="1990-06-01")
        handle = bench.client.get_workflow_handle("date:birthday:eve")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        # An identify that touches neither the date nor the zone starts no watch.
        await bench.identify("zed", email="zed@example.com")
        with pytest.raises(RPCError):
            await bench.client.get_workflow_handle("date:birthday:zed").describe()
        result = await erase_contact(bench.engine, bench.client, "eve")
        assert result.found
        assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


def test_a_deploy_plans_the_contacts_whose_trait_holds_a_date(engine) -> None:  # type: ignore[no-untyped-def]
    """Both databases: one planning event per contact with a date, none twice."""
    from orchestrator.store.date_plans import DATE_PLAN_EVENT, plan_dates
    from orchestrator.store.tables import Contact

    with session_scope(engine) as session:
        session.add(Contact(id="a", traits={"birthday": "1990-03-14"}))
        session.add(Contact(id="b", traits={"birthday": "1985-12-01T08:00:00Z"}))
        session.add(Contact(id="c", traits={"birthday": "someday"}))
        session.add(Contact(id="d", traits={"birthday": 19900314}))
        session.add(Contact(id="e", traits={}))
    with session_scope(engine) as session:
        assert plan_dates(session, "birthday", 1, "birthday") == 2
    with session_scope(engine) as session:
        assert plan_dates(session, "birthday", 1, "birthday") == 0  # a repeated deploy
        rows = session.exec(select(Event).where(Event.type == DATE_PLAN_EVENT)).all()
        assert sorted((e.contact_id, e.name, e.properties) for e in rows) == [
            ("a", "birthday", {}),
            ("b", "birthday", {}),
        ]
    from orchestrator.analytics.story import contact_story

    with session_scope(engine) as session:  # `journeys explain` tells it in words
        told = [m.text for m in contact_story(session, "a").moments if m.kind == "event"]
    assert told == ["date of birthday planned (the journey was deployed)"]
