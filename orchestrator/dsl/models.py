"""Typed models of a journey: what a marketer may write in `journeys/*.yaml`.

Every step is a mapping with exactly one *kind* key (`wait`, `send`, ...) plus
that kind's optional sibling keys (`id`, `then`, `on_timeout`, `else`). The
kind key selects the model (a discriminated union), so a typo in a kind is an
"unknown step kind" error, not a confusing list of failed alternatives.

Models are frozen and serialize to plain JSON: the parsed journey is the
frozen *version* a workflow interprets, carried in its input.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from ..services.policy import QuietHours
from ..services.spelling import closest_name
from ..services.zones import unknown_zone, zone_named
from .conditions import check_condition, parse
from .cron import check_cron
from .durations import format_duration, parse_duration
from .roots import INVARIANT_ROOTS

STEP_KINDS = ("wait", "wait_until", "wait_for", "branch", "split", "send", "action", "exit")
CHANNELS = ("email", "push", "sms")
ENGAGEMENTS = ("delivered", "opened", "clicked", "bounced", "replied", "failed")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

Duration = Annotated[int, BeforeValidator(parse_duration)]
Condition = Annotated[str, AfterValidator(check_condition)]
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
# A step's id: the marketer's identifier, or the path the loader gives an unnamed
# step ("steps.2.on_timeout.0"), which must survive the JSON round trip to a workflow.
StepId = Annotated[str, Field(pattern=r"^(?:[a-z][a-z0-9_]{0,62}|steps(?:\.(?:\d+|[a-z_]+))+)$")]
EventName = Annotated[str, Field(min_length=1, max_length=200)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _parse_re_entry(value: Any) -> Any:
    """`never`, `always` or `after <duration>` -> (mode, seconds)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("never", "always"):
        return {"mode": text, "after": None}
    if text.startswith("after "):
        return {"mode": "after", "after": parse_duration(text[len("after ") :])}
    raise ValueError(f"invalid re_entry {value!r}: expected never, always or after <duration>")


class ReEntry(Model):
    mode: Literal["never", "always", "after"]
    after: int | None = None


SEGMENT_EVENTS = {"entered": "Segment Entered", "exited": "Segment Exited"}
IDENTIFY = "$identify"  # what an `identify` call is called when it starts a run
# What a date trigger stores when a contact's date comes (`properties.journey` names the
# journey): the run starts on it like on any event. Only the orchestrator records it.
DATE_REACHED = "Date Reached"
# What a campaign stores for each member of its segment when the campaign is due for
# them (`properties.journey` names the journey): their run starts on it.
CAMPAIGN_DUE = "Campaign Due"
DATE_TRAIT = re.compile(r"contact\.traits\.([A-Za-z_][A-Za-z0-9_]{0,63})")
_LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_DAY_OFFSET = re.compile(r"([+-]?)([0-9]{1,3})d")


def _date_path(value: Any) -> Any:
    if isinstance(value, str) and not DATE_TRAIT.fullmatch(value.strip()):
        raise ValueError(
            f"date must name a contact trait holding a date, like contact.traits.birthday; "
            f"got {value!r}"
        )
    return value.strip() if isinstance(value, str) else value


def _local_time(value: Any) -> Any:
    if isinstance(value, str) and not _LOCAL_TIME.fullmatch(value.strip()):
        raise ValueError(
            f'at is a local time HH:MM on a 24-hour clock, like "10:00"; got {value!r}'
        )
    return value.strip() if isinstance(value, str) else value


