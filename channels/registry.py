"""Channel adapters are found through the `journeys.channels` entry point group.

Built-ins register the same way as third-party packages, so `pip install`
is all it takes to add one. No folder scanning.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from .base import Channel
from .errors import ChannelConfigError

GROUP = "journeys.channels"


@cache
def available() -> dict[str, type[Channel]]:
    found: dict[str, type[Channel]] = {}
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep.load()
    return found


def adapter_class(name: str) -> type[Channel]:
    adapters = available()
    if name not in adapters:
        known = ", ".join(sorted(adapters)) or "none"
        raise ChannelConfigError(
            f"no channel adapter named {name!r} is installed (installed: {known}); "
            "install the package that provides it or fix the channel setting"
        )
    return adapters[name]
