"""Who may be messaged, on which channel, and when: the send policy's pure rules.

The send activity applies them in a fixed order and records each outcome on
the message (docs/sending.md):

1. consent and subscription per channel: marketing needs the contact not to have
   opted out (or, with `JOURNEYS_MARKETING_CONSENT=explicit`, to have opted in);
   transactional mail ignores marketing opt-outs but never an opt-out of the channel;
2. the suppression list (hard bounces, spam complaints, STOP replies, dead numbers);
3. frequency caps across all journeys (marketing only): skip or defer, as the journey says;
4. quiet hours in the contact's timezone (marketing only): defer to the window's end.

Nothing here touches the database or the clock; callers pass both in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

CHANNELS = ("email", "push", "sms")
_WINDOW = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)\s*$")
_CAP = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
NONE_WORDS = ("", "none", "off", "never")


@dataclass(frozen=True)
class QuietHours:
    """A daily local window in which marketing must not be sent; may span midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str | None) -> QuietHours | None:
        """ "21:00-08:00" -> QuietHours; "none" (or empty) -> None."""
        if text is None or text.strip().lower() in NONE_WORDS:
            return None
        match = _WINDOW.match(text)
        if not match:
            raise ValueError(
                f"invalid quiet hours {text!r}: expected HH:MM-HH:MM on a 24-hour clock, "
                "like 21:00-08:00, or none"
            )
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if (h1, m1) == (h2, m2):
            raise ValueError(f"invalid quiet hours {text!r}: start and end are the same time")
        return cls(time(h1, m1), time(h2, m2))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def release(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """When a message held at `now` may go out (UTC), or None if `now` is outside."""
        local = now.astimezone(zone)
        clock = local.time().replace(tzinfo=None)
        spans_midnight = self.start > self.end
        inside = (
            (clock >= self.start or clock < self.end)
            if spans_midnight
            else (self.start <= clock < self.end)
        )
        if not inside:
            return None
        day = local.date()
        if spans_midnight and clock >= self.start:
            day += timedelta(days=1)
        # The first instant after `now` when the local clock shows `end`: on the day the
        # clocks go back, `end` may occur twice (fold 0 and 1); on the day they go forward
        # it may not exist, and fold 0 then reads it with the earlier offset, i.e. just
        # after the jump (a little late, never early).
        wall = datetime.combine(day, self.end)
        moment = now.astimezone(UTC)
        for fold in (0, 1):
            end = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
            if end > moment:
                return end
        return moment + timedelta(minutes=1)


@dataclass(frozen=True)
class Cap:
    """At most `limit` messages per `within` seconds."""

    limit: int
    within: int

    @classmethod
    def parse(cls, text: str | None) -> Cap | None:
        """ "3/24h" -> Cap(3, 86400); "none" -> None."""
        if text is None or text.strip().lower() in NONE_WORDS:
            return None
        match = _CAP.match(text)
        if not match:
            raise ValueError(
                f"invalid frequency cap {text!r}: expected <count>/<duration> like 3/24h, or none"
            )
        from ..dsl.durations import parse_duration  # not at the top: dsl.models imports us

        limit = int(match.group(1))
        if limit < 1:
            raise ValueError(f"invalid frequency cap {text!r}: the count must be at least 1")
        return cls(limit, parse_duration(match.group(2)))

    def __str__(self) -> str:
        return (
            f"{self.limit} per {self.within // 3600}h"
            if self.within % 3600 == 0
            else (f"{self.limit} per {self.within}s")
        )


def consent_refusal(
    consent: dict[str, Any], channel: str, category: str, explicit_marketing: bool
) -> str | None:
    """Why the contact may not get this message on `channel`, or None if they may.

    `consent` is the contact's record, `{"sms": {"marketing": false}, "email": false}`:
    `false` for a whole channel (or its `transactional` flag) is an opt-out of the
    channel that even receipts respect; `marketing: false` stops marketing only.
    """
    entry = consent.get(channel)
    if entry is False:
        return f"contact opted out of {channel}"
    flags = entry if isinstance(entry, dict) else {}
    if flags.get("transactional") is False or flags.get("all") is False:
        return f"contact opted out of {channel}"
    if category != "marketing":
        return None
    if flags.get("marketing") is False:
        # Unsubscribed from a message, or declined at sign-up: the record says which not.
        return f"contact opted out of marketing {channel}"
    if explicit_marketing and flags.get("marketing") is not True and entry is not True:
        return f"no marketing consent for {channel} (JOURNEYS_MARKETING_CONSENT=explicit)"
    return None


def cap_release(sent_at: list[datetime], cap: Cap, now: datetime) -> datetime | None:
    """None if one more message fits under `cap`; else when the oldest leaves the window.

    `sent_at` are the counted messages' times inside the window, any order.
    """
    window_start = now - timedelta(seconds=cap.within)
    inside = sorted(t for t in sent_at if t > window_start)
    if len(inside) < cap.limit:
        return None
    # The (len - limit + 1)-th oldest must leave before one more fits.
    leaving = inside[len(inside) - cap.limit]
    return leaving + timedelta(seconds=cap.within, milliseconds=1)


def normalize_address(channel: str, address: str) -> str:
    """The form suppressions are keyed by: e-mail case-folded, numbers without spaces."""
    value = address.strip()
    if channel == "email":
        return value.lower()
    if channel == "sms":
        return re.sub(r"[\s\-().]", "", value)
    return value
