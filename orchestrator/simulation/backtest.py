"""Backtest: recorded events replayed through a draft journey, in simulated time.

The simulator's machinery (its own time-skipping server, its own SQLite store, the real
worker with a console adapter that writes nowhere), with the shoppers' behaviour taken
from a record instead of a scenario's probabilities: a Segment NDJSON file, or the live
store's events over a period (read only; the contacts' rows are copied into the
simulation's store). Each recorded call happens at `start + (its time - the first
call's time)`, and `start` keeps the first call's weekday and time of day, so quiet
hours and `wait_until` see the hours they saw then.

Orders and every other event are replayed as they happened, whatever the draft sends.
Engagement with a message (`Email Opened`, `Push Opened`... naming a `message_id`)
cannot point at its own message, which belongs to the past: it is mapped to the
simulated message of the same contact on the same channel sent closest before the
engagement's time, and dropped when there is none. So a recorded open answers whatever
the draft sent that contact on that channel before; it cannot tell whether the contact
would have opened a different message.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, create_engine
from sqlmodel import Session, col, select

from ..api.ingest import store_call
from ..api.segment import CALLS, SegmentCall, TrackCall
from ..dsl import models as m
from ..dsl.loader import journey_files, load_journey
from ..dsl.models import Journey
from ..dsl.problems import JourneyError
from ..dsl.scenario import MAX_DAYS, Scenario
from ..feedback.recording import record_message_feedback
from ..feedback.types import Feedback
from ..settings import Settings
from ..store.db import make_engine, normalize_url, session_scope
from ..store.engagement import ENGAGEMENT_EVENTS
from ..store.identity import canonical_id
from ..store.tables import ORIGIN_INTERNAL, Contact, Event, JourneyRun, Message
from .population import Shopper
from .report import build_report
from .runner import Progress, Simulation, SimulationError, Simulator, default_start

MAX_PROBLEMS = 20  # bad lines listed before the rest are only counted
SAMPLES = 3
# A wait_until may wait up to a week; quiet hours defer a send by up to a day.
WAIT_UNTIL_WORST = timedelta(days=7)
MARGIN = timedelta(days=1)


class BacktestError(SimulationError):
    """A record that cannot be replayed: said with the line (or event) at fault."""


@dataclass
class Recorded:
    """One recorded call. `internal`: a provider report from the live store (stored with
    our own origin), replayed as a report rather than as a client call."""

    at: datetime
    call: SegmentCall
    internal: bool = False


@dataclass
class Recording:
    """What a backtest replays, and where it came from (for the report)."""

    source: str
    calls: list[Recorded]
    contacts: list[dict[str, Any]] = field(default_factory=list)  # live rows, to copy
    skipped: dict[str, int] = field(default_factory=dict)  # not replayed, by event name

    @property
    def first(self) -> datetime:
        return self.calls[0].at

    @property
    def last(self) -> datetime:
        return self.calls[-1].at

    @property
    def contact_ids(self) -> list[str]:
        return list(dict.fromkeys(r.call.contact_id for r in self.calls))


# --- reading the record ------------------------------------------------------------


def read_ndjson(path: Path) -> Recording:
    """Every line checked before anything runs; a BacktestError lists the bad ones with
    their line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BacktestError(f"cannot read {path}: {exc}") from None
    calls: list[Recorded] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            calls.append(_parse_line(line))
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        tail = f"\n... and {more} more" if more else ""
        raise BacktestError(
            f"{len(problems)} bad line(s) in {path}; nothing was run:\n" + "\n".join(shown) + tail
        )
    if not calls:
        raise BacktestError(f"no calls in {path}: expected one Segment call (JSON) per line")
    calls.sort(key=lambda r: r.at)  # stable: calls of the same moment keep their order
    return Recording(source=str(path), calls=calls)


def _parse_line(line: str) -> Recorded:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError("expected a JSON object: one Segment call")
    kind = raw.get("type")
    model = CALLS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ValueError(f"type {kind!r}: expected one of {', '.join(CALLS)}")
    try:
        call = model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or kind
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ValueError(f"{where}: {message}") from None
    moment = call.timestamp or call.original_timestamp
    if moment is None:
        raise ValueError("timestamp is required: when it happened sets the replay's timing")
    return Recorded(moment, call)


