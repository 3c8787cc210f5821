"""Segment membership: who matches now against who was a member, written as stays and events.

A stay is a `SegmentMember` row (exited_at NULL while it lasts). Each new stay
stores a `Segment Entered` track event and each ended one a `Segment Exited`,
with `properties.segment` naming the segment and `routed_at` NULL, so the
router starts the journeys they trigger like any other event. The message id
is derived from the stay's row id: one event per stay, whatever retries.

The diff runs in SQL (`INSERT ... SELECT` for entries, one `SELECT` of the stays
that end), and refreshes of one segment are serialized by locking its
definition row first, so two refreshes at once (a schedule and the router)
cannot both see a newcomer as new.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    JSON,
    ColumnElement,
    Engine,
    String,
    case,
    cast,
    func,
    insert,
    literal,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..dsl.durations import format_duration
from ..store.db import session_scope
from ..store.tables import (
    ORIGIN_INTERNAL,
    Contact,
    Event,
    SegmentDefinition,
    SegmentMember,
    UTCDateTime,
    utcnow,
)
from .loader import SEGMENTS_FILE, LoadedSegment, load_segments_or_raise
from .models import DEFAULT_EVERY, Segment
from .query import members_query

log = logging.getLogger(__name__)

SEGMENT_ENTERED = "Segment Entered"
SEGMENT_EXITED = "Segment Exited"
# The events that write the `orders` table: spend and order counts change with them.
ORDER_EVENTS = ("Order Completed", "Order Refunded")
_CHUNK = 500
_MESSAGE_ID_MAX = 255


class Change(NamedTuple):
    """How many contacts a refresh moved in and out."""

    entered: int
    exited: int


class UnknownSegment(ValueError):
    """No active segment of that name is deployed."""


def active_segment(session: Session, name: str) -> Segment:
    """The deployed definition of `name`; UnknownSegment when none is active."""
    row = session.exec(
        select(SegmentDefinition)
        .where(col(SegmentDefinition.name) == name)
        .execution_options(populate_existing=True)  # never a copy read before the lock
    ).first()
    if row is None or not row.active:
        known = session.exec(
            select(SegmentDefinition.name).where(col(SegmentDefinition.active)).order_by("name")
        ).all()
        state = "is not deployed" if row is None else "was removed from segments.yaml"
        raise UnknownSegment(
            f"segment {name!r} {state}; deployed segments: {', '.join(known) or 'none'} "
            f"(segments deploy from journeys/{SEGMENTS_FILE} when the worker starts)"
        )
    return Segment.model_validate(row.spec)


def refresh(
    session: Session, name: str, now: datetime, contact_ids: Collection[str] | None = None
) -> Change:
    """Bring the stays of segment `name` up to date as of `now`; only new members enter.

    With `contact_ids`, only those contacts are re-evaluated (the others keep their
    state). Writes in `session`; the caller commits.
    """
    ids = sorted(set(contact_ids)) if contact_ids is not None else None
    if ids is not None and not ids:
        return Change(0, 0)
    # Lock first: the row lock (PostgreSQL) or the write lock (SQLite) serializes refreshes
    # of this segment, and every read after it sees what the previous refresh committed.
    values: dict[str, Any] = {"refreshed_at": now} if ids is None else {"name": name}
    session.exec(  # type: ignore[call-overload]
        sql_update(SegmentDefinition)
        .where(col(SegmentDefinition.name) == name, col(SegmentDefinition.active))
        .values(**values)
    )
    segment = active_segment(session, name)
    matching = members_query(segment, now, ids)
    exited = _exit_leavers(session, name, now, matching, ids)
    entered = _enter_newcomers(session, name, now, matching, ids)
    if entered >= ANALYZE_AFTER and session.get_bind().dialect.name == "postgresql":
        # Fresh statistics before the next refresh plans its anti-join: with the table's
        # old row count (a new segment's: 0), PostgreSQL picks a nested loop that takes
        # seconds instead of milliseconds. Cheap (a sample), and it blocks no writer.
        session.exec(text("ANALYZE segment_members"))  # type: ignore[call-overload]
    if entered or exited:
        log.info("segment %s: %d entered, %d exited", name, entered, exited)
    return Change(entered, exited)


ANALYZE_AFTER = 1000  # new stays in one refresh that make the table's statistics stale


def _stays(name: str, ids: list[str] | None) -> list[ColumnElement[bool]]:
    """The current stays in `name` (of `ids`)."""
    where = [col(SegmentMember.segment) == name, col(SegmentMember.exited_at).is_(None)]
    if ids is not None:
        where.append(col(SegmentMember.contact_id).in_(ids))
    return where


def _leaving(stays: Any, matching: Any) -> Any:
    """`stays` whose contact no longer matches: an anti-join on the members, computed
    once. Not `NOT IN (subquery)`, which PostgreSQL plans row by row once the subquery
    outgrows work_mem; not a correlated `NOT EXISTS`, which re-runs the segment's
    aggregate for every stay."""
    members = matching.subquery()
    return stays.outerjoin(members, members.c.id == col(SegmentMember.contact_id)).where(
        members.c.id.is_(None)
    )


def _not_a_member(name: str, ids: list[str] | None) -> ColumnElement[bool]:
    """The contact (of the outer query) has no current stay in `name`."""
    stay = select(SegmentMember.id).where(
        *_stays(name, ids), col(SegmentMember.contact_id) == col(Contact.id)
    )
    return ~stay.exists()


def _exit_leavers(
    session: Session, name: str, now: datetime, matching: Any, ids: list[str] | None
) -> int:
    leaving = _leaving(select(SegmentMember.id).where(*_stays(name, ids)), matching)
    stay_ids = [i for i in session.exec(leaving) if i is not None]
    for chunk in _chunks(stay_ids):
        session.exec(  # type: ignore[call-overload]
            sql_update(SegmentMember).where(col(SegmentMember.id).in_(chunk)).values(exited_at=now)
        )
        _store_events(session, name, "exited", now, col(SegmentMember.id).in_(chunk))
    return len(stay_ids)


def _enter_newcomers(
    session: Session, name: str, now: datetime, matching: Any, ids: list[str] | None
) -> int:
    # Rows inserted below get ids above every id visible now; the lock keeps other
    # refreshes of this segment out meanwhile, so id > before is exactly this refresh's.
    before = session.exec(select(func.max(SegmentMember.id))).one() or 0
    newcomers = matching.with_only_columns(
        literal(name, String()), col(Contact.id), literal(now, UTCDateTime())
    ).where(_not_a_member(name, ids))
    table = SegmentMember.__table__  # type: ignore[attr-defined]
    result = session.exec(  # type: ignore[call-overload]
        insert(table).from_select(["segment", "contact_id", "entered_at"], newcomers),
        execution_options={"preserve_rowcount": True},  # psycopg hides an INSERT's otherwise
    )
    entered = result.rowcount or 0
    if entered:
        new_stays = (col(SegmentMember.segment) == name) & (col(SegmentMember.id) > before)
        _store_events(session, name, "entered", now, new_stays)
    return entered


def _store_events(
    session: Session,
    name: str,
    change: Literal["entered", "exited"],
    now: datetime,
    stays: ColumnElement[bool],
) -> None:
    """One track event per stay in `stays`, for the router to deliver."""
    stay_id = cast(col(SegmentMember.id), String())
    # segment:<name>:<contact>:<entered|exited>:<stay id>; contacts with very long ids
    # get segment:<name>:<change>:<stay id>, still unique (the column holds 255).
    full = literal(f"segment:{name}:") + col(SegmentMember.contact_id) + f":{change}:" + stay_id
    short = literal(f"segment:{name}:{change}:") + stay_id
    message_id = case((func.length(full) <= _MESSAGE_ID_MAX, full), else_=short)
    rows = select(
        message_id,
        literal("track", String()),
        literal(SEGMENT_ENTERED if change == "entered" else SEGMENT_EXITED, String()),
        col(SegmentMember.contact_id),
        literal({"segment": name}, JSON()),
        literal({}, JSON()),
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
        literal(ORIGIN_INTERNAL, String()),  # our key: no client messageId can take it
    ).where(stays)
    columns = ["message_id", "type", "name", "contact_id", "properties", "context"]
    table = Event.__table__  # type: ignore[attr-defined]
    session.exec(  # type: ignore[call-overload]
        insert(table).from_select([*columns, "timestamp", "received_at", "origin"], rows)
    )


def _chunks(items: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# --- which segments an event may change --------------------------------------


@dataclass(frozen=True)
class Dependencies:
    """What can change a segment's membership between scheduled refreshes."""

    events: frozenset[str]  # track event names
    traits: bool  # identify calls (traits change)


