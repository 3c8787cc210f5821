"""A token bucket per key: a runaway client gets 429 + Retry-After, others don't.

Buckets live in the API process. Full buckets carry no information, so they are
dropped when there are too many (a client rotating addresses must not grow memory
without bound); past that, the oldest go first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from time import monotonic


@dataclass
class RateLimiter:
    rate: float  # calls per second, per key
    burst: float  # calls a key may make at once
    max_keys: int = 100_000  # buckets kept; beyond this full ones, then the oldest, go
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (tokens, at)

    def take(self, key: str, cost: float = 1.0) -> float:
        """0 when allowed; otherwise how many seconds until `cost` calls would be."""
        now = monotonic()
        tokens = self._tokens(key, now)
        # A batch larger than the burst goes through on a full bucket and leaves a debt.
        needed = min(cost, self.burst)
        if tokens >= needed:
            self._store(key, tokens - cost, now)
            return 0.0
        self._store(key, tokens, now)
        return (needed - tokens) / self.rate

    def wait(self, key: str, cost: float = 1.0) -> float:
        """How many seconds until `cost` calls would be allowed (0: now); takes nothing."""
        tokens = self._tokens(key, monotonic())
        needed = min(cost, self.burst)
        return 0.0 if tokens >= needed else (needed - tokens) / self.rate

    def charge(self, key: str, cost: float) -> None:
        """Take `cost`, allowed or not (a debt the key pays back before its next call);
        a negative cost gives back what a call did not use, up to a full bucket."""
        now = monotonic()
        self._store(key, min(self.burst, self._tokens(key, now) - cost), now)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._prune(now)
        self._buckets[key] = (tokens, now)

    def _prune(self, now: float) -> None:
        """Make room for a tenth of `max_keys`, so a flood of new keys prunes rarely."""
        keep = self.max_keys - max(1, self.max_keys // 10)
        full = [
            k
            for k, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        for key in list(self._buckets)[: max(0, len(self._buckets) - keep)]:
            del self._buckets[key]

    @staticmethod
    def retry_after(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
