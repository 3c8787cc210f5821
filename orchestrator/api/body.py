"""Reading request bodies with a hard size limit, and parsing them as JSON objects.

Bodies may be gzip-compressed (`Content-Encoding: gzip`): RudderStack's and
Segment's server clients send them so. The limit then applies to the
decompressed JSON as well, so a small compressed bomb is refused after at most
`limit` bytes have been inflated.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Any

from fastapi import Request

from .errors import ApiError

GZIP = ("gzip", "x-gzip")
# Characters no store of ours can keep: NUL (PostgreSQL text refuses it) and lone
# UTF-16 surrogates (not Unicode text: they cannot be encoded as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (declared, streamed or inflated)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", *GZIP):
        raise ApiError(
            415,
            f"Content-Encoding {encoding!r} is not supported: send the body as is or gzip it",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is larger than {limit} bytes")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if encoding in GZIP else None
    chunks, received, size = [], 0, 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
        if inflater is not None:
            chunk = _inflate(inflater, chunk, limit - size)
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    if inflater is not None and not inflater.eof and received:
        raise ApiError(400, "gzip body is truncated: send the whole compressed stream")
    return b"".join(chunks)


def _inflate(inflater: Any, chunk: bytes, room: int) -> bytes:
    """Decompress at most `room` + 1 bytes (one more tells that the limit is passed)."""
    if inflater.eof:
        if chunk:
            raise ApiError(400, "data after the end of the gzip stream: send one gzip member")
        return b""
    try:
        out: bytes = inflater.decompress(chunk, room + 1)
    except zlib.error as exc:
        raise ApiError(400, f"request body is not valid gzip ({exc})") from None
    if inflater.unconsumed_tail:
        return out  # at least room + 1 bytes: the caller refuses it
    if inflater.unused_data:
        raise ApiError(400, "data after the end of the gzip stream: send one gzip member")
    return out


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object of storable text: UTF-8, no NaN/Infinity, no NUL or lone surrogates."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"request body is not valid UTF-8 (byte {raw[exc.start]:#04x} at {exc.start})"
        ) from None
    try:
        payload = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    _check_text(payload)
    return payload


def _no_constant(name: str) -> Any:
    raise ApiError(400, f"{name} is not a JSON number: send null or a string instead")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ApiError(400, f"number {literal[:40]} is too large for a 64-bit float")
    return value


def _check_text(payload: dict[str, Any]) -> None:
    """Refuse keys and strings holding NUL or lone surrogates, naming the field (iterative:
    nesting depth is only bounded by the JSON parser)."""
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else key
                if _UNSTORABLE.search(key):
                    _refuse(where, key, "a key")
                stack.append((path, item))
        elif isinstance(value, list):
            stack.extend((f"{where}.{i}", item) for i, item in enumerate(value))
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            _refuse(where, value, "the text")


def _refuse(where: str, text: str, what: str) -> None:
    char = _UNSTORABLE.search(text).group()  # type: ignore[union-attr]
    name = "NUL (\\u0000)" if char == "\x00" else f"a lone surrogate (\\u{ord(char):04x})"
    at = where or "the top level"
    raise ApiError(400, f"{at}: {what} holds {name}, which cannot be stored", where or None)
