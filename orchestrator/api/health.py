"""`/health`: is each part (API, database, Temporal) working."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from temporalio.client import Client

from .context import api_context

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    ctx = api_context(request)
    checks = {"api": "ok", "database": await _check_database(ctx.engine)}
    checks["temporal"] = await _check_temporal(ctx.client) if ctx.client else "not configured"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", **checks},
        status_code=200 if healthy else 503,
    )


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
