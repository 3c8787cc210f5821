"""Segments: named conditions over contacts, kept up to date as membership stays and events.

`journeys/segments.yaml` defines them (`models`, `loader`); `query` compiles one
to SQL; `membership` diffs it against the stored stays and writes `Segment
Entered` / `Segment Exited` events; `schedules` keeps one Temporal Schedule per
segment that re-evaluates it. Reference: docs/segments.md.
"""

from __future__ import annotations

from .loader import SEGMENTS_FILE, LoadedSegment, SegmentError, load_segments
from .membership import (
    SEGMENT_ENTERED,
    SEGMENT_EXITED,
    Change,
    DeployedSegment,
    UnknownSegment,
    deploy_segments,
    refresh,
    refresh_for_events,
)
from .models import Condition, Segment
from .query import members_query

__all__ = [
    "SEGMENTS_FILE",
    "SEGMENT_ENTERED",
    "SEGMENT_EXITED",
    "Change",
    "Condition",
    "DeployedSegment",
    "LoadedSegment",
    "Segment",
    "SegmentError",
    "UnknownSegment",
    "deploy_segments",
    "load_segments",
    "members_query",
    "refresh",
    "refresh_for_events",
]
