"""A loopback fake of Firebase Cloud Messaging (HTTP v1) and Google's OAuth token endpoint.

It checks what FCM checks, so the adapter is tested through the real firebase-admin SDK:

- `POST /token`: the JWT-bearer grant a service account makes, its assertion signed with
  the key of the service-account file `service_account()` writes (verified with the public
  key), issued to the right audience and for a scope that covers FCM.
- `POST /v1/projects/{pid}/messages:send`: a bearer token this fake issued, the project of
  that service account, `{"message": {...}}` (+ `validate_only`), exactly one target, a
  string-to-string `data` map without reserved keys, well-formed analytics labels and a
  payload within 4096 bytes; registration tokens must be registered (`register`) and not
  removed (`unregister`), otherwise 404 UNREGISTERED.

Errors come in FCM's format (`fcm_error`). Script them per device with `fail_token`, for
the next sends with `fail_sends` (tokens requests are not affected), or for any request
with the base class's `fail_next`/`faults`/`RESET`.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .server import FakeProvider, Reply, Request

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google checks the assertion's audience against its own endpoint, whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_SCOPES = {
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
}
MAX_PAYLOAD_BYTES = 4096
ANALYTICS_LABEL = re.compile(r"^[a-zA-Z0-9-_.~%]{1,50}$")
# Real registration tokens are ~150+ characters of this alphabet; the fake accepts shorter ones.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_:\-]{4,4096}$")
MESSAGE_FIELDS = {
    "name", "data", "notification", "android", "webpush", "apns", "fcm_options",
    "token", "topic", "condition",
}  # fmt: skip
TARGETS = ("token", "topic", "condition")
RESERVED_DATA_KEYS = {"from", "message_type"}
RESERVED_DATA_PREFIXES = ("google.", "gcm.")
SEND_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")


def fcm_error(
    http: int,
    status: str,
    message: str,
    code: str | None = None,
    retry_after: int | None = None,
    field: str | None = None,
) -> Reply:
    """An error reply as FCM sends it: the FCM code in `details`, the RPC status on top."""
    details: list[dict[str, Any]] = [{"@type": FCM_ERROR_TYPE, "errorCode": code or status}]
    if field:
        violation = {"field": field, "description": message}
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [violation]})
    body = {"error": {"code": http, "message": message, "status": status, "details": details}}
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(http, body, headers)


def unregistered() -> Reply:
    return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")


def sender_id_mismatch() -> Reply:
    return fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")


def third_party_auth() -> Reply:
    message = "Auth error from APNS or Web Push Service"
    return fcm_error(401, "UNAUTHENTICATED", message, "THIRD_PARTY_AUTH_ERROR")


def quota_exceeded(retry_after: int | None = None) -> Reply:
    message = "Quota exceeded for quota metric 'Send requests'."
    return fcm_error(429, "RESOURCE_EXHAUSTED", message, "QUOTA_EXCEEDED", retry_after)


def unavailable(retry_after: int | None = None) -> Reply:
    return fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", None, retry_after)


def internal() -> Reply:
    return fcm_error(500, "INTERNAL", "Internal error encountered.")


def invalid_argument(message: str, field: str | None = None) -> Reply:
    return fcm_error(400, "INVALID_ARGUMENT", message, field=field)


def payload_bytes(message: dict[str, Any]) -> int:
    """Bytes of the largest payload one platform receives: shared parts plus its override."""

    def size(part: dict[str, Any]) -> int:
        return len(json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode())

    shared = {k: message[k] for k in ("notification", "data") if k in message}
    platforms = [k for k in ("android", "apns", "webpush") if k in message]
    return max([size(shared)] + [size({**shared, p: message[p]}) for p in platforms])


class FakeFCM(FakeProvider):
    def __init__(self, project_id: str = "journeys-test", client_email: str | None = None) -> None:
        super().__init__()
        self.project_id = project_id
        self.client_email = client_email or f"push@{project_id}.iam.gserviceaccount.com"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.live: set[str] = set()  # registered device tokens
        self.access_tokens: set[str] = set()  # issued by /token and not revoked
        self.delivered: dict[str, list[dict[str, Any]]] = {}  # token -> messages
        self.validated: list[dict[str, Any]] = []  # validate_only (dry run) messages
        self._token_faults: dict[str, Reply] = {}
        self._send_script: list[Reply] = []
        self._count = 0

    # --- scripting ---------------------------------------------------------

    def register(self, *tokens: str) -> None:
        with self._lock:
            self.live.update(tokens)

    def unregister(self, *tokens: str) -> None:
        """The app was uninstalled: FCM now answers UNREGISTERED for these tokens."""
        with self._lock:
            self.live.difference_update(tokens)

    def fail_token(self, token: str, reply: Reply) -> None:
        """Answer every send to `token` with `reply` (e.g. `sender_id_mismatch()`)."""
        with self._lock:
            self._token_faults[token] = reply

    def fail_sends(self, *replies: Reply) -> None:
        """Answer the next message sends (not token requests) with these replies, in order."""
        with self._lock:
            self._send_script.extend(replies)

    def revoke_access_tokens(self) -> None:
        """Issued tokens expire early: the next send gets 401 UNAUTHENTICATED."""
        with self._lock:
            self.access_tokens.clear()

    def reset(self) -> None:
        """Forget what earlier tests did, so one server (and key) can serve a whole module."""
        with self._lock:
            self.requests.clear()
            self._scripted.clear()
            self.faults = None
            self.live.clear()
            self.access_tokens.clear()
            self.delivered.clear()
            self.validated.clear()
            self._token_faults.clear()
            self._send_script.clear()

    def service_account(self, path: Path) -> Path:
        """Write a service-account JSON whose key this fake trusts and whose token_uri is ours."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "token_uri": self.url + "/token",
        }
        path.write_text(json.dumps(info), encoding="utf-8")
        return path

    # --- what tests read ---------------------------------------------------

    @property
    def send_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if SEND_PATH.match(r.path)]

    @property
    def token_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == "/token"]

    def messages_to(self, token: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.delivered.get(token, []))

    # --- the provider ------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == "/token":
            return self._token(request)
        match = SEND_PATH.match(request.path)
        if request.method == "POST" and match:
            return self._send(request, match["project"])
        return Reply(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})

    def _token(self, request: Request) -> Reply:
        from google.auth import jwt

        form = request.form()
        if form.get("grant_type") != JWT_BEARER:
            return Reply(400, {"error": "unsupported_grant_type"})
        public = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            claims = jwt.decode(form.get("assertion", ""), certs=public, audience=None)
        except ValueError as exc:
            return Reply(400, {"error": "invalid_grant", "error_description": str(exc)})
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE or claims.get("iss") != self.client_email:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        if not FCM_SCOPES & set(str(claims.get("scope", "")).split()):
            return Reply(400, {"error": "invalid_scope"})
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.access_tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _send(self, request: Request, project: str) -> Reply:
        with self._lock:
            scripted = self._send_script.pop(0) if self._send_script else None
            authorized = request.headers.get("authorization", "").removeprefix("Bearer ")
            authorized_ok = authorized in self.access_tokens
        if scripted is not None:
            return scripted
        if not authorized_ok:
            return Reply(
                401,
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
            )
        if project != self.project_id:
            message = f"Permission 'cloudmessaging.messages.create' denied on project {project}"
            return Reply(
                403, {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}
            )
        try:
            body = request.json()
        except ValueError:
            return invalid_argument("Invalid JSON payload received.")
        problem = _check_body(body)
        if problem is not None:
            return problem
        message = body["message"]
        token = message.get("token")
        if token is not None and not TOKEN_SHAPE.match(str(token)):
            text = "The registration token is not a valid FCM registration token"
            return invalid_argument(text, field="message.token")
        with self._lock:
            fault = self._token_faults.get(token) if token else None
            known = token is None or token in self.live
        if fault is not None:
            return fault
        if not known:
            return unregistered()
        if body.get("validate_only"):
            with self._lock:
                self.validated.append(message)
            return Reply(200, {"name": f"projects/{self.project_id}/messages/fake_message_id"})
        target = token or f"{'topic' if 'topic' in message else 'condition'}:" + str(
            message.get("topic") or message.get("condition")
        )
        with self._lock:
            self._count += 1
            name = f"projects/{self.project_id}/messages/0:{self._count}%{secrets.token_hex(8)}"
            self.delivered.setdefault(target, []).append(message)
        return Reply(200, {"name": name})


