"""Files that hold secrets or personal data, readable by their owner only from the start.

`journeys dev` keeps the SQLite store (contacts, events, messages), the link-signing
key and the dev write key in its data directory. Each is created 0600 as it is
opened (a `chmod` after writing leaves a window, and a crash in it leaves the file
readable for good), in a directory created 0700. Existing directories keep their
mode: the operator may have chosen it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` as a directory; created 0700 when missing (its missing parents as `mkdir -p`)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, a file created 0600 (an existing one is made 0600 first)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def touch_private(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists (then it is left as it is)."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
