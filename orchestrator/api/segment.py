"""Segment call shapes (identify, track) and their validation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SegmentCall(BaseModel):
    """Fields common to every Segment call; unknown fields are kept, as Segment does."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    user_id: str | None = Field(default=None, alias="userId", max_length=255)
    anonymous_id: str | None = Field(default=None, alias="anonymousId", max_length=255)
    message_id: str | None = Field(default=None, alias="messageId", max_length=255)
    timestamp: datetime | None = None
    sent_at: datetime | None = Field(default=None, alias="sentAt")
    context: dict[str, Any] = {}
    write_key: str | None = Field(default=None, alias="writeKey")

    @model_validator(mode="before")
    @classmethod
    def _coerce_ids(cls, data: Any) -> Any:
        # Segment clients send numeric ids as numbers now and then.
        if isinstance(data, dict):
            for key in ("userId", "anonymousId"):
                if isinstance(data.get(key), int | float) and not isinstance(data[key], bool):
                    data = {**data, key: str(data[key])}
        return data

    @model_validator(mode="after")
    def _someone(self) -> SegmentCall:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("userId or anonymousId is required")
        return self

    @property
    def contact_id(self) -> str:
        return self.user_id or self.anonymous_id or ""

    def event_time(self, received_at: datetime) -> datetime:
        """When it happened, corrected for the sender's clock skew (Segment's rule)."""
        timestamp = _aware(self.timestamp) if self.timestamp else received_at
        if self.sent_at is not None:
            return received_at - (_aware(self.sent_at) - timestamp)
        return timestamp


class IdentifyCall(SegmentCall):
    traits: dict[str, Any] = {}


class TrackCall(SegmentCall):
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = {}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
