"""Group commit: the calls of requests that arrive together are stored in one transaction.

Every request is still acknowledged only after its calls are committed. While one
transaction is being written, the requests that arrive meanwhile queue; the next
transaction takes all of them (up to `MAX_CALLS` calls). Fifty requests in flight
then cost a few commits, not fifty turns at the database's write lock, each with its
own thread hop (docs/performance.md, "API acknowledgement").

A request's calls stay all-or-nothing: when any request of a group fails (an alias
the key may not make, a race on a new contact), the group is rolled back and each of
its requests is stored alone, so one refused request never fails another.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from ..store.db import session_scope
from ..store.tables import utcnow
from .ingest import store_calls, store_in
from .segment import SegmentCall

MAX_CALLS = 500  # per transaction: a /v1/batch of Segment's 500 KB limit holds about this many


def _future() -> asyncio.Future[int]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Request:
    calls: Sequence[SegmentCall]
    admin: bool
    done: asyncio.Future[int] = field(default_factory=_future)


class GroupCommit:
    """Store calls for concurrent requests; one writer task drains the queue."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: deque[_Request] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0  # for tests and benchmarks: how many commits served the calls

    async def store(self, calls: Sequence[SegmentCall], admin: bool = False) -> int:
        """Commit the calls (with those of concurrent requests); how many were new.

        Raises what `store_calls` raises for these calls alone (CallRefused,
        OperationalError when the database is busy)."""
        request = _Request(calls, admin)
        self._queue.append(request)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await asyncio.shield(request.done)

    async def _write(self) -> None:
        while self._queue:
            group, size = [], 0
            while self._queue and (not group or size + len(self._queue[0].calls) <= MAX_CALLS):
                request = self._queue.popleft()
                group.append(request)
                size += len(request.calls)
            try:
                results = await asyncio.to_thread(self._commit, group)
            except BaseException as exc:  # handed to each waiting request
                results = [exc] * len(group)
            for request, result in zip(group, results, strict=True):
                if request.done.done():
                    continue
                if isinstance(result, BaseException):
                    request.done.set_exception(result)
                else:
                    request.done.set_result(result)

    def _commit(self, group: list[_Request]) -> list[int | BaseException]:
        if len(group) > 1:
            try:
                received_at = utcnow()
                with session_scope(self.engine) as session:
                    counts = [store_in(session, r.calls, received_at, r.admin) for r in group]
                self.transactions += 1
                return list(counts)
            except Exception:  # stored one by one below, each request with its own error
                pass
        results: list[int | BaseException] = []
        for request in group:
            try:
                results.append(store_calls(self.engine, request.calls, request.admin))
                self.transactions += 1
            except Exception as exc:  # this request's own error
                results.append(exc)
        return results
