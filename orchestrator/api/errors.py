"""API errors as JSON: what went wrong, and which field.

`{"success": false, "error": ..., "field": ...}` as Segment answers, plus `code`
and `message`, which RudderStack's client reads to tell a refusal (not retried)
from a network error (retried).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    415: "unsupported_encoding",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, **headers: str):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


async def api_error_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    body: dict[str, Any] = {
        "success": False,
        "error": exc.message,
        "code": CODES.get(exc.status, "error"),
        "message": exc.message,
    }
    if exc.field:
        body["field"] = exc.field
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)
