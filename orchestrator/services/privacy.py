"""Export and erasure of one contact's personal data (GDPR Art. 15, 17 and 20).

Export gathers everything stored about a contact and its aliases. Erasure runs in
one database transaction that takes its lock first (SQLite's write lock, the contact's
row on PostgreSQL), so a busy database fails it before anything changed; in it, it
stops the contact's journeys in Temporal, then deletes the contact, its aliases and
events and scrubs what must stay:

- `messages` rows stay as the send ledger (counts, provider ids, idempotency)
  without recipient, content, locale, error text or policy details;
- `journey_runs` rows stay for journey statistics, exited with reason `erased`,
  without their `data`; `run_trail` rows stay (what each step decided) without the
  events and orders they named; the counters (`journey_counts`) name nobody;
- suppressions of the contact's addresses stay as `sha256:` digests, so a bounce
  or complaint keeps being honoured without the plaintext address;
- `orders` and `order_lines` stay for revenue and "also bought" figures (they hold
  amounts and products, no address); `coupons` stay so a code is never issued twice
  or taken for unknown, and unused ones expire at once;
- the loyalty ledger and segment memberships are deleted: they describe the person.

Contact ids in the rows that stay (also inside workflow ids and idempotency keys)
are replaced by a random tombstone (`erased-<hex>`): a userId may itself be personal
(an email), and a hash of it could be reversed by guessing. The run key of a
`one_run_per` journey's workflow id is a value of the contact's events (an email, an
order id): it is replaced too, by `k1`, `k2`... (the same key by the same one, so the
ledger rows of a run still share its workflow id).

A run is stopped only when it is the contact's: the candidates are the workflow ids
each journey's versions make (`journey:<journey>:<id>`, and `...:<key>` with
`one_run_per`), and each one's start input in Temporal must name one of the contact's
ids. Ids may contain ':', so `journey:j:bob:o1` may be Bob's run for order o1 as well
as the run of contact `bob:o1`.

Runs are *terminated*, not cancelled: termination takes effect in the Temporal
server at once, whether or not a worker is polling, and no more workflow code runs
(a cancelled run would still run, and could schedule a send, in the workflow task
that delivers the cancellation). Journey workflows have no clean-up to do on
cancellation; the run rows are closed here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, delete
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session, col, select
from temporalio.api.history.v1 import WorkflowExecutionStartedEventAttributes
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ..analytics.counts import Cohort, bump
from ..dsl.models import IDENTIFY, Journey
from ..store.db import session_scope
from ..store.identity import aliases_of, canonical_id
from ..store.message_requests import WORKFLOW_PREFIX as MESSAGE_WORKFLOW_PREFIX
from ..store.orders import run_key
from ..store.suppressions import address_digest, pseudonymize
from ..store.tables import (
    Contact,
    ContactAlias,
    Coupon,
    Event,
    JourneyRun,
    JourneyVersion,
    LoyaltyEntry,
    Message,
    Order,
    OrderLine,
    SegmentMember,
    Suppression,
    TrailEntry,
    utcnow,
)
from ..workflows.date_trigger import date_workflow_id
from ..workflows.journey import workflow_id

log = logging.getLogger(__name__)

ERASED = "erased"  # exit reason of the runs, error of the messages not sent
TOMBSTONE_PREFIX = "erased-"  # contact ids in the rows kept after an erasure
TERMINATE_REASON = "contact erased"  # recorded in the workflow history: no personal data
STOP_CONCURRENCY = 16
RPC_TIMEOUT = timedelta(seconds=10)  # per Temporal call: the store stays locked meanwhile
# PostgreSQL: how long a statement of the erasure waits for a row another transaction
# holds (SQLite waits its busy_timeout for the write lock) before failing as busy.
LOCK_TIMEOUT = "5s"
# Timeline keys that say what happened, not to whom: `detail` can quote an address,
# a timezone or a provider's bounce text, so it does not survive erasure.
TIMELINE_KEYS = ("status", "at", "check", "result", "until", "event_id")
UNSENT = ("pending", "queued", "deferred")
# A send whose provider call is under way (`sending`) would reach the provider after the
# erasure answered: the erasure waits for such calls to end (their own timeouts are
# 10 s), up to this long, before it goes ahead anyway (a worker killed mid-call leaves
# its row `sending` until the retry records it unknown).
IN_FLIGHT_WAIT = 20.0
EVENT_PRIVATE = ("lease_owner", "lease_until")


class TemporalUnavailable(Exception):
    """The contact's runs could not be stopped, so nothing was erased; try again later."""


