"""The activity behind a scheduled segment refresh: the SQL diff, in one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from temporalio import activity

from ..segments.membership import UnknownSegment, refresh
from ..store.db import session_scope
from ..workflows.segment_refresh import (
    REFRESH_SEGMENT,
    RefreshSegmentRequest,
    RefreshSegmentResult,
)


class SegmentActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=REFRESH_SEGMENT)
    def refresh_segment(self, req: RefreshSegmentRequest) -> RefreshSegmentResult:
        """Refresh as of the workflow's time; a retry after a commit finds nothing new."""
        now = datetime.fromisoformat(req.now)
        try:
            with session_scope(self.engine) as session:
                change = refresh(session, req.name, now)
        except UnknownSegment as exc:
            # Removed from segments.yaml after the schedule fired: nothing to do, no retry.
            activity.logger.warning("segment refresh skipped: %s", exc)
            return RefreshSegmentResult(skipped=str(exc))
        return RefreshSegmentResult(entered=change.entered, exited=change.exited)
