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
from collections import OrderedDict
from pathlib import Path, PurePosixPath

from sqlmodel import Session, select

from ..rendering import Renderer
from ..store.tables import JourneyRun, JourneyVersion
from ..store.template_blobs import load_blobs, manifest_hash

log = logging.getLogger(__name__)

# Written first in each folder, never read: the oldest file there. A tmp cleaner
# (systemd-tmpfiles removes what is older than 10 days under /tmp) that removes any
# pinned file of a folder removes it too, and the folder is written again.
_MARK = ".pinned"


class PinnedTemplates:
    """Renderers over pinned files, one per distinct set, written under a temporary folder
    of this process (removed when it ends) the first time a run needs them."""

    def __init__(self, base: Renderer) -> None:
        self.base = base
        self._root = Path(tempfile.mkdtemp(prefix="journeys-templates-"))
        weakref.finalize(self, shutil.rmtree, self._root, True)
        self._lock = threading.Lock()
        self._pins: dict[tuple[str, int], dict[str, str]] = {}  # versions never change
        # The most recently used renderers (their compiled templates); the others' folders
        # stay written and get a renderer again when a run needs them.
        self._renderers: OrderedDict[str, Renderer] = OrderedDict()

    max_renderers = 128

    def for_run(self, session: Session, run: JourneyRun | None) -> Renderer:
        if run is None:
            return self.base
        pins = self._version_pins(session, run.journey_id, run.version)
        if not pins:
            return self.base
        key = manifest_hash(pins)
        with self._lock:
            folder = self._root / key
            if not (folder / _MARK).is_file():  # not written yet, or cleaned away since
                self._write(session, key, pins)
            found = self._renderers.get(key)
            if found is None:
                found = self._renderers[key] = self.base.over(folder)
                while len(self._renderers) > self.max_renderers:
                    self._renderers.popitem(last=False)
            else:
                self._renderers.move_to_end(key)
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

    def _write(self, session: Session, key: str, pins: dict[str, str]) -> None:
        blobs = load_blobs(session, pins.values())
        missing = sorted(path for path, digest in pins.items() if digest not in blobs)
        if missing:  # never expected: a deploy stores contents before the version
            raise RuntimeError(
                f"pinned template contents missing from the store: {', '.join(missing[:5])}"
            )
        folder = self._root / key
        partial = self._root / f".{key}.{uuid.uuid4().hex}"
        partial.mkdir(parents=True)
        (partial / _MARK).write_bytes(b"")
        for path, digest in pins.items():
            relative = PurePosixPath(path)
            if relative.is_absolute() or ".." in relative.parts:
                raise RuntimeError(f"pinned template path {path!r} leaves the templates folder")
            target = partial.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blobs[digest])
        if folder.exists():  # what a cleaner left of it
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
