"""A scriptable HTTP server on 127.0.0.1 that provider fakes build on.

A fake subclasses `FakeProvider` and implements `handle(request) -> Reply`,
checking path, auth and payload as the provider would. Tests script failures
with `fail_next(...)` (one reply per upcoming request) or `faults` (a function
that may answer any request instead of `handle`, for storms). `RESET` drops the
connection without an answer, like a load balancer resetting it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, str/bytes as is
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


RESET = Reply(status=-1)


class QuietServer(ThreadingHTTPServer):
    """Clients that gave up (timeouts, resets) are part of the tests: no tracebacks.

    A deep listen backlog: bursts of concurrent senders must not see resets the
    provider would never cause.
    """

    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # close the connection without answering


class FakeProvider:
    """Base of every HTTP provider fake; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: Callable[[Request], Reply | None] | None = None
        self._scripted: list[Reply] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- to override -------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    # --- scripting ---------------------------------------------------------

    def fail_next(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then behave again."""
        with self._lock:
            self._scripted.extend(replies)

    # --- server ------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = fake._answer(request)
                if reply.status == RESET.status:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                    return
                payload = reply.encoded()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget requests and scripted replies, so one server can serve many tests."""
        with self._lock:
            self.requests.clear()
            self._scripted.clear()
        self.faults = None

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            scripted = self._scripted.pop(0) if self._scripted else None
        if scripted is not None:
            return scripted
        if self.faults is not None:
            reply = self.faults(request)
            if reply is not None:
                return reply
        return self.handle(request)
