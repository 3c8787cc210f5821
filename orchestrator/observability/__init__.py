"""What operators see of a running process: traces, log lines and metrics.

- `tracing`: OpenTelemetry spans, off unless the `OTEL_*` variables ask for them;
- `logs`: text or JSON log lines (JOURNEYS_LOG_FORMAT);
- `ids`: the run, step and message ids log lines and spans carry;
- `registry`: this process's Prometheus counters and histograms;
- `http`: the API's request metrics and spans;
- `provider_calls`: the span and metrics of each provider call;
- `temporal_metrics`: the Temporal SDK's metrics (JOURNEYS_TEMPORAL_METRICS_ADDRESS).

Every process calls `observe` first, so a bad setting (tracing asked for without its
package) stops it before anything starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .logs import configure_logging
from .tracing import configure_tracing

if TYPE_CHECKING:
    from ..settings import Settings


def observe(settings: Settings, service: str) -> None:
    """Log lines as JOURNEYS_LOG_FORMAT says, and tracing if OTEL_* asks for it;
    `service` names the process (`journeys-worker`…) unless OTEL_SERVICE_NAME does."""
    configure_tracing(service)
    configure_logging(settings.log_format)
