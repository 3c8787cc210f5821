"""Template file contents by hash: written by deploys, read by the send activity.

A blob is never changed or deleted: a version's pins name it for as long as the version
exists, and the same content pinned by many versions is stored once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from .tables import TemplateBlob


def store_blobs(session: Session, files: dict[str, bytes], hashes: dict[str, str]) -> int:
    """Store the contents not stored yet (`hashes`: path -> sha256); returns how many."""
    by_hash = {hashes[path]: data for path, data in files.items()}
    if not by_hash:
        return 0
    known = set(session.exec(select(TemplateBlob.hash).where(col(TemplateBlob.hash).in_(by_hash))))
    added = 0
    for digest, data in by_hash.items():
        if digest in known:
            continue
        try:
            with session.begin_nested():  # a concurrent deploy may store the same content
                session.add(TemplateBlob(hash=digest, content=data))
            added += 1
        except IntegrityError:
            continue
    return added


def load_blobs(session: Session, hashes: Iterable[str]) -> dict[str, bytes]:
    wanted = sorted(set(hashes))
    rows = session.exec(select(TemplateBlob).where(col(TemplateBlob.hash).in_(wanted)))
    return {row.hash: bytes(row.content) for row in rows}


def manifest_hash(pins: dict[str, str]) -> str:
    """One hash for a version's pins: a change of any file, or of the set, changes it."""
    text = json.dumps(pins, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