class StoreBusy(Exception):
    """The erasure could not lock the database: nothing was stopped or erased."""

    def __init__(self) -> None:
        super().__init__("the database is busy: nothing was stopped or erased; retry later")


class ErasureIncomplete(Exception):
    """The contact's runs were stopped, then the database failed: its data is not erased
    yet. Erasing again completes it (the stopped runs are not running any more)."""

    def __init__(self, stopped: int) -> None:
        self.stopped = stopped
        super().__init__(
            f"{stopped} journey(s) of the contact were stopped, but its data is not erased "
            "yet: the database failed; retry the erasure to complete it"
        )


@dataclass(frozen=True)
class ErasurePlan:
    """Who is erased and which workflows may run for them, read before anything changes."""

    asked: str
    canonical: str
    ids: list[str]  # the canonical id, then its aliases
    workflow_ids: list[str]  # runs that may be the contact's: open ones, unrecorded ones
    found: bool


@dataclass
class ErasureResult:
    contact_id: str
    found: bool
    runs_stopped: int = 0  # workflows Temporal terminated
    erased: dict[str, int] = field(default_factory=dict)  # rows per table

    def as_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "found": self.found,
            "runs_stopped": self.runs_stopped,
            "erased": self.erased,
        }


def is_erased(contact_id: str) -> bool:
    """True for the tombstone an erased contact's kept rows carry (a late webhook about
    one of its messages must not bring personal data back)."""
    return contact_id.startswith(TOMBSTONE_PREFIX)


# --- export ---------------------------------------------------------------------


def export_contact(engine: Engine, contact_id: str) -> dict[str, Any] | None:
    """Everything stored about the contact (through any of its ids), or None if unknown."""
    with session_scope(engine) as session:
        canonical = canonical_id(session, contact_id)
        contact = session.get(Contact, canonical)
        if contact is None:
            return None
        ids = [canonical, *aliases_of(session, canonical)]
        events = list(
            session.exec(
                select(Event).where(col(Event.contact_id).in_(ids)).order_by(col(Event.id))
            )
        )
        messages = list(
            session.exec(
                select(Message)
                .where(col(Message.contact_id).in_(ids))
                .order_by(col(Message.created_at), col(Message.id))
            )
        )
        runs = session.exec(
            select(JourneyRun)
            .where(col(JourneyRun.contact_id).in_(ids))
            .order_by(col(JourneyRun.id))
        )
        return {
            "exported_at": utcnow().isoformat(),
            "contact": contact.model_dump(mode="json"),
            "aliases": ids[1:],
            "events": [e.model_dump(mode="json", exclude=set(EVENT_PRIVATE)) for e in events],
            "messages": [m.model_dump(mode="json") for m in messages],
            "journey_runs": [r.model_dump(mode="json") for r in runs],
            "run_trail": [
                t.model_dump(mode="json", exclude={"id", "key"})
                for t in session.exec(
                    select(TrailEntry)
                    .where(col(TrailEntry.contact_id).in_(ids))
                    .order_by(col(TrailEntry.at), col(TrailEntry.id))
                )
            ],
            **_commerce(session, ids),
            "suppressions": [
                s.model_dump(mode="json", exclude={"id"})
                for s in _suppressions(
                    session,
                    _addresses(
                        contact, messages, (e.properties for e in events if e.type == "identify")
                    ),
                )
            ],
        }


