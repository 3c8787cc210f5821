"""A campaign's dispatch in the store, on SQLite and PostgreSQL: members released by SQL
in chunks that follow the contact id (a chunk stored twice adds no one, none is skipped),
waves by zone, the router's backlog, and the throttle's slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, update
from sqlmodel import col, func, select

from orchestrator.campaigns.dispatch import backlog, member_zones, release
from orchestrator.campaigns.gate import hold, take_slot
from orchestrator.campaigns.timing import Wave
from orchestrator.dsl.models import CAMPAIGN_DUE
from orchestrator.store.db import session_scope
from orchestrator.store.tables import (
    Campaign,
    CampaignDispatch,
    Contact,
    Event,
    SegmentMember,
)

NOW = datetime(2027, 1, 15, 10, tzinfo=UTC)
LONG = "x" * 255  # the longest contact id the column takes


def fill(engine: Engine) -> None:
    """Eight members in three situations, one former member, one non-member."""
    people = {
        "a1": "Europe/Lisbon",
        "a2": "Europe/Lisbon",
        "b1": "Pacific/Auckland",
        "b2": "Pacific/Auckland",
        "c1": None,
        "c2": "",
        "c3": "Not/AZone",
        LONG: "Europe/Lisbon",
        "gone": "Europe/Lisbon",
        "never": "Europe/Lisbon",
    }
    with session_scope(engine) as session:
        for contact_id, zone in people.items():
            session.add(Contact(id=contact_id, timezone=zone, traits={}))
        session.flush()
        for contact_id in people:
            if contact_id != "never":
                exited = NOW - timedelta(days=1) if contact_id == "gone" else None
                session.add(SegmentMember(segment="news", contact_id=contact_id, exited_at=exited))
        session.add(
            CampaignDispatch(
                id="sale@2027-01-15T10:00", journey_id="sale", version=1, segment="news",
                due="2027-01-15 10:00", zone="UTC", throttle={},
            )
        )  # fmt: skip


def released(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Event.contact_id).where(Event.name == CAMPAIGN_DUE).order_by(Event.contact_id)
        )
        return list(rows)


def test_chunks_follow_the_contact_id_and_a_repeated_chunk_adds_no_one(engine: Engine) -> None:
    fill(engine)
    everyone = Wave(NOW, everyone=True)
    with session_scope(engine) as session:
        dispatch = session.get(CampaignDispatch, "sale@2027-01-15T10:00")
        assert dispatch is not None
        first = release(session, dispatch, everyone, None, 3)
        assert (first.count, first.cursor, first.done) == (3, "b1", False)
        again = release(session, dispatch, everyone, None, 3)  # a retry after the commit
        assert again.count == 0 and again.cursor == first.cursor
        cursor = first.cursor
        while True:
            chunk = release(session, dispatch, everyone, cursor, 3)
            if chunk.done:
                break
            cursor = chunk.cursor
        assert dispatch.recipients == 8
    assert released(engine) == sorted(["a1", "a2", "b1", "b2", "c1", "c2", "c3", LONG])
    with session_scope(engine) as session:
        keys = session.exec(select(Event.message_id).where(Event.contact_id == LONG)).all()
        assert [len(k) for k in keys] == [255]  # cut, not a failed statement for everyone
        event = session.exec(select(Event).where(Event.contact_id == "a1")).one()
        assert event.properties == {
            "journey": "sale", "segment": "news", "dispatch": "sale@2027-01-15T10:00",
            "due": "2027-01-15 10:00",
        }  # fmt: skip
        assert event.context == {"campaign": "sale@2027-01-15T10:00"}
        assert backlog(session, "sale@2027-01-15T10:00") == 8
        session.execute(
            update(Event).where(col(Event.contact_id).in_(["a1", "a2"])).values(routed_at=NOW)
        )
        assert backlog(session, "sale@2027-01-15T10:00") == 6


def test_a_wave_releases_its_zones_and_the_unzoned_with_the_default(engine: Engine) -> None:
    fill(engine)
    with session_scope(engine) as session:
        zones = member_zones(session, "news")
        assert sorted(z or "-" for z in zones) == [
            "-", "-", "Europe/Lisbon", "Not/AZone", "Pacific/Auckland",
        ]  # fmt: skip
        dispatch = session.get(CampaignDispatch, "sale@2027-01-15T10:00")
        assert dispatch is not None
        auckland = release(session, dispatch, Wave(NOW, ["Pacific/Auckland"]), None, 100)
        assert (auckland.count, auckland.done) == (2, True)
        planned = ["Europe/Lisbon", "Pacific/Auckland"]  # the zones with a wave of their own
        default = Wave(NOW, unzoned=True, planned=planned)
        assert release(session, dispatch, default, None, 100).count == 3
    assert released(engine) == ["b1", "b2", "c1", "c2", "c3"]


def test_the_throttle_gives_each_send_the_next_free_slot(engine: Engine) -> None:
    fill(engine)
    with session_scope(engine) as session:
        slots = [take_slot(session, "sale@2027-01-15T10:00", "email", NOW, 2.0) for _ in range(3)]
        assert slots == [NOW, NOW + timedelta(seconds=0.5), NOW + timedelta(seconds=1)]
        later = NOW + timedelta(minutes=5)  # idle since: the pace starts again from now
        assert take_slot(session, "sale@2027-01-15T10:00", "email", later, 2.0) == later
        assert take_slot(session, "sale@2027-01-15T10:00", "sms", NOW, 2.0) == NOW  # its own


def test_the_hold_on_a_send_follows_the_operator(engine: Engine) -> None:
    fill(engine)
    with session_scope(engine) as session:
        dispatch = session.get(CampaignDispatch, "sale@2027-01-15T10:00")
        assert dispatch is not None
        dispatch.throttle = {"email": 1.0}
        assert hold(session, dispatch, "email", NOW, 0, None) is None  # the first slot: now
        later = hold(session, dispatch, "email", NOW, 0, None)
        assert later is not None and later.until == NOW + timedelta(seconds=1)
        assert hold(session, dispatch, "email", NOW + timedelta(seconds=1), 0, later.until) is None
        session.add(Campaign(journey_id="sale", status="paused"))
        session.flush()
        paused = [hold(session, dispatch, "email", NOW, n, None) for n in (0, 1, 5)]
        assert [p.until - NOW for p in paused if p and p.until] == [
            timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=15),
        ]  # fmt: skip
        session.get(Campaign, "sale").status = "cancelled"  # type: ignore[union-attr]
        session.flush()
        cancelled = hold(session, dispatch, "email", NOW, 0, None)
        assert cancelled is not None and cancelled.skip == "campaign sale was cancelled"
        assert session.exec(select(func.count()).select_from(Campaign)).one() == 1


def test_a_queued_send_is_held_at_delivery_while_paused_and_skipped_once_cancelled(
    engine: Engine,
) -> None:
    from orchestrator.campaigns.gate import held_at_delivery
    from orchestrator.store.tables import ORIGIN_INTERNAL, JourneyRun

    fill(engine)
    with session_scope(engine) as session:
        member = Event(
            message_id="campaign:sale@2027-01-15T10:00:a1", origin=ORIGIN_INTERNAL,
            type="track", name=CAMPAIGN_DUE, contact_id="a1", properties={},
            context={"campaign": "sale@2027-01-15T10:00"}, timestamp=NOW, received_at=NOW,
        )  # fmt: skip
        session.add(member)
        session.flush()
        session.add(
            JourneyRun(
                workflow_id="journey:sale:a1", entry_seq=1, journey_id="sale", version=1,
                contact_id="a1", trigger_event_id=member.id,
            )
        )  # fmt: skip
        session.flush()
        assert held_at_delivery(session, "journey:sale:a1", 1) is None
        session.add(Campaign(journey_id="sale", status="paused"))
        session.flush()
        paused = held_at_delivery(session, "journey:sale:a1", 1)
        assert paused is not None and paused.skip is None and paused.detail.endswith("paused")
        session.get(Campaign, "sale").status = "cancelled"  # type: ignore[union-attr]
        session.flush()
        cancelled = held_at_delivery(session, "journey:sale:a1", 1)
        assert cancelled is not None and cancelled.skip == "campaign sale was cancelled"
        assert held_at_delivery(session, "journey:other:a1", 1) is None
