"""`journeys runs`: journey runs from the store, as a plain-text table (or JSON).

Each run shows how its last message ended (`sent`, `failed: <why>`, `suppressed: <why>`,
`skipped: <why>`, `deferred until …`), so a send that failed does not look like one
that went out. The messages of the listed runs are read in one query per 500 runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, exists, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from ..store.db import session_scope
from ..store.tables import JourneyRun, Message
from .tables import render_table

COLUMNS = (
    "journey",
    "version",
    "contact",
    "status",
    "step",
    "converted",
    "entered",
    "updated",
    "last message",
)
# The table shows the start of a long reason; `--json` has all of it.
MAX_OUTCOME = 80
_CHUNK = 500  # runs per query: bound parameters stay far below every database's limit
_SENT = ("sent", "delivered", "opened", "clicked", "replied", "bounced")
_WHY = ("failed", "suppressed", "skipped")
# How runs end (`journeys runs --status`); a hand-written Python journey may record others.
RUN_STATUSES = ("active", "completed", "exited")
# How a run's last message ended (`--last-message`): its status, or `none` (no message yet).
NO_MESSAGE = "none"
MESSAGE_OUTCOMES = (
    *_SENT,
    *_WHY,
    "deferred",
    "unknown",
    "pending",
    "queued",
    "sending",
    NO_MESSAGE,
)


@dataclass(frozen=True)
class LastMessage:
    """The most recent message of a run: its step and how it ended."""

    step_id: str
    template: str
    channel: str
    status: str
    reason: str | None
    until: str | None  # deferred: when it is tried again (ISO 8601)
    created_at: datetime

    @property
    def outcome(self) -> str:
        """`sent`, `failed: template x: undefined variable: …`, `deferred until …`."""
        if self.status == "deferred" and self.until:
            moment = datetime.fromisoformat(self.until).astimezone(UTC)
            text = f"deferred until {moment:%Y-%m-%d %H:%M} UTC"  # as the other columns
            return f"{text} ({self.reason})" if self.reason else text
        if self.status in _WHY and self.reason:
            return f"{self.status}: {self.reason}"
        return self.status

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "template": self.template,
            "channel": self.channel,
            "status": self.status,
            "reason": self.reason,
            "deferred_until": self.until,
            "outcome": self.outcome,
            "created_at": self.created_at.isoformat(),
        }


def run_statuses(engine: Engine) -> list[str]:
    """The statuses `--status` accepts: ours, and any other the store holds."""
    with session_scope(engine) as session:
        stored = session.exec(select(JourneyRun.status).distinct()).all()
    return [*RUN_STATUSES, *sorted(set(stored) - set(RUN_STATUSES))]


def list_runs(
    engine: Engine,
    journey: str | None = None,
    contact: str | None = None,
    status: str | None = None,
    limit: int = 50,
    last_message: Sequence[str] = (),
) -> list[JourneyRun]:
    """Newest first; `last_message`: only runs whose last message ended so (or `none`)."""
    query = select(JourneyRun)
    if journey:
        query = query.where(JourneyRun.journey_id == journey)
    if contact:
        query = query.where(JourneyRun.contact_id == contact)
    if status:
        query = query.where(JourneyRun.status == status)
    if last_message:
        query = query.where(_last_message_in(last_message))
    query = query.order_by(JourneyRun.entered_at.desc(), JourneyRun.id.desc()).limit(limit)  # type: ignore[attr-defined,union-attr]
    with session_scope(engine) as session:
        rows = list(session.exec(query))
        for row in rows:
            session.expunge(row)
        return rows


def _last_message_in(outcomes: Sequence[str]) -> ColumnElement[bool]:
    """The run's last message (the latest by creation, then id, as `last_messages` reads
    it) has one of these statuses; `none`: the run has no message. Read through the
    messages' contact index, one run at a time, so a page stops at its limit."""
    mine, later = aliased(Message), aliased(Message)

    def same_run(message: Any, run: Any) -> ColumnElement[bool]:
        return and_(
            message.contact_id == run.contact_id,
            message.workflow_id == run.workflow_id,
            message.entry_seq == run.entry_seq,
        )

    # Against `mine`, not the run: a subquery correlates with the one just around it.
    newer = exists().where(
        same_run(later, mine),
        or_(
            later.created_at > mine.created_at,
            and_(later.created_at == mine.created_at, later.id > mine.id),
        ),
    )
    statuses = [o for o in outcomes if o != NO_MESSAGE]
    found = []
    if statuses:
        found.append(
            exists().where(same_run(mine, JourneyRun), col(mine.status).in_(statuses), ~newer)
        )
    if NO_MESSAGE in outcomes:
        found.append(~exists().where(same_run(mine, JourneyRun)))
    return or_(*found)