def _commerce(session: Session, ids: list[str]) -> dict[str, Any]:
    """Orders with their lines, the points ledger, coupons and segment stays."""
    orders = list(
        session.exec(select(Order).where(col(Order.contact_id).in_(ids)).order_by(col(Order.id)))
    )
    lines = list(
        session.exec(
            select(OrderLine)
            .where(col(OrderLine.order_id).in_([o.order_id for o in orders]))
            .order_by(col(OrderLine.id))
        )
    )

    def rows(model: Any, order: Any) -> list[dict[str, Any]]:
        query = select(model).where(col(model.contact_id).in_(ids)).order_by(order)
        return [r.model_dump(mode="json") for r in session.exec(query)]

    return {
        "orders": [
            {
                **o.model_dump(mode="json"),
                "lines": [
                    line.model_dump(mode="json", exclude={"order_id", "contact_id"})
                    for line in lines
                    if line.order_id == o.order_id
                ],
            }
            for o in orders
        ],
        "loyalty_entries": rows(LoyaltyEntry, col(LoyaltyEntry.created_at)),
        "coupons": rows(Coupon, col(Coupon.issued_at)),
        "segment_memberships": rows(SegmentMember, col(SegmentMember.entered_at)),
    }


# --- erasure --------------------------------------------------------------------


async def erase_contact(
    engine: Engine, client: Client | None, contact_id: str, python_journeys: Iterable[str] = ()
) -> ErasureResult:
    """Stop the contact's runs, then erase its personal data; safe to repeat.

    `python_journeys`: the ids of the hand-written journeys, which have no deployed
    version telling their workflow ids. Raises `StoreBusy` (nothing stopped or erased)
    when the database cannot be locked, `TemporalUnavailable` (nothing erased) when runs
    may exist and Temporal cannot be reached, `ErasureIncomplete` when the database
    failed after the runs were stopped (erasing again completes it).
    """
    loop = asyncio.get_running_loop()

    def stop(plan: ErasurePlan) -> int:  # from the transaction's thread, the store locked
        return asyncio.run_coroutine_threadsafe(stop_runs(client, plan), loop).result()

    return await asyncio.to_thread(_erase_locked, engine, contact_id, tuple(python_journeys), stop)


def _erase_locked(
    engine: Engine,
    contact_id: str,
    python_journeys: tuple[str, ...],
    stop: Callable[[ErasurePlan], int],
) -> ErasureResult:
    """Lock, plan, stop, erase, in one transaction: the lock comes first, so a busy
    database fails the erasure before anything is stopped. While a message of the
    contact is inside its provider call, the lock is let go and taken again a moment
    later (the send records its outcome meanwhile), so nothing reaches a provider after
    the erasure answered."""
    deadline = time.monotonic() + IN_FLIGHT_WAIT
    while True:
        with Session(engine, expire_on_commit=False) as session:  # closing rolls back
            try:
                _lock_store(session)
                plan = _plan(session, contact_id, python_journeys)
                if plan.found:
                    session.get(Contact, plan.canonical, with_for_update=True)
                    in_flight = _sends_in_flight(session, plan.ids)
            except OperationalError as exc:  # SQLite "database is locked", a lock timeout
                log.warning("erasure: the database is busy, nothing was stopped: %s", exc.orig)
                raise StoreBusy() from exc
            if not plan.found:
                return ErasureResult(contact_id, found=False)
            if in_flight and time.monotonic() < deadline:
                session.rollback()
                time.sleep(0.2)
                continue
            if in_flight:
                log.warning(
                    "erasure: %d message(s) of the contact still `sending` after %.0f s "
                    "(a worker died in the provider call?): erasing anyway",
                    in_flight,
                    IN_FLIGHT_WAIT,
                )
            return _erase_planned(session, engine, contact_id, plan, stop)


