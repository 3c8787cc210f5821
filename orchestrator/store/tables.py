"""SQLModel tables: contacts and their aliases, events, journey versions and runs, messages,
suppressions, API keys; orders, the loyalty ledger, coupons and segments.

Schema changes go through Alembic migrations (`orchestrator/store/migrations`);
a test checks that the migrations produce exactly these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from .clock import utcnow

# Named constraints can be dropped or altered by later migrations, also on SQLite
# (batch mode cannot address an unnamed constraint). Must be set before the tables below.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Who made an event's `message_id` (its dedupe key): the client that sent the call, or
# the orchestrator itself. Two namespaces, so neither can take the other's keys.
ORIGIN_CLIENT = "client"
ORIGIN_INTERNAL = "internal"


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that is aware UTC in and out, on every database.

    SQLite has no zoned type: plain `DateTime` would store an aware value's wall-clock
    time without its offset and return naive values. Converting to UTC before binding
    (naive values are taken as UTC) and tagging results as UTC makes SQLite behave like
    PostgreSQL. Migrations see the plain `DateTime(timezone=True)` underneath.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _as_utc(value)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json(**kw: Any) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False), **kw)


def _time(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class Contact(SQLModel, table=True):
    """A person we may message, keyed by the storefront's userId (or anonymousId)."""

    __tablename__ = "contacts"

    id: str = Field(primary_key=True, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    traits: dict[str, Any] = _json()
    push_tokens: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # {"email": {"marketing": true, "transactional": true}, "sms": {...}, "push": {...}}
    consent: dict[str, Any] = _json()
    # Only ever sent as an anonymousId (never as a userId): with no email, phone or order
    # either, a write key may merge it into a userId (`store/identity.py`). False unless
    # ingestion created it from an anonymousId: a contact made any other way is a customer.
    anonymous: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = _time(nullable=False, default=utcnow)
    updated_at: datetime = _time(nullable=False, default=utcnow)


class ContactAlias(SQLModel, table=True):
    """Another id of a contact: an anonymousId merged into a userId (`alias`, identify).

    Events sent under the alias land on the contact; runs started under the alias
    keep their workflow id and find the contact through this row.
    """

    __tablename__ = "contact_aliases"

    alias_id: str = Field(primary_key=True, max_length=255)
    contact_id: str = Field(max_length=255, index=True)
    created_at: datetime = _time(nullable=False, default=utcnow)


class Event(SQLModel, table=True):
    """A Segment call as received, or an event we store ourselves; `message_id` makes
    retries harmless.

    `message_id` is unique per `origin`: `client` keys are the Segment calls' messageIds
    (`srv-<uuid>` for a call without one); `internal` keys are ours (provider reports
    `sendgrid:…`/`twilio:…`, survey answers `survey:<message id>`, journey `track` actions,
    segment entries). A client sending one of our keys as its messageId stores its own
    event and takes nothing from ours.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_unrouted", "routed_at", "id"),
        Index("ix_events_contact_name", "contact_id", "name"),
        UniqueConstraint("origin", "message_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=255)
    origin: str = Field(
        default=ORIGIN_CLIENT, max_length=16, sa_column_kwargs={"server_default": ORIGIN_CLIENT}
    )
    type: str = Field(max_length=16)  # track | identify | ...
    name: str | None = Field(default=None, max_length=200)  # the track event's name
    contact_id: str = Field(max_length=255)
    properties: dict[str, Any] = _json()
    context: dict[str, Any] = _json()
    timestamp: datetime = _time(nullable=False)
    received_at: datetime = _time(nullable=False, default=utcnow)
    routed_at: datetime | None = _time(nullable=True)
    # A router claims a batch before delivering it; another router skips the claimed
    # rows until the lease runs out (the claimant died), so routers never double up.
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = _time(nullable=True)


# A dead letter's states (`DeadLetter.status`).
FAILING = "failing"  # failed fewer than JOURNEYS_DEAD_LETTER_AFTER times: retried each sweep
DEAD = "dead"  # gave up: waits for an operator; no longer holds back its contact's events
DROPPED = "dropped"  # an operator dropped it: never routed, kept for audit


class DeadLetter(SQLModel, table=True):
    """An event's failed routing attempts, counted in the store so that every router
    (and a restarted one) sees the same count; with status `dead`, a dead letter.

    Only failures of the event itself are counted, never an outage of Temporal or the
    database (`processes/route_failures.py`). `error` is the last failure's exception
    type and message with contact ids and addresses taken out. Deleting the event
    (erasure) deletes its row.
    """

    __tablename__ = "dead_letters"

    event_id: int = Field(
        sa_column=Column(Integer, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    )
    status: str = Field(default=FAILING, max_length=16, index=True)
    attempts: int = 0
    error: str = Field(max_length=500)
    first_failed_at: datetime = _time(nullable=False)
    last_failed_at: datetime = _time(nullable=False)
    dead_at: datetime | None = _time(nullable=True)
    dropped_at: datetime | None = _time(nullable=True)


class JourneyVersion(SQLModel, table=True):
    """A journey as deployed: the validated spec, frozen, numbered per journey.

    `active` marks the version new entries start on, at most one per journey. A journey
    retired by a deploy (its file is gone) has none: every version is inactive, and the
    one that was active carries `retired_at`. Its runs in flight finish on their version.

    `templates` pins the message files the version sends with, `{path: sha256}` of
    `TemplateBlob` rows: its runs render what they were deployed with, whatever the
    folder holds later (empty for versions deployed before pinning: they read the
    folder). `rolled_back_at`: `journeys deploy --rollback` made this older version
    current, and deploys from files leave it so until `--release`.
    """

    __tablename__ = "journey_versions"
    __table_args__ = (
        UniqueConstraint("journey_id", "version"),
        UniqueConstraint("journey_id", "spec_hash"),
    )

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str = Field(max_length=63, index=True)
    version: int
    spec_hash: str = Field(max_length=64)
    spec: dict[str, Any] = _json()
    source_path: str | None = Field(default=None, max_length=1024)
    active: bool = True
    deployed_at: datetime = _time(nullable=False, default=utcnow)
    retired_at: datetime | None = _time(nullable=True)
    templates: dict[str, Any] = _json()
    rolled_back_at: datetime | None = _time(nullable=True)


class TemplateBlob(SQLModel, table=True):
    """One template file's content, stored once by its sha256 for every version pinning it."""

    __tablename__ = "template_blobs"

    hash: str = Field(primary_key=True, max_length=64)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    stored_at: datetime = _time(nullable=False, default=utcnow)


class Campaign(SQLModel, table=True):
    """What an operator made of a campaign journey (`journeys campaigns pause|cancel`):
    `active`, `paused` (nothing more is sent until resumed) or `cancelled` (nothing more
    is sent, ever, by this journey's campaign). No row: active."""

    __tablename__ = "campaigns"

    journey_id: str = Field(primary_key=True, max_length=63)
    status: str = Field(default="active", max_length=16)
    changed_at: datetime = _time(nullable=False, default=utcnow)


class CampaignDispatch(SQLModel, table=True):
    """One time a campaign was due: the members of its segment then, released in waves
    (one per local moment with `local_time`), at most `throttle` sends a second."""

    __tablename__ = "campaign_dispatches"
    __table_args__ = (Index("ix_campaign_dispatches_journey", "journey_id", "started_at"),)

    id: str = Field(primary_key=True, max_length=100)  # {journey}@{local due, minute}
    journey_id: str = Field(max_length=63)
    version: int
    segment: str = Field(max_length=63)
    due: str = Field(max_length=16)  # "2027-01-15 10:00", local (each contact's, or `zone`)
    zone: str | None = Field(default=None, max_length=64)  # None: each contact's own
    throttle: dict[str, Any] = _json()  # {channel: sends per second}
    # In local time: {"waves": [[zone, ...], ...], "default": index of the default
    # zone's wave}: a wave also takes members of earlier waves' zones not released yet.
    plan: dict[str, Any] = _json()
    # sending | done | cancelled (by an operator) | stopped (the journey was retired)
    status: str = Field(default="sending", max_length=16)
    waves: int = 0
    waves_done: int = 0
    recipients: int = 0  # members released so far
    started_at: datetime = _time(nullable=False, default=utcnow)
    finished_at: datetime | None = _time(nullable=True)


class CampaignSlot(SQLModel, table=True):
    """A dispatch's throttle on one channel: the next free moment to send at."""

    __tablename__ = "campaign_slots"

    dispatch_id: str = Field(primary_key=True, max_length=100)
    channel: str = Field(primary_key=True, max_length=32)
    next_at: datetime = _time(nullable=False)


class ProviderPause(SQLModel, table=True):
    """A provider's "not before": set from a 429's Retry-After, read by every worker."""

    __tablename__ = "provider_pauses"

    provider: str = Field(primary_key=True, max_length=64)  # the adapter's name
    until: datetime = _time(nullable=False)
    reason: str = Field(default="", max_length=255)


class JourneyRun(SQLModel, table=True):
    """One entry of one contact into one journey (a workflow run, across continue-as-new)."""

    __tablename__ = "journey_runs"
    __table_args__ = (
        UniqueConstraint("workflow_id", "entry_seq"),
        Index("ix_runs_contact_status", "contact_id", "status"),
        Index("ix_runs_journey_status", "journey_id", "status"),
        # `journeys stats`: who waits at which step now, counted from the index alone.
        Index("ix_runs_journey_active_step", "journey_id", "status", "entered_at", "current_step"),
        # One order converts one run of a journey (NULLs never collide).
        UniqueConstraint("journey_id", "conversion_event_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(max_length=400)
    entry_seq: int  # 1 for the contact's first entry into this journey, then 2, ...
    journey_id: str = Field(max_length=63)
    version: int
    contact_id: str = Field(max_length=255)
    trigger_event_id: int | None = None
    # active | completed | exited | converted | failed | skipped
    status: str = Field(default="active", max_length=16)
    current_step: str | None = Field(default=None, max_length=200)
    exit_reason: str | None = Field(default=None, max_length=200)
    converted_at: datetime | None = _time(nullable=True)
    revenue: float | None = None
    # The goal event that converted the run: a run converts once, an order converts one run.
    conversion_event_id: int | None = None
    # Values earlier steps produced for later ones (coupon code, points earned…): `journey.*`.
    data: dict[str, Any] = _json()
    entered_at: datetime = _time(nullable=False, default=utcnow)
    updated_at: datetime = _time(nullable=False, default=utcnow)
    exited_at: datetime | None = _time(nullable=True)


class TrailEntry(SQLModel, table=True):
    """One thing that happened to a run, and why: the trail `journeys explain` tells.

    `kind` is entered | refused | step | branch | split | wait | send | goal | exit;
    `outcome` is what was decided (a case, a variant, the event or `timeout`, a send's
    status, the exit status) and `reason` says why in words. `key` makes writing it again
    (an activity retried) harmless. No personal data beyond the contact and run ids,
    which erasure rewrites.
    """

    __tablename__ = "run_trail"
    __table_args__ = (
        Index("ix_run_trail_contact", "contact_id", "at"),
        Index("ix_run_trail_run", "workflow_id", "entry_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=700, unique=True)
    workflow_id: str = Field(max_length=400)
    entry_seq: int  # 0 for a refused entry: no run was made
    journey_id: str = Field(max_length=63)
    version: int
    contact_id: str = Field(max_length=255)
    step_id: str | None = Field(default=None, max_length=200)
    kind: str = Field(max_length=16)
    outcome: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=500)
    detail: dict[str, Any] = _json()
    at: datetime = _time(nullable=False)


class JourneyCount(SQLModel, table=True):
    """A counter kept on write: how many runs entered by day reached, took, sent, opened…

    Bucketed by the UTC day the runs *entered* (a cohort), so every number of one period
    is about the same people: of those who entered in March, so many got the reminder,
    so many opened it, so many bought. `step_id` is "" for the journey itself. `amount`
    and `amount_sq` sum revenue (and its square, for intervals) where the metric has one.
    Stats read a few hundred of these rows, never the runs or messages themselves.
    `shard` spreads the bumps of one counter over a few rows, so concurrent transactions
    on PostgreSQL do not queue on one row lock; readers sum over it.
    """

    __tablename__ = "journey_counts"
    # A journey's own numbers (step "") without its steps' rows, and a period of any step.
    __table_args__ = (Index("ix_journey_counts_step_day", "journey_id", "step_id", "day"),)

    journey_id: str = Field(primary_key=True, max_length=63)
    version: int = Field(primary_key=True)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD, UTC
    step_id: str = Field(primary_key=True, max_length=200)
    metric: str = Field(primary_key=True, max_length=250)
    channel: str = Field(primary_key=True, max_length=32)
    shard: int = Field(default=0, primary_key=True)
    count: int = 0
    amount: float = 0.0
    amount_sq: float = 0.0


class Message(SQLModel, table=True):
    """The outbox and send ledger: one row per (run, send step), written before sending."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_contact", "contact_id"),
        Index("ix_messages_contact_queued", "contact_id", "queued_at"),
        # Provider callbacks (Twilio status) find the message by the provider's id.
        Index("ix_messages_provider_message_id", "provider_message_id"),
        # The dashboard's message log, newest first: all, by journey, by status.
        Index("ix_messages_created", "created_at", "id"),
        Index("ix_messages_journey_created", "journey_id", "created_at", "id"),
        Index("ix_messages_status_created", "status", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)  # uuid, our message id
    idempotency_key: str = Field(max_length=500, unique=True)  # workflow_id:step_id:entry_seq
    workflow_id: str = Field(max_length=400)
    entry_seq: int
    step_id: str = Field(max_length=200)
    journey_id: str = Field(max_length=63)
    contact_id: str = Field(max_length=255)
    channel: str = Field(max_length=32)  # email | push | sms
    adapter: str = Field(max_length=64)  # console | sendgrid | ...
    template: str = Field(max_length=200)
    category: str = Field(default="marketing", max_length=16)
    recipient: str | None = Field(default=None, max_length=320)
    content: dict[str, Any] = _json()  # rendered parts: subject, html, text, title, body
    locale: str | None = Field(default=None, max_length=35)  # the version sent: ru, sr_Latn…
    # pending -> queued (passed policy) -> sending (handed to the adapter) -> sent -> delivered,
    # opened, clicked, bounced, replied; or deferred (quiet hours, cap), suppressed (consent,
    # suppression list), skipped (frequency cap), failed (render or provider said no),
    # unknown (the worker stopped during the provider call: maybe sent, never resent).
    status: str = Field(default="pending", max_length=16)
    provider_message_id: str | None = Field(default=None, max_length=255)
    error: str | None = None
    timeline: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = _time(nullable=False, default=utcnow)
    # When the message passed policy (journey time): what frequency caps count.
    queued_at: datetime | None = _time(nullable=True)
    sent_at: datetime | None = _time(nullable=True)
    attempts: int = 0  # provider calls made for this message


class Suppression(SQLModel, table=True):
    """An address we must not message on a channel: hard bounce, spam complaint, STOP.

    Keyed by the address, not the contact: a bounced address stays suppressed even
    when another contact record carries it.
    """

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)  # email | sms | push
    address: str = Field(max_length=320)  # normalized: lower-case email, E.164, token
    # bounced | complained | unsubscribed | invalid | dead_token
    reason: str = Field(max_length=32)
    source: str = Field(max_length=64)  # sendgrid | twilio | firebase | api | ...
    detail: str | None = Field(default=None, max_length=500)
    created_at: datetime = _time(nullable=False, default=utcnow)


class ApiKey(SQLModel, table=True):
    """A write key (storefronts), server key (the shop's back end: transactional messages)
    or admin key (contact export and erasure, reports).

    Only a SHA-256 of the key is kept; `prefix` lets people tell keys apart.
    """

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    kind: str = Field(max_length=16)  # write | server | admin
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = _time(nullable=False, default=utcnow)
    last_used_at: datetime | None = _time(nullable=True)
    revoked_at: datetime | None = _time(nullable=True)


class Order(SQLModel, table=True):
    """An `Order Completed` as the shop reported it: what segments sum and refunds reverse.

    Written when the event is stored; `refunded_at` is set by `Order Refunded`.
    """

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_contact_placed", "contact_id", "placed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(max_length=255, unique=True)  # the storefront's order id
    contact_id: str = Field(max_length=255)
    revenue: float | None = None  # Segment `revenue`, else `total`
    total: float | None = None
    currency: str | None = Field(default=None, max_length=8)
    coupon: str | None = Field(default=None, max_length=64)
    event_id: int | None = None
    placed_at: datetime = _time(nullable=False)
    refunded_at: datetime | None = _time(nullable=True)


class OrderLine(SQLModel, table=True):
    """One product of an order: what recommendations count ("people also bought")."""

    __tablename__ = "order_lines"
    __table_args__ = (
        Index("ix_order_lines_product", "product_id"),
        Index("ix_order_lines_contact", "contact_id"),
        Index("ix_order_lines_order", "order_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(max_length=255)
    contact_id: str = Field(max_length=255)
    product_id: str = Field(max_length=255)
    name: str | None = Field(default=None, max_length=500)
    price: float | None = None
    quantity: float = 1
    url: str | None = Field(default=None, max_length=2000)
    image_url: str | None = Field(default=None, max_length=2000)
    placed_at: datetime = _time(nullable=False)


class LoyaltyEntry(SQLModel, table=True):
    """The loyalty ledger: one row per change of a contact's points, never updated.

    `kind` is earn | redeem | expire | reverse (a refund takes back what its order
    earned) | adjust. Earned points may expire at `expires_at`; the balance is the sum.
    """

    __tablename__ = "loyalty_entries"
    __table_args__ = (Index("ix_loyalty_contact_created", "contact_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(max_length=255)
    kind: str = Field(max_length=16)
    points: int  # positive for earn, negative for the others
    order_id: str | None = Field(default=None, max_length=255, index=True)
    idempotency_key: str = Field(max_length=500, unique=True)
    journey_id: str | None = Field(default=None, max_length=63)
    note: str | None = Field(default=None, max_length=500)
    expires_at: datetime | None = _time(nullable=True)
    created_at: datetime = _time(nullable=False, default=utcnow)


class Coupon(SQLModel, table=True):
    """A unique, single-use promo code issued to one contact from a named campaign."""

    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_contact", "contact_id"),
        Index("ix_coupons_campaign", "campaign"),
    )

    code: str = Field(primary_key=True, max_length=64)
    campaign: str = Field(max_length=63)
    contact_id: str = Field(max_length=255)
    kind: str = Field(max_length=16)  # percent | amount
    value: float  # 10 (percent) or 500 (amount, in `currency`)
    currency: str | None = Field(default=None, max_length=8)
    minimum_order: float | None = None
    expires_at: datetime | None = _time(nullable=True)
    idempotency_key: str = Field(max_length=500, unique=True)  # workflow_id:step_id:entry_seq
    journey_id: str | None = Field(default=None, max_length=63)
    workflow_id: str | None = Field(default=None, max_length=400)
    entry_seq: int | None = None
    # Anyone may use it (once), not only `contact_id`: `issue_coupon: {shareable: true}`.
    shareable: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    issued_at: datetime = _time(nullable=False, default=utcnow)
    redeemed_at: datetime | None = _time(nullable=True)
    redeemed_order_id: str | None = Field(default=None, max_length=255)
    redeemed_revenue: float | None = None


class SegmentDefinition(SQLModel, table=True):
    """A segment as deployed from `journeys/segments.yaml`: what schedules evaluate."""

    __tablename__ = "segments"

    name: str = Field(primary_key=True, max_length=63)
    spec: dict[str, Any] = _json()
    spec_hash: str = Field(max_length=64)
    source_path: str | None = Field(default=None, max_length=1024)
    active: bool = True
    deployed_at: datetime = _time(nullable=False, default=utcnow)
    refreshed_at: datetime | None = _time(nullable=True)


class SegmentMember(SQLModel, table=True):
    """A stay of a contact in a segment: entered, and exited (null while a member)."""

    __tablename__ = "segment_members"
    __table_args__ = (
        Index("ix_segment_members_current", "segment", "exited_at", "contact_id"),
        Index("ix_segment_members_contact", "contact_id"),
        # One open stay per (segment, contact): a refresh racing a merge cannot make two.
        Index(
            "uq_segment_members_open",
            "segment",
            "contact_id",
            unique=True,
            sqlite_where=text("exited_at IS NULL"),
            postgresql_where=text("exited_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    segment: str = Field(max_length=63)
    contact_id: str = Field(max_length=255)
    entered_at: datetime = _time(nullable=False, default=utcnow)
    exited_at: datetime | None = _time(nullable=True)
