"""Run journeys over a synthetic population, in simulated time.

The journeys' real workflow code, activities, rendering and send policies run on
Temporal's time-skipping test server, against a fresh SQLite store of the
simulation's own; messages go to the outbox only (a console adapter that writes
nowhere). The simulator plays the shoppers: it sends their entry events through the
real ingest and router, watches the outbox, and answers each message as the scenario
says (opens, clicks, replies, orders, unsubscribes) through the same paths a provider
webhook or a storefront uses.

Time moves by explicit skips (`env.sleep`), never by automatic skipping, which
stalls with many runs waiting at once (shared/TEMPORAL.md): to the next thing a
shopper does, at most `MAX_STEP` at a time, so answers to a message arrive within a
step of when the scenario says they happen. The store's clock follows the server's
(`store.clock`): an activity stamps what it writes with the time Temporal scheduled
it, the simulator with the time it skipped to.
"""

from __future__ import annotations

import heapq
import io
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import event as sql_event
from sqlmodel import col, func, select
from temporalio import activity
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from channels.console import ConsoleChannel

from ..api.ingest import store_call
from ..api.segment import IdentifyCall, TrackCall
from ..deployment.deploy import DeployPlan, InvalidJourneys, apply_deploy
from ..deployment.validation import validate
from ..dsl.loader import LoadedJourney, iter_steps
from ..dsl.models import Journey, SendStep
from ..dsl.scenario import ChannelBehaviour, Scenario
from ..feedback.recording import record_inbound_sms, record_message_feedback
from ..feedback.twilio_events import InboundSms
from ..feedback.types import Feedback
from ..processes.router import Router
from ..processes.temporal_server import find_binary
from ..processes.worker import build_worker
from ..rendering import Renderer
from ..segments.membership import refresh
from ..services.private_files import private_dir
from ..services.webhook_calls import WebhookAnswer
from ..settings import Settings
from ..store.clock import clock
from ..store.db import make_engine, migrate, session_scope, sqlite_url
from ..store.tables import Event, Message
from .population import (
    IDENTIFY,
    ORDER_COMPLETED,
    Shopper,
    order_properties,
    pick,
    rng,
    shoppers,
)
from .population import default_entries as journey_entries

MAX_STEP = timedelta(hours=1)
# What shoppers do within this much of each other happens in one step: up to 5 minutes
# late, instead of a skip (and a routing pass) for every click.
RESOLUTION = timedelta(minutes=5)
TASK_QUEUE = "simulation"
SEGMENT_REFRESH = timedelta(hours=1)
ENTRY_ORDERS, ANYWAY, AFTER_MESSAGE = "entry events", "would have bought anyway", "after a message"


class SimulationError(ValueError):
    """What stops a simulation before it starts: said in one line."""


@dataclass
class Progress:
    day: int
    days: int
    contacts_entered: int
    contacts: int


@dataclass
class Simulation:
    """A finished simulation: where its store is, and what ran."""

    id: str
    folder: Path
    engine: Engine
    journeys: list[LoadedJourney]
    scenario: Scenario
    scenario_path: Path | None
    start: datetime
    end: datetime
    seed: int
    contacts: int
    days: int
    shoppers: list[Shopper] = field(default_factory=list)
    # Orders the shoppers placed, by why: the scenario's own `Order Completed` entries,
    # purchases they would have made anyway (`buys`), purchases after a message.
    orders: dict[str, int] = field(default_factory=dict)
    webhook_calls: int = 0  # `webhook` actions, answered by the simulator (none made)


@dataclass(order=True)
class _Due:
    at: datetime
    order: int
    action: Callable[[], None] = field(compare=False)


def simulation_settings(settings: Settings, folder: Path) -> Settings:
    """The user's settings (quiet hours, caps, locales...) on the simulation's own store:
    never the live database, never a provider."""
    return settings.model_copy(
        update={
            "database_url": sqlite_url(folder),
            "data_dir": folder,
            "task_queue": TASK_QUEUE,
            "secret_key": "simulation: links signed here open nothing live",
            "python_journeys": [],
            # Every queue in this one process (a worker configured for channels only
            # would leave the journeys unrun), all on the null adapter.
            "worker_queues": ["main", "email", "push", "sms"],
        }
    )


