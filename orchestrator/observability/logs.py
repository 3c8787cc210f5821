"""Log lines: human-readable by default, one JSON object per line with
JOURNEYS_LOG_FORMAT=json (for a log collector).

A JSON line has `time` (UTC, ISO 8601), `level`, `logger` and `message`, and where known
`run` (the workflow id), `step`, `message_id`, `journey`, `event_id`, the Temporal
`activity` and, when tracing is on, `trace_id` and `span_id`; `exception` holds a
traceback. The ids come from the record's `extra`, from `ids.py`, and from Temporal's
activity and workflow loggers. Nothing else of the record is copied: the messages of
this program name contacts by id, never by address or name.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from . import ids, tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(record_ids(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def record_ids(record: logging.LogRecord) -> dict[str, str]:
    """The ids a record carries, from the most general source to the most specific."""
    found: dict[str, str] = {}
    temporal = getattr(record, "temporal_workflow", None) or getattr(
        record, "temporal_activity", None
    )
    if isinstance(temporal, dict):
        if temporal.get("workflow_id"):
            found["run"] = str(temporal["workflow_id"])
        if temporal.get("activity_type"):
            found["activity"] = str(temporal["activity_type"])
    else:
        found.update(_activity_ids())
    found.update(ids.current())
    for field in ids.ATTRIBUTES:
        value = getattr(record, field, None)
        if value is not None and value != "":
            found[field] = str(value)
    current = tracing.current_ids()
    if current is not None:
        found["trace_id"], found["span_id"] = current
    return found


def _activity_ids() -> dict[str, str]:
    """The run and activity of a module logger's record written inside an activity."""
    from temporalio import activity

    if not activity.in_activity():
        return {}
    info = activity.info()
    return {"run": info.workflow_id or "", "activity": info.activity_type}


def configure_logging(log_format: LogFormat = "text", level: int = logging.WARNING) -> None:
    """Warnings and errors on stderr, one line each: text with time, level and source,
    or JSON. What goes wrong in a running journey (a failed send, a paused router) is
    logged at WARNING where it is decided; without a handler Python would print bare
    messages. Leaves a configuration the embedding program made alone."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
