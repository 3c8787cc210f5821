"""What deploying an edit does to the contacts in flight.

A run finishes on the version it entered on: its frozen spec travels in its
workflow input, so a deploy changes nothing for it, only new entries start on the
new version. What a deploy does is therefore counted per version in flight: how many
runs of each version wait at a changed step now, and how many are at it or before it
and may still reach it. "May": a run before a branch is counted for every case.

Template files are the exception: they are not versioned, so an edited message
reaches runs of every version at their next send of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import col, select

from ..analytics.stats import describe
from ..dsl import models as m
from ..dsl.durations import format_duration
from ..dsl.loader import iter_steps
from ..dsl.source import YamlPath
from ..store.db import session_scope
from ..store.tables import JourneyRun, JourneyVersion
from .changes import Change, sends

_STEP_LISTS = ("steps", "then", "on_timeout", "else", "on_failure")


@dataclass(frozen=True)
class AtStep:
    """Runs of one version in flight: `waiting` at the step now, `reaching` at it or
    before it (waiting included)."""

    version: int
    waiting: int
    reaching: int
    setting: str  # the step as that version has it ("24h", "send cart_reminder by email")


@dataclass(frozen=True)
class Impact:
    change: Change
    versions: list[AtStep]
    sentence: str | None  # what deploying does to them, None for new entries only


@dataclass
class InFlight:
    """The active runs of one journey, per version and step, with each version's spec."""

    journey_id: str
    runs: dict[int, dict[str | None, int]] = field(default_factory=dict)
    specs: dict[int, m.Journey] = field(default_factory=dict)
    pinned: set[int] = field(default_factory=set)  # versions rendering their own files

    @property
    def per_version(self) -> dict[int, int]:
        return {v: sum(steps.values()) for v, steps in sorted(self.runs.items())}

    def at(self, step_id: str, like: Any) -> list[AtStep]:
        """Each version's runs at `step_id` (a step of the same kind as `like` there)."""
        found = []
        for version, steps in sorted(self.runs.items()):
            spec = self.specs.get(version)
            paths = _paths(spec) if spec else {}
            target = paths.get(step_id)
            if target is None or m.step_kind(target[1]) != m.step_kind(like):
                continue
            reaching = sum(
                n
                for at, n in steps.items()
                if (where := _where(paths, at)) is not None and may_reach(where, target[0])
            )
            found.append(AtStep(version, steps.get(step_id, 0), reaching, setting(target[1])))
        return found

    def reaching_any(self, step_ids_by_version: dict[int, list[str]]) -> dict[int, int]:
        """Per version, the runs that may still reach any of its steps listed."""
        found = {}
        for version, steps in sorted(self.runs.items()):
            spec = self.specs.get(version)
            wanted = step_ids_by_version.get(version) or []
            if spec is None or not wanted:
                continue
            paths = _paths(spec)
            targets = [paths[s][0] for s in wanted if s in paths]
            n = sum(
                count
                for at, count in steps.items()
                if (where := _where(paths, at)) is not None
                and any(may_reach(where, t) for t in targets)
            )
            if n:
                found[version] = n
        return found


def in_flight(engine: Engine, journey_id: str) -> InFlight:
    """Two queries: active runs by version and step, and the specs of those versions."""
    result = InFlight(journey_id)
    with session_scope(engine) as session:
        r = JourneyRun
        query = (
            select(r.version, r.current_step, func.count())
            .where(r.journey_id == journey_id, r.status == "active")
            .group_by(col(r.version), col(r.current_step))
        )
        for version, step, n in session.exec(query):
            result.runs.setdefault(version, {})[step] = int(n)
        if result.runs:
            rows = session.exec(
                select(JourneyVersion.version, JourneyVersion.spec, JourneyVersion.templates).where(
                    JourneyVersion.journey_id == journey_id,
                    col(JourneyVersion.version).in_(sorted(result.runs)),
                )
            ).all()
            result.specs = {v: m.Journey.model_validate(spec) for v, spec, _ in rows}
            result.pinned = {v for v, _, pins in rows if pins}
    return result


def _paths(journey: m.Journey) -> dict[str, tuple[YamlPath, Any]]:
    return {str(step.id): (path, step) for path, step in iter_steps(journey.steps, ("steps",))}