def dependencies(segment: Segment) -> Dependencies:
    """Events that make membership worth re-evaluating at once.

    Spend and order counts follow the order events; `event:` its own name;
    traits the identify calls. Messages and opens change without an event, and
    windows slide with time: the scheduled refresh catches those.
    """
    events: set[str] = set()
    traits = False
    for kind, leaf in segment.leaves():
        if kind in ("spent", "orders"):
            events.update(ORDER_EVENTS)
        elif kind == "event":
            events.add(leaf.name)
        elif kind == "trait":
            traits = True
    return Dependencies(frozenset(events), traits)


def _touches(deps: Dependencies, event: Event) -> bool:
    if event.type == "track":
        return event.name in deps.events
    return event.type == "identify" and deps.traits


def refresh_for_events(
    session: Session, events: Iterable[Event], now: datetime
) -> dict[str, Change]:
    """Re-evaluate, for the contacts of `events` only, the segments those events may change.

    Returns the changes by segment name (segments left alone are absent).
    """
    events = list(events)
    if not events:
        return {}
    rows = session.exec(
        select(SegmentDefinition.name, SegmentDefinition.spec)
        .where(col(SegmentDefinition.active))
        .order_by(col(SegmentDefinition.name))  # one lock order for every refresh
    ).all()
    changes = {}
    for name, spec in rows:
        deps = dependencies(Segment.model_validate(spec))
        contacts = {e.contact_id for e in events if _touches(deps, e)}
        if contacts:
            changes[name] = refresh(session, name, now, contacts)
    return changes


