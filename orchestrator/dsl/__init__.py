"""The journey language: typed models, the YAML loader and its located problems."""

from __future__ import annotations

from .durations import parse_duration
from .loader import LoadedJourney, load_journey, load_journeys
from .models import Journey
from .problems import JourneyError, Problem

__all__ = [
    "Journey",
    "JourneyError",
    "LoadedJourney",
    "Problem",
    "load_journey",
    "load_journeys",
    "parse_duration",
]
