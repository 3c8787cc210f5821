"""Who may see the dashboard: a login with an admin key, kept in a signed cookie.

The cookie holds no secret and no personal data: the stored admin key's row id, when
the session ends, and the session's CSRF token, signed with HMAC-SHA256 under a key
derived from JOURNEYS_SECRET_KEY (`journeys dev`: the data directory's key). Nothing is
kept on the server, so every API replica accepts every session; each request checks
that the key is still live, so revoking the key (`journeys keys revoke`) ends its
sessions at once, and rotating JOURNEYS_SECRET_KEY ends them all.

Forms carry the session's CSRF token (the login form: a token bound to a cookie of its
own), and the cookie is `SameSite=Strict`, `HttpOnly`, `Path=/dashboard`, `Secure`
when the public URL is https.

Development (`journeys dev`) opens the dashboard without a login to browsers on this
machine only (a loopback client address); everywhere else it needs a login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import Engine
from sqlmodel import select

from ..store.db import session_scope
from ..store.keys import key_hash
from ..store.tables import ApiKey

COOKIE = "journeys_session"
LOGIN_COOKIE = "journeys_login"
PATH = "/dashboard"
LIFETIME = 12 * 3600  # seconds: a working day, then log in again
DEV = "dev"  # the key id of a development session
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class DashboardSession:
    key_id: int | str  # the admin key's row id, or DEV
    expires: int  # epoch seconds
    csrf: str
    # The start of the key's hash: a restored or another store's row with the same id is
    # another key, and its sessions must not pass.
    key_print: str = ""

    @property
    def dev(self) -> bool:
        return self.key_id == DEV


class Signer:
    """Signs and checks the session cookie; `secret` is the link-signing key."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"journeys dashboard session v1", "sha256").digest()

    def _mac(self, body: bytes) -> str:
        return _b64(hmac.new(self._key, body, hashlib.sha256).digest())

    def dump(self, session: DashboardSession) -> str:
        body = _b64(
            json.dumps(
                {
                    "k": session.key_id,
                    "e": session.expires,
                    "c": session.csrf,
                    "p": session.key_print,
                },
                separators=(",", ":"),
            ).encode()
        )
        return f"{body}.{self._mac(body.encode())}"

    def load(self, cookie: str | None, now: float | None = None) -> DashboardSession | None:
        """The session, or None for a cookie that is missing, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 512:
            return None
        body, mac = cookie.split(".")
        if not cookie.isascii() or not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            data = json.loads(_unb64(body))
            key_id, printed = data["k"], data.get("p", "")
            if not (isinstance(key_id, int) and not isinstance(key_id, bool)) and key_id != DEV:
                return None
            session = DashboardSession(key_id, int(data["e"]), str(data["c"]), str(printed))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if session.expires <= (now if now is not None else time.time()):
            return None
        return session

    def login_token(self, nonce: str) -> str:
        """The login form's CSRF token, bound to the nonce in its own cookie."""
        return self._mac(b"login:" + nonce.encode())


PRINT = 16  # hex digits of the key's hash kept in the cookie


def new_session(
    key_id: int | str, key_print: str = "", now: float | None = None
) -> DashboardSession:
    issued = int(now if now is not None else time.time())
    return DashboardSession(key_id, issued + LIFETIME, secrets.token_urlsafe(24), key_print)


def admin_key(engine: Engine, raw: str) -> tuple[int, str] | None:
    """(row id, hash print) of a live admin key, None for any other key or text."""
    with session_scope(engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash(raw))).first()
        if row is None or row.revoked_at is not None or row.kind != "admin" or row.id is None:
            return None
        return row.id, row.key_hash[:PRINT]


def key_is_live(engine: Engine, key_id: int, key_print: str) -> bool:
    with session_scope(engine) as session:
        row = session.get(ApiKey, key_id)
        return (
            row is not None
            and row.revoked_at is None
            and row.kind == "admin"
            and hmac.compare_digest(row.key_hash[:PRINT], key_print)
        )


def from_loopback(request: Request) -> bool:
    """A browser on this machine that asked for this machine by name: its address is a
    loopback one, and so is the Host it asked for (a page elsewhere that rebinds its own
    name to 127.0.0.1 still sends that name, and is refused)."""
    if request.client is None or request.client.host not in LOOPBACK:
        return False
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in LOOPBACK or name == "[::1]"


def cookie_options(request: Request, public_url: str) -> dict[str, Any]:
    secure = public_url.startswith("https://") or request.url.scheme == "https"
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": PATH}


def same_origin(request: Request) -> bool:
    """A form post from our own pages: the Origin (or Referer) names this host, when the
    browser sent one. SameSite=Strict and the CSRF token already guard; this is a third."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    after_scheme = origin.split("://", 1)[-1]
    return after_scheme.split("/", 1)[0] == host


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
