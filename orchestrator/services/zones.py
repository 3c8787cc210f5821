"""Timezones named by contacts: anything a storefront sends, so never trusted.

`context.timezone` is stored as sent. `ZoneInfo` raises more than
`ZoneInfoNotFoundError` for a bad name: `ValueError` for a path (`../x`), and
`IsADirectoryError` for a folder of the zone database (`America`). Every reader of
a contact's zone goes through here, so a bad name is "no zone", never an error that
fails a send, a condition or routing.
"""

from __future__ import annotations

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