def _where(paths: dict[str, tuple[YamlPath, Any]], step_id: str | None) -> YamlPath | None:
    """Where a run is: nowhere yet (just entered) is before every step."""
    if step_id is None:
        return ()
    found = paths.get(step_id)
    return found[0] if found else None


def may_reach(at: YamlPath, target: YamlPath) -> bool:
    """Whether a run at `at` may still come to `target`: it is there, inside its parent
    (a wait_for's outcome, a branch), or earlier in a list that leads to it. A run in
    another case, variant or outcome does not."""
    if target[: len(at)] == at:
        return True
    for i, (a, b) in enumerate(zip(at, target, strict=False)):
        if a != b:
            return (
                target[i - 1] in _STEP_LISTS and isinstance(a, int) and isinstance(b, int) and a < b
            )
    return False  # `at` is inside `target`: past it


def setting(step: Any) -> str:
    """The part of a step a re-timing changes, else the step in words."""
    if isinstance(step, m.WaitStep):
        return format_duration(step.wait)
    if isinstance(step, m.WaitForStep):
        return format_duration(step.wait_for.timeout)
    return describe(step)


def _people(n: int) -> str:
    return f"{n} contact{'' if n == 1 else 's'}"


def _one(counts: dict[int, int]) -> bool:
    return sum(counts.values()) == 1


def _sending(spec: m.Journey, template: str | None) -> list[str]:
    """The steps sending `template`; every send step for a shared file (None)."""
    found = sends(spec)
    if template is None:
        return [step for steps in found.values() for step in steps]
    return found.get(template, [])


def _versions(counts: dict[int, int]) -> str:
    return ", ".join(f"{_people(n)} on version {v}" for v, n in counts.items())


def impact(change: Change, old_step: Any, flight: InFlight) -> Impact:
    """What deploying does to the runs in flight about one change."""
    if change.kind == "journey":
        return Impact(change, [], None)
    if change.kind == "template_files":
        # Versions that pinned their files keep them: only unpinned (older) ones read disk.
        by_version = {
            v: _sending(spec, change.template)
            for v, spec in flight.specs.items()
            if v not in flight.pinned
        }
        counts = flight.reaching_any(by_version)
        if not counts and any(v in flight.pinned for v in flight.runs):
            return Impact(
                change,
                [],
                "runs in flight keep the files of the version they entered on; "
                "new entries get the edit",
            )
        if not counts:
            return Impact(change, [], "no contact in flight still sends it")
        return Impact(
            change,
            [AtStep(v, 0, n, change.template or "") for v, n in counts.items()],
            f"{_versions(counts)} still {'sends' if _one(counts) else 'send'} it: versions "
            "deployed before templates were pinned get the files on disk at their next send",
        )
    if change.kind == "added":
        total = flight.per_version
        if not total:
            return Impact(change, [], "new entries reach it")
        return Impact(
            change, [], f"runs in flight never reach it ({_versions(total)}); new entries do"
        )
    steps = [s for s in flight.at(str(change.step), old_step) if s.reaching]
    if change.kind == "removed":
        if not steps:
            return Impact(change, steps, "no contact in flight still reaches it")
        counts = {s.version: s.reaching for s in steps}
        reach = "reaches" if _one(counts) else "reach"
        return Impact(change, steps, f"{_versions(counts)} still {reach} it")
    if change.kind == "retimed":
        parts = []
        for s in steps:
            later = s.reaching - s.waiting
            who = f"{_people(s.waiting)} waiting there now"
            if later:
                who += f" and {later} more still to reach it"
            verb = "finishes" if s.reaching == 1 else "finish"
            parts.append(f"{who} {verb} on version {s.version} ({s.setting})")
        lead = "; ".join(parts) if parts else "no contact in flight is at it or before it"
        return Impact(change, steps, f"{lead}; new entries get {change.new}")
    if not steps:
        return Impact(
            change, steps, "no contact in flight still reaches it; new entries get the change"
        )
    counts = {s.version: s.reaching for s in steps}
    return Impact(
        change,
        steps,
        f"{_versions(counts)} still {'reaches' if _one(counts) else 'reach'} it as their "
        "version has it; new entries get the change",
    )


def impacts(changes: Sequence[Change], old: m.Journey, flight: InFlight) -> list[Impact]:
    old_steps = {str(step.id): step for _, step in iter_steps(old.steps, ("steps",))}
    return [impact(c, old_steps.get(str(c.step)), flight) for c in changes]
