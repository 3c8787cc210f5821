"""The MessageBird adapter against a tiny loopback fake of `POST /messages`.

Run with `pytest examples/custom_channel` once the package is installed. The fake is
stdlib only, so this folder can be copied out as the start of your own adapter.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from journeys_messagebird import MessageBirdChannel

from channels import OutgoingMessage, PermanentChannelError, TransientChannelError
from channels.registry import adapter_class

# Loopback fakes are reached directly, whatever proxy the shell has configured.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
KEY = "test_gshuPaZoeEG6ovbc8M79w0QyM"


class FakeMessageBird:
    """Checks what MessageBird checks; `replies` scripts the next answers (status, body)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.replies: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.received.append({"path": self.path, "headers": dict(self.headers), **body})
                if fake.replies:
                    status, answer, headers = fake.replies.pop(0)
                elif self.headers["Authorization"] != f"AccessKey {KEY}":
                    status, answer, headers = 401, error(2, "Request not allowed"), {}
                else:
                    status, answer, headers = 201, {"id": f"mb-{len(fake.received)}"}, {}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def error(code: int, description: str, parameter: str | None = None) -> dict[str, Any]:
    return {"errors": [{"code": code, "description": description, "parameter": parameter}]}


@pytest.fixture
def fake() -> Iterator[FakeMessageBird]:
    server = FakeMessageBird()
    thread = threading.Thread(target=server.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def sms(**overrides: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "message_id": "m-1",
        "channel": "sms",
        "to": "+31612345678",
        "content": {"body": "Ann, your cart is waiting"},
    }
    return OutgoingMessage(**{**fields, **overrides})


def test_found_through_the_entry_point() -> None:
    assert adapter_class("messagebird") is MessageBirdChannel


def test_sends_one_message(fake: FakeMessageBird) -> None:
    channel = MessageBirdChannel(KEY, "ShoeShop", base_url=fake.url)
    assert channel.send(sms()).provider_message_id == "mb-1"
    (request,) = fake.received
    assert request["path"] == "/messages"
    assert request["headers"]["Authorization"] == f"AccessKey {KEY}"
    assert request["originator"] == "ShoeShop"
    assert request["recipients"] == ["31612345678"]
    assert request["body"] == "Ann, your cart is waiting"
    assert request["reference"] == "m-1"


def test_the_journey_sender_overrides_the_originator(fake: FakeMessageBird) -> None:
    MessageBirdChannel(KEY, "ShoeShop", base_url=fake.url).send(sms(options={"from": "Sale"}))
    assert fake.received[0]["originator"] == "Sale"


def test_errors_are_typed(fake: FakeMessageBird) -> None:
    channel = MessageBirdChannel(KEY, "ShoeShop", base_url=fake.url)
    fake.replies = [
        (422, error(9, "no (correct) recipients found", "recipients"), {}),
        (429, error(98, "too many requests"), {"Retry-After": "30"}),
        (500, error(99, "internal error"), {}),
    ]
    with pytest.raises(PermanentChannelError) as bad_number:
        channel.send(sms())
    assert (bad_number.value.reason, bad_number.value.code) == ("invalid_recipient", 9)
    with pytest.raises(TransientChannelError) as busy:
        channel.send(sms())
    assert busy.value.retry_after == 30
    with pytest.raises(TransientChannelError):
        channel.send(sms())
    with pytest.raises(PermanentChannelError) as wrong_key:
        MessageBirdChannel("wrong", "ShoeShop", base_url=fake.url).send(sms())
    assert wrong_key.value.reason == "auth"
    assert len(fake.received) == 4  # one request per send: retries are Temporal's job
