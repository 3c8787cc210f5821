"""API keys: write keys for storefronts, server keys for the shop's back end (transactional
messages), admin keys for contact export, erasure and reports.

A key is shown once, when created; the store keeps its SHA-256 and a short
prefix to tell keys apart (`journeys keys list`). Revoking is immediate.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from .db import session_scope
from .tables import ApiKey, utcnow

KINDS = ("write", "server", "admin")
_PREFIX = {"write": "wk_", "server": "sk_", "admin": "ak_"}


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    name: str
    kind: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_key(engine: Engine, name: str, kind: str = "write") -> str:
    """A new key named `name`; returns the raw key, which is not stored."""
    if kind not in KINDS:
        raise ValueError(f"unknown key kind {kind!r}: expected one of {', '.join(KINDS)}")
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a key name must be 1 to 100 characters, e.g. 'storefront-prod'")
    raw = _PREFIX[kind] + secrets.token_urlsafe(32)
    try:
        with session_scope(engine) as session:
            session.add(ApiKey(name=name, kind=kind, prefix=raw[:10], key_hash=key_hash(raw)))
    except IntegrityError:
        raise ValueError(
            f"a key named {name!r} already exists (revoked keys keep their names, "
            "see journeys keys list): pick another name, e.g. with a date"
        ) from None
    return raw


def list_keys(engine: Engine) -> list[KeyInfo]:
    with session_scope(engine) as session:
        rows = session.exec(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()
        return [
            KeyInfo(r.name, r.kind, r.prefix, r.created_at, r.last_used_at, r.revoked_at)
            for r in rows
        ]


def revoke_key(engine: Engine, name: str) -> bool:
    """True when a live key of that name was revoked; False if none or already revoked."""
    with session_scope(engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        return True


def key_kind(engine: Engine, raw: str) -> str | None:
    """'write', 'server' or 'admin' for a live key, None for an unknown or revoked one."""
    with session_scope(engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash(raw))).first()
        if row is None or row.revoked_at is not None:
            return None
        now = utcnow()
        # Touch at most once a minute: a busy storefront must not write on every call.
        if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
            row.last_used_at = now
        return row.kind
