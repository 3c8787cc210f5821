"""The ids of what the code is working on, for its log lines and its span.

Set where they become known (an activity's request, a message row, a routed event);
JSON log lines carry them (`logs.py`) and the current span gets them as attributes.
Ids only: a run (workflow id), step, message, journey and event row; never an address,
a name or event properties.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from . import tracing

# Log field -> span attribute.
ATTRIBUTES = {
    "run": "journeys.run.id",
    "step": "journeys.step.id",
    "message_id": "journeys.message.id",
    "journey": "journeys.journey.id",
    "event_id": "journeys.event.id",
}

_current: ContextVar[dict[str, str] | None] = ContextVar("journeys_ids", default=None)


def current() -> dict[str, str]:
    return dict(_current.get() or {})


def note(**ids: str | int | None) -> None:
    """Add ids for the rest of this context: an activity (Temporal runs each in a copied
    context, so they end with it). Async code that goes on to other work uses
    `working_on` instead."""
    known = {k: str(v) for k, v in ids.items() if v is not None and v != ""}
    if not known:
        return
    unknown = set(known) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"not an id field: {sorted(unknown)}")
    _current.set({**(_current.get() or {}), **known})
    tracing.annotate({ATTRIBUTES[k]: v for k, v in known.items()})


@contextlib.contextmanager
def working_on(**ids: str | int | None) -> Iterator[None]:
    """The ids, for the block only."""
    token = _current.set(_current.get())
    try:
        note(**ids)
        yield
    finally:
        _current.reset(token)