def prepare(settings: Settings, journey_ids: list[str]) -> tuple[list[LoadedJourney], DeployPlan]:
    """Validate the journeys folder (as deploy does) and pick the journeys asked for."""
    result = validate([settings.journeys_dir], Renderer.from_settings(settings))
    if result.problems:
        raise InvalidJourneys(result.problems)
    by_id = {item.journey.id: item for item in result.journeys}
    missing = [j for j in journey_ids if j not in by_id]
    if missing:
        known = ", ".join(sorted(by_id)) or "none"
        raise SimulationError(
            f"no journey {missing[0]!r} in {settings.journeys_dir} (journeys there: {known})"
        )
    chosen = [by_id[j] for j in dict.fromkeys(journey_ids)]
    result.journeys = chosen
    return chosen, DeployPlan(settings.journeys_dir, result, True)


def _check_scenario_steps(scenario: Scenario, journeys: list[Journey]) -> None:
    """A scenario's `steps:` must name steps that send: a typo would go unnoticed."""
    sends = sorted(
        {
            str(step.id)
            for journey in journeys
            for _, step in iter_steps(journey.steps, ())
            if isinstance(step, SendStep)
        }
    )
    unknown = sorted(set(scenario.steps) - set(sends))
    if unknown:
        raise SimulationError(
            f"the scenario's steps: names {unknown[0]!r}, which is no send step of "
            f"{', '.join(j.id for j in journeys)} (send steps: {', '.join(sends) or 'none'})"
        )
    if scenario.entries_over and scenario.entries_over > scenario.days * 86400:
        raise SimulationError(
            f"the scenario spreads entries over {scenario.entries_over // 86400}d or more, "
            f"longer than the {scenario.days} days simulated: lower entries_over or raise --days"
        )


def default_start(now: datetime) -> datetime:
    """The next Monday, 00:00 UTC: weeks line up, and two runs in a week match."""
    day = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=(7 - day.weekday()) % 7)


