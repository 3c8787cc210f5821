"""Deploying journeys and segments: validate every file, then store a new version of each
edited journey and the segments of `segments.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from ..dsl.problems import Problem
from ..rendering import Renderer
from ..segments.membership import store_segments
from ..store.db import session_scope
from ..store.versions import deploy_journey
from .validation import validate


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
    """All or nothing: one invalid journey (or message that does not render), or one
    problem in segments.yaml, and nothing is."""
    renderer = Renderer(templates) if isinstance(templates, Path) else templates
    result = validate([journeys_dir], renderer)
    if result.problems:
        raise InvalidJourneys(result.problems)
    deployed = []
    for item in result.journeys:
        spec = item.journey.model_dump(mode="json", by_alias=True)
        # One session each: deploy_journey rolls its session back when it loses a race
        # with another process, which must not undo the journeys deployed before it.
        with session_scope(engine) as session:
            row = deploy_journey(session, item.journey.id, spec, item.spec_hash, str(item.path))
            deployed.append(DeployedVersion(row.journey_id, row.version, str(item.path)))
    store_segments(engine, result.segments)
    return deployed
