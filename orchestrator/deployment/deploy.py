"""Deploying journeys and segments: validate every file, then store a new version of each
edited journey and the segments of `segments.yaml`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from ..dsl.problems import Problem
from ..rendering import Renderer
from ..segments.membership import store_segments
from ..store.db import session_scope
from ..store.versions import deploy_journey
from .event_names import store_names
from .validation import validate

log = logging.getLogger(__name__)


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
    problem in segments.yaml, and nothing is. Warnings (an event name nothing is known
    to send) are logged and do not stop it."""
    renderer = Renderer(templates) if isinstance(templates, Path) else templates
    received, _ = store_names(engine)
    result = validate([journeys_dir], renderer, received_events=received)
    if result.problems:
        raise InvalidJourneys(result.problems)
    for warning in result.warnings:
        log.warning("%s", warning)
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
