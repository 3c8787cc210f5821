"""Timezones named by contacts: anything a storefront sends, so never trusted.

`context.timezone` is stored as sent. `ZoneInfo` raises more than
`ZoneInfoNotFoundError` for a bad name: `ValueError` for a path (`../x`), and
`IsADirectoryError` for a folder of the zone database (`America`). Every reader of
a contact's zone goes through here, so a bad name is "no zone", never an error that
fails a send, a condition or routing.
"""

from __future__ import annotations

import difflib
import functools
import zoneinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone_named(name: str | None) -> ZoneInfo | None:
    """The IANA zone `name` names, or None when it names none."""
    if not name or not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_of(*names: str | None) -> ZoneInfo:
    """The first valid IANA zone among `names` (contact's, then the default), else UTC."""
    for name in names:
        zone = zone_named(name)
        if zone is not None:
            return zone
    return ZoneInfo("UTC")


def closest_timezone(name: str) -> str | None:
    """The IANA name meant by `name`: another case (`europe/berlin`), the city alone
    (`Belgrade`), else the closest spelling (`Europe/Belgrad`)."""
    zones = _timezones()
    key = name.strip().replace(" ", "_").casefold()
    by_key = {zone.casefold(): zone for zone in zones}
    if key in by_key:
        return by_key[key]
    cities = [z for z in zones if "/" in z and z.rsplit("/", 1)[1].casefold() == key]
    if len(cities) == 1:
        return cities[0]
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.8)
    return by_key[close[0]] if close else None


@functools.cache
def _timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def unknown_zone(name: str) -> str:
    """What `validate` says of a timezone that names none, with the one probably meant."""
    message = (
        f"unknown timezone {name!r}: expected an IANA name such as Europe/Paris, "
        "America/New_York or UTC"
    )
    guess = closest_timezone(name)
    return message + (f"; did you mean {guess}?" if guess is not None else "")
