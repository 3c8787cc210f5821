"""What every endpoint needs: the store, Temporal, settings, link signer, auth."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from temporalio.client import Client

from ..observability import tracing
from ..services.links import MessageLinks
from ..settings import Settings
from ..store.keys import key_kind
from .errors import ApiError
from .group_commit import GroupCommit
from .ingest import store_calls
from .segment import SegmentCall

log = logging.getLogger(__name__)


@dataclass
class ApiContext:
    engine: Engine
    # Keys from configuration (JOURNEYS_WRITE_KEYS, the dev key); keys made with
    # `journeys keys create` live hashed in the store.
    write_keys: list[str]
    client: Client | None = None
    on_stored: Callable[[], None] | None = None  # the router's wake-up after a commit
    links: MessageLinks | None = None
    settings: Settings = field(default_factory=Settings)
    # Ids of the hand-written journeys (JOURNEYS_PYTHON_JOURNEYS): they have no deployed
    # version, and erasure must know the workflow ids their runs take.
    python_journeys: list[str] = field(default_factory=list)
    group: GroupCommit | None = None  # JOURNEYS_GROUP_COMMIT: concurrent calls, one commit

    def __post_init__(self) -> None:
        if self.group is None and self.settings.group_commit:
            self.group = GroupCommit(self.engine)

    def stored(self) -> None:
        if self.on_stored is not None:
            self.on_stored()

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run store code in a thread; a busy database is a 503 with Retry-After, not a 500."""
        with _busy_is_503():
            return await asyncio.to_thread(fn, *args)

    async def store(self, calls: Sequence[SegmentCall], admin: bool) -> int:
        """Commit Segment calls (grouped with concurrent requests' when group commit is
        on); how many were new. Raises CallRefused; a busy database is a 503."""
        calls = _with_trace(calls)
        with _busy_is_503():
            if self.group is not None:
                return await self.group.store(calls, admin)
            return int(await asyncio.to_thread(store_calls, self.engine, calls, admin))


def _with_trace(calls: Sequence[SegmentCall]) -> Sequence[SegmentCall]:
    """With tracing on, the request's `traceparent` goes into each event's context: the
    router, another process later, delivers the event in a span of this trace."""
    trace = tracing.trace_context()
    if not trace:
        return calls
    return [c.model_copy(update={"context": {**c.context, **trace}}) for c in calls]


@contextmanager
def _busy_is_503() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:  # e.g. SQLite "database is locked"
        # The driver's text names hosts and users: the log gets it, callers (keyless
        # ones too: this runs before and during authentication) do not.
        log.warning("database unavailable: %s", exc.orig)
        raise ApiError(503, "database busy, retry later", None, **{"Retry-After": "1"}) from exc


def api_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


AUTHORIZATION = "authorization"  # the only place a secret (server or admin) key is taken from
MISPLACED_SECRET_KEY = (
    "{kind} key is accepted only in the Authorization header (a Bearer token, or the "
    "HTTP Basic username), never in the body's writeKey or X-Write-Key, where proxies and "
    "request logs keep it; if it went through such a log, revoke it (journeys keys revoke)"
)
MISPLACED_ADMIN_KEY = MISPLACED_SECRET_KEY.format(kind="an admin")
# What each endpoint kind lets through: a stronger key also does what a weaker one does.
PASSES = {"write": ("write", "server", "admin"), "server": ("server", "admin"), "admin": ("admin",)}
SECRET_KINDS = ("server", "admin")


def offered_keys(request: Request, payload: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every place a Segment-style client may put its key (Basic user, Bearer, body,
    header), each with where it was: `authorization`, `body` or `x-write-key`."""
    offered: list[tuple[str, str]] = []
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Basic authorization header") from None
        offered.append((decoded.split(":", 1)[0], AUTHORIZATION))
    elif scheme.lower() == "bearer" and value.strip():
        offered.append((value.strip(), AUTHORIZATION))
    if payload is not None and isinstance(payload.get("writeKey"), str):
        offered.append((payload["writeKey"], "body"))
    if request.headers.get("x-write-key"):
        offered.append((request.headers["x-write-key"], "x-write-key"))
    return [(k, place) for k, place in offered if k]


async def authenticate(
    request: Request, ctx: ApiContext, payload: dict[str, Any] | None = None, kind: str = "write"
) -> str:
    """A live key of `kind` or a stronger one must be offered (`PASSES`).

    Write keys may come from any place Segment-style clients put them; a server or admin
    key only from the Authorization header (docs/privacy.md), wherever it is used. Every
    offered key is classified before any passes: a secret key elsewhere refuses the call
    also when a valid key comes first (it has gone where proxies and logs keep it).
    Returns the key that passed: rate limits count per key.
    """
    offered = offered_keys(request, payload)
    if not offered:
        where = (
            "as the HTTP Basic username, as writeKey in the body, or in an X-Write-Key header"
            if kind == "write"
            else "as a Bearer token or the HTTP Basic username"
        )
        label = "server or admin" if kind == "server" else kind
        raise ApiError(
            401,
            f"missing {label} key: send it {where}",
            **{"WWW-Authenticate": 'Basic realm="journeys"'},
        )
    kinds = [(key, place, await _kind_of(ctx, key)) for key, place in offered]
    for _, place, found in kinds:
        if found in SECRET_KINDS and place != AUTHORIZATION:
            article = "an admin" if found == "admin" else "a server"
            raise ApiError(
                401,
                MISPLACED_SECRET_KEY.format(kind=article),
                **{"WWW-Authenticate": 'Basic realm="journeys"'},
            )
    for key, _, found in kinds:
        if found in PASSES[kind]:
            return key
    weakest = next((found for _, _, found in kinds if found is not None), None)
    if weakest is not None:
        needed = "an admin key" if kind == "admin" else "a server or admin key"
        raise ApiError(403, f"this is a {weakest} key; this endpoint needs {needed}")
    label = "server or admin" if kind == "server" else kind
    raise ApiError(401, f"invalid or revoked {label} key")


async def is_admin_key(ctx: ApiContext, key: str) -> bool:
    """Whether `key`, one `authenticate` let through, is an admin key: then it came in the
    Authorization header, the only place an admin key passes."""
    return await _kind_of(ctx, key) == "admin"


async def _kind_of(ctx: ApiContext, key: str) -> str | None:
    """'write', 'server' or 'admin' for a live key (configured or stored), None otherwise."""
    if any(hmac.compare_digest(key.encode(), known.encode()) for known in ctx.write_keys):
        return "write"
    result: str | None = await ctx.db(key_kind, ctx.engine, key)
    return result
