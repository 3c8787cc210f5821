"""Segments: the language, its SQL on SQLite and PostgreSQL, membership stays and events,
deploys, and the `journeys segments` commands."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import col, select

from orchestrator.cli import main
from orchestrator.deployment.deploy import InvalidJourneys, deploy
from orchestrator.segments.loader import load_segments, load_segments_or_raise
from orchestrator.segments.membership import (
    Change,
    UnknownSegment,
    deploy_segments,
    refresh,
    refresh_for_events,
    store_segments,
)
from orchestrator.segments.models import Segment
from orchestrator.segments.query import members_query
from orchestrator.store.db import make_engine, migrate, session_scope
from orchestrator.store.tables import (
    Contact,
    Event,
    JourneyVersion,
    Message,
    Order,
    SegmentDefinition,
    SegmentMember,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# --- helpers: rows as the ingest and the send pipeline write them -------------


def contacts(engine: Engine, **traits: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        for contact_id, values in traits.items():
            session.add(Contact(id=contact_id, email=f"{contact_id}@example.com", traits=values))


def order(
    engine: Engine,
    contact_id: str,
    revenue: float | None,
    ago: timedelta,
    currency: str | None = "RUB",
    total: float | None = None,
    refunded: datetime | None = None,
) -> None:
    with session_scope(engine) as session:
        count = len(session.exec(select(Order.id)).all())
        session.add(
            Order(
                order_id=f"o{count + 1}",
                contact_id=contact_id,
                revenue=revenue,
                total=total,
                currency=currency,
                placed_at=NOW - ago,
                refunded_at=refunded,
            )
        )


def track(
    engine: Engine, contact_id: str, name: str, ago: timedelta = DAY, origin: str = "client"
) -> Event:
    with session_scope(engine) as session:
        count = len(session.exec(select(Event.id)).all())
        event = Event(
            message_id=f"m{count + 1}",
            origin=origin,
            type="track",
            name=name,
            contact_id=contact_id,
            timestamp=NOW - ago,
            routed_at=NOW,
        )
        session.add(event)
    return event


def message(
    engine: Engine, contact_id: str, channel: str, status: str, ago: timedelta | None
) -> None:
    with session_scope(engine) as session:
        count = len(session.exec(select(Message.id)).all())
        session.add(
            Message(
                id=f"msg-{count + 1}",
                idempotency_key=f"k{count + 1}",
                workflow_id="w",
                entry_seq=1,
                step_id="s",
                journey_id="j",
                contact_id=contact_id,
                channel=channel,
                adapter="console",
                template="t",
                status=status,
                sent_at=NOW - ago if ago is not None else None,
            )
        )


def members(
    engine: Engine, condition: dict[str, Any], now: datetime = NOW, ids: list[str] | None = None
) -> set[str]:
    segment = Segment.model_validate(condition)
    with session_scope(engine) as session:
        return set(session.exec(members_query(segment, now, ids)))


def define(engine: Engine, tmp_path: Path, text: str) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text(textwrap.dedent(text))
    store_segments(engine, load_segments_or_raise(path))


def segment_events(engine: Engine) -> list[tuple[str, str, dict[str, Any], str]]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Event.name, Event.contact_id, Event.properties, Event.message_id)
            .where(col(Event.name).in_(["Segment Entered", "Segment Exited"]))
            .order_by(col(Event.id))
        ).all()
        return [(name or "", contact, props, mid) for name, contact, props, mid in rows]


def stays(engine: Engine, segment: str) -> list[tuple[str, datetime, datetime | None]]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(SegmentMember).where(SegmentMember.segment == segment).order_by("id")
        ).all()
        return [(r.contact_id, r.entered_at, r.exited_at) for r in rows]


# --- each condition, evaluated in SQL, on both databases -----------------------


def test_spent_sums_unrefunded_orders_in_the_window_and_currency(engine: Engine) -> None:
    contacts(engine, ann={}, bob={}, cy={}, dee={}, eve={}, fay={}, gus={}, hal={})
    order(engine, "ann", 6000, 3 * DAY)
    order(engine, "bob", 3000, 3 * DAY)
    order(engine, "bob", 3000, 40 * DAY)  # outside the window
    order(engine, "cy", 9000, 3 * DAY, refunded=NOW - DAY)
    order(engine, "dee", 9000, 3 * DAY, currency="USD")
    order(engine, "eve", None, 3 * DAY, total=5500)  # no revenue: the total counts
    order(engine, "fay", 9000, -DAY)  # placed after `now`
    order(engine, "gus", 9000, 3 * DAY, refunded=NOW + DAY)  # not refunded yet at `now`
    order(engine, "hal", 3000, 29 * DAY, currency="rub")
    order(engine, "hal", 2500, 2 * DAY)
    big = {"spent": {"more_than": 5000, "within": "30d", "currency": "RUB"}}
    assert members(engine, big) == {"ann", "eve", "gus", "hal"}
    anywhere = {"spent": {"more_than": 5000, "within": "30d"}}
    assert members(engine, anywhere) == {"ann", "dee", "eve", "gus", "hal"}
    ever = {"spent": {"at_least": 6000}}
    assert members(engine, ever) == {"ann", "bob", "dee", "gus"}
    # "less than" holds for nothing spent at all: contacts without orders are in.
    small = {"spent": {"less_than": 3000, "within": "30d"}}
    assert members(engine, small) == {"cy", "fay"}


def test_orders_in_a_window_and_no_order_in_a_window(engine: Engine) -> None:
    contacts(engine, ann={}, bob={}, cy={}, dee={})
    order(engine, "ann", 100, 10 * DAY)
    order(engine, "bob", 100, 90 * DAY)
    order(engine, "dee", 100, 61 * DAY)
    order(engine, "dee", 100, 59 * DAY)
    no_recent = {"orders": {"exactly": 0, "within": "60d"}}
    assert members(engine, no_recent) == {"bob", "cy"}
    lapsed = {"all": [{"orders": {"at_least": 1}}, no_recent]}
    assert members(engine, lapsed) == {"bob"}
    assert members(engine, {"orders": {"more_than": 1}}) == {"dee"}
    assert members(engine, {"orders": {"at_most": 1}}) == {"ann", "bob", "cy"}
    # Sixty days later ann has lapsed too.
    assert members(engine, lapsed, now=NOW + 60 * DAY) == {"ann", "bob", "dee"}


def test_event_counts_by_name_in_a_window(engine: Engine) -> None:
    contacts(engine, ann={}, bob={}, cy={})
    for ago in (DAY, 2 * DAY):
        track(engine, "ann", "Product Viewed", ago)
    track(engine, "bob", "Product Viewed", DAY)
    track(engine, "bob", "Product Viewed", 8 * DAY)
    track(engine, "cy", "Product Added", DAY)
    browsers = {"event": {"name": "Product Viewed", "at_least": 2, "within": "7d"}}
    assert members(engine, browsers) == {"ann"}
    never = {"event": {"name": "Product Viewed", "exactly": 0}}
    assert members(engine, never) == {"cy"}


def test_only_our_own_events_count_for_names_only_we_record(engine: Engine) -> None:
    """`Survey Answered` a client stored (before the API refused such names) must not
    put anyone in a segment of survey answerers; ours does. Other names count whoever
    sent them."""
    contacts(engine, ann={}, bob={})
    track(engine, "ann", "Survey Answered", origin="internal")
    track(engine, "bob", "Survey Answered")  # a client's
    track(engine, "bob", "Product Viewed", origin="internal")
    answered = {"event": {"name": "Survey Answered", "at_least": 1}}
    assert members(engine, answered) == {"ann"}
    assert members(engine, {"event": {"name": "Product Viewed", "at_least": 1}}) == {"bob"}


def test_messages_sent_and_opened_by_channel(engine: Engine) -> None:
    contacts(engine, ann={}, bob={}, cy={}, dee={}, eve={}, fay={})
    message(engine, "ann", "email", "delivered", 5 * DAY)
    message(engine, "ann", "email", "sent", 50 * DAY)
    message(engine, "bob", "email", "opened", 5 * DAY)
    message(engine, "cy", "email", "clicked", 5 * DAY)
    message(engine, "eve", "email", "delivered", 100 * DAY)  # before the window
    message(engine, "fay", "sms", "delivered", 5 * DAY)
    message(engine, "fay", "email", "deferred", None)  # never sent
    dormant = {
        "all": [
            {"messages": {"channel": "email", "at_least": 1, "within": "90d"}},
            {"opened": {"channel": "email", "exactly": 0, "within": "90d"}},
        ]
    }
    assert members(engine, dormant) == {"ann"}
    assert members(engine, {"messages": {"at_least": 1, "within": "90d"}}) == {
        "ann",
        "bob",
        "cy",
        "fay",
    }
    assert members(engine, {"opened": {"at_least": 1}}) == {"bob", "cy"}


def test_traits_compare_by_json_type_and_never_break_on_other_types(engine: Engine) -> None:
    contacts(
        engine,
        ann={"tier": "gold", "ltv": 120, "vip": True},
        bob={"tier": "silver", "ltv": "lots"},  # a string where others have numbers
        cy={"tier": 5, "ltv": 80.5, "vip": False},
        dee={},
        eve={"tier": None, "ltv": None},
    )

    def trait(**rule: Any) -> set[str]:
        return members(engine, {"trait": rule})

    assert trait(name="tier", equals="gold") == {"ann"}
    assert trait(name="tier", equals=5) == {"cy"}
    assert trait(name="tier", not_equals="gold") == {"bob", "cy", "dee", "eve"}
    assert trait(name="tier", **{"in": ["gold", "silver"]}) == {"ann", "bob"}
    assert trait(name="tier", exists=True) == {"ann", "bob", "cy"}
    assert trait(name="tier", exists=False) == {"dee", "eve"}
    assert trait(name="ltv", more_than=100) == {"ann"}
    assert trait(name="ltv", at_most=100) == {"cy"}
    assert trait(name="vip", equals=True) == {"ann"}
    assert trait(name="vip", equals=False) == {"cy"}


def test_trait_dates_compare_with_today_in_utc_days(engine: Engine) -> None:
    """NOW is 2026-06-01 12:00 UTC. Each expected set is counted by hand."""
    contacts(
        engine,
        ann={"signed_up_at": "2026-05-02T08:00:00Z"},  # 30 days ago: in the last 30 days
        bob={"signed_up_at": "2026-05-01"},  # 31 days ago
        cy={"signed_up_at": "2026-06-01T23:59:00Z"},  # today
        dee={"signed_up_at": "2026-02-01"},  # 120 days ago
        eve={"signed_up_at": "soon"},  # not a date
        fay={"signed_up_at": 20260501},  # a number, not a date
        gus={},
        hal={"renews_on": "2026-06-04"},  # in 3 days
        ian={"renews_on": "2026-06-05"},  # in 4 days
        jo={"renews_on": "2026-05-31"},  # yesterday
    )

    def trait(**rule: Any) -> set[str]:
        return members(engine, {"trait": rule})

    assert trait(name="signed_up_at", in_last="30d") == {"ann", "cy"}
    assert trait(name="signed_up_at", in_last="31d") == {"ann", "bob", "cy"}
    assert trait(name="signed_up_at", more_than_ago="90d") == {"dee"}  # before 2026-03-03
    assert trait(name="signed_up_at", more_than_ago="30d") == {"bob", "dee"}
    assert trait(name="renews_on", in_next="3d") == {"hal"}  # 06-01 .. 06-04
    assert trait(name="renews_on", in_next="1w") == {"hal", "ian"}
    # Windows of dates reach past a year: customers for more than 100 days, 5 years.
    assert trait(name="signed_up_at", more_than_ago="100d") == {"dee"}  # before 02-21
    assert trait(name="signed_up_at", more_than_ago="1825d") == set()
    assert trait(name="signed_up_at", in_last="1825d") == {"ann", "bob", "cy", "dee"}


def test_what_is_not_a_date_matches_no_date_operator(engine: Engine) -> None:
    contacts(
        engine,
        real={"d": "2026-05-30"},
        null_date={"d": "0000-00-00"},  # many exports' empty date
        wildcards={"d": "2026-05-%%"},  # LIKE's wildcards
        month_13={"d": "2026-13-01"},
        wide={"d": "\uff12\uff10\uff12\uff16-\uff10\uff15-\uff13\uff10"},  # full-width digits
        number={"d": 20260530},
        nested={"d": {"date": "2026-05-30"}},
    )
    expected = [  # NOW is 2026-06-01: the real date, 05-30, is two days ago
        ({"in_last": "366d"}, {"real"}),
        ({"more_than_ago": "1d"}, {"real"}),
        ({"in_next": "366d"}, set()),
        ({"anniversary_in_next": "366d"}, {"real"}),
    ]
    for rule, found in expected:
        assert members(engine, {"trait": {"name": "d", **rule}}) == found, rule


def test_anniversaries_count_the_day_of_the_year_and_29_february(engine: Engine) -> None:
    contacts(
        engine,
        ann={"birthday": "1990-06-01"},  # today
        bob={"birthday": "1985-06-07T00:00:00Z"},  # in 6 days
        cy={"birthday": "2000-06-09"},  # in 8 days
        dee={"birthday": "2000-05-31"},  # yesterday: next year's
        eve={"birthday": "2000-02-29"},
        fay={"birthday": "2001-02-28"},
        gus={"birthday": "2000-03-01"},
        hal={"birthday": "-"},
    )

    def anniversary(at: datetime, **rule: Any) -> set[str]:
        return members(engine, {"trait": {"name": "birthday", **rule}}, now=at)

    assert anniversary(NOW, anniversary_today=True) == {"ann"}
    assert anniversary(NOW, anniversary_in_next="7d") == {"ann", "bob"}  # 06-01 .. 06-08
    assert anniversary(NOW, anniversary_in_next="8d") == {"ann", "bob", "cy"}
    # 2027 has no 29 February: the leap-day birthday is due on the 28th with fay's.
    feb_28_2027 = datetime(2027, 2, 28, 9, tzinfo=UTC)
    assert anniversary(feb_28_2027, anniversary_today=True) == {"eve", "fay"}
    assert anniversary(datetime(2027, 3, 1, 9, tzinfo=UTC), anniversary_today=True) == {"gus"}
    # 2028 has one: it is due on the 29th itself.
    assert anniversary(datetime(2028, 2, 28, 9, tzinfo=UTC), anniversary_today=True) == {"fay"}
    assert anniversary(datetime(2028, 2, 29, 9, tzinfo=UTC), anniversary_today=True) == {"eve"}
    # A window across the new year.
    new_year = datetime(2026, 12, 30, 9, tzinfo=UTC)
    contacts(engine, kim={"birthday": "1999-01-02"}, lee={"birthday": "1999-12-29"})
    assert anniversary(new_year, anniversary_in_next="3d") == {"kim"}  # 12-30 .. 01-02


def test_all_any_not_nest(engine: Engine) -> None:
    contacts(engine, ann={"tier": "gold"}, bob={"tier": "gold"}, cy={}, dee={})
    order(engine, "ann", 100, DAY)
    order(engine, "cy", 100, DAY)
    rule = {
        "any": [
            {"all": [{"trait": {"name": "tier", "equals": "gold"}}, {"orders": {"at_least": 1}}]},
            {
                "not": {
                    "any": [
                        {"trait": {"name": "tier", "exists": True}},
                        {"orders": {"at_least": 1}},
                    ]
                }
            },
        ]
    }
    assert members(engine, rule) == {"ann", "dee"}


def test_evaluation_can_be_limited_to_some_contacts(engine: Engine) -> None:
    contacts(engine, ann={}, bob={}, cy={})
    no_orders = {"orders": {"exactly": 0}}
    assert members(engine, no_orders, ids=["ann", "cy", "nobody"]) == {"ann", "cy"}
    assert members(engine, no_orders, ids=[]) == set()


# --- membership: stays and events ---------------------------------------------

BIG_SPENDERS = """
    big_spenders:
      spent: { more_than: 5000, within: 30d, currency: RUB }
    """


def test_refresh_enters_new_members_once_and_exits_leavers(engine: Engine, tmp_path: Path) -> None:
    contacts(engine, ann={}, bob={}, cy={})
    define(engine, tmp_path, BIG_SPENDERS)
    order(engine, "ann", 6000, 3 * DAY)
    order(engine, "bob", 1000, DAY)
    with session_scope(engine) as session:
        assert refresh(session, "big_spenders", NOW) == Change(entered=1, exited=0)
    ((name, contact, props, message_id),) = segment_events(engine)
    assert (name, contact, props) == ("Segment Entered", "ann", {"segment": "big_spenders"})
    ((_, entered_at, exited_at),) = stays(engine, "big_spenders")
    assert message_id == "segment:big_spenders:ann:entered:1"  # the stay's row id ends it
    with session_scope(engine) as session:
        event = session.exec(select(Event).where(Event.message_id == message_id)).one()
        assert (event.type, event.timestamp, event.received_at) == ("track", NOW, NOW)
        assert event.routed_at is None  # for the router to deliver
        assert session.get(SegmentDefinition, "big_spenders").refreshed_at == NOW  # type: ignore[union-attr]
    assert (entered_at, exited_at) == (NOW, None)

    with session_scope(engine) as session:  # nothing changed: nothing written
        assert refresh(session, "big_spenders", NOW + timedelta(minutes=5)) == Change(0, 0)
    assert len(segment_events(engine)) == 1

    order(engine, "bob", 4500, DAY)
    with session_scope(engine) as session:
        assert refresh(session, "big_spenders", NOW) == Change(1, 0)
    assert [(n, c) for n, c, _, _ in segment_events(engine)] == [
        ("Segment Entered", "ann"),
        ("Segment Entered", "bob"),
    ]

    later = NOW + 28 * DAY  # ann's order leaves the window, bob's not yet
    with session_scope(engine) as session:
        assert refresh(session, "big_spenders", later) == Change(0, 1)
    assert segment_events(engine)[-1][:3] == (
        "Segment Exited",
        "ann",
        {"segment": "big_spenders"},
    )
    order(engine, "ann", 7000, -28 * DAY)  # she buys again: a second stay
    with session_scope(engine) as session:
        assert refresh(session, "big_spenders", later) == Change(1, 0)
    assert [(c, e == NOW, x == later) for c, e, x in stays(engine, "big_spenders")] == [
        ("ann", True, True),
        ("bob", True, False),
        ("ann", False, False),
    ]
    ids = [m for *_, m in segment_events(engine)]
    assert len(ids) == len(set(ids)) == 4


def test_a_very_long_contact_id_still_gets_a_unique_message_id(
    engine: Engine, tmp_path: Path
) -> None:
    long_id = "x" * 250
    contacts(engine, **{long_id: {}})
    define(engine, tmp_path, BIG_SPENDERS)
    order(engine, long_id, 6000, DAY)
    with session_scope(engine) as session:
        assert refresh(session, "big_spenders", NOW) == Change(1, 0)
    assert [(c, m) for _, c, _, m in segment_events(engine)] == [
        (long_id, "segment:big_spenders:entered:1")
    ]


def test_refresh_of_a_segment_that_is_not_deployed_says_so(engine: Engine, tmp_path: Path) -> None:
    define(engine, tmp_path, BIG_SPENDERS)
    with session_scope(engine) as session, pytest.raises(UnknownSegment) as caught:
        refresh(session, "vips", NOW)
    assert "segment 'vips' is not deployed; deployed segments: big_spenders" in str(caught.value)


def test_refresh_for_events_looks_only_at_their_contacts_and_segments(
    engine: Engine, tmp_path: Path
) -> None:
    contacts(engine, ann={"tier": "gold"}, bob={"tier": "gold"}, cy={})
    define(
        engine,
        tmp_path,
        BIG_SPENDERS
        + """
    gold:
      trait: { name: tier, equals: gold }
    browsers:
      event: { name: Product Viewed, at_least: 1, within: 7d }
    """,
    )
    order(engine, "ann", 6000, DAY)
    order(engine, "bob", 6000, DAY)
    completed = track(engine, "ann", "Order Completed")
    with session_scope(engine) as session:
        changes = refresh_for_events(session, [completed], NOW)
    assert changes == {"big_spenders": Change(1, 0)}  # bob qualifies too, but sent nothing
    assert [(c, p["segment"]) for _, c, p, _ in segment_events(engine)] == [("ann", "big_spenders")]

    viewed = track(engine, "cy", "Product Viewed")
    identify = Event(message_id="i1", type="identify", contact_id="bob", timestamp=NOW)
    with session_scope(engine) as session:
        changes = refresh_for_events(session, [viewed, identify], NOW)
    assert changes == {"browsers": Change(1, 0), "gold": Change(1, 0)}
    assert [(c, p["segment"]) for _, c, p, _ in segment_events(engine)][1:] == [
        ("cy", "browsers"),
        ("bob", "gold"),
    ]
    unrelated = track(engine, "ann", "Page Viewed")
    with session_scope(engine) as session:
        assert refresh_for_events(session, [unrelated], NOW) == {}


# --- deploying ------------------------------------------------------------------


def test_deploy_stores_changes_and_deactivates_removed_segments(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "segments.yaml").write_text(
        textwrap.dedent(BIG_SPENDERS) + "vips:\n  trait: {name: vip, equals: true}\n"
    )
    assert [(d.name, d.state) for d in deploy_segments(engine, folder)] == [
        ("big_spenders", "added"),
        ("vips", "added"),
    ]
    (folder / "segments.yaml").write_text(textwrap.dedent(BIG_SPENDERS).replace("5000", "7000"))
    assert [(d.name, d.state) for d in deploy_segments(engine, folder)] == [
        ("big_spenders", "changed"),
        ("vips", "removed"),
    ]
    assert [(d.name, d.state) for d in deploy_segments(engine, folder)] == [
        ("big_spenders", "unchanged")
    ]
    with session_scope(engine) as session:
        rows = {r.name: r for r in session.exec(select(SegmentDefinition))}
        assert rows["big_spenders"].spec["spent"] == {
            "more_than": 7000.0,
            "within": 30 * 86400,
            "currency": "RUB",
        }
        assert rows["big_spenders"].active and not rows["vips"].active
        with pytest.raises(UnknownSegment, match=r"'vips' was removed from segments\.yaml"):
            refresh(session, "vips", NOW)


def test_deploy_is_all_or_nothing_with_segment_problems(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "welcome.yaml").write_text(
        "id: welcome\nname: Welcome\ntrigger: {event: Signed Up}\nsteps: [exit]\n"
    )
    (folder / "segments.yaml").write_text("vips:\n  trait: {name: vip, equal: true}\n")
    with pytest.raises(InvalidJourneys) as caught:
        deploy(engine, folder, tmp_path)
    assert [str(p) for p in caught.value.problems] == [
        f"{folder / 'segments.yaml'}:2:22: unknown key 'equal' in trait (expected one of: "
        "name, equals, not_equals, in, exists, more_than, at_least, less_than, at_most, "
        "in_last, in_next, more_than_ago, anniversary_in_next, anniversary_today)"
    ]
    with session_scope(engine) as session:
        assert session.exec(select(JourneyVersion)).all() == []
        assert session.exec(select(SegmentDefinition)).all() == []


# --- the loader's problems, with positions ---------------------------------------


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "segments.yaml"
    path.write_text(textwrap.dedent(text))
    return [str(p).removeprefix(f"{path}:") for p in load_segments(path)[1]]


def test_loader_reports_every_problem_with_its_position(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """
        big:
          spent: { more_than: 5000, within: 30x, curency: RUB }
        Big-Spenders:
          orders: { at_least: 1 }
        mixed:
          refresh: "61 * * * *"
          all:
            - spnt: {}
            - orders: { at_least: 1, exactly: 2 }
            - not:
                event: { at_least: 1 }
        nothing:
          description: no condition
        """,
    ) == [
        "3:37: invalid duration '30x': expected a number with a unit s, m, h, d or w, "
        "such as 30m, 24h, 2d or 1d12h",
        "3:42: unknown key 'curency' in spent (expected one of: more_than, at_least, "
        "less_than, at_most, within, currency)",
        "4:1: invalid segment name 'Big-Spenders': expected lowercase letters, digits and "
        "underscores, starting with a letter, at most 63 characters",
        "7:12: invalid minute 61 in cron line '61 * * * *': expected 0 to 59",
        "9:7: unknown condition 'spnt' (expected one of: all, any, not, spent, orders, event, "
        "messages, opened, trait)",
        "10:7: orders needs exactly one of at_least, more_than, exactly, less_than, at_most "
        "(found: at_least, exactly)",
        "12:9: missing required key 'name' in event",
        "13:1: segment 'nothing' needs exactly one of all, any, not, spent, orders, event, "
        "messages, opened, trait (found: none)",
    ]


def test_cron_lines_temporal_would_refuse_and_unitless_windows_are_caught(
    tmp_path: Path,
) -> None:
    assert problems_of(
        tmp_path,
        """
        a:
          refresh: "*/0 * * * *"
          orders: { exactly: 0, within: 30 }
        b:
          refresh: "0 5-1 * * *"
          orders: { at_least: 1 }
        """,
    ) == [
        "3:12: invalid minute step /0 in cron line '*/0 * * * *': expected /1 or more",
        "4:33: invalid duration 30: add its unit, e.g. 30d, 30h or 30m (s, m, h, d or w)",
        "6:12: invalid hour range 5-1 in cron line '0 5-1 * * *': the start must not be "
        "after the end",
    ]


def test_date_mistakes_in_segments_say_what_to_write(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """
        new_users:
          trait: { name: signed_up_at, in_last: 36h }
        renewing:
          trait: { name: renews_on, in_next: 3 }
        not_birthdays:
          trait: { name: birthday, anniversary_today: false }
        two:
          trait: { name: birthday, anniversary_today: true, in_last: 3d }
        """,
    ) == [
        "3:41: a date window is whole days, such as 7d, 30d or 2w; got '36h'",
        "5:38: invalid duration 3: add its unit, e.g. 3d, 3h or 3m (s, m, h, d or w)",
        "7:47: anniversary_today takes true only; for everyone else, wrap the condition "
        "in not: (not: { trait: { name: birthday, anniversary_today: true } })",
        "9:3: trait needs exactly one of equals, not_equals, in, exists, more_than, "
        "at_least, less_than, at_most, in_last, in_next, more_than_ago, "
        "anniversary_in_next, anniversary_today (found: in_last, anniversary_today)",
    ]


def test_a_stored_date_segment_refreshes_as_written(engine: Engine, tmp_path: Path) -> None:
    """The deployed spec keeps its windows in seconds and reads back the same."""
    contacts(engine, ann={"birthday": "1990-06-03"}, bob={"birthday": "1990-06-20"})
    define(
        engine,
        tmp_path,
        "birthdays_this_week:\n  trait: { name: birthday, anniversary_in_next: 1w }\n",
    )
    with session_scope(engine) as session:
        assert refresh(session, "birthdays_this_week", NOW) == Change(entered=1, exited=0)
    assert [contact for contact, _, _ in stays(engine, "birthdays_this_week")] == ["ann"]


def test_loader_refuses_what_is_not_a_mapping_of_segments(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "- big_spenders\n") == [
        "1:1: expected a mapping of segment names to segments, got a list; e.g.\n"
        "big_spenders:\n  spent: { more_than: 5000, within: 30d }"
    ]
    assert problems_of(tmp_path, "a: &x {orders: {at_least: 1}}\nb: *x\n") == [
        "1:4: YAML anchors and aliases are not allowed in journeys"
    ]
    assert problems_of(tmp_path, "# nothing yet\n") == []
    assert load_segments(tmp_path / "missing.yaml") == ([], [])


def test_the_shipped_segments_load() -> None:
    loaded = load_segments_or_raise(ROOT / "journeys" / "segments.yaml")
    assert [item.name for item in loaded] == [
        "big_spenders",
        "lapsed_customers",
        "email_dormant",
        "newsletter",
    ]
    for line in (
        "# Our best customers",
        "# Customers who bought",
        "# People we keep emailing",
        "# Our newsletter subscribers",
    ):
        assert line in (ROOT / "journeys" / "segments.yaml").read_text()


# --- the commands -----------------------------------------------------------------


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A project folder with the shipped segments and a store holding a few customers."""
    (workdir / "journeys" / "segments.yaml").write_text(
        (ROOT / "journeys" / "segments.yaml").read_text()
    )
    url = f"sqlite:///{workdir}/store.db"
    monkeypatch.setenv("DATABASE_URL", url)
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_preview_counts_members_and_shows_a_sample(project: Engine) -> None:
    now = datetime.now(UTC)
    contacts(project, ann={}, bob={}, cy={}, dee={})
    with session_scope(project) as session:
        for i, (who, amount) in enumerate([("ann", 6000), ("bob", 8000), ("cy", 100)]):
            session.add(
                Order(
                    order_id=f"p{i}",
                    contact_id=who,
                    revenue=amount,
                    currency="RUB",
                    placed_at=now - DAY,
                )
            )
    result = CliRunner().invoke(main, ["segments", "preview", "big_spenders", "--sample", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "big_spenders: Spent more than 5,000 RUB in the last 30 days",
        "2 contact(s) match now",
        "  ann  ann@example.com",
        "  ... showing 1 of 2 (--sample N for more)",
        "stored members: 0; the next refresh would add 2 and remove 0",
    ]
    assert segment_events(project) == []  # a preview writes nothing


def test_refresh_and_list_commands(project: Engine) -> None:
    runner = CliRunner()
    contacts(project, ann={})
    with session_scope(project) as session:
        session.add(
            Order(
                order_id="p1",
                contact_id="ann",
                revenue=9000,
                currency="RUB",
                placed_at=datetime.now(UTC) - DAY,
            )
        )
    result = runner.invoke(main, ["segments", "refresh", "big_spenders"])
    assert result.exit_code == 1
    assert "segment 'big_spenders' is not deployed" in result.output
    deploy_segments(project, Path("journeys"))
    result = runner.invoke(main, ["segments", "refresh", "big_spenders"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "big_spenders: 1 entered, 0 exited"
    assert [(n, c) for n, c, _, _ in segment_events(project)] == [("Segment Entered", "ann")]
    result = runner.invoke(main, ["segments", "list"])
    assert result.exit_code == 0, result.output
    rows = [re.split(r"\s{2,}", line) for line in result.output.splitlines()]
    assert rows[0] == ["name", "members", "refreshed", "refresh", "description"]
    assert rows[1][:2] == ["big_spenders", "1"] and rows[1][2].startswith("20")
    assert rows[1][3:] == ["0 * * * *", "Spent more than 5,000 RUB in the last 30 days"]
    assert rows[3][:4] == ["lapsed_customers", "0", "never", "every 6h"]


def test_preview_of_an_unknown_segment_names_the_known_ones(project: Engine) -> None:
    result = CliRunner().invoke(main, ["segments", "preview", "vips"])
    assert result.exit_code == 1
    assert "no segment 'vips' in journeys/segments.yaml; segments: big_spenders, " in result.output


def test_validate_checks_segments_yaml(workdir: Path) -> None:
    (workdir / "journeys" / "segments.yaml").write_text("vips:\n  trait: {name: vip}\n")
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 1
    assert (
        "journeys/segments.yaml:2:3: trait needs exactly one of equals, not_equals, in, exists, "
        "more_than, at_least, less_than, at_most, in_last, in_next, more_than_ago, "
        "anniversary_in_next, anniversary_today (found: none)"
    ) in result.output
    (workdir / "journeys" / "segments.yaml").write_text(
        "vips:\n  trait: {name: vip, exists: true}\n"
    )
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "0 journey(s) and 1 segment(s) valid"