def read_store(settings: Settings, first: date, last: date) -> Recording:
    """The live store's events that happened from `first` to `last` (whole UTC days), and
    their contacts' rows: read only, on a connection that cannot write."""
    since = datetime.combine(first, time(), UTC)
    until = datetime.combine(last + timedelta(days=1), time(), UTC)
    engine = _read_only_engine(settings)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(Event)
                .where(col(Event.timestamp) >= since, col(Event.timestamp) < until)
                .order_by(col(Event.timestamp), col(Event.id))
            ).all()
            recording = _from_events(rows, f"the store's events from {first} to {last}")
            ids = recording.contact_ids
            for chunk in range(0, len(ids), 500):
                recording.contacts += [
                    row.model_dump()
                    for row in session.exec(
                        select(Contact).where(col(Contact.id).in_(ids[chunk : chunk + 500]))
                    )
                ]
    finally:
        engine.dispose()
    if not recording.calls:
        raise BacktestError(f"no events in the store from {first} to {last}")
    return recording


def _read_only_engine(settings: Settings) -> Engine:
    url = normalize_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not path.is_file():
            raise BacktestError(
                f"no database at {path}: pass --data-dir or DATABASE_URL of the live store"
            )
        # Read-only mode. A WAL database that no one has open has no -wal file: opened
        # `immutable`, SQLite does not create its -wal and -shm files beside it either.
        idle = not path.with_name(path.name + "-wal").exists()
        mode = "mode=ro&immutable=1" if idle else "mode=ro"
        return create_engine(f"sqlite:///file:{path.resolve().as_posix()}?{mode}&uri=true")
    engine = make_engine(settings.resolved_database_url)
    return engine.execution_options(postgresql_readonly=True)


def _from_events(rows: Iterable[Event], source: str) -> Recording:
    calls: list[Recorded] = []
    skipped: Counter[str] = Counter()
    for row in rows:
        if row.origin == ORIGIN_INTERNAL:
            # Provider reports are replayed when they are about a message; segment entries,
            # survey answers and SMS replies are the simulation's own to make (or not).
            if _channel_of(row.name) is None or "message_id" not in (row.properties or {}):
                skipped[row.name or row.type] += 1
                continue
            call: SegmentCall = TrackCall.model_construct(
                user_id=row.contact_id,
                event=row.name,
                properties=dict(row.properties),
                message_id=row.message_id,
                context=dict(row.context or {}),
            )
            calls.append(Recorded(row.timestamp, call, internal=True))
            continue
        try:
            call = CALLS[row.type].model_validate(_raw_call(row))
        except (KeyError, ValidationError):
            skipped[row.name or row.type] += 1  # stored before a check that refuses it now
            continue
        calls.append(Recorded(row.timestamp, call))
    return Recording(source=source, calls=calls, skipped=dict(skipped))


def _raw_call(row: Event) -> dict[str, Any]:
    """The Segment call an events row was stored from (ingest keeps its payload)."""
    raw: dict[str, Any] = {
        "type": row.type,
        "userId": row.contact_id,
        "messageId": row.message_id,
        "timestamp": row.timestamp.isoformat(),
        "context": row.context or {},
    }
    payload = dict(row.properties or {})
    if row.type == "track":
        raw |= {"event": row.name, "properties": payload}
    elif row.type == "identify":
        raw["traits"] = payload
    elif row.type in ("page", "screen"):
        raw |= {"name": row.name, "properties": payload}
    elif row.type == "group":
        raw |= {"groupId": payload.get("group_id"), "traits": payload.get("traits", {})}
    elif row.type == "alias":
        raw["previousId"] = payload.get("previous_id")
    return raw


def _channel_of(name: str | None) -> str | None:
    """The channel of a message engagement event, or None for any other event."""
    if name not in ENGAGEMENT_EVENTS or name == "SMS Received":  # a reply names no message
        return None
    for prefix, channel in (("Email", "email"), ("Push", "push"), ("SMS", "sms")):
        if name.startswith(prefix):
            return channel
    return "email"  # `Unsubscribed`: the link in an email's footer


# --- running -----------------------------------------------------------------------


