"""`journeys diff [OLD] NEW`: two versions of a journey side by side, the change in
words and what deploying it does to the runs in flight.

A side is a deployed version (`ID` is the version new entries start on, `ID@N` a
numbered one) or a journey file. As NEW, a bare `ID` is the file on disk defining
that journey: the question is nearly always "what does deploying my edit do?".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from ..dsl import models as m
from ..dsl.loader import load_journey, load_journeys
from ..dsl.problems import JourneyError
from ..store.db import session_scope
from ..store.tables import JourneyVersion
from .changes import Change, compare, sends, template_edits
from .impact import Impact, InFlight, impacts, in_flight
from .template_pins import describe_pin_changes, manifest, pinned_files, version_hash

_AT_VERSION = re.compile(r"^([a-z][a-z0-9_]{0,62})@v?(\d+)$")
_ID = re.compile(m.ID_PATTERN)


class DiffError(ValueError):
    """An argument that names nothing diff can compare."""


@dataclass(frozen=True)
class Side:
    """One side of a diff: a deployed version (`version`, `deployed_at`) or a file."""

    journey: m.Journey
    label: str
    spec_hash: str | None = None
    version: int | None = None
    deployed_at: datetime | None = None
    path: Path | None = None
    pins: dict[str, str] | None = None  # the template files a deployed version pinned


@dataclass
class JourneyDiff:
    journey_id: str
    old: Side | None
    new: Side
    deploying: str  # what deploying NEW does, in words ("" when NEW is deployed already)
    in_flight: dict[int, int] = field(default_factory=dict)
    impacts: list[Impact] = field(default_factory=list)
    already: int | None = None  # NEW's version, when it is deployed: its runs have NEW

    @property
    def changes(self) -> list[Change]:
        return [i.change for i in self.impacts]

    def lines(self) -> list[str]:
        old = self.old.label if self.old else "never deployed"
        lines = [f"{self.journey_id}: {old} → {self.new.label}"]
        flight = ", ".join(f"{n} on version {v}" for v, n in self.in_flight.items())
        lines.append(f"  in flight: {flight or 'none'}")
        if self.old is None:
            lines.append(f"  a new journey: {self.deploying or 'not deployed'}")
            return lines
        if not self.impacts:
            lines.append(f"  no changes{f' ({self.deploying})' if self.deploying else ''}")
            return lines
        if self.already in self.in_flight:
            n = self.in_flight[self.already]
            who = "1 contact" if n == 1 else f"{n} contacts"
            have = "has" if n == 1 else "have"
            lines.append(
                f"  ({who} on version {self.already} {have} these changes already: "
                "counted below are the others)"
            )
        for item in self.impacts:
            lines.append(f"  - {item.change.text}")
            if item.sentence:
                lines.append(f"      {item.sentence}")
        if self.deploying:
            lines.append(f"  {self.deploying}")
        return lines

    def to_json(self) -> dict[str, Any]:
        def side(s: Side | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {
                "label": s.label,
                "version": s.version,
                "path": str(s.path) if s.path else None,
                "spec_hash": s.spec_hash,
            }

        return {
            "journey_id": self.journey_id,
            "old": side(self.old),
            "new": side(self.new),
            "deploying": self.deploying,
            "new_version_in_flight": self.already,
            "in_flight": {str(v): n for v, n in self.in_flight.items()},
            "changes": [
                {
                    "kind": i.change.kind,
                    "step": i.change.step,
                    "template": i.change.template,
                    "text": i.change.text,
                    "old": i.change.old,
                    "new": i.change.new,
                    "impact": i.sentence,
                    "versions": [
                        {"version": s.version, "waiting": s.waiting, "reaching": s.reaching}
                        for s in i.versions
                    ],
                }
                for i in self.impacts
            ],
        }


# --- sides ------------------------------------------------------------------------


def _deployed_row(session: Session, journey_id: str, version: int | None) -> JourneyVersion:
    rows = session.exec(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id)
        .order_by(col(JourneyVersion.version))
    ).all()
    if not rows:
        raise DiffError(f"journey {journey_id!r} was never deployed")
    if version is not None:
        row = next((r for r in rows if r.version == version), None)
        if row is None:
            known = ", ".join(str(r.version) for r in rows)
            raise DiffError(f"journey {journey_id!r} has no version {version}; it has {known}")
        return row
    # The version new entries start on; for a retired journey the one it was retired on.
    return (
        max((r for r in rows if r.active), key=lambda r: r.version, default=None)
        or max((r for r in rows if r.retired_at), key=lambda r: r.retired_at, default=None)
        or rows[-1]
    )


def deployed(engine: Engine, journey_id: str, version: int | None = None) -> Side:
    with session_scope(engine) as session:
        row = _deployed_row(session, journey_id, version)
        state = "active" if row.active else ("retired" if row.retired_at else "inactive")
        return Side(
            m.Journey.model_validate(row.spec),
            f"version {row.version} ({state})",
            row.spec_hash,
            row.version,
            row.deployed_at,
            pins=dict(row.templates or {}),
        )


def from_file(path: Path) -> Side:
    """Raises JourneyError with every problem of an invalid file."""
    loaded = load_journey(path)
    return Side(loaded.journey, str(path), loaded.spec_hash, path=path)


def _on_disk(journeys_dir: Path, journey_id: str) -> Side:
    loaded, _ = load_journeys([journeys_dir])
    for item in loaded:
        if item.journey.id == journey_id:
            return Side(item.journey, str(item.path), item.spec_hash, path=item.path)
    raise DiffError(f"no file in {journeys_dir} defines journey {journey_id!r}")


def side(engine: Engine, journeys_dir: Path, arg: str, *, as_new: bool) -> Side:
    """`ID@N`, a path, or `ID` (the deployed version as OLD, the file on disk as NEW)."""
    if match := _AT_VERSION.match(arg):
        return deployed(engine, match[1], int(match[2]))
    path = Path(arg)
    if path.suffix in (".yaml", ".yml") or path.exists() or not _ID.match(arg):
        if not path.is_file():
            raise DiffError(f"{arg}: no such journey file (nor a journey id or ID@VERSION)")
        return from_file(path)
    return _on_disk(journeys_dir, arg) if as_new else deployed(engine, arg)


def _current(engine: Engine, journey_id: str) -> Side | None:
    try:
        return deployed(engine, journey_id)
    except DiffError:
        return None


def resolve(
    engine: Engine, journeys_dir: Path, args: tuple[str, ...]
) -> list[tuple[Side | None, Side]]:
    """The pairs to compare: `OLD NEW`, `NEW` against its deployed version, or every
    journey file on disk against its deployed version."""
    if len(args) > 2:
        raise DiffError("diff takes at most two arguments: [OLD] NEW")
    if len(args) == 2:
        return [
            (
                side(engine, journeys_dir, args[0], as_new=False),
                side(engine, journeys_dir, args[1], as_new=True),
            )
        ]
    if len(args) == 1:
        new = side(engine, journeys_dir, args[0], as_new=True)
        return [(_current(engine, new.journey.id), new)]
    loaded, problems = load_journeys([journeys_dir])
    if problems:
        raise JourneyError(problems)
    if not loaded:
        raise DiffError(f"no journey files in {journeys_dir}")
    return [
        (
            _current(engine, item.journey.id),
            Side(item.journey, str(item.path), item.spec_hash, path=item.path),
        )
        for item in loaded
    ]


# --- the diff ---------------------------------------------------------------------


def _deploying(engine: Engine, new: Side, flight: dict[int, int]) -> str:
    """What deploying NEW would do: a new version, a revert, or nothing."""
    if new.version is not None or new.spec_hash is None:
        return ""
    with session_scope(engine) as session:
        rows = session.exec(
            select(JourneyVersion).where(JourneyVersion.journey_id == new.journey.id)
        ).all()
        same = next((r for r in rows if r.spec_hash == new.spec_hash), None)
        latest = max((r.version for r in rows), default=0)
        if same is not None and same.active:
            return f"deployed already as version {same.version}: deploying changes nothing"
    target = f"version {same.version} again" if same else f"version {latest + 1}"
    older = [v for v in flight if same is None or v != same.version]
    if not older:
        return f"deploying makes it {target}; no run in flight"
    return (
        f"deploying makes it {target}: runs in flight finish on the version they entered, "
        "only new entries start on the new one"
    )


def diff(engine: Engine, old: Side | None, new: Side, templates_dir: Path | None) -> JourneyDiff:
    journey_id = (old or new).journey.id
    if new.path is not None and templates_dir is not None and new.spec_hash is not None:
        # A file is deployed with the template files it sends: they make its version too.
        pins = manifest(pinned_files(templates_dir, sends(new.journey)))
        new = replace(new, spec_hash=version_hash(new.spec_hash, pins), pins=pins)
    flight = in_flight(engine, journey_id)
    result = JourneyDiff(journey_id, old, new, _deploying(engine, new, flight.per_version))
    result.in_flight = flight.per_version
    if old is None:
        return result
    changes = compare(old.journey, new.journey)
    names = set(sends(old.journey)) | set(sends(new.journey))
    if old.pins and new.pins is not None:  # exactly which files differ
        changes += [
            Change("template_files", text, template=message)
            for message, text in describe_pin_changes(old.pins, new.pins, names)
        ]
    elif templates_dir is not None and old.deployed_at is not None and new.path is not None:
        changes += template_edits(templates_dir, names, old.deployed_at)
    # Runs already on NEW (a deployed version, or the one NEW's spec reverts to) have
    # the change: what deploying does concerns the others.
    same = _version_of(engine, new)
    others = InFlight(
        flight.journey_id,
        {v: steps for v, steps in flight.runs.items() if v != same},
        flight.specs,
        flight.pinned,
    )
    result.impacts = impacts(changes, old.journey, others)
    result.already = same
    return result


def _version_of(engine: Engine, side: Side) -> int | None:
    if side.version is not None or side.spec_hash is None:
        return side.version
    with session_scope(engine) as session:
        return session.exec(
            select(JourneyVersion.version).where(
                JourneyVersion.journey_id == side.journey.id,
                JourneyVersion.spec_hash == side.spec_hash,
            )
        ).first()
