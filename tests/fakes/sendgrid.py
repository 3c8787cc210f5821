"""A loopback SendGrid v3 Mail Send API that checks what SendGrid checks.

Use it with the real SDK by pointing the adapter's host at `fake.url`. It answers
like SendGrid: 202 + `X-Message-Id` when accepted, 200 (not delivered) in sandbox
mode, and `{"errors": [{"message", "field", "help"}]}` with 400/401/404/413/415
otherwise. `delivered` is what would have reached inboxes; `by_msg_id()` counts it
per `custom_args.msg_id`, which is how duplicate-send tests count duplicates.

Scripting (inherited): `fail_next(FakeSendGrid.rate_limited(retry_after=3))`,
`fail_next(FakeSendGrid.server_error(503))`, `fail_next(RESET)`, or `faults = fn`
for storms; `delay` makes accepted answers slow, to exercise client timeouts.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .server import FakeProvider, Reply, Request

SEND_PATH = "/v3/mail/send"
# Names SendGrid refuses in `headers` (they come from other fields or from SendGrid).
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}


@dataclass(frozen=True)
class Delivery:
    """One accepted send: the parsed payload and the X-Message-Id it was given."""

    payload: dict[str, Any]
    x_message_id: str
    request: Request

    @property
    def custom_args(self) -> dict[str, str]:
        """Top-level custom_args overridden by the first personalization's, as SendGrid does."""
        personal = (self.payload.get("personalizations") or [{}])[0].get("custom_args") or {}
        return {**(self.payload.get("custom_args") or {}), **personal}

    @property
    def msg_id(self) -> str | None:
        return self.custom_args.get("msg_id")

    @property
    def to(self) -> list[str]:
        return [t["email"] for p in self.payload["personalizations"] for t in p["to"]]

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.payload.get("headers") or {})