# --- deploying definitions ----------------------------------------------------


@dataclass(frozen=True)
class DeployedSegment:
    name: str
    state: Literal["added", "changed", "unchanged", "removed"]


def deploy_segments(engine: Engine, journeys_dir: Path) -> list[DeployedSegment]:
    """Store the segments of `journeys_dir/segments.yaml`; SegmentError if it has problems.

    Segments no longer in the file are deactivated (their schedules go, their stays
    stay as they were); a missing file deactivates every segment.
    """
    return store_segments(engine, load_segments_or_raise(journeys_dir / SEGMENTS_FILE))


def store_segments(engine: Engine, loaded: list[LoadedSegment]) -> list[DeployedSegment]:
    """Store validated segments as the active set, in one transaction."""
    try:
        return _store(engine, loaded)
    except IntegrityError:
        # Another process inserted the same new segment at the same moment: its rows are
        # there now, and the second pass updates them instead.
        return _store(engine, loaded)


def _store(engine: Engine, loaded: list[LoadedSegment]) -> list[DeployedSegment]:
    now = utcnow()
    result = []
    with session_scope(engine) as session:
        rows = {row.name: row for row in session.exec(select(SegmentDefinition))}
        for item in loaded:
            row = rows.get(item.name)
            path = str(item.path)
            if row is None:
                session.add(
                    SegmentDefinition(
                        name=item.name,
                        spec=item.spec,
                        spec_hash=item.spec_hash,
                        source_path=path,
                        active=True,
                        deployed_at=now,
                    )
                )
                result.append(DeployedSegment(item.name, "added"))
            elif row.spec_hash != item.spec_hash or not row.active:
                row.spec, row.spec_hash, row.active = item.spec, item.spec_hash, True
                row.source_path, row.deployed_at = path, now
                result.append(DeployedSegment(item.name, "changed"))
            else:
                row.source_path = path
                result.append(DeployedSegment(item.name, "unchanged"))
        names = {item.name for item in loaded}
        for name, row in sorted(rows.items()):
            if name not in names and row.active:
                row.active, row.deployed_at = False, now
                result.append(DeployedSegment(name, "removed"))
    return result


# --- previewing a definition --------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """A segment evaluated now, next to its stored membership."""

    count: int
    sample: list[tuple[str, str | None]]  # (contact id, email), first by id
    members: int  # stays open in the store
    entering: int  # would enter at the next refresh
    leaving: int  # would exit at the next refresh


def preview(session: Session, name: str, segment: Segment, now: datetime, sample: int) -> Preview:
    """Count who matches `segment` at `now` and take a sample; writes nothing."""
    matching = members_query(segment, now)
    count = session.exec(select(func.count()).select_from(matching.subquery())).one()
    rows = session.exec(
        select(Contact.id, Contact.email)
        .where(col(Contact.id).in_(matching))
        .order_by(col(Contact.id))
        .limit(sample)
    ).all()
    current = select(SegmentMember.contact_id).where(*_stays(name, None))
    members = session.exec(select(func.count()).select_from(current.subquery())).one()
    entering = session.exec(
        select(func.count()).select_from(matching.where(_not_a_member(name, None)).subquery())
    ).one()
    leaving = session.exec(
        select(func.count()).select_from(_leaving(current, matching).subquery())
    ).one()
    return Preview(count, [(i, e) for i, e in rows], members, entering, leaving)


@dataclass(frozen=True)
class Summary:
    """A deployed segment at a glance (`journeys segments list`)."""

    name: str
    active: bool
    description: str | None
    refresh: str  # "0 * * * *" or "every 1h"
    members: int
    refreshed_at: datetime | None


def summaries(session: Session) -> list[Summary]:
    """Every deployed segment, active ones first, with its current member count."""
    counts = dict(
        session.exec(
            select(SegmentMember.segment, func.count())
            .where(col(SegmentMember.exited_at).is_(None))
            .group_by(col(SegmentMember.segment))
        ).all()
    )
    rows = session.exec(
        select(SegmentDefinition).order_by(
            col(SegmentDefinition.active).desc(), col(SegmentDefinition.name)
        )
    ).all()
    result = []
    for row in rows:
        segment = Segment.model_validate(row.spec)
        if segment.refresh is not None and segment.refresh.cron is not None:
            every = segment.refresh.cron
        else:
            every = f"every {format_duration(segment.every_seconds() or DEFAULT_EVERY)}"
        result.append(
            Summary(
                row.name,
                row.active,
                segment.description,
                every,
                counts.get(row.name, 0),
                row.refreshed_at,
            )
        )
    return result
