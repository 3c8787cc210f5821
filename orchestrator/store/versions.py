"""Journey versions: every distinct spec of a journey is stored once and numbered 1, 2, ...

Runs pin the version they entered on, so a deployed spec is never edited in place;
deploying an edit adds a version and moves the `active` flag to it. New entries start
on the active version.

A journey whose file is gone is *retired* by the deploy that notices (`retire_others`):
no version of it is active any more, so no run starts, while its runs in flight keep
hearing the events they wait for (`live_versions`) and finish on their version.
Deploying its file again reactivates it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from orchestrator.store.tables import JourneyRun, JourneyVersion, utcnow

# A conflict means another process deployed this journey in between; after it commits,
# a retry sees its row. More than a few conflicts in a row means something else is wrong.
_MAX_ATTEMPTS = 5
# How long a retired journey's runs are listened for whatever the store says: a run
# started just before the retirement records its entry only once a worker picks it up.
RETIRED_GRACE = timedelta(days=1)


def deploy_journey(
    session: Session,
    journey_id: str,
    spec: dict[str, Any],
    spec_hash: str,
    source_path: str | None,
    templates: dict[str, str] | None = None,
) -> JourneyVersion:
    """Make `spec` the active version of `journey_id`; add a version only for a new spec.

    - A spec already deployed for this journey (same `spec_hash`) is not stored again:
      its row is returned unchanged, except that it becomes the active version. This
      covers redeploying the latest version (a no-op on every start) and reverting to an
      older one: reverting to v1's spec after v2 reactivates v1 rather than adding v3,
      because (journey_id, spec_hash) is unique and a spec keeps the number it first
      got. `latest_version` stays v2 then; `active_versions` reports v1.
    - A new spec gets the highest version + 1 (1 for a new journey) and becomes active.

    In both cases every other version of the journey is set inactive. Race-safe across
    processes: a concurrent deploy of the same journey makes our insert violate a unique
    constraint, and we roll back and decide again from what the winner committed (two
    deploys of the same edit end with one new version). Because of that rollback, call
    it in a session with no other pending work. Flushes; the caller commits.
    """
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            return _deploy_once(session, journey_id, spec, spec_hash, source_path, templates)
        except IntegrityError:
            session.rollback()
            if attempt == _MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _deploy_once(
    session: Session,
    journey_id: str,
    spec: dict[str, Any],
    spec_hash: str,
    source_path: str | None,
    templates: dict[str, str] | None = None,
) -> JourneyVersion:
    row = _find_by_hash(session, journey_id, spec_hash)
    if row is None:
        latest = latest_version(session, journey_id)
        row = JourneyVersion(
            journey_id=journey_id,
            version=latest.version + 1 if latest else 1,
            spec_hash=spec_hash,
            spec=spec,
            source_path=source_path,
            active=True,
            templates=dict(templates or {}),
        )
        session.add(row)
        # Insert before touching the other rows: a competing deploy collides here.
        session.flush()
    _make_only_active(session, row)
    return row


def _find_by_hash(session: Session, journey_id: str, spec_hash: str) -> JourneyVersion | None:
    return session.exec(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id, JourneyVersion.spec_hash == spec_hash
        )
    ).first()


def _make_only_active(session: Session, row: JourneyVersion) -> None:
    # Writes only when something changes, so an unchanged redeploy takes no write lock.
    others = session.exec(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == row.journey_id,
            col(JourneyVersion.id) != row.id,
            col(JourneyVersion.active).is_(True) | col(JourneyVersion.retired_at).is_not(None),
        )
    ).all()
    for other in others:  # the version active until now, or the one it was retired on
        other.active, other.retired_at = False, None
    if not row.active:
        row.active = True
    if row.retired_at is not None:  # deployed again: reactivated
        row.retired_at = None
    session.flush()


def rollback_hold(session: Session, journey_id: str) -> JourneyVersion | None:
    """The version `journeys deploy --rollback` made current, while it still is."""
    return session.exec(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id,
            col(JourneyVersion.active).is_(True),
            col(JourneyVersion.rolled_back_at).is_not(None),
        )
    ).first()


def release_hold(session: Session, journey_id: str) -> bool:
    """Let deploys from files replace a rolled-back version again; True if one was held."""
    held = session.exec(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id,
            col(JourneyVersion.rolled_back_at).is_not(None),
        )
    ).all()
    for row in held:
        row.rolled_back_at = None
    session.flush()
    return any(held)


class RollbackRefused(ValueError):
    """The version to roll back to does not exist or is current already."""


def roll_back(session: Session, journey_id: str, version: int) -> JourneyVersion:
    """Make an older `version` the one new entries start on, and hold it there: deploys
    from files (a worker's start-up too) leave the journey on it until released. Runs in
    flight stay on their versions."""
    row = get_version(session, journey_id, version)
    if row is None:
        known = session.exec(
            select(JourneyVersion.version)
            .where(JourneyVersion.journey_id == journey_id)
            .order_by(col(JourneyVersion.version))
        ).all()
        if not known:
            raise RollbackRefused(f"no journey {journey_id!r} was ever deployed")
        listed = ", ".join(f"v{v}" for v in known)
        raise RollbackRefused(
            f"journey {journey_id!r} has no version {version} (it has {listed}; "
            f"see journeys versions {journey_id})"
        )
    if row.active:
        raise RollbackRefused(
            f"v{version} of {journey_id} is already the current version: nothing to roll back"
        )
    _make_only_active(session, row)
    for other in session.exec(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id,
            col(JourneyVersion.rolled_back_at).is_not(None),
        )
    ).all():
        other.rolled_back_at = None
    row.rolled_back_at = utcnow()
    session.flush()
    return row


def is_retired(session: Session, journey_id: str) -> bool:
    """Deployed once, and no version of it is active now."""
    found = session.exec(
        select(col(JourneyVersion.active)).where(JourneyVersion.journey_id == journey_id)
    ).all()
    return bool(found) and not any(found)


def retire_others(
    session: Session, keep: Iterable[str], now: datetime | None = None
) -> list[JourneyVersion]:
    """Retire every active journey not in `keep`: new entries stop, runs in flight finish.

    Returns the versions they were retired on. Flushes; the caller commits.
    """
    keep = set(keep)
    rows = [
        row
        for row in session.exec(select(JourneyVersion).where(col(JourneyVersion.active).is_(True)))
        if row.journey_id not in keep
    ]
    moment = now or utcnow()
    for row in rows:
        row.active, row.retired_at = False, moment
    session.flush()
    return sorted(rows, key=lambda r: r.journey_id)


def latest_version(session: Session, journey_id: str) -> JourneyVersion | None:
    """The highest-numbered version of a journey (not necessarily the active one)."""
    return session.exec(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id)
        .order_by(col(JourneyVersion.version).desc())
        .limit(1)
    ).first()


def active_version(session: Session, journey_id: str) -> JourneyVersion | None:
    """The version new entries of a journey start on; None when it is retired (or new)."""
    return session.exec(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id, col(JourneyVersion.active).is_(True))
        .order_by(col(JourneyVersion.version).desc())
        .limit(1)
    ).first()


def active_versions(session: Session) -> list[JourneyVersion]:
    """The active version of every journey, ordered by journey id.

    Should concurrent deploys of different specs ever leave two versions of a journey
    active, the higher number wins here, so callers never see two.
    """
    rows = session.exec(
        select(JourneyVersion)
        .where(col(JourneyVersion.active).is_(True))
        .order_by(col(JourneyVersion.journey_id), col(JourneyVersion.version).desc())
    ).all()
    by_journey: dict[str, JourneyVersion] = {}
    for row in rows:
        by_journey.setdefault(row.journey_id, row)
    return list(by_journey.values())


def get_version(session: Session, journey_id: str, version: int) -> JourneyVersion | None:
    """One version of a journey, e.g. the one a running workflow pinned."""
    return session.exec(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
        )
    ).first()


@dataclass(frozen=True)
class LiveVersion:
    """A version whose runs may be in flight; `starts`: new entries start on it."""

    id: int
    journey_id: str
    version: int
    starts: bool


def live_versions(session: Session, now: datetime | None = None) -> list[LiveVersion]:
    """The versions the router must deliver events to, ordered by journey and version.

    Every version of a journey that is deployed (its older versions may still have runs),
    and of a retired journey while it may have runs in flight: retired less than
    `RETIRED_GRACE` ago, or with runs the store has as active. Only the active version
    (the highest, should two ever be) starts runs. Reads no specs: they never change.
    """
    rows = session.exec(
        select(
            JourneyVersion.id,
            JourneyVersion.journey_id,
            JourneyVersion.version,
            JourneyVersion.active,
            JourneyVersion.retired_at,
        ).order_by(col(JourneyVersion.journey_id), col(JourneyVersion.version))
    ).all()
    since = (now or utcnow()) - RETIRED_GRACE
    starting: dict[str, int] = {}
    recent: set[str] = set()
    for _, journey_id, version, active, retired_at in rows:
        if active:
            starting[journey_id] = max(version, starting.get(journey_id, version))
        if retired_at is not None and retired_at > since:
            recent.add(journey_id)
    retired = {r[1] for r in rows} - set(starting) - recent
    live = set(starting) | recent | _with_runs_in_flight(session, retired)
    return [
        LiveVersion(row_id, journey_id, version, starting.get(journey_id) == version)
        for row_id, journey_id, version, _, _ in rows
        if journey_id in live and row_id is not None
    ]


def _with_runs_in_flight(session: Session, journey_ids: set[str]) -> set[str]:
    """Those of `journey_ids` with an active run: one index probe each, stops at the first."""
    if not journey_ids:
        return set()
    running = (
        select(JourneyRun.id)
        .where(
            JourneyRun.journey_id == JourneyVersion.journey_id,
            JourneyRun.status == "active",
        )
        .exists()
    )
    query = (
        select(JourneyVersion.journey_id)
        .where(col(JourneyVersion.journey_id).in_(sorted(journey_ids)), running)
        .distinct()
    )
    return set(session.exec(query))


def specs_of(session: Session, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The frozen specs of the versions with these row ids."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(JourneyVersion.id, JourneyVersion.spec).where(col(JourneyVersion.id).in_(wanted))
    return {row_id: spec for row_id, spec in session.exec(query) if row_id is not None}


@dataclass(frozen=True)
class JourneySummary:
    """A deployed journey at a glance (`journeys list`)."""

    journey_id: str
    status: Literal["active", "retired"]
    version: int  # the active version; for a retired journey, the one it was retired on
    source_path: str | None
    deployed_at: datetime
    retired_at: datetime | None
    runs_active: int
    runs_total: int
    # Other versions that still have runs in flight: version -> active runs.
    older_in_flight: dict[int, int] = field(default_factory=dict)


def journey_summaries(session: Session) -> list[JourneySummary]:
    """Every journey ever deployed, active ones first, with its run counts (two queries)."""
    versions = session.exec(
        select(
            JourneyVersion.journey_id,
            JourneyVersion.version,
            JourneyVersion.active,
            JourneyVersion.retired_at,
            JourneyVersion.source_path,
            JourneyVersion.deployed_at,
        ).order_by(col(JourneyVersion.journey_id), col(JourneyVersion.version))
    ).all()
    active_runs = func.sum(case((col(JourneyRun.status) == "active", 1), else_=0))
    counts: dict[tuple[str, int], tuple[int, int]] = {
        (journey_id, version): (int(running or 0), int(total))
        for journey_id, version, running, total in session.exec(
            select(JourneyRun.journey_id, JourneyRun.version, active_runs, func.count()).group_by(
                col(JourneyRun.journey_id), col(JourneyRun.version)
            )
        )
    }
    by_journey: dict[str, list[Any]] = {}
    for row in versions:
        by_journey.setdefault(row.journey_id, []).append(row)
    summaries = []
    for journey_id, rows in by_journey.items():
        # The active version (the highest, should two ever be), else the one it was
        # retired on, else its latest.
        current = (
            max((r for r in rows if r.active), key=lambda r: r.version, default=None)
            or max((r for r in rows if r.retired_at), key=lambda r: r.retired_at, default=None)
            or rows[-1]
        )
        running = {r.version: counts.get((journey_id, r.version), (0, 0)) for r in rows}
        summaries.append(
            JourneySummary(
                journey_id=journey_id,
                status="active" if current.active else "retired",
                version=current.version,
                source_path=current.source_path,
                deployed_at=current.deployed_at,
                retired_at=current.retired_at,
                runs_active=sum(active for active, _ in running.values()),
                runs_total=sum(total for _, total in running.values()),
                older_in_flight={
                    version: active
                    for version, (active, _) in running.items()
                    if active and version != current.version
                },
            )
        )
    return sorted(summaries, key=lambda s: (s.status != "active", s.journey_id))
