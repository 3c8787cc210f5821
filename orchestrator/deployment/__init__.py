"""From files to running journeys: validate journeys, segments and the messages they
send (a layer above the journey language and rendering), then store new versions."""

from __future__ import annotations

from .deploy import (
    DeployedVersion,
    DeployPlan,
    InvalidJourneys,
    NoJourneys,
    apply_deploy,
    deploy,
    plan_deploy,
)
from .validation import Validation, senders_of, trigger_event_of, trigger_of, validate

__all__ = [
    "DeployPlan",
    "DeployedVersion",
    "InvalidJourneys",
    "NoJourneys",
    "Validation",
    "apply_deploy",
    "deploy",
    "plan_deploy",
    "senders_of",
    "trigger_event_of",
    "trigger_of",
    "validate",
]
