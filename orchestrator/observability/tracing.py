"""OpenTelemetry tracing: off unless the standard `OTEL_*` variables ask for an exporter.

On when `OTEL_TRACES_EXPORTER` names one (`otlp`, `console`) or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); off with
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Off, OpenTelemetry is never
imported and every helper here returns at once, so a process that does not trace pays
nothing. Asked for without the `otel` extra installed, the process refuses to start
(`TracingUnavailable`) rather than run untraced while the operator thinks it traces.

Sampling (`OTEL_TRACES_SAMPLER`), the service name (`OTEL_SERVICE_NAME`, else
`journeys-<process>`) and resource attributes are the SDK's own reading of the variables.

Spans carry ids only: the run (workflow id), step, message and event row ids, the
channel and provider. Never an address, a name, event properties or a URL's query.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

OTEL_EXTRA = "pip install 'journeys-orchestrator[otel]'"
TRACEPARENT = "traceparent"  # the W3C header's name, also the key in a stored event's context
TRACER_NAME = "journeys"
# Span attributes, all ids or fixed words: `journeys.run.id` (the workflow id),
# `journeys.step.id`, `journeys.message.id`, `journeys.event.id` (the events row)...
Attributes = Mapping[str, str | int | float | bool | None]

# Set by `configure_tracing`: the SDK's tracer, or None while tracing is off.
_tracer: Any = None
_provider: Any = None


class TracingUnavailable(ValueError):
    """Tracing was asked for (an OTEL_* variable) but OpenTelemetry is not installed."""


def requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    exporters.discard("")
    if exporters == {"none"}:
        return False
    return bool(
        exporters
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def configure_tracing(service: str, processor: Any = None) -> bool:
    """Start tracing for this process if the environment asks for it; True when on.

    `service` is the default `service.name` (OTEL_SERVICE_NAME wins). `processor`, a span
    processor, turns tracing on whatever the environment says (tests: an in-memory
    exporter). Called again, it replaces the previous setup.
    """
    global _tracer, _provider
    if processor is None and not requested():
        return False
    variable = next(
        (v for v in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT") if os.environ.get(v)),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    )
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingUnavailable(
            f"{variable} asks for traces, but OpenTelemetry is not installed ({exc}): {OTEL_EXTRA}"
        ) from None
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    if processor is not None:
        provider.add_span_processor(processor)
    else:
        for exporter in _exporters():
            provider.add_span_processor(BatchSpanProcessor(exporter))
    if _provider is not None:
        _provider.shutdown()
    # Not made the global provider: libraries that trace through it on their own (FastAPI's
    # native telemetry records raw paths and queries) would export what we keep out.
    _provider, _tracer = provider, provider.get_tracer(TRACER_NAME)
    return True


def _exporters() -> list[Any]:
    names = {e.strip().lower() for e in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    exporters: list[Any] = []
    for name in sorted(names - {"", "none"}) or ["otlp"]:
        if name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError as exc:
                raise TracingUnavailable(
                    f"OTLP export needs the OTLP/HTTP exporter ({exc}): {OTEL_EXTRA}"
                ) from None
            exporters.append(OTLPSpanExporter())  # endpoint, headers: OTEL_EXPORTER_OTLP_*
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={name}: this program exports traces with otlp "
                "(OTLP over HTTP), console or none"
            )
    return exporters


def enabled() -> bool:
    return _tracer is not None


def shutdown_tracing() -> None:
    """Export the spans still buffered (a stopping process) and turn tracing off."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def client_interceptors() -> list[Any]:
    """Temporal's tracing interceptor when tracing is on, for `Client.connect`: the
    workers built on that client take it too, so starts, signals, workflow runs and
    activities join the trace through Temporal's `_tracer-data` header."""
    if _tracer is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer=_tracer)]


@contextlib.contextmanager
def span(
    name: str,
    kind: str = "internal",
    traceparent: str | None = None,
    attributes: Attributes | None = None,
) -> Iterator[Any]:
    """A span around the block, current inside it (None and nothing else when off).

    `traceparent`: the W3C value of the span's remote parent (a stored event's request).
    `attributes` must be ids and fixed words: see the module docstring.
    """
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = None
    if traceparent:
        parent = TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=getattr(trace.SpanKind, kind.upper()),
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
        # An exception's text may quote an address (a provider refusing "ann@…"): the
        # span says which kind failed, the log and the message row say why.
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            from opentelemetry.trace import Status, StatusCode

            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def annotate(attributes: Attributes) -> None:
    """Add ids to the current span (the activity's, from Temporal's interceptor)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to store with what a later process
    picks up (an event the router delivers); None when off or outside a span."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def trace_context() -> dict[str, str]:
    """`{"traceparent": …}` to merge into a stored event's context, so the router
    delivers it in this trace; empty when tracing is off or no span is current."""
    traceparent = current_traceparent()
    return {TRACEPARENT: traceparent} if traceparent else {}


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None when off."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