def longest_wait(steps: list[Any]) -> timedelta:
    """The longest a run can wait along any path of `steps`."""
    total = timedelta()
    for step in steps:
        if isinstance(step, m.WaitStep):
            total += timedelta(seconds=step.wait)
        elif isinstance(step, m.WaitUntilStep):
            total += WAIT_UNTIL_WORST
        elif isinstance(step, m.WaitForStep):
            total += timedelta(seconds=step.wait_for.timeout)
            total += max(longest_wait(step.then), longest_wait(step.on_timeout))
        elif isinstance(step, m.BranchStep):
            paths = [case.then for case in step.branch] + [step.else_]
            total += max(longest_wait(p) for p in paths)
        elif isinstance(step, m.SplitStep):
            total += max(longest_wait(v.then) for v in step.split)
        else:
            total += longest_wait(getattr(step, "on_failure", None) or [])
    return total


def aligned_start(first: datetime, now: datetime) -> datetime:
    """The first moment after the next Monday that is a whole number of weeks after
    `first`: the replay keeps the record's weekdays and times of day."""
    base = default_start(now)
    weeks = math.ceil((base - first) / timedelta(weeks=1))
    return first + timedelta(weeks=weeks)


@dataclass
class Replay:
    """What the backtest did with the record, beyond the journeys' numbers."""

    calls: int = 0
    engagement_mapped: int = 0
    engagement_dropped: int = 0


