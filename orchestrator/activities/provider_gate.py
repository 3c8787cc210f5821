"""Holds a provider's sends, in every worker, while it asked us to back off.

A 429 with a time to wait pauses every send to that provider, not only the one retried,
so a storm does not keep hitting the provider before its reset time. The wait is kept
in this process (no query per send) and written to the store (`provider_pauses`), which
every worker reads at most once per REFRESH seconds: a 429 heard by one worker holds
the others within a second. The task queue's rate limit (JOURNEYS_RATE_LIMIT_*) stays
the steady control; this gate answers the provider's own "not now".
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from ..store.clock import utcnow
from ..store.db import session_scope
from ..store.provider_pauses import pause_provider, provider_pauses

log = logging.getLogger(__name__)

REFRESH = 1.0  # seconds between reads of the shared pauses
# The longest a provider is held for every send: a Retry-After of hours (Twilio's queue,
# a misbehaving answer) holds its own message that long, not the whole provider.
MAX_PAUSE = 900.0


class ProviderGate:
    """`wait_time` before a provider call; `pause` when the provider said to wait.

    Without an engine the pauses are this process's own (tests of one adapter)."""

    def __init__(self, engine: Engine | None = None, refresh: float = REFRESH) -> None:
        self.engine = engine
        self.refresh = refresh
        self._until: dict[str, float] = {}  # provider -> time.monotonic() it is held until
        self._lock = threading.Lock()
        self._read_at = -refresh

    def wait_time(self, provider: str) -> float:
        """Seconds to wait before calling `provider` (0 when it is not held)."""
        self._read_shared()
        with self._lock:
            return max(0.0, self._until.get(provider, 0.0) - time.monotonic())

    def pause(self, provider: str, seconds: float, reason: str = "") -> None:
        seconds = min(seconds, MAX_PAUSE)
        self._hold(provider, time.monotonic() + seconds)
        if self.engine is None:
            return
        try:
            with session_scope(self.engine) as session:
                pause_provider(session, provider, seconds, reason)
        except Exception:  # the other workers hear their own 429 instead; ours holds
            log.warning("sharing the pause of %s failed", provider, exc_info=True)

    def _hold(self, provider: str, until: float) -> None:
        with self._lock:
            self._until[provider] = max(self._until.get(provider, 0.0), until)

    def _read_shared(self) -> None:
        if self.engine is None:
            return
        with self._lock:
            if time.monotonic() - self._read_at < self.refresh:
                return
            self._read_at = time.monotonic()
        try:
            with session_scope(self.engine) as session:
                held = provider_pauses(session)
        except Exception:  # the send that follows meets the database's trouble itself
            log.warning("reading the shared provider pauses failed", exc_info=True)
            return
        now, clock = utcnow(), time.monotonic()
        for provider, until in held.items():
            self._hold(provider, clock + (until - now).total_seconds())
