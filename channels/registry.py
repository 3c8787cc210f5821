"""Channel adapters are found through the `journeys.channels` entry point group.

Built-ins register the same way as third-party packages, so `pip install`
is all it takes to add one. No folder scanning. Only the adapters a worker is
configured to use are imported, so one broken plugin cannot stop the others.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from .base import Channel
from .errors import ChannelConfigError

GROUP = "journeys.channels"


@cache
def installed() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> dict[str, type[Channel]]:
    """Every installed adapter class (imports them all: for listings and tests)."""
    return {name: adapter_class(name) for name in installed()}


def adapter_class(name: str) -> type[Channel]:
    found = installed()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ChannelConfigError(
            f"no channel adapter named {name!r} is installed (installed: {known}); "
            "install the package that provides it or fix the channel setting"
        )
    try:
        cls = found[name].load()
    except ImportError as exc:
        raise ChannelConfigError(
            f"channel adapter {name!r} ({found[name].value}) cannot be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise ChannelConfigError(
            f"channel adapter {name!r} ({found[name].value}) is not a channels.Channel subclass"
        )
    return cls
