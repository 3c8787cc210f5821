"""When a campaign is due, and for whom: pure functions of the schedule and the zones.

With `local_time`, the schedule's "10:00" is 10:00 in each contact's own timezone. The
Temporal Schedule fires at 10:00 in the earliest zone there is (UTC+14); from there each
zone's 10:00 on the same local date follows, up to 26 hours later (UTC-12). Contacts
are released in waves, one per distinct moment: zones are few (a shop's contacts use a
few dozen), members are many.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..dsl.models import Trigger
from ..services.zones import zone_named, zone_of

# The first zone to reach any local time (Kiribati, UTC+14; POSIX signs are reversed),
# and the last (UTC-12).
EARLIEST_ZONE = "Etc/GMT-14"
LATEST_ZONE = "Etc/GMT+12"
LOCAL = "%Y-%m-%d %H:%M"
# A firing missed by more than this (Temporal down, a schedule made late) is not sent.
CATCHUP = timedelta(hours=1)


def fire_zone(trigger: Trigger, default_zone: str) -> str:
    """The zone the Temporal Schedule reads the campaign's time in."""
    if trigger.local_time:
        return EARLIEST_ZONE
    return trigger.timezone or default_zone


def once_due(trigger: Trigger, default_zone: str) -> tuple[datetime, datetime] | None:
    """A campaign sent once: the first and the last moment it is due (the same unless in
    local time); None for a cron line."""
    if trigger.schedule is None or trigger.recurring:
        return None
    due = datetime.strptime(trigger.schedule, LOCAL)
    first = moment(due, zone_of(fire_zone(trigger, default_zone)))
    return first, moment(due, zone_of(LATEST_ZONE)) if trigger.local_time else first


def due_local(trigger: Trigger, fired_at: datetime, default_zone: str) -> datetime:
    """The local date and time the campaign is due at (naive): the schedule's own for a
    campaign sent once; the firing's minute in the schedule's zone for a cron line."""
    if trigger.schedule is not None and not trigger.recurring:
        return datetime.strptime(trigger.schedule, LOCAL)
    local = fired_at.astimezone(ZoneInfo(fire_zone(trigger, default_zone)))
    return local.replace(second=0, microsecond=0, tzinfo=None)


@dataclass
class Wave:
    """Members released at one moment: those whose zone is one of `zones`, and with
    `unzoned` those whose zone has no wave of its own (none, one that names none, or one
    no member had when the dispatch opened: not one of `planned`), in the default's."""

    at: datetime  # aware UTC
    zones: list[str] = field(default_factory=list)
    unzoned: bool = False
    everyone: bool = False  # not local time: every member at once
    # With `unzoned`: every zone that has a wave. None: a plan made before it existed,
    # whose `zones` still list the names that name no zone.
    planned: list[str] | None = None
    # Not in the workflow's plan, added from the dispatch's when a chunk is released: the
    # zones of the waves before this one, and whether the default's came before. Their
    # members not released yet (they moved to a zone whose time had passed) go now.
    late: list[str] = field(default_factory=list)
    late_unzoned: bool = False


def waves(due: datetime, zones: list[str | None], default_zone: str) -> list[Wave]:
    """One wave per distinct moment `due` (local) happens in the members' `zones`, and
    the default zone's, which takes everyone whose zone has no wave of its own.

    Only real zones are listed (a few hundred at most): any number of names that name
    none (stored as a storefront sent them) makes no plan, nor statement, bigger."""
    by_moment: dict[datetime, Wave] = {}
    for name in sorted({z for z in zones if z}):
        zone = zone_named(name)
        if zone is not None:
            at = moment(due, zone)
            by_moment.setdefault(at, Wave(at)).zones.append(name)
    default_at = moment(due, zone_of(default_zone))
    default = by_moment.setdefault(default_at, Wave(default_at))
    default.unzoned = True
    default.planned = sorted(name for wave in by_moment.values() for name in wave.zones)
    return [by_moment[at] for at in sorted(by_moment)]


def plan_record(planned: list[Wave]) -> dict[str, Any]:
    """What the dispatch keeps of its waves: each one's zones, and which is the default's."""
    return {
        "waves": [w.zones for w in planned],
        "default": next((i for i, w in enumerate(planned) if w.unzoned), None),
    }


def add_late(wave: Wave, plan: dict[str, Any], index: int) -> None:
    """Give wave `index` the zones of the waves before it (and the default's, if it went
    before): a member who moved into one of them after its wave went is released now,
    not by no wave."""
    earlier = (plan or {}).get("waves", [])[:index]
    wave.late = sorted({zone for zones in earlier for zone in zones})
    default = (plan or {}).get("default")
    wave.late_unzoned = default is not None and default < index


def one_wave(due: datetime, zone: str) -> list[Wave]:
    """Every member at once, at `due` in `zone` (a campaign not in local time)."""
    return [Wave(moment(due, zone_of(zone)), everyone=True)]


def moment(local: datetime, zone: ZoneInfo) -> datetime:
    """`local` in `zone` as UTC. A time the clocks skip (spring forward) reads with the
    offset before the gap: 02:30 that does not exist is sent at 03:30, not an hour early."""
    return local.replace(tzinfo=zone).astimezone(UTC)
