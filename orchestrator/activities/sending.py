"""The send pipeline: ledger, policy and rendering (`prepare`), then delivery (`deliver`).

The `messages` row is the outbox and the send ledger at once. It is keyed by
`workflow_id:step_id:entry_seq` (never the Run ID, which changes on retry and
continue-as-new) and written before the provider is called, so a retried
activity returns the stored result instead of calling the provider twice.

`prepare_message` runs on the journeys queue: it chooses the channel, applies
the policy (`orchestrator.services.policy`) and renders. A message held by quiet hours or
a frequency cap comes back `deferred` with the time to try again, and the
*workflow* sleeps until then: a durable timer, not a sleep in an activity.
`deliver_message` runs on the channel's own task queue, whose rate limit is the
provider's quota shared by every worker, and is the only place a provider is
called.

A delivery is recorded `sending` (committed) just before the provider call, and
`sent`, `failed`, or `queued` again (the provider said "not now") right after it.
A later attempt that still finds `sending` cannot know whether the provider got
the message: the worker died or was stopped during the call. It never calls the
provider again blindly: an adapter whose provider deduplicates on our message id
(`Channel.idempotent`) is called again with the same id; for the others the row
becomes `unknown` and stays so until provider feedback (a delivery report)
settles it. `tests/test_send_reliability.py` measures those windows and
`tests/test_graceful_shutdown.py` stops workers in the middle of them.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import object_session
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from channels.base import Channel, OutgoingMessage, Receipt
from channels.email import header_problem, unsafe_characters
from channels.errors import ChannelConfigError, PermanentChannelError, TransientChannelError

from ..analytics.message_counts import count_deferral, count_status
from ..campaigns.gate import dispatch_of, held_at_delivery, hold
from ..observability import ids
from ..observability.provider_calls import provider_call
from ..rendering import Renderer, RenderError
from ..rendering.renderer import Rendered
from ..services.click_links import track_clicks
from ..services.links import MessageLinks
from ..services.policy import Cap, QuietHours, cap_release, consent_refusal
from ..services.zones import zone_of
from ..settings import Settings
from ..store.context import cart_context, contact_context, event_context, journey_context
from ..store.db import session_scope
from ..store.identity import load_contact
from ..store.recommendations import LazyRecommendations, recommendations
from ..store.suppressions import opt_out, suppress, suppressed_addresses
from ..store.tables import Contact, Event, JourneyRun, Message, utcnow
from ..workflows import types as t
from .pinned_templates import PinnedTemplates
from .provider_gate import ProviderGate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Early:
    """A message rendered before its write transaction, for the id and channel it used."""

    message_id: str
    channel: str
    content: Rendered | RenderError


SENT = ("sent", "delivered", "opened", "clicked", "replied", "bounced")
NOT_SENT = ("failed", "suppressed", "skipped")
# The provider call started and its outcome was never recorded (the worker died or was
# stopped during it): maybe sent, never sent again blindly.
UNKNOWN = "unknown"
# Messages that count toward frequency caps: everything that passed policy.
COUNTED = ("queued", "sending", UNKNOWN, *SENT)
MAX_DEFERRALS = 30
ACCEPTED_UNRECORDED = "AcceptedUnrecorded"  # the provider has it: the workflow counts it sent
# A provider pause this short is waited out in the activity; a longer one is a retry
# scheduled by Temporal (next_retry_delay), which frees the worker slot meanwhile.
GATE_SLEEP_MAX = 5.0

R = TypeVar("R")


def addresses(contact: Contact, channel: str) -> list[str]:
    """The contact's addresses on `channel`: one email or number, every push token.

    An email or number with a line break or control character, or an email with an
    encoded word (stored before ingestion refused them), is no address: it never reaches
    an adapter.
    """
    if channel in ("email", "sms"):
        found = contact.email if channel == "email" else contact.phone
        return [found] if found and _address_problem(channel, found) is None else []
    if channel == "push":
        return list(contact.push_tokens or [])
    return []


def no_address(contact: Contact, channel: str) -> str:
    """Why `addresses` found none: there is none, or the one on file cannot be used."""
    found = {"email": contact.email, "sms": contact.phone}.get(channel)
    problem = _address_problem(channel, found) if found else None
    if problem is None:
        return f"no {channel} address"
    return f"the {channel} address on file cannot be used ({problem}); fix it with an identify"


def _address_problem(channel: str, address: str) -> str | None:
    """Why an address on file cannot go into a message to `channel` as it is, or None."""
    return header_problem(address) if channel == "email" else unsafe_characters(address)


def candidates(choice: str | list[str], contact: Contact) -> list[str]:
    """The channels to try, in order: the step's list, or the contact's preference first."""
    if isinstance(choice, list):
        return choice
    if choice == "preferred":
        preferred = (contact.traits or {}).get("preferred_channel")
        rest = [c for c in ("email", "push", "sms") if c != preferred]
        return [preferred, *rest] if preferred in ("email", "push", "sms") else rest
    return [choice]


class SendActivities:
    def __init__(
        self,
        engine: Engine,
        renderer: Renderer,
        adapters: dict[str, Channel],
        links: MessageLinks,
        settings: Settings | None = None,
    ) -> None:
        self.engine = engine
        self.renderer = renderer  # the templates folder: versions without pins, the API's
        self.pins = PinnedTemplates(renderer)
        self.adapters = adapters  # logical channel -> adapter instance
        self.links = links
        self.settings = settings or Settings()
        self.gate = ProviderGate(engine)  # shared with every worker through the store

    # --- activities ----------------------------------------------------------

    @activity.defn(name=t.PREPARE_MESSAGE, no_thread_cancel_exception=True)
    def prepare_message(self, req: t.SendRequest) -> t.SendResult:
        """Ledger row, policy, channel and rendering: `ready` means deliver it next."""
        return self._prepare(req, timing=True)

    @activity.defn(name=t.DELIVER_MESSAGE, no_thread_cancel_exception=True)
    def deliver_message(self, req: t.DeliverRequest) -> t.SendResult:
        """Hand a prepared message to its adapter, at most once per successful attempt.

        Consent, the suppression list and quiet hours are checked again first: retries
        and a busy channel queue can put hours between prepare and delivery.
        """
        return self._deliver(req.message_id, req.options, req.policy, _attempt_time())

    @activity.defn(name=t.SEND_MESSAGE, no_thread_cancel_exception=True)
    def send_message(self, req: t.SendRequest) -> t.SendResult:
        """Runs started before channel queues existed: prepare and deliver in one step.

        Their workflow code cannot wait out a deferral, so quiet hours and caps are
        not applied to them; consent and suppressions are.
        """
        prepared = self._prepare(req, timing=False)
        if prepared.status != "ready" or prepared.message_id is None:
            return prepared
        options = (req.sender or {}).get(prepared.channel or "", {})
        if prepared.channel not in self.adapters:
            raise ApplicationError(
                f"this worker has no {prepared.channel} adapter: runs started before channel "
                "queues need every adapter on the journeys workers",
                type="AdapterMissing",
            )
        return self._deliver(prepared.message_id, options, None, None)

    # --- prepare -------------------------------------------------------------

    def _prepare(self, req: t.SendRequest, timing: bool) -> t.SendResult:
        key = f"{req.workflow_id}:{req.step_id}:{req.entry_seq}"
        ids.note(run=req.workflow_id, step=req.step_id, journey=req.journey_id)
        now = datetime.fromisoformat(req.now) if req.now else utcnow()
        # Render first, reading only: on SQLite the write transaction below holds the
        # database's one write lock, and rendering inside it kept every other writer
        # (the API, run bookkeeping) waiting for as long as the template took.
        with session_scope(self.engine) as session:
            early = self._render_early(session, req, key, now)
        with session_scope(self.engine) as session:
            row = session.exec(select(Message).where(Message.idempotency_key == key)).first()
            if row is not None:
                ids.note(message_id=row.id)
            if row is not None and row.status not in ("pending", "deferred"):
                return _result(row)
            # Locking the contact serializes concurrent sends to one person, so two
            # journeys cannot both take the last place under a frequency cap.
            contact = load_contact(session, req.contact_id, for_update=True)
            if row is None:
                row = self._new_row(session, req, key, contact, early)
                ids.note(message_id=row.id)
            self._decide(session, row, req, contact, now, timing, early)
            return _result(row)

    def _render_early(
        self, session: Session, req: t.SendRequest, key: str, now: datetime
    ) -> _Early | None:
        """The content the write transaction will most likely store, rendered before it;
        None when there will be nothing to render (already decided, no channel)."""
        row = session.exec(select(Message).where(Message.idempotency_key == key)).first()
        if row is not None and row.status not in ("pending", "deferred"):
            return None
        contact = load_contact(session, req.contact_id)
        if contact is None:
            return None
        channel = self._choose(session, req, contact)[0]
        if channel is None:
            return None
        message_id = row.id if row is not None else str(uuid.uuid4())
        return _Early(
            message_id, channel, self._content(session, req, contact, message_id, channel, now)
        )

    def _new_row(
        self,
        session: Session,
        req: t.SendRequest,
        key: str,
        contact: Contact | None,
        early: _Early | None = None,
    ) -> Message:
        first = candidates(req.channel, contact)[0] if contact else "email"
        row = Message(
            id=early.message_id if early is not None else str(uuid.uuid4()),
            idempotency_key=key,
            workflow_id=req.workflow_id,
            entry_seq=req.entry_seq,
            step_id=req.step_id,
            journey_id=req.journey_id,
            # The contact's own id (a run started under an alias sends to the merged contact).
            contact_id=contact.id if contact else req.contact_id,
            channel=first or "email",
            adapter="",
            template=req.template,
            category=req.category,
            timeline=[_event("pending")],
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # a concurrent attempt wrote the ledger row first
            session.rollback()
            raise ApplicationError("send ledger race, retrying", type="LedgerRace") from None
        return row

    def _decide(
        self,
        session: Session,
        row: Message,
        req: t.SendRequest,
        contact: Contact | None,
        now: datetime,
        timing: bool,
        early: _Early | None = None,
    ) -> None:
        """Apply the policy in order; leave the row queued (rendered) or say why not."""
        if contact is None:
            _set(row, "failed", "the contact does not exist (erased?)")
            return
        channel, refusals, blocked_by_policy = self._choose(session, req, contact)
        if channel is None:
            reasons = "; ".join(refusals)
            _set(row, "suppressed" if blocked_by_policy else "failed", reasons, check="channel")
            return
        row.channel = channel
        adapter = self.adapters.get(channel)
        row.adapter = adapter.name if adapter else self.settings.adapter_for(channel)
        row.recipient = self._addresses(req, contact, channel)[0]
        _check(row, "channel", "pass", f"{channel} ({'; '.join(refusals) or 'first choice'})")
        policy = req.policy or {}
        if timing and self._campaign_held(session, row, req, now):
            return
        if timing and req.category == "marketing":
            if req.deferrals - _campaign_waits(row) >= MAX_DEFERRALS:
                _set(row, "skipped", f"deferred {req.deferrals} times; giving up", check="policy")
                return
            if policy.get("frequency_cap", True) and self._capped(session, row, policy, now):
                return
            if self._quiet(row, policy, contact, now):
                return
        self._render(session, row, req, contact, now, early)

    def _campaign_held(
        self, session: Session, row: Message, req: t.SendRequest, now: datetime
    ) -> bool:
        """A campaign's pause, cancel or throttle (campaigns/gate.py); True when the row
        was skipped or deferred."""
        dispatch = dispatch_of(session, req.trigger_event_id)
        if dispatch is None:
            return False
        # The slot the throttle gave it, while that is what it waited for: deferred since
        # for another reason (quiet hours, a cap, a pause), it takes a new one.
        deferrals = [e for e in row.timeline if e.get("until")]
        last = deferrals[-1] if deferrals else {}
        slot = last.get("until") if last.get("check") == "throttle" else None
        taken = datetime.fromisoformat(slot) if slot else None
        paused = sum(1 for e in row.timeline if e.get("check") == "campaign")
        held = hold(session, dispatch, row.channel, now, paused, taken)
        if held is None:
            if dispatch.throttle:
                _check(row, "throttle", "pass")
            return False
        if held.skip is not None:
            _set(row, "skipped", held.skip, check="campaign")
        else:
            assert held.until is not None
            check = "throttle" if held.detail.startswith("throttle") else "campaign"
            _defer(row, held.until, held.detail, check=check)
        return True

    def _choose(
        self, session: Session, req: t.SendRequest, contact: Contact
    ) -> tuple[str | None, list[str], bool]:
        """The first candidate channel the contact can be reached and may be messaged on."""
        refusals: list[str] = []
        blocked_by_policy = False
        explicit = self.settings.marketing_consent == "explicit"
        for channel in candidates(req.channel, contact):
            found = self._addresses(req, contact, channel)
            if not found:
                refusals.append(no_address(contact, channel))
                continue
            if not self._renderer(session, req).has_channel(req.template, channel):
                refusals.append(f"message {req.template!r} has no {channel} version")
                continue
            refusal = consent_refusal(contact.consent or {}, channel, req.category, explicit)
            if refusal is None:
                blocked = suppressed_addresses(session, channel, found)
                if len(blocked) == len(found):
                    refusal = f"{channel} address on the suppression list ({blocked[found[0]]})"
            if refusal is not None:
                refusals.append(refusal)
                blocked_by_policy = True
                continue
            return channel, refusals, blocked_by_policy
        return None, refusals, blocked_by_policy

    @staticmethod
    def _addresses(req: t.SendRequest, contact: Contact, channel: str) -> list[str]:
        """The request's own address (a transactional message's `to`), else the contact's."""
        if req.to and channel in ("email", "sms"):
            return [req.to]
        return addresses(contact, channel)

    def _capped(
        self, session: Session, row: Message, policy: dict[str, Any], now: datetime
    ) -> bool:
        """Frequency caps across all journeys; True when the row was skipped or deferred."""
        rules = [
            ("marketing", Cap.parse(self.settings.marketing_cap), False),
            ("message", Cap.parse(self.settings.message_cap), True),
        ]
        for name, cap, same_template in rules:
            if cap is None:
                continue
            query = select(Message.queued_at).where(
                Message.contact_id == row.contact_id,
                Message.category == "marketing",
                Message.status.in_(COUNTED),  # type: ignore[attr-defined]
                Message.queued_at > now - timedelta(seconds=cap.within),  # type: ignore[operator]
                Message.id != row.id,
            )
            if (
                same_template
            ):  # the same message on the same channel (a follow-up elsewhere is fine)
                query = query.where(
                    Message.template == row.template, Message.channel == row.channel
                )
            times = [q for q in session.exec(query) if q is not None]
            release = cap_release(times, cap, now)
            if release is None:
                continue
            detail = f"{name} cap reached: {cap}"
            if policy.get("when_capped", "skip") == "defer":
                _defer(row, release, detail)
            else:
                _set(row, "skipped", detail, check="frequency_cap")
            return True
        _check(row, "frequency_cap", "pass")
        return False

    def _quiet(self, row: Message, policy: dict[str, Any], contact: Contact, now: datetime) -> bool:
        """Quiet hours in the contact's timezone; True when the row was deferred."""
        journey_window = (policy.get("quiet_hours") or {}).get(row.channel)
        window = QuietHours.parse(
            journey_window
            if journey_window is not None
            else self.settings.quiet_hours_for(row.channel)
        )
        if window is None:
            return False
        zone = zone_of(contact.timezone, self.settings.default_timezone)
        release = window.release(now, zone)
        if release is None:
            _check(row, "quiet_hours", "pass")
            return False
        _defer(row, release, f"quiet hours {window} in {zone.key}", check="quiet_hours")
        return True

    def _content(
        self,
        session: Session,
        req: t.SendRequest,
        contact: Contact,
        message_id: str,
        channel: str,
        now: datetime,
    ) -> Rendered | RenderError:
        trigger = session.get(Event, req.trigger_event_id) if req.trigger_event_id else None
        cart = cart_context(session, contact.id, trigger)
        context = {
            "contact": contact_context(contact, session),
            "event": event_context(trigger),
            "cart": cart,
            "recommendations": LazyRecommendations(
                lambda: recommendations(session, contact.id, cart["products"], now)
            ),
            "journey": journey_context(self._run(session, req), req.journey_id, req.step_id),
            "message": {"id": message_id, "channel": channel, **self.links.for_message(message_id)},
        }
        try:
            return self._renderer(session, req).render(req.template, channel, context)
        except RenderError as exc:
            return exc

    def _renderer(self, session: Session, req: t.SendRequest) -> Renderer:
        """The run's version's pinned templates, else the templates folder."""
        return self.pins.for_run(session, self._run(session, req))

    @staticmethod
    def _run(session: Session, req: t.SendRequest) -> JourneyRun | None:
        return session.exec(
            select(JourneyRun).where(
                JourneyRun.workflow_id == req.workflow_id,
                JourneyRun.entry_seq == req.entry_seq,
            )
        ).first()

    def _render(
        self,
        session: Session,
        row: Message,
        req: t.SendRequest,
        contact: Contact,
        now: datetime,
        early: _Early | None = None,
    ) -> None:
        if early is not None and (early.message_id, early.channel) == (row.id, row.channel):
            rendered = early.content
        else:  # the contact changed in between (consent, a new address): render it now
            rendered = self._content(session, req, contact, row.id, row.channel, now)
        if isinstance(rendered, RenderError):
            where = _template_file(rendered, self._renderer(session, req).templates_dir)
            _set(row, "failed", f"template {req.template}: {rendered.what}{where}", check="render")
            return
        run = self._run(session, req)
        rendered = track_clicks(session, rendered, row, run, self.links, self.settings)
        for dropped in rendered.dropped_links:  # data links that were not http(s)
            _check(row, "links", "dropped", str(dropped))
            activity.logger.warning("message %s: link %s", row.id, dropped)
        row.content, row.locale = rendered.parts, rendered.locale
        row.queued_at = now
        row.error = None
        _set(row, "queued")

    # --- deliver -------------------------------------------------------------

    def _deliver(
        self,
        message_id: str,
        options: dict[str, Any],
        policy: dict[str, Any] | None,
        now: datetime | None,
    ) -> t.SendResult:
        """`policy`/`now` given: re-check quiet hours too (runs with deferral support)."""
        no_device: ApplicationError | None = None
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id, with_for_update=True)
            if row is None:
                raise ApplicationError(
                    f"message {message_id} is not in the ledger",
                    type="UnknownMessage",
                    non_retryable=True,
                )
            ids.note(
                run=row.workflow_id, step=row.step_id, message_id=row.id, journey=row.journey_id
            )
            adapter = self.adapters.get(row.channel)
            again = row.status == "sending"  # an earlier attempt's call has no outcome
            if again and not (adapter is not None and adapter.idempotent):
                _set(row, UNKNOWN, _UNKNOWN_DETAIL.format(attempts=row.attempts), check="deliver")
                log.warning(
                    "message %s (%s, step %s): the provider call of attempt %d has no recorded "
                    "outcome; not sending it again (status unknown)",
                    row.id,
                    row.workflow_id,
                    row.step_id,
                    row.attempts,
                )
                return _result(row)
            if row.status not in ("queued", "sending"):
                return _result(row)  # already sent (a retry) or not sendable
            contact = load_contact(session, row.contact_id)
            if self._held(session, row, contact, policy, now):
                return _result(row)
            adapter = self.adapters[row.channel]
            waiting = self.gate.wait_time(adapter.name)
            if waiting > GATE_SLEEP_MAX:
                raise ApplicationError(
                    f"{adapter.name} asked us to wait {waiting:.1f}s",
                    type="ProviderBackoff",
                    next_retry_delay=timedelta(seconds=waiting),
                )
            if waiting > 0:
                time.sleep(waiting)
            devices: tuple[str, ...] = ()
            if row.channel == "push":
                tokens = list(contact.push_tokens or []) if contact else []
                blocked = suppressed_addresses(session, "push", tokens)
                devices = tuple(tok for tok in tokens if tok not in blocked)
                if not devices:
                    _set(row, "failed", "no registered device left", check="deliver")
                    no_device = _permanent(row)
            outgoing = OutgoingMessage(
                message_id=row.id,
                channel=row.channel,
                to=devices[0] if devices else row.recipient or "",
                content=dict(row.content),
                category=row.category,
                metadata={"journey": row.journey_id, "step": row.step_id},
                devices=devices,
                options={k: v for k, v in (options or {}).items() if v not in (None, "", [], {})},
                links=self.links.for_message(row.id),
            )
            if no_device is None:
                # Committed before the call: "the provider call started". Nothing that can
                # fail before the call (policy, rendering, the database) leaves it behind.
                row.status = "sending"
                row.attempts += 1
                detail = _SAME_KEY if again else None
                row.timeline = [
                    *row.timeline,
                    _event("sending", attempt=row.attempts, detail=detail),
                ]
        if no_device is not None:
            raise no_device
        # Error texts go into the workflow history, and so would the provider's exception
        # as the cause: never with the address in them (providers quote it, e.g. SMTP
        # "recipient ann@example.com refused").
        to = (outgoing.to, *outgoing.devices)
        try:
            with provider_call(adapter.name, outgoing.channel, message_id):
                receipt = adapter.send(outgoing)
        except TransientChannelError as exc:
            if exc.retry_after and adapter.backoff_scope == "provider":
                self.gate.pause(
                    adapter.name, exc.retry_after, f"{exc.status or ''} {exc.code or ''}".strip()
                )
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
            error = f"{adapter.name}: {_redact(exc, *to)}"
            self._record(self._not_taken, message_id, error)
            raise ApplicationError(
                error, type="TransientChannelError", next_retry_delay=delay
            ) from None  # the cause would go into the history too
        except PermanentChannelError as exc:
            self._refused(message_id, exc)
            raise _permanent_error(f"{adapter.name}: {_redact(exc, *to)}") from None
        except ChannelConfigError as exc:
            self._refused(message_id, PermanentChannelError(str(exc), reason="auth"))
            raise _permanent_error(f"{adapter.name}: {_redact(exc, *to)}") from None
        except Exception as exc:
            # Not one of the adapter's typed answers: the call may have reached the
            # provider (an SDK failing to read an accepted response, a bug), so its
            # outcome is unknown and it is not retried.
            error = f"{adapter.name}: {type(exc).__name__}: {_redact(exc, *to)}"
            # Where it failed, but not the exception's own text unredacted: an SDK's
            # message may quote the recipient, and log lines never name an address.
            where = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
            log.warning(
                "message %s: the adapter failed unexpectedly: %s\n%s", message_id, error, where
            )
            return self._record(self._unknown, message_id, error)
        return self._record_acceptance(message_id, receipt)

    def _held(
        self,
        session: Session,
        row: Message,
        contact: Contact | None,
        policy: dict[str, Any] | None,
        now: datetime | None,
    ) -> bool:
        """Policy again at delivery: an opt-out, a suppression or quiet hours since prepare."""
        if contact is None:
            _set(row, "failed", "the contact no longer exists (erased?)", check="deliver")
            return True
        explicit = self.settings.marketing_consent == "explicit"
        refusal = consent_refusal(contact.consent or {}, row.channel, row.category, explicit)
        if refusal is None and row.channel != "push" and row.recipient:
            blocked = suppressed_addresses(session, row.channel, [row.recipient])
            if blocked:
                reason = blocked[row.recipient]
                refusal = f"{row.channel} address on the suppression list ({reason})"
        if refusal is not None:
            _set(row, "suppressed", refusal, check="deliver")
            return True
        held = held_at_delivery(session, row.workflow_id, row.entry_seq)
        if held is not None and held.skip is not None:  # cancelled while in the queue
            _set(row, "skipped", held.skip, check="campaign")
            return True
        if held is not None and held.until is not None and now is not None:  # paused
            _defer(row, held.until, held.detail, check="campaign")
            return True
        if policy is None or now is None or row.category != "marketing":
            return False
        return self._quiet(row, policy, contact, now)

    def _record_acceptance(self, message_id: str, receipt: Receipt) -> t.SendResult:
        """Mark the message sent; the provider has it, so never let this become a resend.

        A failure here would leave the row `sending`, which a retry would have to record as
        `unknown`: try a few times, then end the activity for good as "accepted, unrecorded"
        (the workflow counts it sent).
        """
        for attempt in range(3):
            try:
                return self._accepted(message_id, receipt)
            except Exception as exc:  # the database, not the provider, failed
                activity.logger.warning("recording the send of %s failed: %s", message_id, exc)
                if attempt == 2:
                    raise ApplicationError(
                        f"the provider accepted message {message_id} "
                        f"({receipt.provider_message_id[:100]}) but recording it failed: "
                        f"{getattr(exc, 'orig', None) or exc}",  # not the SQL parameters
                        type=ACCEPTED_UNRECORDED,
                        non_retryable=True,
                    ) from None
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _accepted(self, message_id: str, receipt: Receipt) -> t.SendResult:
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id, with_for_update=True)
            assert row is not None
            row.provider_message_id = receipt.provider_message_id[:255]
            first = row.sent_at is None
            row.sent_at = row.sent_at or utcnow()
            # A webhook may already have said more; `unknown`: a retry gave up on this call
            # while it was still running (start-to-close timeout), and now we know.
            if row.status in ("queued", "sending", UNKNOWN):
                row.error = None
                _set(row, "sent", receipt.status if receipt.status != "sent" else None)
            elif first:  # a delivery report came first: still sent, and counted so
                count_status(session, row, "sent")
            if receipt.dead_devices:
                _forget_devices(session, row.contact_id, receipt.dead_devices)
            return _result(row)

    def _record(self, write: Callable[[str, str], R], message_id: str, error: str) -> R:
        """Record what a provider call ended in, retrying the write a few times: a row
        left `sending` would make the next attempt take the message for unknown."""
        for attempt in range(3):
            try:
                return write(message_id, error)
            except SQLAlchemyError as exc:
                if attempt == 2:
                    raise
                activity.logger.warning("recording the outcome of %s failed: %s", message_id, exc)
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _not_taken(self, message_id: str, error: str) -> None:
        """The provider said "not now" (busy, rate limit, connection refused): it does not
        have the message, so the next attempt sends it."""
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id, with_for_update=True)
            assert row is not None
            if row.status == "sending":
                row.status = "queued"
                row.timeline = [*row.timeline, _event("queued", check="provider", detail=error)]
            elif row.status == UNKNOWN:  # a retry gave up on this call meanwhile: not sent
                _set(row, "failed", f"not sent: {error}", check="provider")

    def _unknown(self, message_id: str, error: str) -> t.SendResult:
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id, with_for_update=True)
            assert row is not None
            if row.status == "sending":
                _set(row, UNKNOWN, f"outcome unknown: {error}", check="provider")
            return _result(row)

    def _refused(self, message_id: str, exc: PermanentChannelError) -> None:
        """The provider said no for good: record why and act on what it told us."""
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id)
            assert row is not None
            said = _redact(exc, row.recipient, *exc.dead_devices)
            code = "" if exc.code is None or str(exc.code) in said else f" (code {exc.code})"
            _set(row, "failed", f"{exc.reason}: {said}{code}", check="provider")
            source = row.adapter or row.channel
            if exc.reason == "unsubscribed" and row.recipient:
                opt_out(session, row.contact_id, row.channel)
                suppress(session, row.channel, row.recipient, "unsubscribed", source, said)
            elif exc.reason == "invalid_recipient" and row.recipient:
                suppress(session, row.channel, row.recipient, "invalid", source, said)
            elif exc.reason == "dead_token":
                _forget_devices(session, row.contact_id, exc.dead_devices or (row.recipient,))
            if exc.dead_devices and exc.reason != "dead_token":
                _forget_devices(session, row.contact_id, exc.dead_devices)

    @activity.defn(name=t.GIVE_UP_MESSAGE, no_thread_cancel_exception=True)
    def give_up_message(self, req: t.GiveUpRequest) -> None:
        """Delivery retries ran out: the row must not stay `sending` (and capped) forever.

        `sending` here means the last attempt's call has no outcome: `unknown`, not failed.
        """
        with session_scope(self.engine) as session:
            row = session.get(Message, req.message_id, with_for_update=True)
            if row is not None and row.status in ("queued", "pending"):  # pending: never prepared
                _set(row, "failed", req.reason, check="deliver")
            elif row is not None and row.status == "sending":
                reason = f"{req.reason}; the last attempt's provider call has no outcome"
                _set(row, UNKNOWN, reason, check="deliver")