class Backtest(Simulator):
    """A simulation whose shoppers do what the record says they did."""

    def __init__(
        self,
        settings: Settings,
        journey_ids: list[str],
        recording: Recording,
        folder: Path,
        days: int | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        # Recorded calls keep their own times: no batching of what shoppers do.
        super().__init__(
            settings,
            journey_ids,
            Scenario(),
            folder,
            progress=progress,
            resolution=timedelta(seconds=1),
        )
        self.recording = recording
        self.days = days
        self.replay = Replay()

    async def run(self) -> Simulation:
        span = self.recording.last - self.recording.first
        wait = max((longest_wait(j.steps) for j in self._journeys()), default=timedelta())
        days = self.days or math.ceil((span + wait + MARGIN) / timedelta(days=1))
        if days > MAX_DAYS:
            raise BacktestError(
                f"the record and the journey's waits need {days} days, more than {MAX_DAYS}: "
                "backtest a shorter period, or pass --days"
            )
        start = aligned_start(self.recording.first, datetime.now(UTC) + timedelta(hours=1))
        contacts = max(1, min(len(self.recording.contact_ids), 100_000))
        self.scenario = Scenario(days=days, start=start, contacts=contacts)
        return await super().run()

    def _journeys(self) -> list[Journey]:
        """The chosen journeys, read for their waits only: `run` validates the folder
        (and reports every problem) as deploy does."""
        found = []
        for path in journey_files([self.user_settings.journeys_dir]):
            try:
                journey = load_journey(path).journey
            except JourneyError:
                continue
            if journey.id in self.journey_ids:
                found.append(journey)
        return found

    def plan(self, start: datetime, journeys: list[Journey]) -> list[Shopper]:
        """Each recorded call on the agenda at its original distance from the first."""
        self._copy_contacts(start)
        for recorded in self.recording.calls:
            at = start + (recorded.at - self.recording.first)
            self._schedule(at, self._replayer(recorded))
        return [Shopper(c, "", "", {}, {}) for c in self.recording.contact_ids]

    def _copy_contacts(self, start: datetime) -> None:
        """The live contacts' addresses, consent, timezone and traits, as they are now."""
        if not self.recording.contacts:
            return
        with session_scope(self.engine) as session:
            for row in self.recording.contacts:
                session.add(Contact(**{**row, "created_at": start, "updated_at": start}))

    def _replayer(self, recorded: Recorded) -> Callable[[], None]:
        def act() -> None:
            call = recorded.call
            self._entered.add(call.contact_id)
            self.replay.calls += 1
            if isinstance(call, TrackCall) and "message_id" in call.properties:
                channel = _channel_of(call.event)
                if channel is not None:
                    self._engage(recorded, call, channel)
                    return
            moved = call.model_copy(
                update={"timestamp": self.now, "sent_at": None, "original_timestamp": None}
            )
            store_call(self.engine, moved)

        return act

    def _engage(self, recorded: Recorded, call: TrackCall, channel: str) -> None:
        """The recorded engagement, on the simulated message it stands for (module
        docstring), or nowhere."""
        with session_scope(self.engine) as session:
            contact = canonical_id(session, call.contact_id)
            message_id = session.exec(
                select(Message.id)
                .where(
                    Message.contact_id == contact,
                    Message.channel == channel,
                    col(Message.sent_at).is_not(None),
                    col(Message.sent_at) <= self.now,
                )
                .order_by(col(Message.sent_at).desc())
            ).first()
        if message_id is None:
            self.replay.engagement_dropped += 1
            return
        self.replay.engagement_mapped += 1
        properties = {**call.properties, "message_id": message_id}
        if recorded.internal:  # a provider's report: recorded as the webhook would
            report = Feedback(
                dedupe_key=f"backtest:{call.message_id}",
                name=call.event,
                properties={k: v for k, v in properties.items() if k != "message_id"},
                message_id=message_id,
            )
            record_message_feedback(self.engine, [report], channel)
            return
        moved = call.model_copy(
            update={
                "properties": properties,
                "timestamp": self.now,
                "sent_at": None,
                "original_timestamp": None,
            }
        )
        store_call(self.engine, moved)

    def _answer_new_messages(self) -> None:
        """Nothing answers by chance: every answer is in the record."""


# --- the report --------------------------------------------------------------------


def backtest_report(backtest: Backtest, simulation: Simulation) -> dict[str, Any]:
    """The simulation's report plus what a backtest is for: what would have been sent,
    to how many, and what converted (and after how many of those messages)."""
    report = build_report(simulation, None, scenario_label=backtest.recording.source)
    ids = [item.journey.id for item in simulation.journeys]
    with session_scope(simulation.engine) as session:
        sent = session.exec(
            select(Message.journey_id, Message.step_id, Message.channel, Message.contact_id)
            .where(col(Message.sent_at).is_not(None), col(Message.journey_id).in_(ids))
            .order_by(col(Message.sent_at))
        ).all()
        runs = session.exec(
            select(JourneyRun)
            .where(col(JourneyRun.converted_at).is_not(None), col(JourneyRun.journey_id).in_(ids))
            .order_by(col(JourneyRun.converted_at))
        ).all()
        converted = [_conversion(session, run) for run in runs]
    by_step: dict[str, dict[str, int]] = {}
    for journey_id, step_id, channel, _contact in sent:
        key = f"{journey_id}.{step_id}" if len(ids) > 1 else step_id
        by_step.setdefault(key, {}).setdefault(channel, 0)
        by_step[key][channel] += 1
    recording = backtest.recording
    report["backtest"] = {
        "source": recording.source,
        "recorded": {
            "calls": len(recording.calls),
            "contacts": len(recording.contact_ids),
            "first": recording.first.isoformat(),
            "last": recording.last.isoformat(),
            "not_replayed": recording.skipped,
        },
        "replayed": {
            "calls": backtest.replay.calls,
            "engagement_mapped": backtest.replay.engagement_mapped,
            "engagement_dropped": backtest.replay.engagement_dropped,
        },
        "would_send": {
            "messages": len(sent),
            "contacts": len({row[3] for row in sent}),
            "by_step": by_step,
        },
        "converted": converted,
        "samples": [_short(s) for s in report["samples"][:SAMPLES]],
        "nothing_sent": True,
        "live_store_written": False,
        "simulation_store": str(simulation.folder),
    }
    return report


def _conversion(session: Session, run: JourneyRun) -> dict[str, Any]:
    assert run.converted_at is not None
    before = session.exec(
        select(Message.id).where(
            Message.workflow_id == run.workflow_id,
            Message.entry_seq == run.entry_seq,
            col(Message.sent_at).is_not(None),
            col(Message.sent_at) <= run.converted_at,
        )
    ).all()
    return {
        "journey": run.journey_id,
        "contact": run.contact_id,
        "revenue": run.revenue,
        "after_entry": _hours(run.converted_at - run.entered_at),
        "messages_before": len(before),
    }


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f}h" if hours < 48 else f"{hours / 24:.1f}d"


def _short(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample as a terminal shows it: the headline and the start of the text."""
    content = sample["content"]
    headline = content.get("subject") or content.get("title") or ""
    body = content.get("text") or content.get("body") or ""
    text = " ".join(str(body).split())
    return {
        "journey": sample["journey"],
        "step": sample["step"],
        "channel": sample["channel"],
        "contact": sample["contact"],
        "headline": headline,
        "text": text[:160] + ("..." if len(text) > 160 else ""),
    }