class FakeSendGrid(FakeProvider):
    max_personalizations = 1000
    max_categories = 10
    max_category_length = 255
    max_custom_args_bytes = 10_000
    max_payload_bytes = 30 * 1024 * 1024

    def __init__(self, api_key: str = "SG.fake-key.for-tests", *, delay: float = 0.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.delay = delay  # seconds before answering a valid request
        self.delivered: list[Delivery] = []
        self.sandboxed: list[Delivery] = []  # valid, answered 200, never delivered
        self._recorded = threading.Lock()

    def start(self) -> FakeSendGrid:
        super().start()
        assert self._server is not None
        # socketserver listens with a backlog of 5: a burst from many worker threads
        # would see connection resets that SendGrid never causes.
        self._server.socket.listen(128)
        return self

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    # --- what tests read ------------------------------------------------------

    def by_msg_id(self) -> Counter[str]:
        """How many delivered payloads carry each custom_args msg_id (duplicates > 1)."""
        with self._recorded:
            return Counter(d.msg_id or "" for d in self.delivered)

    def delivery(self, msg_id: str) -> Delivery:
        """The one delivery of `msg_id`; fails the test if there is none or several."""
        with self._recorded:
            found = [d for d in self.delivered if d.msg_id == msg_id]
        assert len(found) == 1, f"{len(found)} deliveries of msg_id {msg_id!r}"
        return found[0]

    def reset(self) -> None:
        """Forget everything and behave normally again, to share one fake between tests."""
        with self._recorded:
            self.delivered.clear()
            self.sandboxed.clear()
        with self._lock:
            self.requests.clear()
            self._scripted.clear()
        self.faults = None
        self.delay = 0.0

    # --- replies to script ----------------------------------------------------

    @staticmethod
    def error(status: int, message: str, field: str | None = None, **headers: str) -> Reply:
        """Any SendGrid-shaped error, e.g. error(400, "Does not contain a valid address.",
        "personalizations.0.to.0.email")."""
        return Reply(status, error_body(message, field), dict(headers))

    @staticmethod
    def rate_limited(
        retry_after: float | None = None,
        *,
        reset_in: float | None = None,
        reset_at: float | None = None,
    ) -> Reply:
        """429 as SendGrid sends it: X-RateLimit-* headers (the reset as a unix time,
        now unless `reset_in` seconds or `reset_at` is given), optionally Retry-After."""
        if reset_at is None:
            reset_at = time.time() + (reset_in or 0.0)
        headers = {
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(round(reset_at)),
        }
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return Reply(429, error_body("too many requests"), headers)

    @staticmethod
    def server_error(status: int = 500, retry_after: float | None = None) -> Reply:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return Reply(status, error_body("internal error"), headers)

    # --- the API --------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.path != SEND_PATH:
            return Reply(404, error_body("resource not found"))
        if request.method != "POST":
            return Reply(405, error_body("method not allowed"))
        auth = request.headers.get("authorization", "")
        if not auth:
            return Reply(401, error_body("authorization required"))
        if auth != f"Bearer {self.api_key}":
            return Reply(
                401, error_body("The provided authorization grant is invalid, expired, or revoked")
            )
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Reply(415, error_body("Content-Type should be application/json."))
        if len(request.body) > self.max_payload_bytes:
            return Reply(413, error_body("Payload Too Large"))
        try:
            payload = request.json()
        except ValueError:
            return Reply(400, error_body("Bad Request"))
        errors = self.validate(payload)
        if errors:
            return Reply(400, {"errors": errors})
        if self.delay:
            time.sleep(self.delay)
        sandbox = bool(
            ((payload.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable")
        )
        delivery = Delivery(payload, _x_message_id(), request)
        with self._recorded:
            (self.sandboxed if sandbox else self.delivered).append(delivery)
        if sandbox:
            return Reply(200, b"", {"Content-Type": "text/plain"})
        return Reply(202, b"", {"X-Message-Id": delivery.x_message_id})

    def validate(self, payload: Any) -> list[dict[str, Any]]:
        """Every problem SendGrid would list for this payload (empty when it is valid)."""
        if not isinstance(payload, dict):
            return error_body("Bad Request")["errors"]
        errors: list[dict[str, Any]] = []

        def bad(field: str | None, message: str) -> None:
            errors.append({"message": message, "field": field, "help": None})

        personalizations = payload.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            bad(
                "personalizations",
                "The personalizations field is required and must have at least one "
                "personalization.",
            )
            personalizations = []
        elif len(personalizations) > self.max_personalizations:
            bad("personalizations", "You may not have more than 1000 personalizations.")
        top_args = payload.get("custom_args") or {}
        for i, p in enumerate(personalizations):
            if not isinstance(p, dict):
                bad(f"personalizations.{i}", "Invalid type. Expected: object")
                continue
            to = p.get("to")
            if not isinstance(to, list) or not to:
                bad(
                    f"personalizations.{i}.to",
                    "The to array is required for all personalization objects, and must have "
                    "at least one email object with a valid email address.",
                )
                to = []
            for kind, recipients in (("to", to), ("cc", p.get("cc")), ("bcc", p.get("bcc"))):
                for j, r in enumerate(recipients or []):
                    if not _is_address(r):
                        bad(
                            f"personalizations.{i}.{kind}.{j}.email",
                            "Does not contain a valid address.",
                        )
            if "subject" in p and not isinstance(p["subject"], str):
                bad(f"personalizations.{i}.subject", "Invalid type. Expected: string")
            args = p.get("custom_args") or {}
            self._check_strings(args, f"personalizations.{i}.custom_args", bad)
            self._check_custom_args_size({**top_args, **args}, bad)
            self._check_headers(p.get("headers") or {}, f"personalizations.{i}.headers", bad)

        sender = payload.get("from")
        if not isinstance(sender, dict) or not sender.get("email"):
            bad(
                "from.email",
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
            )
        elif not _is_address(sender):
            bad("from.email", "The from email does not contain a valid address.")
        if "reply_to" in payload and not _is_address(payload["reply_to"]):
            bad("reply_to.email", "The reply_to email does not contain a valid address.")

        subject = payload.get("subject")
        every_has_subject = bool(personalizations) and all(
            isinstance(p, dict) and p.get("subject") for p in personalizations
        )
        if not (isinstance(subject, str) and subject) and not every_has_subject:
            bad(
                "subject",
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
            )

        content = payload.get("content")
        if not payload.get("template_id"):
            if not isinstance(content, list) or not content:
                bad(
                    "content",
                    "Unless a valid template_id is provided, the content parameter is required. "
                    "There must be at least one defined content block.",
                )
                content = []
            for k, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    bad(f"content.{k}.type", "The content type is required.")
                elif not isinstance(block.get("value"), str) or not block["value"]:
                    bad(
                        f"content.{k}.value",
                        "The content value must be a string at least one character in length.",
                    )
            types = [b.get("type") for b in content if isinstance(b, dict)]
            if "text/plain" in types and types[0] != "text/plain":
                bad(
                    "content.0.type",
                    "The text/plain content type must be first, followed by "
                    "any other content types.",
                )

        categories = payload.get("categories") or []
        if not isinstance(categories, list) or len(categories) > self.max_categories:
            bad("categories", "Too many categories. You may not have more than 10 categories.")
        else:
            for k, category in enumerate(categories):
                if not isinstance(category, str) or len(category) > self.max_category_length:
                    bad(f"categories.{k}", "A category must be a string of at most 255 characters.")

        self._check_strings(top_args, "custom_args", bad)
        if not personalizations:
            self._check_custom_args_size(top_args, bad)
        self._check_headers(payload.get("headers") or {}, "headers", bad)
        if "reply_to" in payload and "reply_to_list" in payload:
            bad("reply_to", "reply_to and reply_to_list cannot both be set.")
        return errors

    # --- helpers --------------------------------------------------------------

    @staticmethod
    def _check_strings(values: Any, field: str, bad: Any) -> None:
        if not isinstance(values, dict):
            bad(field, "Invalid type. Expected: object")
            return
        for key, value in values.items():
            if not isinstance(value, str):
                bad(
                    f"{field}.{key}", f"Invalid type. Expected: string, given: {_json_type(value)}."
                )

    def _check_custom_args_size(self, args: Any, bad: Any) -> None:
        if not isinstance(args, dict):
            return
        size = len(json.dumps(args, ensure_ascii=False, separators=(",", ":")).encode())
        if size > self.max_custom_args_bytes:
            bad("custom_args", "The custom_args may not exceed 10,000 bytes.")

    def _check_headers(self, headers: Any, field: str, bad: Any) -> None:
        self._check_strings(headers, field, bad)
        if isinstance(headers, dict):
            for name in headers:
                if str(name).lower() in RESERVED_HEADERS:
                    bad(f"{field}.{name}", f"The {name} header is reserved and cannot be set.")


def _is_address(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("email"), str)
        and bool(ADDRESS.match(value["email"]))
    )


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _x_message_id() -> str:
    """22 URL-safe characters, the shape of SendGrid's ids."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