class Simulator:
    """One simulation: the population, its agenda, and the loop that moves time."""

    def __init__(
        self,
        settings: Settings,
        journey_ids: list[str],
        scenario: Scenario,
        folder: Path,
        scenario_path: Path | None = None,
        progress: Callable[[Progress], None] | None = None,
        max_step: timedelta = MAX_STEP,
        resolution: timedelta = RESOLUTION,
    ) -> None:
        self.user_settings = settings
        self.journey_ids = journey_ids
        self.scenario = scenario
        self.scenario_path = scenario_path
        self.folder = folder
        self.progress = progress
        self.max_step = max_step
        self.resolution = resolution
        self.now = datetime.now(UTC)
        self._agenda: list[_Due] = []
        self._order = 0
        self._seen: set[str] = set()
        self._carts: dict[str, dict[str, Any]] = {}
        self._orders: dict[str, int] = {}
        self._entered: set[str] = set()
        self.orders = {ENTRY_ORDERS: 0, ANYWAY: 0, AFTER_MESSAGE: 0}
        self._routed_upto = -1
        self.webhook_calls = 0

    # --- the clock ---------------------------------------------------------------

    def _clock(self) -> datetime:
        try:
            scheduled = activity.info().current_attempt_scheduled_time
        except RuntimeError:
            return self.now
        return scheduled if scheduled.year > 2000 else self.now

    # --- running -----------------------------------------------------------------

    async def run(self) -> Simulation:
        settings = simulation_settings(self.user_settings, self.folder)
        loaded, plan = prepare(settings, self.journey_ids)
        _check_scenario_steps(self.scenario, [item.journey for item in loaded])
        private_dir(self.folder.parent)  # only now: a refused simulation leaves nothing
        private_dir(self.folder)
        for stale in self.folder.glob("journeys.db*"):
            stale.unlink()
        engine = make_engine(settings.database_url)
        sql_event.listen(engine, "connect", _no_fsync)
        migrate(engine)
        self.engine = engine
        self.settings = settings
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(find_binary("temporal-test-server")),
            runtime=_quiet_runtime(),
        )
        try:
            with clock(self._clock), quiet_logs():
                simulation = await self._run(env, loaded, plan)
        finally:
            await env.shutdown()
        return simulation

    async def _run(
        self, env: WorkflowEnvironment, loaded: list[LoadedJourney], plan: DeployPlan
    ) -> Simulation:
        self.now = await env.get_current_time()
        start = self.scenario.start or default_start(self.now)
        if start < self.now:
            raise SimulationError(
                f"the scenario starts at {start.isoformat()}, in the past: simulated time "
                "only moves forward; pick a later start or leave it out"
            )
        await env.sleep(start - self.now)
        self.now = start
        apply_deploy(self.engine, plan)
        journeys = [item.journey for item in loaded]
        end = start + timedelta(days=self.scenario.days)
        population = self.plan(start, journeys)
        segments = sorted({j.trigger.segment for j in journeys if j.trigger.entered_segment})
        if segments:
            moment = start + SEGMENT_REFRESH
            while moment < end:
                self._schedule(moment, self._refresher(segments))
                moment += SEGMENT_REFRESH
        # Nothing deploys during a simulation: the router loads the versions once.
        self.router = Router(env.client, self.engine, TASK_QUEUE, interval=86400.0)
        null = ConsoleChannel(stream=io.StringIO())
        worker = build_worker(
            env.client,
            self.engine,
            self.settings,
            {"email": null, "push": null, "sms": null},
            # The same workflow code without the sandbox's per-task re-import (about twice
            # as fast on the time-skipping server, shared/TEMPORAL.md): the sandbox guards
            # against non-determinism in new code, which the test suite's replay catches.
            workflow_runner=UnsandboxedWorkflowRunner(),
            webhooks=self._webhook,
        )
        async with worker:
            await self._loop(env, end, len(population))
        self.end = end
        return Simulation(
            id=self.folder.name,
            folder=self.folder,
            engine=self.engine,
            journeys=loaded,
            scenario=self.scenario,
            scenario_path=self.scenario_path,
            start=start,
            end=end,
            seed=self.scenario.seed,
            contacts=len(population),
            days=self.scenario.days,
            shoppers=population,
            orders=dict(self.orders),
            webhook_calls=self.webhook_calls,
        )

    def plan(self, start: datetime, journeys: list[Journey]) -> list[Shopper]:
        """The shoppers, with what each does on its own put on the agenda. A backtest
        plans recorded events instead."""
        entries = self.scenario.entries or journey_entries(journeys)
        population = shoppers(self.scenario, start, entries)
        for shopper in population:
            for at, name, props, entry in shopper.entries:
                self._schedule(at, self._entry(shopper, name, props, entry))
        return population

    async def _loop(self, env: WorkflowEnvironment, end: datetime, contacts: int) -> None:
        day_shown = -1
        start = self.now
        while self.now < end:
            while self._agenda and self._agenda[0].at <= self.now:
                heapq.heappop(self._agenda).action()
            await self._route()
            target = min(end, self.now + self.max_step)
            if self._agenda:
                target = min(target, max(self._agenda[0].at, self.now + self.resolution))
            await env.sleep(target - self.now)
            self.now = target
            self._answer_new_messages()
            day = int((self.now - start) / timedelta(days=1))
            if self.progress and day != day_shown:
                day_shown = day
                self.progress(Progress(day, self.scenario.days, len(self._entered), contacts))
        await self._route()
        if self.progress:
            self.progress(
                Progress(self.scenario.days, self.scenario.days, len(self._entered), contacts)
            )

    async def _route(self) -> None:
        """Route what was stored since the last pass (by the shoppers, or by activities:
        segment entries, provider reports); a step with nothing new costs one query."""
        with session_scope(self.engine) as session:
            newest = session.exec(select(func.max(Event.id))).one() or 0
        if newest == self._routed_upto:
            return
        for _ in range(10):
            if not await self.router.sweep():
                self._routed_upto = newest  # all routed (else: again next step)
                return

    def _schedule(self, at: datetime, action: Callable[[], None]) -> None:
        self._order += 1
        heapq.heappush(self._agenda, _Due(at, self._order, action))

    # --- what shoppers do --------------------------------------------------------

    def _entry(
        self, shopper: Shopper, event: str, props: dict[str, Any], entry: Any
    ) -> Callable[[], None]:
        def act() -> None:
            if shopper.id not in self._entered:
                self._entered.add(shopper.id)
                self._identify(shopper)
            if event == IDENTIFY:
                return
            self._track(shopper.id, event, props)
            if "cart_id" in props:
                self._carts[shopper.id] = props
            if event == ORDER_COMPLETED:
                self.orders[ENTRY_ORDERS] += 1
                self._delivery_later(shopper.id, props)
            r = rng(self.scenario.seed, "buys", shopper.id, props.get("cart_id", event))
            if props.get("cart_id") and r.random() < entry.buys.chance:
                self._schedule(
                    self.now + timedelta(seconds=entry.buys.after.draw(r)),
                    lambda: self._buy(shopper.id, entry.buys.revenue, r, ANYWAY),
                )

        return act

    def _identify(self, shopper: Shopper) -> None:
        call = IdentifyCall.model_validate(
            {
                "userId": shopper.id,
                "traits": shopper.traits,
                "context": shopper.context,
                "messageId": self._id("identify", shopper.id),
                "timestamp": self.now.isoformat(),
            }
        )
        store_call(self.engine, call)

    def _track(self, contact: str, event: str, props: dict[str, Any]) -> None:
        call = TrackCall.model_validate(
            {
                "userId": contact,
                "event": event,
                "properties": props,
                "messageId": self._id(contact, event, self._order),
                "timestamp": self.now.isoformat(),
            }
        )
        store_call(self.engine, call)

    def _id(self, *about: object) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join(map(str, (self.scenario.seed, *about)))))

    def _buy(self, contact: str, revenue: tuple[float, float] | None, r: Any, why: str) -> None:
        self.orders[why] += 1
        cart = self._carts.pop(contact, None)
        if cart is not None:
            product = next(p for p in self.scenario.catalogue if p.product_id == cart["product_id"])
        else:
            product = r.choice(self.scenario.catalogue)
        n = self._orders[contact] = self._orders.get(contact, 0) + 1
        amount = r.uniform(*revenue) if revenue else product.price
        props = order_properties(product, f"{contact}-o{n}", amount)
        if self.scenario.currency:
            props["currency"] = self.scenario.currency
        if cart is not None:
            props["cart_id"] = cart["cart_id"]
        self._track(contact, ORDER_COMPLETED, props)
        self._delivery_later(contact, props)

    def _delivery_later(self, contact: str, order: dict[str, Any]) -> None:
        delivery = self.scenario.deliveries
        r = rng(self.scenario.seed, "delivery", contact, order.get("order_id"))
        if r.random() < delivery.chance:
            at = self.now + timedelta(seconds=delivery.after.draw(r))
            props = {"order_id": order.get("order_id")}
            self._schedule(at, lambda: self._track(contact, "Order Delivered", props))

    def _refresher(self, segments: list[str]) -> Callable[[], None]:
        def act() -> None:
            for name in segments:
                with session_scope(self.engine) as session:
                    refresh(session, name, self.now)

        return act

    def _webhook(
        self, spec: dict[str, Any], document: dict[str, Any], idempotency_key: str
    ) -> WebhookAnswer:
        """A `webhook` action's call, answered here: a simulation calls no other system.
        The answer is what a ticketing system would give back (an id)."""
        self.webhook_calls += 1
        reference = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.scenario.seed}:{idempotency_key}")
        return WebhookAnswer(200, {"id": f"sim-{reference.hex[:8]}", "simulated": True})

    # --- answering messages ------------------------------------------------------

    def _answer_new_messages(self) -> None:
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(
                    Message.id,
                    Message.idempotency_key,
                    Message.contact_id,
                    Message.channel,
                    Message.step_id,
                    Message.sent_at,
                )
                .where(col(Message.sent_at) >= self.now - self.max_step - timedelta(hours=1))
                .order_by(col(Message.sent_at), col(Message.idempotency_key))
            ).all()
            fresh = [row for row in rows if row[0] not in self._seen]
        for message_id, key, contact, channel, step, sent_at in fresh:
            self._seen.add(message_id)
            behaviour = self.scenario.behaviour_for(step, channel)
            self._answer(message_id, key, contact, channel, behaviour, sent_at)

    def _answer(
        self,
        message_id: str,
        key: str,
        contact: str,
        channel: str,
        b: ChannelBehaviour,
        sent_at: datetime,
    ) -> None:
        r = rng(self.scenario.seed, "answer", key)

        def later(delay: float, action: Callable[[], None]) -> None:
            self._schedule(max(self.now, sent_at + timedelta(seconds=delay)), action)

        def report(name: str, what: str, **extra: Any) -> Callable[[], None]:
            item = Feedback(
                dedupe_key=f"simulation:{message_id}:{what}",
                name=name,
                message_id=message_id,
                timestamp=None,
                **extra,
            )
            return lambda: record_message_feedback(self.engine, [item], channel)

        delivered = r.random() < b.delivered
        bounced = not delivered and r.random() < b.bounced / max(1e-9, 1 - b.delivered)
        opened = r.random() < b.opened.chance
        clicked = r.random() < b.clicked.chance
        unsubscribed = r.random() < b.unsubscribed.chance
        replied = r.random() < b.replied.chance
        bought = r.random() < b.bought.chance
        open_after = b.opened.after.draw(r)
        if channel == "email":
            if delivered:
                later(60, report("Email Delivered", "delivered"))
            elif bounced:
                later(120, report("Email Bounced", "bounced", suppress="bounced"))
                return
            if opened or clicked:
                later(open_after, report("Email Opened", "opened"))
            if clicked:
                later(open_after + b.clicked.after.draw(r), report("Email Link Clicked", "clicked"))
            if unsubscribed:
                later(
                    open_after + b.unsubscribed.after.draw(r),
                    report("Unsubscribed", "unsubscribed", opt_out="marketing"),
                )
        elif channel == "push" and (opened or clicked):
            props = {"message_id": message_id}
            later(open_after, lambda: self._track(contact, "Push Opened", props))
        elif channel == "sms":
            if delivered:  # the carrier's delivery report, as Twilio's status callback
                later(30, report("SMS Delivered", "delivered"))
            if replied:
                text = pick(r, dict(sorted(b.replied.texts.items()))) or ""
                later(b.replied.after.draw(r), lambda: self._reply(contact, message_id, text))
        if bought:
            revenue = b.bought.revenue
            later(b.bought.after.draw(r), lambda: self._buy(contact, revenue, r, AFTER_MESSAGE))

    def _reply(self, contact: str, message_id: str, text: str) -> None:
        with session_scope(self.engine) as session:
            phone = session.exec(select(Message.recipient).where(Message.id == message_id)).first()
        if not phone:
            return
        keyword = text.strip().upper()
        kind = "stop" if keyword in ("STOP", "UNSUBSCRIBE", "STOPALL") else "message"
        sms = InboundSms(
            message_sid=f"SM{uuid.uuid5(uuid.NAMESPACE_URL, message_id).hex}",
            sender=phone,
            body=text,
            kind=kind,
            keyword=keyword if kind == "stop" else None,
        )
        record_inbound_sms(self.engine, sms)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The worker's log lines (a send that failed for want of an address, no schedules on
    the test server) are what the report counts: on a terminal they would bury it."""
    loggers = [logging.getLogger(name) for name in ("orchestrator", "channels", "temporalio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _quiet_runtime() -> Runtime:
    """The SDK core warns that the test server is older than it likes; the report is
    what a marketer reads, so only the core's errors reach the terminal."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


def _no_fsync(dbapi_connection: Any, _record: Any) -> None:
    """A simulation's store is thrown away: no fsync on commit (several times faster)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous=OFF")
    finally:
        cursor.close()


def journeys_of(simulation: Simulation) -> list[Journey]:
    return [item.journey for item in simulation.journeys]
