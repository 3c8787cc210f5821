"""Segment call shapes and their validation (https://segment.com/docs/connections/spec/).

Unknown fields are kept, as Segment does; the ones we act on are typed. Every
call needs `userId` or `anonymousId`; `track` needs `event`, `group` a `groupId`,
`alias` a `previousId` and a `userId`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from channels.email import address_problem, unsafe_characters

from ..feedback.own_events import reserved_name_problem
from ..services.policy import CHANNELS
from ..store.identity import contact_id_problem

CONSENT_KINDS = ("marketing", "transactional")
ID_FIELDS = {"user_id": "userId", "anonymous_id": "anonymousId", "previous_id": "previousId"}
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def plausible(moment: datetime) -> datetime | None:
    """An aware time in UTC when it is between 1900 and 2200, else None: arithmetic on
    it later (the skew correction, an audience's window) must not overflow."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or of year 9999
        return None
    return utc if EARLIEST <= utc < LATEST else None


MAX_PHONE = 32


class FieldProblem(ValueError):
    """A refusal that names a field inside the one being validated (`traits.email`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field


class SegmentCall(BaseModel):
    """Fields common to every Segment call."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    user_id: str | None = Field(default=None, alias="userId", max_length=255)
    anonymous_id: str | None = Field(default=None, alias="anonymousId", max_length=255)
    message_id: str | None = Field(default=None, alias="messageId", max_length=255)
    timestamp: datetime | None = None
    original_timestamp: datetime | None = Field(default=None, alias="originalTimestamp")
    sent_at: datetime | None = Field(default=None, alias="sentAt")
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}
    write_key: str | None = Field(default=None, alias="writeKey")

    @model_validator(mode="before")
    @classmethod
    def _coerce_ids(cls, data: Any) -> Any:
        # Segment clients send numeric ids as numbers now and then.
        if isinstance(data, dict):
            for key in ("userId", "anonymousId", "previousId", "groupId"):
                if isinstance(data.get(key), int | float) and not isinstance(data[key], bool):
                    data = {**data, key: str(data[key])}
        return data

    @field_validator("user_id", "anonymous_id")
    @classmethod
    def _contact_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None  # blank is missing
        return _usable_id(value, info)

    @field_validator("timestamp", "original_timestamp", "sent_at")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        """Aware UTC, between 1900 and 2200: the skew correction must not overflow."""
        if value is None:
            return None
        moment = plausible(_aware(value))
        if moment is None:
            raise ValueError("out of range: expected an ISO-8601 time between 1900 and 2200")
        return moment

    @model_validator(mode="after")
    def _someone(self) -> SegmentCall:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("userId or anonymousId is required")
        return self

    @property
    def contact_id(self) -> str:
        return self.user_id or self.anonymous_id or ""

    @property
    def name(self) -> str | None:
        """What the events table shows as the event's name."""
        return None

    @property
    def payload(self) -> dict[str, Any]:
        """What the events table keeps as the event's properties."""
        return {}

    def event_time(self, received_at: datetime) -> datetime:
        """When it happened, corrected for the sender's clock skew (Segment's rule:
        receivedAt - (sentAt - timestamp))."""
        stamp = self.timestamp or self.original_timestamp
        if stamp is None:
            return received_at  # nothing to correct: it happened as it was sent
        if self.sent_at is not None:
            return received_at - (self.sent_at - stamp)
        return stamp


class IdentifyCall(SegmentCall):
    traits: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _context_traits(cls, data: Any) -> Any:
        # RudderStack's client sends identify traits as context.traits only.
        if isinstance(data, dict) and "traits" not in data:
            context = data.get("context")
            if isinstance(context, dict) and isinstance(context.get("traits"), dict):
                data = {**data, "traits": checked_addresses(context["traits"], "context.traits")}
        return data

    @field_validator("traits")
    @classmethod
    def _checked(cls, traits: dict[str, Any]) -> dict[str, Any]:
        if "consent" in traits and (problem := consent_problem(traits["consent"])):
            raise ValueError(f"traits.consent {problem}")
        return checked_addresses(traits, "traits")

    @property
    def payload(self) -> dict[str, Any]:
        return self.traits


