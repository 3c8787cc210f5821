"""The store's clock: the wall clock, unless a simulation runs its own.

Every timestamp the store writes (an event received, a message sent, a run exited)
comes from `utcnow()`. `journeys simulate` runs weeks of journey time in seconds on
Temporal's time-skipping server, so it swaps in a clock that follows the server's; the
swap is a context variable, so it reaches the activities' threads (Temporal copies the
context into them) and nothing outside the simulation sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_clock: ContextVar[Callable[[], datetime] | None] = ContextVar("journeys_clock", default=None)


def utcnow() -> datetime:
    clock = _clock.get()
    return clock() if clock is not None else datetime.now(UTC)


@contextmanager
def clock(now: Callable[[], datetime]) -> Iterator[None]:
    """`utcnow()` is `now()` inside the block (and in tasks and threads started there)."""
    token = _clock.set(now)
    try:
        yield
    finally:
        _clock.reset(token)
