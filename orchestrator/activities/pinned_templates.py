"""The templates a run renders with: the files its journey version pinned at deploy.

A version deployed with pins (`journey_versions.templates`, see
`deployment/template_pins.py`) renders from a folder this process writes once from the
stored contents, so a template edited and redeployed reaches new versions only; runs
in flight keep their subject and text. Versions deployed before pinning, hand-written
journeys and transactional messages render from the templates folder, as before.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from pathlib import Path, PurePosixPath

from sqlmodel import Session, select

from ..rendering import Renderer
from ..store.tables import JourneyRun, JourneyVersion
from ..store.template_blobs import load_blobs, manifest_hash

log = logging.getLogger(__name__)


class PinnedTemplates:
    """Renderers over pinned files, one per distinct set, written under a temporary folder
    of this process (removed when it ends) the first time a run needs them."""

    def __init__(self, base: Renderer) -> None:
        self.base = base
        self._root = Path(tempfile.mkdtemp(prefix="journeys-templates-"))
        weakref.finalize(self, shutil.rmtree, self._root, True)
        self._lock = threading.Lock()
        self._pins: dict[tuple[str, int], dict[str, str]] = {}  # versions never change
        self._renderers: dict[str, Renderer] = {}

    def for_run(self, session: Session, run: JourneyRun | None) -> Renderer:
        if run is None:
            return self.base
        pins = self._version_pins(session, run.journey_id, run.version)
        if not pins:
            return self.base
        key = manifest_hash(pins)
        with self._lock:
            found = self._renderers.get(key)
            if found is None:
                found = self._write(session, key, pins)
                self._renderers[key] = found
            return found

    def _version_pins(self, session: Session, journey_id: str, version: int) -> dict[str, str]:
        cached = self._pins.get((journey_id, version))
        if cached is None:
            stored = session.exec(
                select(JourneyVersion.templates).where(
                    JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
                )
            ).first()
            cached = dict(stored or {})
            self._pins[(journey_id, version)] = cached
        return cached

    def _write(self, session: Session, key: str, pins: dict[str, str]) -> Renderer:
        blobs = load_blobs(session, pins.values())
        missing = sorted(path for path, digest in pins.items() if digest not in blobs)
        if missing:  # never expected: a deploy stores contents before the version
            raise RuntimeError(
                f"pinned template contents missing from the store: {', '.join(missing[:5])}"
            )
        folder = self._root / key
        partial = self._root / f".{key}.{uuid.uuid4().hex}"
        for path, digest in pins.items():
            relative = PurePosixPath(path)
            if relative.is_absolute() or ".." in relative.parts:
                raise RuntimeError(f"pinned template path {path!r} leaves the templates folder")
            target = partial.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blobs[digest])
        os.replace(partial, folder)
        return self.base.over(folder)