def _check_body(body: Any) -> Reply | None:
    """What FCM rejects with 400 INVALID_ARGUMENT before looking at the target."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        return invalid_argument("Invalid JSON payload received. Expected a `message` object.")
    unknown = set(body) - {"message", "validate_only"}
    if unknown:
        return invalid_argument(f'Invalid JSON payload received. Unknown name "{min(unknown)}"')
    message = body["message"]
    unknown = set(message) - MESSAGE_FIELDS
    if unknown:
        name = min(unknown)
        return invalid_argument(f'Invalid JSON payload received. Unknown name "{name}" at message')
    if sum(1 for t in TARGETS if message.get(t)) != 1:
        return invalid_argument("Exactly one of token, topic or condition must be set.")
    for where, data in _data_maps(message):
        if not isinstance(data, dict):
            return invalid_argument(f"{where} must be a map", field=where)
        for key, value in data.items():
            if not isinstance(value, str):
                return invalid_argument(
                    f"Invalid value at '{where}[0].value' (TYPE_STRING), {value!r} (\"{key}\")",
                    field=f"{where}.{key}",
                )
            if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
                return invalid_argument(f"Invalid data payload key: {key}", field=f"{where}.{key}")
    for where, label in _analytics_labels(message):
        if not isinstance(label, str) or not ANALYTICS_LABEL.match(label):
            return invalid_argument(f"Invalid analytics_label: {label!r}", field=where)
    size = payload_bytes(message)
    if size > MAX_PAYLOAD_BYTES:
        return invalid_argument(
            f"Message is too big: {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes"
        )
    return None


def _data_maps(message: dict[str, Any]) -> list[tuple[str, Any]]:
    found = [("message.data", message["data"])] if "data" in message else []
    for platform in ("android", "webpush"):
        block = message.get(platform)
        if isinstance(block, dict) and "data" in block:
            found.append((f"message.{platform}.data", block["data"]))
    return found


def _analytics_labels(message: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for where, block in (
        ("message.fcm_options", message.get("fcm_options")),
        ("message.android.fcm_options", (message.get("android") or {}).get("fcm_options")),
        ("message.apns.fcm_options", (message.get("apns") or {}).get("fcm_options")),
    ):
        if isinstance(block, dict) and "analytics_label" in block:
            found.append((f"{where}.analytics_label", block["analytics_label"]))
    return found