def _attempt_time() -> datetime:
    """When Temporal scheduled this attempt, by the server's clock (time skipping too)."""
    try:
        scheduled = activity.info().current_attempt_scheduled_time
    except RuntimeError:  # called outside an activity
        return utcnow()
    return scheduled if scheduled.year > 2000 else utcnow()  # test environments: epoch


def _redact(error: Exception | str, *addresses: str | None) -> str:
    """The error's text with the recipient's addresses replaced by `<recipient>`."""
    text = str(error)
    for address in sorted({a.strip() for a in addresses if a and a.strip()}, key=len, reverse=True):
        text = re.sub(re.escape(address), "<recipient>", text, flags=re.IGNORECASE)
    return text


def _forget_devices(session: Session, contact_id: str, tokens: tuple[str | None, ...]) -> None:
    contact = load_contact(session, contact_id, for_update=True)
    if contact is not None:
        dead = set(tokens)
        contact.push_tokens = [tok for tok in contact.push_tokens or [] if tok not in dead]
        contact.updated_at = utcnow()


def _campaign_waits(row: Message) -> int:
    """The row's deferrals a campaign made (a pause, the throttle): they are the
    operator's, and do not count towards giving up."""
    return sum(1 for e in row.timeline if e.get("check") in ("campaign", "throttle"))


