"""Deploying journeys: validate every file, then store a new version of each edited one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from .dsl.loader import load_journeys
from .dsl.problems import Problem
from .rendering import Renderer
from .store.db import session_scope
from .store.versions import deploy_journey


@dataclass(frozen=True)
class DeployedVersion:
    journey_id: str
    version: int
    path: str


class InvalidJourneys(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in journeys")
        self.problems = problems


def deploy(engine: Engine, journeys_dir: Path, templates: Path | Renderer) -> list[DeployedVersion]:
    """All or nothing: one invalid journey (or message that does not render) and nothing is."""
    loaded, problems = load_journeys([journeys_dir], templates)
    if problems:
        raise InvalidJourneys(problems)
    deployed = []
    for item in loaded:
        spec = item.journey.model_dump(mode="json", by_alias=True)
        # One session each: deploy_journey rolls its session back when it loses a race
        # with another process, which must not undo the journeys deployed before it.
        with session_scope(engine) as session:
            row = deploy_journey(session, item.journey.id, spec, item.spec_hash, str(item.path))
            deployed.append(DeployedVersion(row.journey_id, row.version, str(item.path)))
    return deployed