def _sends_in_flight(session: Session, ids: list[str]) -> int:
    """The contact's messages inside a provider call now. Its messages not yet sent are
    locked too (PostgreSQL), so a delivery cannot start one until the erasure ends, and
    then finds it erased."""
    rows = session.exec(
        select(Message.status)
        .where(col(Message.contact_id).in_(ids), col(Message.status).in_([*UNSENT, "sending"]))
        .with_for_update()
    ).all()
    return sum(status == "sending" for status in rows)


def _erase_planned(
    session: Session,
    engine: Engine,
    contact_id: str,
    plan: ErasurePlan,
    stop: Callable[[ErasurePlan], int],
) -> ErasureResult:
    """Stop the runs and erase, in the locked transaction `session`."""
    stopped = stop(plan)
    try:
        erased = _erase(session, plan)
        session.commit()
    except SQLAlchemyError as exc:
        log.warning(
            "erasure: %d run(s) stopped, then the database failed, nothing erased: %s",
            stopped,
            getattr(exc, "orig", None) or type(exc).__name__,
        )
        raise ErasureIncomplete(stopped) from exc
    _checkpoint(engine)
    return ErasureResult(contact_id, True, stopped, erased)


def _lock_store(session: Session) -> None:
    """Take the erasure's lock before anything is read: SQLite's write lock (waiting
    busy_timeout for it), or on PostgreSQL a bound on every lock wait that follows."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # Deleted text is zeroed in the file, not left in free pages.
        connection.exec_driver_sql("PRAGMA secure_delete=ON")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")


def plan_erasure(
    engine: Engine, contact_id: str, python_journeys: Iterable[str] = ()
) -> ErasurePlan:
    with session_scope(engine) as session:
        return _plan(session, contact_id, tuple(python_journeys))


def _plan(session: Session, contact_id: str, python_journeys: tuple[str, ...]) -> ErasurePlan:
    canonical = canonical_id(session, contact_id)
    ids = list(dict.fromkeys([canonical, *aliases_of(session, canonical), contact_id]))
    found = (
        session.get(Contact, canonical) is not None
        or len(ids) > 1
        or any(
            session.exec(select(model.id).where(col(model.contact_id).in_(ids)).limit(1)).first()
            is not None
            for model in (
                Event,
                Message,
                JourneyRun,
                TrailEntry,
                Order,
                LoyaltyEntry,
                SegmentMember,
            )
        )
    )
    if not found:
        return ErasurePlan(contact_id, canonical, ids, [], False)
    open_runs = session.exec(
        select(JourneyRun.workflow_id).where(
            col(JourneyRun.contact_id).in_(ids), JourneyRun.status == "active"
        )
    )
    # A run the router started but whose entry is not recorded yet has no row: the
    # workflow ids the contact's runs would have, in each journey's shapes, are
    # candidates too (`stop_runs` stops only those whose start names the contact).
    candidates = [*open_runs, *_unrecorded_runs(session, ids, python_journeys)]
    return ErasurePlan(contact_id, canonical, ids, list(dict.fromkeys(candidates)), True)


def _unrecorded_runs(
    session: Session, ids: list[str], python_journeys: tuple[str, ...]
) -> list[str]:
    """The workflow ids the contact's runs may have without a row yet, in the shapes the
    journeys actually use: `journey:<journey>:<id>` for a version without `one_run_per`
    and for a hand-written journey (configured, or known from the contact's rows), and
    for a version with it `journey:<journey>:<id>:<key>`, one per trigger event and id as
    the router keys them, unless that workflow id has recorded an entry."""
    plain: dict[str, None] = dict.fromkeys(python_journeys)
    keyed: dict[tuple[str, str, str], None] = {}
    dated: dict[str, None] = {}
    versioned: set[str] = set()
    for journey_id, spec in session.exec(select(JourneyVersion.journey_id, JourneyVersion.spec)):
        versioned.add(journey_id)
        try:
            journey = Journey.model_validate(spec)
        except ValidationError:  # a version an older release stored: its shape is unknown
            log.warning("erasure: a stored journey version does not load; its plain run id tried")
            plain[journey_id] = None
            continue
        if journey.entry.one_run_per is None:
            plain[journey.id] = None
        else:
            keyed[(journey.id, journey.trigger.name, journey.entry.one_run_per)] = None
        if journey.trigger.date is not None:  # the contact's date watch
            dated[journey.id] = None
    # Hand-written journeys the contact has run (they have no version).
    ran = session.exec(
        select(JourneyRun.journey_id).where(col(JourneyRun.contact_id).in_(ids)).distinct()
    )
    plain.update(dict.fromkeys(j for j in ran if j not in versioned))
    found = [workflow_id(j, i) for j in sorted(plain) for i in ids]
    found += [date_workflow_id(j, i) for j in sorted(dated) for i in ids]
    for journey_id, trigger, one_run_per in keyed:
        query = select(Event).where(col(Event.contact_id).in_(ids))
        if trigger == IDENTIFY:
            query = query.where(Event.type == "identify")
        else:
            query = query.where(Event.type == "track", Event.name == trigger)
        wids = {
            workflow_id(journey_id, i, run_key(one_run_per, e))
            for e in session.exec(query)
            for i in ids
        }
        recorded = (
            set(
                session.exec(
                    select(JourneyRun.workflow_id).where(col(JourneyRun.workflow_id).in_(wids))
                )
            )
            if wids
            else set()
        )
        found += sorted(wids - recorded)
    return found


async def stop_runs(client: Client | None, plan: ErasurePlan) -> int:
    """Terminate each candidate workflow that is running and is the contact's (its start
    input names one of the contact's ids); returns how many were."""
    if not plan.workflow_ids:
        return 0
    if client is None:
        raise TemporalUnavailable(
            "Temporal is not connected, so the contact's journeys cannot be stopped: "
            "nothing was erased; retry when Temporal is reachable"
        )
    gate = asyncio.Semaphore(STOP_CONCURRENCY)
    ids = set(plan.ids)

    async def stop(wid: str) -> int:
        async with gate:
            try:
                started = await _start_of(client, wid)
                if started is None or await _started_for(client, started) not in ids:
                    return 0  # another contact's run whose id has the same shape
                # The run read, or the one it continued as: not a run started after.
                first_run = started.first_execution_run_id or None
                handle = client.get_workflow_handle(wid, first_execution_run_id=first_run)
                await handle.terminate(reason=TERMINATE_REASON, rpc_timeout=RPC_TIMEOUT)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:  # never started, or already over
                    return 0
                raise TemporalUnavailable(
                    f"Temporal did not stop a journey of this contact ({exc.message}): "
                    "nothing was erased; retry when Temporal is reachable"
                ) from exc
            except RuntimeError as exc:  # the client lost its connection
                raise TemporalUnavailable(
                    f"Temporal is unreachable ({exc}): nothing was erased; retry later"
                ) from exc
            return 1

    results = await asyncio.gather(*(stop(w) for w in plan.workflow_ids), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return sum(r for r in results if isinstance(r, int))


async def _start_of(client: Client, wid: str) -> WorkflowExecutionStartedEventAttributes | None:
    """The first event of the workflow's latest run: how it was started, with what input."""
    events = client.get_workflow_handle(wid).fetch_history_events(
        page_size=1, rpc_timeout=RPC_TIMEOUT
    )
    async for event in events:
        if event.HasField("workflow_execution_started_event_attributes"):
            return event.workflow_execution_started_event_attributes
        break
    return None


async def _started_for(client: Client, started: WorkflowExecutionStartedEventAttributes) -> Any:
    """The contact id in a run's start input (`JourneyInput.contact_id`), or None."""
    try:
        values = await client.data_converter.decode(started.input.payloads)
    except Exception:  # not ours to read: not provably the contact's either
        log.warning("erasure: a run's start input does not decode; that run is not stopped")
        return None
    first = values[0] if values else None
    return first.get("contact_id") if isinstance(first, dict) else None


def erase_rows(engine: Engine, plan: ErasurePlan) -> dict[str, int]:
    """Delete or scrub every row about the contact, in one transaction; rows per table.
    The database part of `erase_contact`, for a contact with no runs to stop."""
    with session_scope(engine) as session:
        _lock_store(session)
        erased = _erase(session, plan)
    _checkpoint(engine)
    return erased


def _checkpoint(engine: Engine, patience: float = 5.0) -> None:
    """Rewrite the SQLite file without the erased rows' old bytes, then empty its log.

    `secure_delete` zeroes what a deletion frees, but SQLite leaves old cell bytes in
    the unused middle of the pages it rebuilds (seen: an earlier version of a message
    row, with its address), and earlier page images stay in the write-ahead log.
    `VACUUM` writes live rows only; the checkpoint then copies every page of the log
    into the file. A checkpoint that a reader's snapshot holds back copies only the
    pages before it, so it is retried until the whole log is copied (readers last
    milliseconds). Best effort: the erasure is committed whatever happens here.
    PostgreSQL keeps dead row versions until it vacuums (docs/privacy.md).
    """
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM")
    except OperationalError as exc:  # busy beyond busy_timeout
        log.warning("erasure: VACUUM did not run (%s); old bytes stay until the next", exc.orig)
    deadline = time.monotonic() + patience
    try:
        while True:
            with engine.connect() as connection:
                busy, frames, copied = connection.exec_driver_sql(
                    "PRAGMA wal_checkpoint(TRUNCATE)"
                ).one()
            if not busy and frames == copied:
                return
            if time.monotonic() >= deadline:
                log.warning("erasure: a reader held the write-ahead log; it empties later")
                return
            time.sleep(0.05)
    except OperationalError as exc:
        log.warning("erasure: the write-ahead log was not truncated: %s", exc.orig)


@dataclass
class Tombstones:
    """What replaces the contact's ids and its runs' keys in the rows that stay."""

    ids: dict[str, str]  # each of the contact's ids -> its tombstone
    base: str  # the canonical id's tombstone
    keys: dict[str, str] = field(default_factory=dict)  # run key -> k1, k2...

    @classmethod
    def new(cls, ids: list[str]) -> Tombstones:
        base = f"{TOMBSTONE_PREFIX}{uuid.uuid4().hex}"
        return cls({cid: base if n == 0 else f"{base}-{n}" for n, cid in enumerate(ids)}, base)

    def of(self, contact_id: str) -> str:
        return self.ids.get(contact_id, self.base)

    def key(self, key: str) -> str:
        """The run key's replacement: the same for the same key, in every table."""
        if key not in self.keys:
            self.keys[key] = f"k{len(self.keys) + 1}"
        return self.keys[key]


def _erase(session: Session, plan: ErasurePlan) -> dict[str, int]:
    ids = plan.ids
    tombs = Tombstones.new(ids)
    contact = session.get(Contact, plan.canonical, with_for_update=True)
    # Rows written under an alias were moved to the canonical id when it was merged;
    # either way their contact id is one of `ids`.
    messages = list(session.exec(select(Message).where(col(Message.contact_id).in_(ids))))
    runs = list(session.exec(select(JourneyRun).where(col(JourneyRun.contact_id).in_(ids))))
    now = utcnow()
    for run in runs:
        if run.status == "active":
            run.status, run.exit_reason, run.exited_at = "exited", ERASED, now
            cohort = Cohort.of(run)  # the journey's numbers: the run ended, erased
            bump(session, cohort, "finished:exited")
            bump(session, cohort, f"exit:{ERASED}")
        run.contact_id = tombs.of(run.contact_id)
        run.workflow_id = _tombstoned(run.workflow_id, run.journey_id, tombs)
        run.data = {}
        run.updated_at = now
    # Every address the contact ever had, before the rows that name them are scrubbed.
    addresses = _addresses(contact, messages, _identified(session, ids))
    for message in messages:
        _scrub(message, tombs, now)
    trail = list(session.exec(select(TrailEntry).where(col(TrailEntry.contact_id).in_(ids))))
    for entry in trail:
        _scrub_trail(entry, tombs)
    suppressions = sum(
        pseudonymize(session, channel, found) for channel, found in addresses.items()
    )
    commerce = _erase_commerce(session, ids, tombs, now)
    events = _delete(session, Event, col(Event.contact_id).in_(ids))
    aliases = _delete(
        session,
        ContactAlias,
        col(ContactAlias.contact_id).in_(ids) | col(ContactAlias.alias_id).in_(ids),
    )
    if contact is not None:
        session.delete(contact)
    return {
        "contacts": int(contact is not None),
        "aliases": aliases,
        "events": events,
        "messages": len(messages),
        "journey_runs": len(runs),
        "run_trail": len(trail),
        "suppressions": suppressions,
        **commerce,
    }


def _erase_commerce(
    session: Session, ids: list[str], tombs: Tombstones, now: datetime
) -> dict[str, int]:
    """Orders and coupons stay under the tombstone; points and segment stays go."""
    orders = list(session.exec(select(Order).where(col(Order.contact_id).in_(ids))))
    for order in orders:
        order.contact_id = tombs.of(order.contact_id)
    for line in session.exec(select(OrderLine).where(col(OrderLine.contact_id).in_(ids))):
        line.contact_id = tombs.of(line.contact_id)
    coupons = list(session.exec(select(Coupon).where(col(Coupon.contact_id).in_(ids))))
    for coupon in coupons:
        coupon.contact_id = tombs.of(coupon.contact_id)
        if coupon.workflow_id:
            old_wid = coupon.workflow_id
            coupon.workflow_id = _tombstoned(old_wid, coupon.journey_id or "", tombs)
            coupon.idempotency_key = _rekeyed(
                coupon.idempotency_key, old_wid, coupon.workflow_id, tombs
            )
        if any(cid in coupon.idempotency_key for cid in ids):  # a key made some other way
            coupon.idempotency_key = f"{tombs.base}:coupon:{coupon.code}"
        if coupon.redeemed_at is None and (coupon.expires_at is None or coupon.expires_at > now):
            coupon.expires_at = now  # nobody may use it now; the code stays taken
    return {
        "orders": len(orders),
        "loyalty_entries": _delete(session, LoyaltyEntry, col(LoyaltyEntry.contact_id).in_(ids)),
        "coupons": len(coupons),
        "segment_memberships": _delete(
            session, SegmentMember, col(SegmentMember.contact_id).in_(ids)
        ),
    }


def _scrub(message: Message, tombs: Tombstones, now: datetime) -> None:
    """Keep the ledger facts (what, when, status, provider id); drop who and what it said."""
    old_wid = message.workflow_id
    # A transactional message's workflow id (`message:<uuid>` or `message:k-<hash>`)
    # holds no contact id, and its running workflow finds the row by that key: a
    # replaced substring (a userId "4" is in every uuid4) made it write a new row.
    if message.journey_id or not old_wid.startswith(MESSAGE_WORKFLOW_PREFIX):
        message.workflow_id = _tombstoned(old_wid, message.journey_id, tombs)
        message.idempotency_key = _rekeyed(
            message.idempotency_key, old_wid, message.workflow_id, tombs
        )
    message.contact_id = tombs.of(message.contact_id)
    message.recipient = None
    message.content = {}
    message.locale = None
    message.error = None
    timeline = [{k: e[k] for k in TIMELINE_KEYS if k in e} for e in message.timeline or []]
    if message.status in UNSENT:  # its run is stopped: make sure nothing delivers it now
        message.status, message.error = "failed", ERASED
        timeline.append({"status": "failed", "at": now.isoformat(), "check": ERASED})
    message.timeline = timeline


def _scrub_trail(entry: TrailEntry, tombs: Tombstones) -> None:
    """Keep what the run did (for the journey's numbers); drop whose run it was."""
    old_wid = entry.workflow_id
    entry.workflow_id = _tombstoned(old_wid, entry.journey_id, tombs)
    entry.key = _rekeyed(entry.key, old_wid, entry.workflow_id, tombs)
    entry.contact_id = tombs.of(entry.contact_id)
    revenue = (entry.detail or {}).get("revenue")
    entry.detail = {"revenue": revenue} if revenue is not None else {}
    if entry.kind == "send":  # a provider's or renderer's words may quote the person
        entry.reason = None
    if entry.kind == "goal":  # the order id
        entry.outcome = None


def _tombstoned(wid: str, journey_id: str, tombs: Tombstones) -> str:
    """The workflow id rebuilt from its parts as `workflow_id` makes them, with the
    contact's id replaced by its tombstone: `journey:<journey>:<id>`, and with
    `one_run_per` `journey:<journey>:<id>:<key>` (a key holds no ':'), whose key is a
    value of the contact's events (an email...) and is replaced too. The id may be any of
    the contact's (a run started under an anonymousId keeps it). An id of another shape
    keeps no trace of the contact's ids either: each occurrence is replaced."""
    prefix = workflow_id(journey_id, "")
    rest = wid[len(prefix) :] if wid.startswith(prefix) else None
    for cid in sorted(tombs.ids, key=len, reverse=True):
        if rest == cid:
            return workflow_id(journey_id, tombs.ids[cid])
        key = rest[len(cid) + 1 :] if rest and rest.startswith(cid + ":") else ""
        if key and ":" not in key:
            return workflow_id(journey_id, tombs.ids[cid], tombs.key(key))
    return _replaced(wid, tombs)


def _rekeyed(key: str, old_wid: str, new_wid: str, tombs: Tombstones) -> str:
    """An idempotency key `<workflow id>:<step>:<entry>` under the rewritten workflow id."""
    if key.startswith(old_wid + ":"):
        return new_wid + key[len(old_wid) :]
    return _replaced(key, tombs)


def _replaced(text: str, tombs: Tombstones) -> str:
    """`text` with every occurrence of one of the contact's ids replaced by its tombstone."""
    for cid in sorted(tombs.ids, key=len, reverse=True):
        text = text.replace(cid, tombs.ids[cid])
    return text


def _identified(session: Session, ids: list[str]) -> list[dict[str, Any]]:
    """The traits of the contact's identify calls: earlier emails and phones too."""
    query = select(Event.properties).where(col(Event.contact_id).in_(ids), Event.type == "identify")
    return [p for p in session.exec(query) if isinstance(p, dict)]


def _addresses(
    contact: Contact | None, messages: Iterable[Message], traits: Iterable[dict[str, Any]] = ()
) -> dict[str, set[str]]:
    """Every address the contact had that a suppression may be keyed by."""
    found: dict[str, set[str]] = {"email": set(), "sms": set(), "push": set()}
    for seen in traits:
        for channel, name in (("email", "email"), ("sms", "phone")):
            if isinstance(seen.get(name), str) and seen[name].strip():
                found[channel].add(seen[name].strip())
    if contact is not None:
        if contact.email:
            found["email"].add(contact.email)
        if contact.phone:
            found["sms"].add(contact.phone)
        found["push"].update(contact.push_tokens or [])
    for message in messages:
        if message.recipient and message.channel in found:
            found[message.channel].add(message.recipient)
    return found


def _suppressions(session: Session, addresses: dict[str, set[str]]) -> list[Suppression]:
    from .policy import normalize_address

    rows: list[Suppression] = []
    for channel, found in addresses.items():
        keys = {normalize_address(channel, a) for a in found}
        keys |= {address_digest(channel, a) for a in found}
        if keys:
            rows += session.exec(
                select(Suppression).where(
                    Suppression.channel == channel, col(Suppression.address).in_(keys)
                )
            )
    return rows


def _delete(session: Session, model: Any, condition: Any) -> int:
    result = session.exec(delete(model).where(condition))  # type: ignore[call-overload]
    return int(result.rowcount or 0)