def _event(status: str, **fields: Any) -> dict[str, Any]:
    entry = {"status": status, "at": utcnow().isoformat()}
    entry.update({k: v for k, v in fields.items() if v is not None})
    return entry


def _set(row: Message, status: str, detail: str | None = None, check: str | None = None) -> None:
    """Move the row to `status`; a send that failed is logged here, where it is decided
    (every worker, and `journeys dev`, show it)."""
    row.status = status
    if status in (*NOT_SENT, "deferred", UNKNOWN):
        row.error = detail
    row.timeline = [*row.timeline, _event(status, check=check, detail=detail)]
    if (session := object_session(row)) is not None:
        count_status(session, row, status, check)  # type: ignore[arg-type]
    if status == "failed":
        log.warning(
            "send failed: journey %s, step %s, contact %s: %s",
            row.journey_id,
            row.step_id,
            row.contact_id,
            detail or "no reason given",
            extra={"run": row.workflow_id, "step": row.step_id, "message_id": row.id},
        )


def _check(row: Message, check: str, result: str, detail: str | None = None) -> None:
    row.timeline = [*row.timeline, _event(row.status, check=check, result=result, detail=detail)]


def _defer(row: Message, release: datetime, detail: str, check: str = "frequency_cap") -> None:
    row.status = "deferred"
    row.error = f"{detail}; deferred until {release.isoformat()}"
    row.timeline = [
        *row.timeline,
        _event("deferred", check=check, detail=detail, until=release.isoformat()),
    ]
    if (session := object_session(row)) is not None:
        count_deferral(session, row, check)  # type: ignore[arg-type]


