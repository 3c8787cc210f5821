"""Journey versions: every distinct spec of a journey is stored once and numbered 1, 2, ...

Runs pin the version they entered on, so a deployed spec is never edited in place;
deploying an edit adds a version and moves the `active` flag to it. New entries start
on the active version.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from orchestrator.store.tables import JourneyVersion

# A conflict means another process deployed this journey in between; after it commits,
# a retry sees its row. More than a few conflicts in a row means something else is wrong.
_MAX_ATTEMPTS = 5


def deploy_journey(
    session: Session,
    journey_id: str,
    spec: dict[str, Any],
    spec_hash: str,
    source_path: str | None,
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
            return _deploy_once(session, journey_id, spec, spec_hash, source_path)
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
            col(JourneyVersion.active).is_(True),
        )
    ).all()
    for other in others:
        other.active = False
    if not row.active:
        row.active = True
    session.flush()


def latest_version(session: Session, journey_id: str) -> JourneyVersion | None:
    """The highest-numbered version of a journey (not necessarily the active one)."""
    return session.exec(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id)
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
