"""A token bucket per write key: a runaway client gets 429 + Retry-After, others don't."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    rate: float  # calls per second, per key
    burst: float  # calls a key may make at once
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (tokens, at)

    def take(self, key: str, cost: float = 1.0) -> float:
        """0 when allowed; otherwise how many seconds until `cost` calls would be."""
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        # A batch larger than the burst goes through on a full bucket and leaves a debt.
        needed = min(cost, self.burst)
        if tokens >= needed:
            self._buckets[key] = (tokens - cost, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (needed - tokens) / self.rate

    @staticmethod
    def retry_after(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