_UNKNOWN_DETAIL = (
    "outcome unknown: the provider call of attempt {attempts} has no recorded outcome (the "
    "worker stopped or died during it); not sent again, since the provider may have it"
)
_SAME_KEY = "again with the same message id: the provider deduplicates on it"


def _result(row: Message) -> t.SendResult:
    if row.status in SENT:
        return t.SendResult(row.id, "sent", row.channel)
    if row.status == UNKNOWN:
        # For the run, most likely sent: the call had started. Taking the failure path
        # (another channel) could message the person twice.
        return t.SendResult(row.id, "sent", row.channel, row.error)
    if row.status in ("queued", "sending"):
        return t.SendResult(row.id, "ready", row.channel)
    if row.status == "deferred":
        return t.SendResult(row.id, "deferred", row.channel, row.error, row.timeline[-1]["until"])
    return t.SendResult(row.id, row.status, row.channel, row.error)


def _permanent(row: Message) -> ApplicationError:
    return _permanent_error(row.error or "cannot send")


def _permanent_error(text: str) -> ApplicationError:
    """A send that failed for good: not retried, and an outcome rather than a fault.

    Benign: the message row records it and `_set` logs one line; Temporal's own warning
    with a traceback would only repeat that. (No cause: it would go into the history.)
    """
    return ApplicationError(
        text,
        type="PermanentSendError",
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


def _template_file(exc: RenderError, templates_dir: Path) -> str:
    """` (cart_reminder/email.text:3)`: where in the templates a render failed, if known."""
    if not exc.file:
        return ""
    try:
        name = Path(exc.file).resolve().relative_to(templates_dir.resolve()).as_posix()
    except ValueError:
        name = Path(exc.file).name
    return f" ({name}:{exc.line})" if exc.line else f" ({name})"
