"""Deploying journeys and segments: validate every file, then store a new version of each
edited journey and the segments of `segments.yaml`.

Which journeys are active afterwards depends on who deploys:

- `journeys dev` and `journeys deploy` make the folder's journeys exactly the active set:
  a journey whose file is gone is retired (no new entries; runs in flight finish on their
  version), one whose file is back is reactivated. A person chose that folder.
- `journeys worker` deploys on every start, and during a rolling update (or when an old
  image restarts) its checkout may be older than what is deployed. So a worker never
  changes the active set: it adds journeys never deployed and new versions of active
  ones, and only warns about active journeys it has no file for and retired journeys
  whose file it has. `journeys deploy` settles those.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine
from sqlmodel import col, select

from ..dsl.problems import Problem
from ..rendering import Renderer
from ..segments.membership import store_segments
from ..store.date_plans import plan_dates
from ..store.db import session_scope
from ..store.tables import JourneyVersion, utcnow
from ..store.template_blobs import store_blobs
from ..store.versions import (
    active_versions,
    deploy_journey,
    is_retired,
    release_hold,
    retire_others,
    rollback_hold,
)
from .changes import sends
from .event_names import store_names
from .template_pins import manifest, pinned_files, version_hash
from .validation import Validation, validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployedVersion:
    """A journey as a deploy left it: `active` (its file was deployed; `reactivated` when
    it had been retired) or `retired` (its file is gone; `version` is the one it was
    retired on, `path` where its file was)."""

    journey_id: str
    version: int
    path: str
    status: Literal["active", "retired", "held"] = "active"
    reactivated: bool = False
    file_gone: bool = False  # held, although the folder has no file for it

    def describe(self, folder: Path) -> str:
        """What `journeys dev` and `journeys deploy` print for it."""
        if self.status == "retired":  # its runs in flight finish
            return f"journey: {self.journey_id} v{self.version} retired: not in {folder}"
        if self.status == "held" and self.file_gone:  # retiring it waits for --release
            return (
                f"journey: {self.journey_id} stays on v{self.version} (rolled back), although "
                f"{folder} has no file for it; journeys deploy --release {self.journey_id} "
                "retires it"
            )
        if self.status == "held":  # rolled back: the file waits for --release
            return (
                f"journey: {self.journey_id} stays on v{self.version} (rolled back; "
                f"journeys deploy --release {self.journey_id} deploys {self.path})"
            )
        if self.reactivated:  # retired by an earlier deploy, its file is back
            return f"journey: {self.journey_id} v{self.version} reactivated ({self.path})"
        return f"journey: {self.journey_id} v{self.version} ({self.path})"


class InvalidJourneys(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in journeys")
        self.problems = problems


class NoJourneys(ValueError):
    """A folder without a single journey, deployed as the active set, would retire every
    active journey: most likely the wrong folder (a typo in --journeys, a checkout in
    progress), so it takes `retire_all` to mean it."""


@dataclass(frozen=True)
class DeployPlan:
    """A validated folder, ready to store: what `plan_deploy` checked and `apply_deploy`
    writes, so a caller may do other checks between the two (`journeys dev` starts the
    Temporal server there: a start that fails then has changed nothing)."""

    journeys_dir: Path
    validation: Validation
    retire_missing: bool
    templates_dir: Path | None = None  # pinned into each version; None pins nothing


def deploy(
    engine: Engine,
    journeys_dir: Path,
    templates: Path | Renderer,
    *,
    retire_missing: bool = True,
    retire_all: bool = False,
    release: Iterable[str] = (),
) -> list[DeployedVersion]:
    """All or nothing: one invalid journey (or message that does not render), or one
    problem in segments.yaml, and nothing is. Warnings (an event name nothing is known
    to send) are logged and do not stop it.

    `retire_missing` (`journeys dev`, `journeys deploy`): the folder's journeys become
    exactly the active set, the others are retired and listed last; a folder with no
    journey at all is refused while journeys are active, unless `retire_all`. Without
    `retire_missing` (`journeys worker`) the active set is left as it is; see the
    module docstring.
    """
    plan = plan_deploy(
        engine, journeys_dir, templates, retire_missing=retire_missing, retire_all=retire_all
    )
    return apply_deploy(engine, plan, release)


def plan_deploy(
    engine: Engine,
    journeys_dir: Path,
    templates: Path | Renderer,
    *,
    retire_missing: bool = True,
    retire_all: bool = False,
) -> DeployPlan:
    """Validate the folder and what deploying it would do; writes nothing.

    Raises InvalidJourneys with every problem, or NoJourneys (see `deploy`).
    """
    renderer = Renderer(templates) if isinstance(templates, Path) else templates
    result = validate([journeys_dir], renderer, read_received_events=lambda: store_names(engine)[0])
    if result.problems:
        raise InvalidJourneys(result.problems)
    if retire_missing and not result.journeys and not retire_all:
        with session_scope(engine) as session:
            active = sorted({row.journey_id for row in active_versions(session)})
        if active:
            if len(active) > 8:  # a line, not a page
                active = [*active[:5], f"{len(active) - 5} more"]
            shown = ", ".join(active)
            raise NoJourneys(
                f"{journeys_dir} has no journeys: deploying it would retire every active "
                f"journey ({shown}); nothing was deployed. Check the folder "
                "(--journeys DIR), or pass --retire-all if retiring them all is what you mean"
            )
    for warning in result.warnings:
        log.warning("%s", warning)
    return DeployPlan(journeys_dir, result, retire_missing, renderer.templates_dir)


def apply_deploy(
    engine: Engine, plan: DeployPlan, release: Iterable[str] = ()
) -> list[DeployedVersion]:
    """Store what `plan_deploy` validated: new versions, retirements, segments.

    A journey held on a rolled-back version keeps it (reported `held`) unless it is in
    `release` (`journeys deploy --release JOURNEY`): then its file is deployed as usual.
    """
    result, journeys_dir, retire_missing = plan.validation, plan.journeys_dir, plan.retire_missing
    release = set(release)
    for journey_id in release:
        with session_scope(engine) as session:
            release_hold(session, journey_id)
    deployed = []
    for item in result.journeys:
        spec = item.journey.model_dump(mode="json", by_alias=True)
        files = pinned_files(plan.templates_dir, sends(item.journey)) if plan.templates_dir else {}
        pins = manifest(files)
        with session_scope(engine) as session:  # before the version naming them
            store_blobs(session, files, pins)
        # One session each: deploy_journey rolls its session back when it loses a race
        # with another process, which must not undo the journeys deployed before it.
        with session_scope(engine) as session:
            held = rollback_hold(session, item.journey.id)
            digest = version_hash(item.spec_hash, pins)
            if held is not None and held.spec_hash != digest and item.journey.id not in release:
                log.warning(
                    "journey %s stays on v%d, where `journeys deploy --rollback` put it; "
                    "`journeys deploy --release %s` deploys %s",
                    item.journey.id,
                    held.version,
                    item.journey.id,
                    item.path,
                )
                deployed.append(
                    DeployedVersion(held.journey_id, held.version, str(item.path), "held")
                )
                continue
            retired = is_retired(session, item.journey.id)
            if retired and not retire_missing:
                log.warning(
                    "journey %s is retired and stays retired, although %s is back: "
                    "`journeys deploy` reactivates it",
                    item.journey.id,
                    item.path,
                )
                continue
            known = session.exec(
                select(col(JourneyVersion.active)).where(
                    JourneyVersion.journey_id == item.journey.id,
                    JourneyVersion.spec_hash == digest,
                )
            ).first()
            row = deploy_journey(
                session, item.journey.id, spec, digest, str(item.path), templates=pins
            )
            if item.journey.trigger.trait is not None:  # contacts known before it
                # A version current again (a retired journey deployed again, a revert)
                # plans anew: watches that ended while it was not current, and contacts
                # identified meanwhile, get theirs.
                again = known is not None and not known
                activation = f"@{utcnow():%Y%m%dT%H%M%S%f}" if again else ""
                plan_dates(
                    session, row.journey_id, row.version, item.journey.trigger.trait, activation
                )
            deployed.append(
                DeployedVersion(row.journey_id, row.version, str(item.path), reactivated=retired)
            )
    in_folder = {item.journey.id for item in result.journeys}
    with session_scope(engine) as session:
        if retire_missing:
            # A rollback holds against deploys from files, a file gone too (`--rollback`
            # of a retired journey brings it back): retiring it waits for `--release`.
            for row in active_versions(session):
                if row.journey_id in in_folder or row.journey_id in release:
                    continue
                if row.rolled_back_at is None:
                    continue
                in_folder.add(row.journey_id)
                log.warning(
                    "journey %s stays on v%d, where `journeys deploy --rollback` put it, "
                    "although %s has no file for it: `journeys deploy --release %s` retires it",
                    row.journey_id,
                    row.version,
                    journeys_dir,
                    row.journey_id,
                )
                deployed.append(
                    DeployedVersion(
                        row.journey_id, row.version, row.source_path or "", "held", file_gone=True
                    )
                )
            for row in retire_others(session, in_folder):
                deployed.append(
                    DeployedVersion(row.journey_id, row.version, row.source_path or "", "retired")
                )
        else:
            for row in active_versions(session):
                if row.journey_id not in in_folder:
                    log.warning(
                        "journey %s stays active although %s has no file for it "
                        "(deployed from %s): `journeys deploy` retires it",
                        row.journey_id,
                        journeys_dir,
                        row.source_path,
                    )
    store_segments(engine, result.segments)
    return deployed
