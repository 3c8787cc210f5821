"""Throttling coupon guesses, on by default: per key and per client address.

A web shop's write key is public (it sits in the page), so anyone may ask the coupon
endpoints whether a code exists. Every check and redemption takes one call from two
token buckets, the key's and the client address's (`JOURNEYS_COUPON_RATE_LIMIT`,
calls per second); an answer that a guess gives (`unknown` code, another customer's
code) costs `MISS_COST` calls in all, so a shop's checkout, whose codes are mostly
right, keeps its pace while guessing slows to a crawl. Over the limit: 429 with
Retry-After. One address cannot use up the key's budget by itself; many addresses
together meet the key's limit. IPv6 clients count per /64, the block one host
usually holds.

Behind a reverse proxy the client address is the proxy's unless uvicorn trusts it
(`FORWARDED_ALLOW_IPS`; 127.0.0.1 by default): docs/loyalty-and-coupons.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from fastapi import Request

from ..settings import Settings, coupon_rates
from .errors import ApiError
from .ratelimit import RateLimiter

MISS_COST = 10  # calls an unknown code or another customer's code costs, in all
MISSES = ("unknown", "other_contact")


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
        """One call from both buckets, or 429 naming the limit that was reached."""
        hashed = _hashed(key)
        waits = {
            "for this key": self.by_key.wait(hashed),
            "from this address": self.by_address.wait(address),
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
        self.by_key.charge(hashed, 1)
        self.by_address.charge(address, 1)

    def settle(self, key: str, address: str, reason: str | None) -> None:
        """A miss (what guessing gets) costs the rest of `MISS_COST`."""
        if reason in MISSES:
            self.by_key.charge(_hashed(key), MISS_COST - 1)
            self.by_address.charge(address, MISS_COST - 1)


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
    """Two seconds' worth of calls at once, plus one miss: a shop's server, one address
    for all its customers, weathers a mistyped code among its checkouts."""
    return RateLimiter(rate, rate * 2 + MISS_COST)


def _hashed(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
