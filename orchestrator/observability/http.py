"""The API's requests: counted by route template and status, timed, and traced.

A pure ASGI middleware (no per-request task or body buffering, unlike Starlette's
`BaseHTTPMiddleware`). The route label is the matched template (`/v1/contacts/{contact_id}`),
never the raw path, which holds contact ids and tokens; requests no route matched share
`route="unmatched"`. The span is a server span named `POST /v1/track`, the child of a
caller's `traceparent` header, with the method, route and status only (no URL, query,
client address or body).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import tracing
from .registry import REGISTRY

REQUESTS = REGISTRY.counter(
    "journeys_http_requests_total",
    "API requests answered, by method, route template and status code.",
    ("method", "route", "status"),
)
DURATION = REGISTRY.histogram(
    "journeys_http_request_duration_seconds",
    "Time to answer an API request (until the response started), by method and route template.",
    ("method", "route"),
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def fastapi_options() -> dict[str, Any]:
    """FastAPI's own telemetry off (0.165 and later trace and log requests through a global
    OpenTelemetry provider, with the raw path, the query and invalid input): the spans
    here record the route template and status only."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    off = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    return {"telemetry": off}


def route_of(scope: Scope) -> str:
    """The template of the route that handled the request (set by routing in `scope`)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class RequestMetrics:
    """Counts, times and traces every HTTP request to the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        method = method if method in METHODS else "other"
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception nobody turned into one
        answered: float | None = None

        async def send_status(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = int(message["status"]), time.perf_counter()
            await send(message)

        with tracing.span(
            method,  # named after the route template once routed (the raw path holds ids)
            kind="server",
            traceparent=_header(scope, b"traceparent") if tracing.enabled() else None,
            attributes={"http.request.method": method},
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = route_of(scope)
                REQUESTS.inc(method=method, route=route, status=str(status))
                elapsed = (answered or time.perf_counter()) - started
                DURATION.observe(elapsed, method=method, route=route)
                if span is not None:
                    _finish(span, method, route, status)


def _finish(span: Any, method: str, route: str, status: int) -> None:
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None
