"""Sending a plan through Segment's official Python client, configured for our API."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from segment.analytics import Client

from .catalog import CURRENCY
from .shoppers import Shopper


def segment_client(host: str, write_key: str, errors: list[Exception]) -> Client:
    """The client as any storefront would configure it; only `host` points at us.

    Failures reach `on_error` (Segment's client never raises from its queue); few
    retries, so a wrong host or key is reported within seconds.
    """
    return Client(
        write_key,
        host=host,
        on_error=lambda error, batch: errors.append(error),
        max_retries=3,
        upload_interval=0.2,
    )


def send(
    shoppers: Sequence[Shopper],
    client: Any,
    pace: float = 0.0,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Make every shopper's calls in order, one shopper after another, then flush."""
    for shopper in shoppers:
        for call in shopper.calls:
            getattr(client, call.method)(**call.kwargs)
        if echo is not None:
            echo(shopper.describe())
        if pace:
            client.flush()
            time.sleep(pace)
    client.flush()


def summary(shoppers: Sequence[Shopper]) -> str:
    kinds = Counter(s.kind for s in shoppers)
    revenue = sum(s.revenue or 0 for s in shoppers)
    calls = sum(len(s.calls) for s in shoppers)
    return (
        f"{len(shoppers)} shoppers, {calls} calls: {kinds['browses']} browsed, "
        f"{kinds['leaves_cart']} left a cart anonymously, {kinds['leaves_checkout']} left "
        f"at checkout, {kinds['buys']} bought (revenue {revenue:.2f} {CURRENCY})"
    )
