"""The provider call of a send: its span, and the send metrics of this worker.

`deliver_message` calls an adapter once per attempt; each call is one span
(`ProviderSend:<provider>`, a client span under the activity's) and is counted once by outcome:

- `sent`: the provider accepted it;
- `retry`: it said "not now" (429, 5xx, a timeout, a refused connection): Temporal retries;
- `failed`: it refused for good (bad address, unsubscribed, rejected credentials);
- `unknown`: the adapter failed unexpectedly, so the provider may have it.

A 429 also counts in `journeys_provider_rate_limited_total`, the signal to lower
JOURNEYS_<CHANNEL>_RATE_LIMIT.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from channels.errors import ChannelConfigError, PermanentChannelError, TransientChannelError

from . import tracing
from .registry import REGISTRY

SENT = REGISTRY.counter(
    "journeys_messages_sent_total",
    "Provider calls made to send a message, by channel, provider (adapter) and outcome "
    "(sent, retry, failed, unknown).",
    ("channel", "provider", "outcome"),
)
DURATION = REGISTRY.histogram(
    "journeys_provider_request_duration_seconds",
    "Time a provider call took, whatever it answered, by provider and operation.",
    ("provider", "operation"),
)
RATE_LIMITED = REGISTRY.counter(
    "journeys_provider_rate_limited_total",
    "Provider calls answered 429 (too many requests), by provider.",
    ("provider",),
)


@dataclass
class Call:
    """What the block learned of the call; `outcome` set by the caller when not an error."""

    outcome: str = "sent"


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, TransientChannelError):
        return "retry"
    if isinstance(exc, PermanentChannelError | ChannelConfigError):
        return "failed"
    return "unknown"


@contextlib.contextmanager
def provider_call(
    provider: str, channel: str, message_id: str, operation: str = "send"
) -> Iterator[Call]:
    """Time, count and trace one adapter call; the adapter's exception passes through."""
    call = Call()
    started = time.perf_counter()
    with tracing.span(
        f"Provider{operation.capitalize()}:{provider}",
        kind="client",
        attributes={
            "journeys.provider": provider,
            "journeys.channel": channel,
            "journeys.message.id": message_id,
        },
    ) as span:
        try:
            yield call
        except BaseException as exc:
            call.outcome = outcome_of(exc)
            status = getattr(exc, "status", None)
            if status == 429:
                RATE_LIMITED.inc(provider=provider)
            if span is not None:
                span.set_attribute("journeys.outcome", call.outcome)
                if status is not None:
                    span.set_attribute("http.response.status_code", int(status))
            raise
        finally:
            DURATION.observe(time.perf_counter() - started, provider=provider, operation=operation)
            SENT.inc(channel=channel, provider=provider, outcome=call.outcome)
        if span is not None:
            span.set_attribute("journeys.outcome", call.outcome)
