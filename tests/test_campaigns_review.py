"""Campaigns, from a review as a marketer, an operator and an attacker: each test shows
one defect found (and fixed, unless marked xfail)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, update
from sqlmodel import select
from temporalio.converter import default as default_converter

from orchestrator.activities.campaigns import _wave
from orchestrator.campaigns.dispatch import member_zones, release
from orchestrator.campaigns.gate import dispatch_of, held_at_delivery
from orchestrator.campaigns.timing import add_late, plan_record, waves
from orchestrator.dsl.models import CAMPAIGN_DUE
from orchestrator.store.db import session_scope
from orchestrator.store.tables import (
    ORIGIN_CLIENT,
    Campaign,
    CampaignDispatch,
    Contact,
    Event,
    JourneyRun,
    SegmentMember,
)
from orchestrator.workflows import types as t

DUE = datetime(2027, 1, 15, 10, 0)  # local
DISPATCH = "sale@2027-01-15T10:00"


def dispatch_row(session, zone: str | None = None) -> CampaignDispatch:  # type: ignore[no-untyped-def]
    row = CampaignDispatch(
        id=DISPATCH, journey_id="sale", version=1, segment="news", due="2027-01-15 10:00",
        zone=zone, throttle={},
    )  # fmt: skip
    session.add(row)
    return row


def released(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Event.contact_id).where(Event.name == CAMPAIGN_DUE).order_by(Event.contact_id)
        )
        return list(rows)


# --- contacts' zones: any string a storefront sends -----------------------------------


def test_zone_names_that_name_none_do_not_grow_the_plan() -> None:
    """`context.timezone` is stored as sent (64 characters): one client with the public
    write key, or a storefront sending free text, makes as many distinct names as it
    likes. Each one was listed in the default wave, so the plan (an activity result, then
    every release's input and the continue-as-new input) grew without bound: 40,000 made
    it 2.4 MB, over Temporal's 2 MB payload limit, and the whole campaign failed for
    everyone. The names are not listed now; the default wave takes them by SQL."""
    bogus = [f"Mars/Olympus_{n:06d}_{'x' * 40}" for n in range(40_000)]
    planned = waves(DUE, [*bogus, "Europe/Lisbon", "Pacific/Auckland", None], "UTC")
    plan = t.CampaignPlan(DISPATCH, [_wave(w) for w in planned])
    size = len(default_converter().payload_converter.to_payloads([plan])[0].data)
    assert size < 2_000, size
    assert [(w.zones, w.unzoned) for w in planned] == [
        (["Pacific/Auckland"], False),
        (["Europe/Lisbon"], True),  # Lisbon is UTC+0 in January, as is the default (UTC)
    ]


def test_members_whose_zone_has_no_wave_go_with_the_default_zone(engine: Engine) -> None:
    """No zone, one that names none, and one no member had when the dispatch opened (a
    contact who moved, a member who joined since): the default wave takes them all. A
    member who moved to a zone with no wave was released by none, and so never got the
    campaign."""
    people = {
        "lis": "Europe/Lisbon",
        "akl": "Pacific/Auckland",
        "none": None,
        "empty": "",
        "bogus": "Mars/Olympus",
        "mover": "America/New_York",  # moves to Tokyo, which no member had, before its wave
    }
    with session_scope(engine) as session:
        for contact_id, zone in people.items():
            session.add(Contact(id=contact_id, timezone=zone, traits={}))
        session.flush()
        for contact_id in people:
            session.add(SegmentMember(segment="news", contact_id=contact_id))
        dispatch_row(session)
    with session_scope(engine) as session:
        planned = waves(DUE, member_zones(session, "news"), "Europe/Moscow")
        session.execute(update(Contact).where(Contact.id == "mover").values(timezone="Asia/Tokyo"))
    assert [w.zones for w in planned] == [
        ["Pacific/Auckland"], [], ["Europe/Lisbon"], ["America/New_York"],
    ]  # fmt: skip
    with session_scope(engine) as session:
        dispatch = session.get(CampaignDispatch, DISPATCH)
        assert dispatch is not None
        moscow = planned[1]
        assert moscow.unzoned and moscow.at == datetime(2027, 1, 15, 7, tzinfo=UTC)
        assert release(session, dispatch, moscow, None, 100).count == 4
    assert released(engine) == ["bogus", "empty", "mover", "none"]


def test_a_member_who_moves_to_a_zone_already_sent_to_still_gets_the_campaign(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        for contact_id, zone in (("akl", "Pacific/Auckland"), ("lis", "Europe/Lisbon")):
            session.add(Contact(id=contact_id, timezone=zone, traits={}))
            session.flush()
            session.add(SegmentMember(segment="news", contact_id=contact_id))
        dispatch_row(session)
    with session_scope(engine) as session:
        auckland, lisbon = waves(DUE, member_zones(session, "news"), "Europe/Lisbon")
        dispatch = session.get(CampaignDispatch, DISPATCH)
        assert dispatch is not None
        assert release(session, dispatch, auckland, None, 100).count == 1
    with session_scope(engine) as session:  # Lisbon's member moves to Auckland meanwhile
        session.execute(
            update(Contact).where(Contact.id == "lis").values(timezone="Pacific/Auckland")
        )
    with session_scope(engine) as session:
        dispatch = session.get(CampaignDispatch, DISPATCH)
        assert dispatch is not None
        add_late(lisbon, plan_record([auckland, lisbon]), 1)  # as the release activity does
        assert release(session, dispatch, lisbon, None, 100).count == 1
        again = waves(DUE, ["Pacific/Auckland", "Europe/Lisbon"], "Europe/Lisbon")[1]
        add_late(again, plan_record([auckland, lisbon]), 1)
        assert release(session, dispatch, again, None, 100).count == 0  # nobody twice
    assert released(engine) == ["akl", "lis"]


# --- forged campaign events -----------------------------------------------------------


def test_a_clients_event_naming_a_dispatch_in_its_context_is_no_campaigns(
    engine: Engine,
) -> None:
    """Clients set `context` as they like (it is stored as sent). The send gate took any
    trigger whose context named a dispatch for that campaign's member: a client could
    put the runs of other journeys (an order confirmation) under a campaign's pause,
    cancel and throttle, and spend the campaign's throttle slots with them, holding its
    real sends back. Only our own `Campaign Due` events are campaign members."""
    with session_scope(engine) as session:
        session.add(Contact(id="eve", traits={}))
        dispatch_row(session)
        session.add(Campaign(journey_id="sale", status="cancelled"))
        forged = Event(
            message_id="m-1", origin=ORIGIN_CLIENT, type="track", name="Order Completed",
            contact_id="eve", properties={}, context={"campaign": DISPATCH},
            timestamp=datetime.now(UTC), received_at=datetime.now(UTC),
        )  # fmt: skip
        session.add(forged)
        session.flush()
        session.add(
            JourneyRun(
                workflow_id="journey:thanks:eve", entry_seq=1, journey_id="thanks", version=1,
                contact_id="eve", trigger_event_id=forged.id,
                entered_at=datetime.now(UTC), updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        session.flush()
        assert dispatch_of(session, forged.id) is None
        assert held_at_delivery(session, "journey:thanks:eve", 1) is None


# --- schedules marketers write ----------------------------------------------------------


def test_a_cron_line_that_fires_every_minute_of_an_hour_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`* 10 * * 1` (the minute left as `*`) passed validate and fired 60 times on
    Monday between 10:00 and 10:59: 60 dispatches, each member got the campaign 60 times."""
    from harness import write_journey

    from orchestrator.dsl.loader import load_journeys

    for schedule in ("* 10 * * 1", "*/15 10 * * 1", "0,30 10 * * 1"):
        write_journey(
            tmp_path,
            "news",
            f'id: news\nname: News\ntrigger: {{ schedule: "{schedule}", segment: newsletter '
            "}\nsteps:\n  - send: { channel: email, template: hello }\n",
        )
        _, problems = load_journeys([tmp_path], {"newsletter"})
        assert [str(p).replace(f"{tmp_path}/", "") for p in problems] == [
            f"news.yaml:3:22: a campaign's cron line names one minute, like the 0 of "
            f'"0 10 * * 1" (Mondays at 10:00): {schedule.split()[0]!r} sends the campaign '
            "several times an hour, each time to every member"
        ], schedule


# --- the throttle ---------------------------------------------------------------------


def test_a_send_deferred_after_its_throttle_slot_takes_a_new_one(
    sqlite_engine: Engine, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A send the throttle deferred to its slot kept that slot for good: deferred again
    at the slot (quiet hours, a frequency cap, a pause), it came back hours later with a
    slot long past and went at once, with every other send so deferred. A campaign at
    10:00 Moscow for everyone sent its American members' mail in one burst at 08:00 their
    time, whatever the throttle."""
    from harness import tiny_templates
    from temporalio.testing import ActivityEnvironment

    from orchestrator.activities.sending import SendActivities
    from orchestrator.campaigns.gate import take_slot
    from orchestrator.rendering import Renderer
    from orchestrator.services.links import MessageLinks
    from orchestrator.settings import Settings
    from orchestrator.store.tables import ORIGIN_INTERNAL, Message

    settings = Settings(
        templates_dir=tiny_templates(tmp_path / "templates", ("hello",)),
        secret_key="review-secret", marketing_cap="none", message_cap="none",
    )  # fmt: skip
    sends = SendActivities(
        sqlite_engine,
        Renderer.from_settings(settings),
        {},
        MessageLinks("http://127.0.0.1:8000", "secret"),
        settings,
    )
    ten = datetime(2027, 1, 15, 20, 59, 50, tzinfo=UTC)  # ten seconds before quiet hours
    with session_scope(sqlite_engine) as session:
        session.add(Contact(id="ann", email="ann@example.com", timezone="UTC", traits={}))
        dispatch = dispatch_row(session)
        dispatch.throttle = {"email": 1.0}
        member = Event(
            message_id=f"campaign:{DISPATCH}:ann", origin=ORIGIN_INTERNAL, type="track",
            name=CAMPAIGN_DUE, contact_id="ann", properties={"journey": "sale"},
            context={"campaign": DISPATCH}, timestamp=ten, received_at=ten,
        )  # fmt: skip
        session.add(member)
        session.flush()
        member_id = member.id
        for _ in range(20):  # the chunk's other members took the next 20 seconds
            take_slot(session, DISPATCH, "email", ten, 1.0)

    def prepare(now: datetime) -> t.SendResult:
        request = t.SendRequest(
            workflow_id="journey:sale:ann", entry_seq=1, step_id="sale", journey_id="sale",
            contact_id="ann", channel="email", template="hello", category="marketing",
            trigger_event_id=member_id, now=now.isoformat(),
            policy={"quiet_hours": {"email": "21:00-08:00"}},
        )  # fmt: skip
        return ActivityEnvironment().run(sends.prepare_message, request)

    first = prepare(ten)
    assert (first.status, first.retry_at) == ("deferred", "2027-01-15T21:00:10+00:00")
    night = prepare(datetime(2027, 1, 15, 21, 0, 10, tzinfo=UTC))  # quiet hours now
    assert (night.status, night.retry_at) == ("deferred", "2027-01-16T08:00:00+00:00")
    eight = datetime(2027, 1, 16, 8, tzinfo=UTC)
    with session_scope(sqlite_engine) as session:
        for _ in range(5):  # the other sends deferred to 08:00 came back first
            take_slot(session, DISPATCH, "email", eight, 1.0)
    morning = prepare(eight)
    assert (morning.status, morning.retry_at) == ("deferred", "2027-01-16T08:00:05+00:00")
    with session_scope(sqlite_engine) as session:
        row = session.exec(select(Message)).one()
        assert "throttle 1/s on email" in (row.error or "")


# --- Temporal schedules -----------------------------------------------------------------


async def test_a_campaign_once_at_a_time_the_clocks_skip_or_repeat_fires_once(
    dev_env,
) -> None:  # type: ignore[no-untyped-def]
    """`schedule: "2030-03-10 02:30", timezone: America/New_York`: 02:30 does not exist
    that night (spring forward). Its calendar entry in that zone never came: Temporal
    never fired it and the campaign was silently never sent (the waves meant 03:30 EDT).
    Once at a date is now one moment in UTC: 03:30 EDT, and one firing, not two, on the
    night 01:30 comes twice."""
    import uuid

    from temporalio.client import Schedule, ScheduleActionStartWorkflow, ScheduleState

    from orchestrator.campaigns.schedules import schedule_spec
    from orchestrator.dsl.models import Trigger

    expected = {
        "2030-03-10 02:30": [datetime(2030, 3, 10, 7, 30, tzinfo=UTC)],  # 03:30 EDT
        "2030-11-03 01:30": [datetime(2030, 11, 3, 5, 30, tzinfo=UTC)],  # 01:30 EDT, once
    }
    for when, times in expected.items():
        trigger = Trigger.model_validate(
            {"schedule": when, "segment": "news", "timezone": "America/New_York"}
        )
        name = f"review-{uuid.uuid4().hex[:8]}"
        handle = await dev_env.client.create_schedule(
            name,
            Schedule(
                action=ScheduleActionStartWorkflow("Nothing", id=name, task_queue=name),
                spec=schedule_spec(trigger, "UTC"),
                state=ScheduleState(paused=True),
            ),
        )
        try:
            assert (await handle.describe()).info.next_action_times == times, when
        finally:
            await handle.delete()


def test_a_throttle_on_a_channel_a_preferred_send_may_use_is_no_mistake(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`channel: preferred` sends on the contact's email, push or SMS: validate warned
    that `throttle: {email: 20/s}` limits nothing ("sends use preferred")."""
    from harness import write_journey

    from orchestrator.deployment.campaign_checks import check_campaigns
    from orchestrator.dsl.loader import load_journeys

    write_journey(
        tmp_path,
        "news",
        'id: news\nname: News\ntrigger: { schedule: "0 10 * * 1", segment: newsletter, '
        "throttle: { email: 20/s } }\nsteps:\n  - send: { channel: preferred, template: hello }\n",
    )
    journeys, problems = load_journeys([tmp_path], {"newsletter"})
    assert problems == []
    assert check_campaigns(journeys) == []