def last_messages(engine: Engine, runs: Iterable[JourneyRun]) -> dict[tuple[str, int], LastMessage]:
    """The last message of each run, by (workflow id, entry), read by contact (indexed)."""
    runs = list(runs)
    found: dict[tuple[str, int], LastMessage] = {}
    with session_scope(engine) as session:
        for start in range(0, len(runs), _CHUNK):
            _read_chunk(session, runs[start : start + _CHUNK], found)
    return found


def _read_chunk(
    session: Session, runs: list[JourneyRun], found: dict[tuple[str, int], LastMessage]
) -> None:
    wanted = {(r.workflow_id, r.entry_seq) for r in runs}
    query = (
        select(
            Message.workflow_id,
            Message.entry_seq,
            Message.step_id,
            Message.template,
            Message.channel,
            Message.status,
            Message.error,
            Message.timeline,
            Message.created_at,
        )
        .where(
            col(Message.contact_id).in_(sorted({r.contact_id for r in runs})),
            col(Message.workflow_id).in_(sorted({r.workflow_id for r in runs})),
        )
        .order_by(col(Message.created_at), col(Message.id))
    )
    for wid, seq, step, template, channel, status, error, timeline, created in session.exec(query):
        if (wid, seq) not in wanted:
            continue  # another entry of the same workflow
        reason, until = error, None
        if status == "deferred":
            held = next((e for e in reversed(timeline or []) if e.get("until")), {})
            reason, until = held.get("detail"), held.get("until")
        found[(wid, seq)] = LastMessage(step, template, channel, status, reason, until, created)


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _short(text: str, width: int = MAX_OUTCOME) -> str:
    """At most `width` characters, cut between words where there is one to cut at."""
    if len(text) <= width:
        return text
    cut = text[: width - 2]
    if " " in cut[width // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + " …"


def render_runs(
    rows: list[JourneyRun], messages: dict[tuple[str, int], LastMessage] | None = None
) -> str:
    if not rows:
        return "no journey runs"
    messages = messages or {}
    table = [
        (
            r.journey_id,
            f"v{r.version}",
            r.contact_id,
            r.status,
            r.current_step or "-",
            "yes" if r.converted_at else "no",
            _time(r.entered_at),
            _time(r.updated_at),
            _short(m.outcome) if (m := messages.get((r.workflow_id, r.entry_seq))) else "-",
        )
        for r in rows
    ]
    return render_table(COLUMNS, table)


def runs_as_json(
    rows: list[JourneyRun], messages: dict[tuple[str, int], LastMessage]
) -> list[dict[str, Any]]:
    """Every run with its last message in full (`journeys runs --json`)."""
    return [
        {
            "journey": r.journey_id,
            "version": r.version,
            "contact": r.contact_id,
            "workflow_id": r.workflow_id,
            "entry": r.entry_seq,
            "status": r.status,
            "step": r.current_step,
            "exit_reason": r.exit_reason,
            "converted_at": r.converted_at.isoformat() if r.converted_at else None,
            "revenue": r.revenue,
            "entered_at": r.entered_at.isoformat(),
            "updated_at": r.updated_at.isoformat(),
            "last_message": m.as_json()
            if (m := messages.get((r.workflow_id, r.entry_seq)))
            else None,
        }
        for r in rows
    ]
