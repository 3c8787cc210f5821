"""The HTTP API: Segment-shaped `identify` and `track`, `/health`, and messages in a browser.

A call is acknowledged only after it is committed; routing to Temporal
happens afterwards, from the events table (see `router.py`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import escape
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from temporalio.client import Client

from ..links import MessageLinks
from ..store.db import session_scope
from ..store.tables import Message
from .ingest import store_call
from .segment import IdentifyCall, SegmentCall, TrackCall

MAX_CALL_BYTES = 32 * 1024
# A sent email shown in a browser: no scripts, not indexed, not cached by proxies.
VIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src * data:; style-src 'unsafe-inline'",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
}
NOT_FOUND_PAGE = "<!doctype html><p>This message is no longer available.</p>"


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, **headers: str):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def create_app(
    engine: Engine,
    write_keys: list[str],
    client: Client | None = None,
    on_stored: Callable[[], None] | None = None,
    links: MessageLinks | None = None,
) -> FastAPI:
    """`on_stored` is called after each new commit (the router's wake-up).

    `links` verifies the signed tokens in message links (view in browser).
    """
    app = FastAPI(title="journeys", version="0.1.0", docs_url="/docs", redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        body: dict[str, Any] = {"success": False, "error": exc.message}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    async def ingest(request: Request, model: type[SegmentCall], kind: str) -> dict[str, bool]:
        raw = await _read_body(request, MAX_CALL_BYTES)
        payload = _parse_json(raw)
        _authenticate(request, payload, write_keys)
        try:
            call = model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise ApiError(400, first["msg"].removeprefix("Value error, "), field) from None
        try:
            stored = await asyncio.to_thread(store_call, engine, call, kind)
        except OperationalError as exc:  # e.g. SQLite "database is locked"
            raise ApiError(503, f"database busy: {exc.orig}", None, **{"Retry-After": "1"}) from exc
        if stored and on_stored is not None:
            on_stored()
        return {"success": True}

    @app.post("/v1/identify")
    async def identify(request: Request) -> dict[str, bool]:
        return await ingest(request, IdentifyCall, "identify")

    @app.post("/v1/track")
    async def track(request: Request) -> dict[str, bool]:
        return await ingest(request, TrackCall, "track")

    @app.get("/m/{token}", response_class=HTMLResponse)
    async def view_in_browser(token: str) -> HTMLResponse:
        """The email as it was sent, for recipients whose mail client shows it badly."""
        message_id = links.message_id(token) if links is not None else None
        html = await asyncio.to_thread(_sent_html, engine, message_id) if message_id else None
        if html is None:
            return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=VIEW_HEADERS)
        return HTMLResponse(html, headers=VIEW_HEADERS)

    @app.get("/health")
    async def health() -> JSONResponse:
        checks = {"api": "ok", "database": await _check_database(engine)}
        checks["temporal"] = await _check_temporal(client) if client else "not configured"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", **checks},
            status_code=200 if healthy else 503,
        )

    return app


def _sent_html(engine: Engine, message_id: str) -> str | None:
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        if row is None or row.channel != "email" or row.status in ("pending", "failed"):
            return None
        content = row.content or {}
        if content.get("html"):
            return str(content["html"])
        if content.get("text"):
            return f"<!doctype html><pre>{escape(content['text'])}</pre>"
        return None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    return payload


def _authenticate(request: Request, payload: dict[str, Any], write_keys: list[str]) -> None:
    """Segment clients send the write key as the Basic username; also body and header."""
    offered: list[str] = []
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            offered.append(decoded.split(":", 1)[0])
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Basic authorization header") from None
    if isinstance(payload.get("writeKey"), str):
        offered.append(payload["writeKey"])
    if request.headers.get("x-write-key"):
        offered.append(request.headers["x-write-key"])
    if not offered:
        raise ApiError(
            401,
            "missing write key: send it as the HTTP Basic username, "
            "as writeKey in the body, or in an X-Write-Key header",
            **{"WWW-Authenticate": 'Basic realm="journeys"'},
        )
    for key in offered:
        if any(hmac.compare_digest(key.encode(), known.encode()) for known in write_keys):
            return
    raise ApiError(401, "invalid write key")


async def _check_database(engine: Engine) -> str:
    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout=5)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]


async def _check_temporal(client: Client) -> str:
    try:
        await client.service_client.check_health(timeout=timedelta(seconds=3))
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