class TrackCall(SegmentCall):
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = {}

    @field_validator("event")
    @classmethod
    def _not_ours(cls, event: str) -> str:
        """Names the orchestrator records itself (`Segment Entered`, `Survey Answered`...)
        never come from a client: journeys act on them."""
        if problem := reserved_name_problem(event):
            raise ValueError(problem)
        return event

    @property
    def name(self) -> str | None:
        return self.event

    @property
    def payload(self) -> dict[str, Any]:
        return self.properties


class PageCall(SegmentCall):
    """A web page view (`name` and `category` optional, as in analytics.js)."""

    name_: str | None = Field(default=None, alias="name", max_length=200)
    category: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = {}

    @property
    def name(self) -> str | None:
        return self.name_

    @property
    def payload(self) -> dict[str, Any]:
        extra = {"category": self.category} if self.category else {}
        return {**self.properties, **extra}


class ScreenCall(PageCall):
    """A mobile screen view."""


class GroupCall(SegmentCall):
    group_id: str = Field(alias="groupId", min_length=1, max_length=255)
    traits: dict[str, Any] = {}

    @property
    def payload(self) -> dict[str, Any]:
        return {"group_id": self.group_id, "traits": self.traits}


class AliasCall(SegmentCall):
    """`previousId` (usually the anonymousId) and `userId` are one person."""

    previous_id: str = Field(alias="previousId", min_length=1, max_length=255)

    @field_validator("previous_id")
    @classmethod
    def _usable(cls, value: str, info: ValidationInfo) -> str:
        return _usable_id(value, info)

    @model_validator(mode="after")
    def _someone(self) -> AliasCall:  # replaces the base check: alias needs userId itself
        if not self.user_id:
            raise ValueError("userId is required: the id that previousId is merged into")
        return self

    @property
    def payload(self) -> dict[str, Any]:
        return {"previous_id": self.previous_id}


CALLS: dict[str, type[SegmentCall]] = {
    "identify": IdentifyCall,
    "track": TrackCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
}


def checked_addresses(traits: dict[str, Any], where: str) -> dict[str, Any]:
    """The traits with `email` and `phone` stripped, or a `FieldProblem` saying why one
    cannot be a contact's address. They are what messages are sent to: an email with a
    line break could add mail headers, so it is refused here, before it is stored."""
    found = dict(traits)
    email = found.get("email")
    if isinstance(email, str):
        email = found["email"] = email.strip()
    if email not in (None, "") and (problem := address_problem(email)):
        raise FieldProblem(
            f"{where}.email",
            f"is not one email address: {problem} (send just the address, as text, like "
            "ann@example.com; an empty string removes it)",
        )
    phone = found.get("phone")
    if isinstance(phone, str):
        phone = found["phone"] = phone.strip()
        if problem := unsafe_characters(phone):
            raise FieldProblem(f"{where}.phone", f"is not a phone number: {problem}")
        if len(phone) > MAX_PHONE:
            raise FieldProblem(f"{where}.phone", f"is longer than {MAX_PHONE} characters")
    return found


def consent_problem(value: Any) -> str | None:
    """Why an identify's `traits.consent` is malformed, or None.

    Shape: `{"email": {"marketing": true}, "sms": false, "push": {"transactional": true}}`.
    """
    if not isinstance(value, dict):
        return 'must be an object such as {"email": {"marketing": true}}'
    for channel, entry in value.items():
        if channel not in CHANNELS:
            return f"unknown channel {channel!r}: expected {', '.join(CHANNELS)}"
        if isinstance(entry, bool):
            continue
        if not isinstance(entry, dict):
            return f"{channel}: expected true, false or an object of marketing/transactional"
        for kind, flag in entry.items():
            if kind not in CONSENT_KINDS or not isinstance(flag, bool):
                return f"{channel}.{kind}: expected marketing or transactional set to true/false"
    return None


def _usable_id(value: str, info: ValidationInfo) -> str:
    """A contact id the API can reach later; else a ValueError naming the field."""
    problem = contact_id_problem(value)
    if problem is not None:
        raise ValueError(f"{ID_FIELDS.get(info.field_name or '', info.field_name)}: {problem}")
    return value


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