def _day_offset(value: Any) -> Any:
    """`-3d` (three days before), `0d`, `7d`: whole days, at most a year either way."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = _DAY_OFFSET.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        raise ValueError(
            f"offset is whole days before (-3d) or after (3d) the date, or 0d; got {value!r}"
        )
    days = int(found[2]) * (-1 if found[1] == "-" else 1)
    if abs(days) > 366:
        raise ValueError(f"offset {value!r} is more than a year from the date")
    return days


_ONCE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T]([01][0-9]|2[0-3]):([0-5][0-9])")
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "h": 3600, "hour": 3600}
_RATE_UNITS |= {"m": 60, "min": 60, "minute": 60}  # `m` is minutes, as in durations
SCHEDULE_HELP = (
    'a date and time "2027-01-15 10:00" (once) or a cron line "0 10 * * 1" '
    "(minute hour day month weekday: every Monday at 10:00)"
)


def _schedule(value: Any) -> Any:
    """A campaign's `schedule:`: once at a local date and time, or a cron line."""
    if not isinstance(value, str):
        raise ValueError(f"schedule is {SCHEDULE_HELP}; got {value!r}")
    text = " ".join(value.split())
    found = _ONCE.fullmatch(text)
    if found is not None:
        try:
            datetime(*(int(part) for part in found.groups()))
        except ValueError as exc:
            raise ValueError(f"schedule {text!r} is not a real date and time: {exc}") from None
        return f"{found[1]}-{found[2]}-{found[3]} {found[4]}:{found[5]}"
    if len(text.split()) != 5 or (text[:1].isdigit() and "-" in text.split()[0][:5]):
        raise ValueError(f"schedule is {SCHEDULE_HELP}; got {value!r}")
    check_cron(text)
    minute = text.split()[0]
    if not minute.isdigit():  # `*`, a step, a list, a range: a dispatch each time
        raise ValueError(
            'a campaign\'s cron line names one minute, like the 0 of "0 10 * * 1" (Mondays '
            f"at 10:00): {minute!r} sends the campaign several times an hour, each time to "
            "every member"
        )
    return text


def rate_per_second(text: str) -> float:
    """`20/s`, `1000/min`, `50000/h` as sends per second."""
    found = _RATE.fullmatch(text.strip())
    if found is None or float(found[1]) <= 0:
        raise ValueError(
            f"a throttle is a rate above zero like 20/s, 1000/min or 50000/h; got {text!r}"
        )
    return float(found[1]) / _RATE_UNITS[found[2]]


