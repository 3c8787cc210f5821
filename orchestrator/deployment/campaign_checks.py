"""What `journeys validate` says about campaigns beyond their trigger's own rules:
mistakes that pass the language but would not send what the marketer meant."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ..campaigns.timing import CATCHUP, once_due
from ..dsl.cron import day_and_weekday, never_due
from ..dsl.loader import LoadedJourney, iter_steps
from ..dsl.models import CHANNELS, SendStep
from ..dsl.problems import Problem


def check_campaigns(
    journeys: Iterable[LoadedJourney], default_zone: str = "UTC", now: datetime | None = None
) -> list[Problem]:
    problems = []
    moment = now or datetime.now(UTC)
    for item in journeys:
        trigger = item.journey.trigger
        if trigger.schedule is None:
            continue
        once = once_due(trigger, default_zone)
        first, last = once or (moment, moment)
        if once is not None and (last < moment or first + CATCHUP < moment):
            if last < moment:
                what = (
                    "it goes out late, when a worker next syncs its schedule (within five "
                    "minutes), and to no one an hour after its time"
                    if moment < last + CATCHUP
                    else "this campaign sends to no one from now on"
                )
            else:  # local time: the first zones' time is over
                what = (
                    f"it came at UTC+14 at {first:%Y-%m-%d %H:%M} UTC, so it goes only to the "
                    "members whose time is at most an hour past when a worker next syncs its "
                    "schedule (within five minutes)"
                )
            problems.append(
                item.problem(
                    ("trigger", "schedule"),
                    f"schedule {trigger.schedule} has passed: {what}; set a later date and "
                    "time, or remove the journey once it has run",
                ).as_warning()
            )
        if trigger.recurring and (why := never_due(trigger.schedule)) is not None:
            problems.append(
                item.problem(
                    ("trigger", "schedule"),
                    f"schedule {trigger.schedule!r} never comes due: {why}; pick a day "
                    "those months have (February has 28, and 29 in leap years)",
                )
            )
        elif trigger.recurring and day_and_weekday(trigger.schedule):
            problems.append(
                item.problem(
                    ("trigger", "schedule"),
                    f"schedule {trigger.schedule!r} names a day of the month and a weekday: "
                    "it runs only on days that are both (the 1st when it is a weekday), not "
                    "on either as crontab does; keep one of them, and use two journeys for "
                    "both",
                ).as_warning()
            )
        channels = _channels(item)
        for channel in sorted(set(trigger.throttle) - channels):
            problems.append(
                item.problem(
                    ("trigger", "throttle", channel),
                    f"throttle for {channel}, but no send of this journey uses {channel}: "
                    f"it limits nothing (sends use {', '.join(sorted(channels)) or 'none'})",
                ).as_warning()
            )
    return problems


def _channels(item: LoadedJourney) -> set[str]:
    found: set[str] = set()
    for _, step in iter_steps(item.journey.steps, ("steps",)):
        if isinstance(step, SendStep):
            channel = step.send.channel
            found.update([channel] if isinstance(channel, str) else channel)
    if "preferred" in found:  # the contact's own choice: any of them
        found.discard("preferred")
        found.update(CHANNELS)
    return found
