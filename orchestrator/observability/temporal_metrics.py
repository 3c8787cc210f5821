"""Temporal SDK metrics (workflow and activity task latencies, polls, slots, failures),
served by the SDK's own Prometheus endpoint at JOURNEYS_TEMPORAL_METRICS_ADDRESS.

Off by default. The SDK names them `temporal_…`, here with Prometheus' suffixes
(`_total` on counters, durations in `_seconds`); they are per process like ours, on
their own port because the SDK's core serves them. One runtime per process: every
client this process connects shares it.
"""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

_runtimes: dict[str, Runtime] = {}


def sdk_runtime(address: str | None) -> Runtime | None:
    """The runtime exporting SDK metrics at `address` (`host:port`, `:port` for every
    interface); None (the SDK's default runtime, no metrics) when unset."""
    if not address:
        return None
    bind = f"0.0.0.0{address}" if address.startswith(":") else address
    if bind not in _runtimes:
        _runtimes[bind] = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=bind,
                    counters_total_suffix=True,
                    unit_suffix=True,
                    durations_as_seconds=True,
                )
            )
        )
    return _runtimes[bind]
