"""The real API on a loopback port, for clients that speak HTTP themselves (Segment's and
RudderStack's SDKs use `requests`, so an in-process ASGI transport cannot reach them).

`serve(app)` runs uvicorn in a thread on a free port and yields the base URL.
`Recorder` wraps the app to see what the clients send (path, headers, status) and
can lose the answer of the first calls after the app has committed them (a proxy
timing out), which is what makes clients retry with the same `messageId`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = dict[str, Any]


@dataclass
class Call:
    """One HTTP request as the server saw it, and what was answered."""

    method: str
    path: str
    headers: dict[str, str]
    app_status: int = 0  # what the app answered
    sent_status: int = 0  # what the client got (503 when the answer was lost)


@dataclass
class Recorder:
    """ASGI wrapper: records every call; the first `lose_answers` POSTs get 503 after the
    app has handled them."""

    app: Any
    lose_answers: int = 0
    calls: list[Call] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        call = Call(scope["method"], scope["path"], headers)
        self.calls.append(call)
        lose = scope["method"] == "POST" and self.lose_answers > 0
        if lose:
            self.lose_answers -= 1

        async def relay(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                call.app_status = message["status"]
                if not lose:
                    call.sent_status = message["status"]
            if not lose:
                await send(message)

        await self.app(scope, receive, relay)
        if lose:
            call.sent_status = 503
            body = b'{"success":false,"error":"the upstream timed out"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})

    def posts(self, path: str = "/v1/batch") -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path == path]


class _ThreadServer(uvicorn.Server):
    """uvicorn without signal handlers (it runs in a thread of the test process)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextmanager
def serve(app: Any, timeout: float = 30) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
    )
    server = _ThreadServer(config)
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise AssertionError("the API server thread ended before serving")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise AssertionError(f"the API server did not start within {timeout:.0f}s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