def _throttle(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(
            "throttle gives a rate per channel, like `throttle: {email: 20/s, sms: 5/s}`; "
            f"got {value!r}"
        )
    for channel, rate in value.items():
        if channel not in CHANNELS:
            meant = closest_name(str(channel), CHANNELS)
            raise ValueError(
                f"throttle names channels ({', '.join(CHANNELS)}); got {channel!r}"
                + (f"; did you mean {meant}?" if meant else "")
            )
        rate_per_second(str(rate))
    return {channel: str(rate).strip() for channel, rate in value.items()}


def _zone_name(value: Any) -> Any:
    if isinstance(value, str) and zone_named(value) is None:
        raise ValueError(unknown_zone(value))
    return value


_AUDIENCE_MATCH = re.compile(
    r"\s*event\.properties\.([A-Za-z_][A-Za-z0-9_]{0,63})\s*==\s*"
    r"trigger\.properties\.([A-Za-z_][A-Za-z0-9_]{0,63})\s*"
)


def _names(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def audience_matches(where: str) -> list[tuple[str, str]]:
    """(event property, trigger property) pairs of an audience's `where`, which must be
    `event.properties.X == trigger.properties.Y` comparisons joined by `and`: it runs as
    SQL over everyone's events, not in Python."""
    pairs = []
    for clause in re.split(r"\band\b", where):
        found = _AUDIENCE_MATCH.fullmatch(clause)
        if found is None:
            raise ValueError(
                "an audience's where compares the contact's event with the trigger, like "
                "event.properties.product_id == trigger.properties.product_id (several "
                f"joined by and); got {clause.strip()!r}"
            )
        pairs.append((found[1], found[2]))
    return pairs


def _audience_where(value: Any) -> Any:
    if isinstance(value, str):
        audience_matches(value)
    return value


class Audience(Model):
    """Who a catalogue event (a product's price dropped) is for: contacts who did one of
    `did` within `within`, matching `where`, and none of `not_did` in that time."""

    did: Annotated[list[EventName], BeforeValidator(_names), Field(min_length=1)]
    where: Annotated[str, BeforeValidator(_audience_where)] | None = None
    within: Duration
    not_did: Annotated[list[EventName], BeforeValidator(_names)] = []

    @property
    def matches(self) -> list[tuple[str, str]]:
        return audience_matches(self.where) if self.where else []


class Trigger(Model):
    """The `track` event that starts a run, an `identify` call, or entry into (exit
    from) a segment.

    `segment: big_spenders` is the `Segment Entered` event the segment refresh
    stores for each new member (docs/segments.md); `when: exited` its `Segment Exited`.
    `identify: true` is every identify call (`where:` picks, e.g. on consent).
    """

    event: EventName | None = None
    segment: Identifier | None = None
    identify: bool = False
    when: Literal["entered", "exited"] = "entered"
    where: Condition | None = None
    # A date from the contact's data: `date: contact.traits.birthday, every: year`.
    date: Annotated[str, BeforeValidator(_date_path)] | None = None
    every: Literal["year", "once"] = "year"
    at: Annotated[str, BeforeValidator(_local_time)] = "09:00"
    offset: Annotated[int, BeforeValidator(_day_offset)] = 0
    # A catalogue event (no contact) starts a run for each contact of the audience.
    audience: Audience | None = None
    # A campaign: every member of `segment` at the scheduled time (docs/journeys.md).
    schedule: Annotated[str, BeforeValidator(_schedule)] | None = None
    local_time: bool = False  # at the schedule's time in each contact's own timezone
    timezone: Annotated[str, BeforeValidator(_zone_name)] | None = None  # else the default
    throttle: Annotated[dict[str, str], BeforeValidator(_throttle)] = {}

    @model_validator(mode="after")
    def _one_source(self) -> Trigger:
        campaign = set(self.model_fields_set & {"local_time", "timezone", "throttle"})
        if self.schedule is None and campaign:
            raise ValueError(
                f"'{sorted(campaign)[0]}' belongs to a campaign: "
                '`schedule: "2027-01-15 10:00", segment: newsletter`'
            )
        if self.schedule is not None:
            self._check_campaign()
            return self
        sources = [self.event, self.segment, self.date]
        if [*(s is not None for s in sources), self.identify].count(True) != 1:
            raise ValueError(
                "trigger needs exactly one of 'event', 'segment', 'date' or 'identify: true'"
            )
        if self.segment is None and self.when != "entered":
            raise ValueError("'when' belongs to a segment trigger: `segment: <name>, when: exited`")
        if self.audience is not None and self.event is None:
            raise ValueError(
                "an audience belongs to an event trigger: `event: Price Dropped, audience: ...`"
            )
        set_here = self.model_fields_set & {"every", "at", "offset"}
        if self.date is None and set_here:
            raise ValueError(
                f"'{sorted(set_here)[0]}' belongs to a date trigger: "
                '`date: contact.traits.birthday, every: year, at: "10:00"`'
            )
        return self

    def _check_campaign(self) -> None:
        if self.segment is None:
            raise ValueError(
                "a schedule sends to the members of a segment: add `segment: <name>` "
                "(a segment of segments.yaml)"
            )
        others = [k for k in ("event", "date", "audience") if getattr(self, k) is not None]
        if self.identify:
            others.append("identify")
        if others:
            raise ValueError(
                f"a campaign starts on its schedule: '{others[0]}' starts a journey another "
                "way; keep `schedule` and `segment`, or drop `schedule`"
            )
        if self.when != "entered":
            raise ValueError(
                "a campaign sends to whoever is in the segment at the scheduled time: 'when' "
                "is for journeys that start on entering (or leaving) the segment"
            )
        if self.local_time and self.timezone is not None:
            raise ValueError(
                "local_time sends at the time in each contact's own timezone; timezone sends "
                "at one moment for everyone: keep one of them"
            )

    def campaign_text(self) -> str:
        """A campaign in words: `segment newsletter at 2027-01-15 10:00, each contact's
        local time`."""
        when = f"on cron {self.schedule}" if self.recurring else f"at {self.schedule}"
        zone = (
            "each contact's local time"
            if self.local_time
            else (self.timezone or "the default timezone")
        )
        return f"segment {self.segment} {when}, {zone}"

    def date_text(self) -> str:
        """A date trigger in words: `contact.traits.birthday every year at 10:00`."""
        shift = f", {self.offset:+d} days" if self.offset else ""
        return f"{self.date} every {self.every} at {self.at}{shift}"

    @property
    def recurring(self) -> bool:
        """A campaign on a cron line (not once at a date)."""
        return self.schedule is not None and _ONCE.fullmatch(self.schedule) is None

    def rates(self) -> dict[str, float]:
        """A campaign's throttle as sends per second, by channel."""
        return {channel: rate_per_second(rate) for channel, rate in self.throttle.items()}

    @model_serializer(mode="wrap")
    def _spec(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The date keys came later: left out of other triggers, so journeys deployed
        # before keep their spec hash (no new version on upgrade).
        data: dict[str, Any] = handler(self)
        if self.date is None:
            for key in ("date", "every", "at", "offset"):
                data.pop(key, None)
        if self.audience is None:
            data.pop("audience", None)
        if self.schedule is None:
            for key in ("schedule", "local_time", "timezone", "throttle"):
                data.pop(key, None)
        return data

    @property
    def trait(self) -> str | None:
        """The trait a date trigger reads (`birthday`), None for other triggers."""
        found = DATE_TRAIT.fullmatch(self.date) if self.date else None
        return found[1] if found else None

    @property
    def name(self) -> str:
        """The event name that starts a run."""
        if self.identify:
            return IDENTIFY
        if self.date is not None:
            return DATE_REACHED
        if self.schedule is not None:
            return CAMPAIGN_DUE
        return self.event if self.event is not None else SEGMENT_EVENTS[self.when]

    def accepts_segment(self, properties: dict[str, Any]) -> bool:
        """For segment triggers: the event is about this trigger's segment."""
        return self.segment is None or properties.get("segment") == self.segment

    @property
    def entered_segment(self) -> str | None:
        """The segment whose entry (or exit) starts a run; None for a campaign, which
        sends to the segment's members at its scheduled time."""
        return self.segment if self.schedule is None else None


class Entry(Model):
    re_entry: Annotated[ReEntry, BeforeValidator(_parse_re_entry)] = ReEntry(mode="never")
    if_: Condition | None = Field(default=None, alias="if")
    # A trigger property (e.g. `order_id`): one run per contact *and* value, so every
    # order gets its own run even while the previous order's run is still waiting.
    one_run_per: (
        Annotated[
            str,
            _pattern_check(
                r"[A-Za-z_][A-Za-z0-9_]{0,63}", "one_run_per", "a trigger property, like order_id"
            ),
        ]
        | None
    ) = None


class Goal(Model):
    """A goal event within `within` of the entry (or of the run's last message, with
    `after: last_message`) converts the run, once, with its revenue, even after the run
    has ended: no step needs to keep the run alive for it."""

    event: EventName
    within: Duration
    where: Condition | None = None
    after: Literal["entry", "last_message"] = "entry"

    @model_serializer(mode="wrap")
    def _spec(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `after` came later: left out of the frozen spec while it is the default, so
        # journeys deployed before it keep their spec hash (no new version on upgrade).
        data: dict[str, Any] = handler(self)
        if self.after == "entry":
            data.pop("after", None)
        return data


# --- steps -----------------------------------------------------------------


class WaitStep(Model):
    """Sleep for a fixed duration (a durable Temporal timer)."""

    wait: Duration
    id: StepId | None = None


def _check_time_of_day(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"invalid time {value!r}: expected HH:MM on a 24-hour clock, like 09:30")
    return value


class WaitUntilSpec(Model):
    time: Annotated[str, AfterValidator(_check_time_of_day)]
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    timezone: str | None = None  # used when the contact has none; default UTC


class WaitUntilStep(Model):
    """Sleep until the next local time of day (and weekday) in the contact's timezone."""

    wait_until: WaitUntilSpec
    id: StepId | None = None


class WaitForSpec(Model):
    # One event name, or several: the first of any of them (`[Survey Answered, SMS Received]`).
    event: EventName | Annotated[list[EventName], Field(min_length=1, max_length=20)] | None = None
    message: Identifier | None = None
    engagement: Literal["delivered", "opened", "clicked", "bounced", "replied", "failed"] = "opened"
    where: Condition | None = None
    timeout: Duration
    # Keep the matched event on the run as `journey.<save_as>` ({name, properties, timestamp}).
    save_as: Identifier | None = None

    @property
    def events(self) -> tuple[str, ...]:
        if self.event is None:
            return ()
        return (self.event,) if isinstance(self.event, str) else tuple(self.event)

    @model_validator(mode="after")
    def _one_target(self) -> WaitForSpec:
        if (self.event is None) == (self.message is None):
            raise ValueError("wait_for needs exactly one of 'event' or 'message'")
        if self.save_as is not None and self.event is None:
            raise ValueError("save_as keeps the event a wait_for matched: it needs 'event'")
        return self


class WaitForStep(Model):
    """Wait for an event or a message engagement; `then` if it came, else `on_timeout`."""

    wait_for: WaitForSpec
    then: list[Step] = []
    on_timeout: list[Step] = []
    id: StepId | None = None


class BranchCase(Model):
    if_: Condition = Field(alias="if")
    then: list[Step] = []


class BranchStep(Model):
    """Take the first case whose condition holds, or `else`."""

    branch: Annotated[list[BranchCase], Field(min_length=1)]
    else_: list[Step] = Field(default=[], alias="else")
    id: StepId | None = None


class SplitVariant(Model):
    variant: Identifier
    weight: Annotated[int, Field(gt=0, le=10_000)]
    then: list[Step] = []


class SplitStep(Model):
    """Weighted A/B split, stable per contact (hash of journey, step and contact)."""

    split: Annotated[list[SplitVariant], Field(min_length=2)]
    id: StepId | None = None

    @model_validator(mode="after")
    def _unique_variants(self) -> SplitStep:
        names = [v.variant for v in self.split]
        if len(set(names)) != len(names):
            raise ValueError("split variant names must be unique")
        return self


ChannelChoice = Literal["email", "push", "sms", "preferred"]


class SendSpec(Model):
    id: Identifier | None = None
    channel: ChannelChoice | Annotated[list[Literal["email", "push", "sms"]], Field(min_length=1)]
    template: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
    category: Literal["marketing", "transactional"] = "marketing"


class SendStep(Model):
    """Render a template and deliver it through a channel, exactly once per run.

    `on_failure` runs when the message could not be sent: the provider refused it
    for good (bad address, unsubscribed, dead token), policy suppressed or skipped
    it (no consent, suppression list, frequency cap), or it failed to render.
    """

    send: SendSpec
    on_failure: list[Step] = []
    id: StepId | None = None


def _pattern_check(pattern: str, what: str, example: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"invalid {what} {value!r}: expected {example}")
        return value

    return AfterValidator(check)


# Names starting with "_" are ours (bookkeeping in `traits`): the loader refuses them in
# new journeys (`_check_trait_names`); specs already running keep validating.
TraitName = Annotated[str, Field(min_length=1, max_length=100)]
ContactTag = Annotated[str, Field(min_length=1, max_length=100)]


class UpdateContactAction(Model):
    """Set, increment or unset traits; add or remove tags (`traits.tags`)."""

    type: Literal["update_contact"]
    set: dict[TraitName, Any] = {}
    increment: dict[TraitName, float] = {}
    unset: list[TraitName] = []
    tag: list[ContactTag] = []
    untag: list[ContactTag] = []

    @model_validator(mode="after")
    def _does_something(self) -> UpdateContactAction:
        if not (self.set or self.increment or self.unset or self.tag or self.untag):
            raise ValueError(
                "update_contact needs at least one of 'set', 'increment', 'unset', 'tag' or 'untag'"
            )
        return self


class Multiplier(Model):
    if_: Condition = Field(alias="if")
    times: Annotated[float, Field(gt=0, le=100)]


class AwardPointsAction(Model):
    """Loyalty points for the order that triggered the run (docs/loyalty-and-coupons.md).

    `per` points for each currency unit of the trigger's `of` property (Segment's
    `revenue`, falling back to `total`), times every multiplier whose `if` holds;
    or a fixed number of `points`. Stores `journey.points_earned` / `points_balance`.
    """

    type: Literal["award_points"]
    per: Annotated[float, Field(gt=0, le=10_000)] = 1
    of: Annotated[
        str,
        _pattern_check(r"[A-Za-z_][A-Za-z0-9_]{0,63}", "of", "a trigger property, like revenue"),
    ] = "revenue"
    points: Annotated[int, Field(gt=0, le=10_000_000)] | None = None
    multipliers: list[Multiplier] = []
    expire_after: Duration | None = None


def _parse_discount(value: Any) -> Any:
    """`10%` -> percent 10; `500` -> an amount (in the action's currency)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid discount {value!r}: expected like 10% or 500")
    if isinstance(value, int | float):
        return {"kind": "amount", "value": value}
    if isinstance(value, str):
        text = value.strip()
        kind = "percent" if text.endswith("%") else "amount"
        try:
            number = float(text.rstrip("%").strip())
        except ValueError:
            raise ValueError(f"invalid discount {value!r}: expected like 10% or 500") from None
        return {"kind": kind, "value": number}
    return value


class Discount(Model):
    kind: Literal["percent", "amount"]
    value: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _sane(self) -> Discount:
        if self.kind == "percent" and self.value > 100:
            raise ValueError(f"a discount of {self.value:g}% is more than 100%")
        return self


class IssueCouponAction(Model):
    """A unique, single-use promo code from a named campaign, stored on the run.

    Templates get `journey.<save_as>_code`, `_kind`, `_value`, `_currency`,
    `_expires_at` and `_minimum_order` (save_as defaults to `coupon`). The code is
    the contact's own: only their orders may use it, unless `shareable: true` (a
    code meant to be passed on, still used once).
    """

    type: Literal["issue_coupon"]
    campaign: Identifier
    prefix: Annotated[
        str,
        _pattern_check(r"[A-Z0-9]{1,16}", "prefix", "1-16 capital letters or digits, like THANKS"),
    ]
    discount: Annotated[Discount, BeforeValidator(_parse_discount)]
    currency: (
        Annotated[str, _pattern_check(r"[A-Z]{3}", "currency", "an ISO 4217 code, like RUB")] | None
    ) = None
    minimum_order: Annotated[float, Field(gt=0)] | None = None
    expires_in: Duration | None = None
    save_as: Identifier = "coupon"
    shareable: Annotated[bool, Field(strict=True)] = False

    @model_validator(mode="after")
    def _currency_for_amounts(self) -> IssueCouponAction:
        if self.discount.kind == "amount" and self.currency is None:
            raise ValueError("an amount discount needs its 'currency' (e.g. currency: RUB)")
        return self

    @model_serializer(mode="wrap")
    def _spec(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `shareable` came later: left out of the frozen spec while false, so journeys
        # deployed before it keep their spec hash (no new version on upgrade).
        data: dict[str, Any] = handler(self)
        if not self.shareable:
            data.pop("shareable", None)
        return data


URL_VARIABLE = r"\$\{([A-Za-z0-9_]*)\}"
URL_VARIABLE_NAME = r"[A-Z][A-Z0-9_]*_WEBHOOK_URL"


def _check_url(value: str) -> str:
    # `${NAME_WEBHOOK_URL}` is read from the worker's environment when the call is made.
    # Only such names: a journey file must not be able to send a worker's other settings
    # (its database URL, its keys) to a host of its choosing.
    for name in re.findall(URL_VARIABLE, value):
        if not re.fullmatch(URL_VARIABLE_NAME, name):
            raise ValueError(
                f"invalid url variable ${{{name}}}: only environment variables named "
                "like SUPPORT_WEBHOOK_URL (ending in _WEBHOOK_URL) may be used"
            )
    probe = re.sub(URL_VARIABLE, "x", value)
    if not re.match(r"^(https?://[^\s/]+|x)(/\S*)?$", probe):
        raise ValueError(
            f"invalid url {value!r}: expected http(s)://host/path, or ${{NAME_WEBHOOK_URL}} parts"
        )
    return value


class WebhookAction(Model):
    """A signed JSON POST to another system; its JSON answer can be kept on the run.

    Signed like the webhook channel (`X-Journeys-Signature`) with the secret in the
    environment variable `secret_env`; `Idempotency-Key` is the run and step.
    """

    type: Literal["webhook"]
    url: Annotated[str, AfterValidator(_check_url), Field(max_length=2000)]
    payload: dict[str, Any] = {}
    secret_env: Annotated[
        str,
        _pattern_check(r"[A-Z_][A-Z0-9_]{0,99}", "secret_env", "an environment variable name"),
    ] = "JOURNEYS_ACTIONS_SECRET"
    timeout: Annotated[float, Field(gt=0, le=60)] = 10
    save_as: Identifier | None = None


class TrackAction(Model):
    """Record an event for the contact, which other journeys can react to."""

    type: Literal["track"]
    event: EventName
    properties: dict[str, Any] = {}


Action = Annotated[
    UpdateContactAction | AwardPointsAction | IssueCouponAction | WebhookAction | TrackAction,
    Field(discriminator="type"),
]
ACTION_TYPES = ("update_contact", "award_points", "issue_coupon", "webhook", "track")


class ActionStep(Model):
    """Change the world: the contact, points, coupons, another system, an event.

    `on_failure` runs when the action could not be done (a webhook refused or
    unreachable after its retries); without it the journey goes on.
    """

    action: Action
    on_failure: list[Step] = []
    id: StepId | None = None


class ExitSpec(Model):
    reason: str | None = None


def _exit_spec(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"reason": value}
    return value


class ExitStep(Model):
    """Leave the journey here."""

    exit: Annotated[ExitSpec, BeforeValidator(_exit_spec)] = ExitSpec()
    id: StepId | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_word(cls, value: Any) -> Any:
        return {"exit": None} if value == "exit" else value


def step_kind(value: Any) -> str | None:
    """The discriminator: which kind key a raw mapping (or a model) carries."""
    if isinstance(value, dict):
        kinds = [k for k in value if k in STEP_KINDS]
        return kinds[0] if len(kinds) == 1 else None
    if value == "exit":
        return "exit"
    if isinstance(value, BaseModel):
        return next((k for k in STEP_KINDS if k in type(value).model_fields), None)
    return None


Step = Annotated[
    Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitUntilStep, Tag("wait_until")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[SendStep, Tag("send")]
    | Annotated[ActionStep, Tag("action")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        step_kind,
        custom_error_type="unknown_step_kind",
        custom_error_message="unknown step kind",
    ),
]


def _check_quiet_hours(value: str | None) -> str | None:
    QuietHours.parse(value)
    return value


def _off_is_none(value: Any) -> Any:
    return "none" if value is False else value  # YAML reads a bare `off` / `no` as false


QuietWindow = Annotated[
    str | None, BeforeValidator(_off_is_none), AfterValidator(_check_quiet_hours)
]


class QuietHoursSpec(Model):
    """Per-channel quiet hours for this journey: "21:00-08:00", or "none" to send any time.

    A channel left out keeps the default (JOURNEYS_QUIET_HOURS_<CHANNEL>).
    """

    email: QuietWindow = None
    push: QuietWindow = None
    sms: QuietWindow = None


class JourneyPolicy(Model):
    """How this journey meets the send policy (defaults come from settings)."""

    when_capped: Literal["skip", "defer"] = "skip"
    frequency_cap: bool = True  # false: this journey's marketing is not capped (use sparingly)
    quiet_hours: QuietHoursSpec = QuietHoursSpec()


class EmailSender(Model):
    from_: str | None = Field(default=None, alias="from", min_length=3, max_length=320)
    reply_to: str | None = Field(default=None, min_length=3, max_length=320)
    categories: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default=[], max_length=8
    )


class SmsSender(Model):
    from_: str | None = Field(default=None, alias="from", min_length=2, max_length=32)
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")


class PushSender(Model):
    analytics_label: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9\-_.~%]{1,50}$")
    android: dict[str, Any] = {}
    apns: dict[str, Any] = {}
    webpush: dict[str, Any] = {}


class Sender(Model):
    """Who the journey's messages come from, per channel (defaults come from settings)."""

    email: EmailSender = EmailSender()
    sms: SmsSender = SmsSender()
    push: PushSender = PushSender()


class Utm(Model):
    """UTM parameters added to the links of the journey's messages: `utm_source` is
    this; `utm_medium` the channel, `utm_campaign` the journey id, `utm_content` the
    send step's id. A parameter a link already has is kept as it is."""

    source: Annotated[
        str,
        _pattern_check(
            r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}",
            "utm source",
            "letters, digits, _ . or -, starting with a letter or digit, like shop_emails",
        ),
    ]


class Tracking(Model):
    """Links in this journey's messages: our click redirect (`clicks`, on by default;
    JOURNEYS_CLICK_TRACKING=false turns it off everywhere) and UTM parameters."""

    clicks: Annotated[bool, Field(strict=True)] = True
    utm: Utm | None = None


def _check_invariant_condition(text: str) -> str:
    parse(text, INVARIANT_ROOTS, dates=False)
    return text


def _bare_boolean(value: Any) -> Any:
    """YAML reads `always: true` as a boolean: the condition `true`."""
    return ("true" if value else "false") if isinstance(value, bool) else value


InvariantCondition = Annotated[
    str, BeforeValidator(_bare_boolean), AfterValidator(_check_invariant_condition)
]
Count = Annotated[int, Field(ge=0, le=1_000_000, strict=True)]
INVARIANT_KINDS = ("never", "always", "at_most", "at_least", "exactly")


class Invariant(Model):
    """A rule every simulated contact must keep (docs/invariants.md): `never` / `always`
    over each sent message or run (`for`), or a count (`at_most`, `at_least`, `exactly`)
    of the messages matching `of`, in a sliding window (`within`), per order, or over the
    whole simulation. `where` narrows what is checked: the items, or for a count the
    contacts (and orders) it is about."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    for_: Literal["message", "run"] = Field(default="message", alias="for")
    where: InvariantCondition | None = None
    never: InvariantCondition | None = None
    always: InvariantCondition | None = None
    at_most: Count | None = None
    at_least: Count | None = None
    exactly: Count | None = None
    of: InvariantCondition | None = None
    within: Duration | None = None
    per: Literal["order"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Invariant:
        kinds = [k for k in INVARIANT_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = f" (found {', '.join(kinds)})" if kinds else ""
            raise ValueError(
                "an invariant needs exactly one of never, always, at_most, at_least or "
                f"exactly{found}"
            )
        if self.kind in ("never", "always"):
            extra = [k for k in ("of", "within", "per") if getattr(self, k) is not None]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} belongs to a count (at_most, at_least, exactly): "
                    f"`{self.kind}:` is checked on each {self.for_} on its own"
                )
            return self
        if self.of is None:
            raise ValueError(f"{self.kind} needs 'of': the messages it counts")
        if self.for_ != "message":
            raise ValueError(f"{self.kind} counts messages: leave out 'for: {self.for_}'")
        if self.within is not None and self.per is not None:
            raise ValueError("a count is either 'within' a duration or 'per: order', not both")
        if self.within is not None and self.kind != "at_most":
            raise ValueError(
                f"'within' goes with at_most (a cap in any window of that length); "
                f"{self.kind} counts per order or over the whole simulation"
            )
        return self

    @property
    def kind(self) -> str:
        """never | always | at_most | at_least | exactly."""
        return next(k for k in INVARIANT_KINDS if getattr(self, k) is not None)

    @property
    def count(self) -> int | None:
        value = getattr(self, self.kind)
        return value if isinstance(value, int) else None

    @property
    def title(self) -> str:
        """The name given, else one derived from the rule."""
        if self.name:
            return self.name
        if self.kind in ("never", "always"):
            subject = "" if self.for_ == "message" else "run: "
            return f"{self.kind}: {subject}{getattr(self, self.kind)}"
        scope = ""
        if self.within is not None:
            scope = f" within {format_duration(self.within)}"
        elif self.per is not None:
            scope = f" per {self.per}"
        return f"{self.kind.replace('_', ' ')} {self.count} of {self.of}{scope}"


class Journey(Model):
    """One journey file."""

    id: Identifier
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    trigger: Trigger
    entry: Entry = Entry()
    exit_on: list[EventName] = []
    goal: Goal | None = None
    policy: JourneyPolicy = JourneyPolicy()
    sender: Sender = Sender()
    tracking: Tracking = Tracking()
    steps: Annotated[list[Step], Field(min_length=1)]
    # Checked by `journeys simulate`, never by a run: see `_spec`.
    invariants: list[Invariant] = []

    @model_validator(mode="after")
    def _yearly_dates_enter_again(self) -> Journey:
        """A yearly date (a recurring campaign) enters the contact again each year (each
        time): re-entry defaults to always."""
        trigger = self.trigger
        if trigger.date is not None and trigger.every == "year":
            never = (
                "a yearly date trigger enters each contact once a year: re_entry never would "
                "send only the first year; leave re_entry out (always) or use every: once"
            )
        elif trigger.schedule is not None:
            if not trigger.recurring and "re_entry" not in self.entry.model_fields_set:
                # A date changed to send again reaches everyone again: each dispatch
                # reaches a member once whatever the rule (its events' keys).
                entry = self.entry.model_copy(update={"re_entry": ReEntry(mode="always")})
                object.__setattr__(self, "entry", entry)
                return self
            if not trigger.recurring:
                return self
            never = (
                "a recurring campaign reaches its segment's members every time it is due: "
                "re_entry never would reach each contact only the first time; leave "
                're_entry out (always) or schedule it once, like "2027-01-15 10:00"'
            )
        else:
            return self
        if "re_entry" not in self.entry.model_fields_set:
            entry = self.entry.model_copy(update={"re_entry": ReEntry(mode="always")})
            object.__setattr__(self, "entry", entry)
        elif self.entry.re_entry.mode == "never":
            raise ValueError(never)
        return self

    @model_serializer(mode="wrap")
    def _spec(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `tracking` came later: left out of the frozen spec while it is the default, so
        # journeys deployed before it keep their spec hash (no new version on upgrade).
        # `invariants` are always left out: they check runs and change none, so editing
        # one must not make a new version (nor reach a workflow's input).
        data: dict[str, Any] = handler(self)
        if self.tracking == Tracking():
            data.pop("tracking", None)
        data.pop("invariants", None)
        return data


for _model in (
    Audience,
    Trigger,
    WaitForStep,
    BranchCase,
    BranchStep,
    SplitVariant,
    SendStep,
    ActionStep,
    Journey,
):
    _model.model_rebuild()
