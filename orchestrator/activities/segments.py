"""The activity behind a scheduled segment refresh: the SQL diff, in one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from temporalio import activity

from ..segments.membership import UnknownSegment, refresh
from ..store.db import session_scope
from ..store.tables import utcnow
from ..workflows.segment_refresh import (
    REFRESH_SEGMENT,
    RefreshSegmentRequest,
    RefreshSegmentResult,
)


class SegmentActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=REFRESH_SEGMENT, no_thread_cancel_exception=True)
    def refresh_segment(self, req: RefreshSegmentRequest) -> RefreshSegmentResult:
        """Refresh as of now; a retry after a commit finds nothing new.

        Never earlier than the clock: a refresh that starts late (retried, queued) must
        not judge members as of a past the router has already refreshed beyond, which
        would exit and re-enter them (two `Segment Entered`, journeys started twice).
        The workflow's time still wins when it is ahead (a time-skipping test server).
        """
        now = max(datetime.fromisoformat(req.now), utcnow())
        try:
            with session_scope(self.engine) as session:
                change = refresh(session, req.name, now)
        except UnknownSegment as exc:
            # Removed from segments.yaml after the schedule fired: nothing to do, no retry.
            activity.logger.warning("segment refresh skipped: %s", exc)
            return RefreshSegmentResult(skipped=str(exc))
        return RefreshSegmentResult(entered=change.entered, exited=change.exited)
