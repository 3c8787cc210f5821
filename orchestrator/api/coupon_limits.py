"""Throttling coupon guesses, on by default: per key and per client address.

A web shop's write key is public (it sits in the page), so anyone may ask the coupon
endpoints whether a code exists. Every check and redemption draws on two token
buckets, the key's and the client address's (`JOURNEYS_COUPON_RATE_LIMIT`, calls per
second). An answer that a guess gets (an `unknown` code, another customer's code)
costs `MISS_COST` calls, anything else one, so a shop's checkout, whose codes are
mostly right, keeps its pace while guessing slows to a crawl. The miss's cost is held
while the call runs (calls sent at once cannot all pass on one full bucket), and a
hit gets the rest back. Over the limit: 429 with Retry-After. One address cannot use
up the key's budget by itself; many addresses together meet the key's limit. IPv6
clients count per /64, the block one host usually holds.

Behind a reverse proxy the client address is the proxy's unless uvicorn trusts it
(`FORWARDED_ALLOW_IPS`; 127.0.0.1 by default): docs/loyalty-and-coupons.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Request

from ..settings import Settings, coupon_rates
from .errors import ApiError
from .ratelimit import RateLimiter

MISS_COST = 10  # calls an unknown code or another customer's code costs, in all
MISSES = ("unknown", "other_contact")


@dataclass
class Outcome:
    """What the endpoint found: a `reason` in MISSES is a guess that missed."""

    reason: str | None = None


@dataclass
class CouponThrottle:
    by_key: RateLimiter
    by_address: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> CouponThrottle | None:
        rates = coupon_rates(settings.coupon_rate_limit)
        if rates is None:
            return None
        per_key, per_address = rates
        return cls(_bucket(per_key), _bucket(per_address))

    def admit(self, key: str, address: str) -> None:
        """A miss's worth from both buckets, or 429 naming the limit that was reached.

        Taken before the answer is known, so requests sent at once cannot all pass on
        one full bucket; `settle` gives back what a hit did not cost.
        """
        hashed = _hashed(key)
        waits = {
            "for this key": self.by_key.wait(hashed, MISS_COST),
            "from this address": self.by_address.wait(address, MISS_COST),
        }
        where, wait = max(waits.items(), key=lambda item: item[1])
        if wait > 0:
            after = RateLimiter.retry_after(wait)
            raise ApiError(
                429,
                f"too many coupon checks {where}; retry after {after} s",
                None,
                **{"Retry-After": after, "X-RateLimit-Reset": after},
            )
        self.by_key.charge(hashed, MISS_COST)
        self.by_address.charge(address, MISS_COST)

    def settle(self, key: str, address: str, reason: str | None) -> None:
        """Anything but a miss costs one call: the rest goes back."""
        if reason not in MISSES:
            self.by_key.charge(_hashed(key), 1 - MISS_COST)
            self.by_address.charge(address, 1 - MISS_COST)


@contextmanager
def throttled(request: Request, settings: Settings, key: str) -> Iterator[Outcome]:
    """Admit one coupon call of `key` (429 when over a limit); the block sets
    `outcome.reason`, and the call is charged by it however the block ends."""
    throttle = coupon_throttle(request, settings)
    outcome = Outcome()
    if throttle is None:
        yield outcome
        return
    address = client_address(request)
    throttle.admit(key, address)
    try:
        yield outcome
    finally:
        throttle.settle(key, address, outcome.reason)


def coupon_throttle(request: Request, settings: Settings) -> CouponThrottle | None:
    """The app's throttle, made on first use from its settings."""
    state = request.app.state
    if not hasattr(state, "coupon_throttle"):
        state.coupon_throttle = CouponThrottle.from_settings(settings)
    throttle: CouponThrottle | None = state.coupon_throttle
    return throttle


def client_address(request: Request) -> str:
    """The caller's address as the limit counts it: IPv4 as is, IPv6 by its /64."""
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _bucket(rate: float) -> RateLimiter:
    """Two seconds' worth of calls at once, plus two misses: a shop's server, one
    address for all its customers, weathers a few mistyped codes among its checkouts."""
    return RateLimiter(rate, rate * 2 + MISS_COST * 2)


def _hashed(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
