"""Files that hold secrets or personal data, readable by their owner only from the start.

`journeys dev` keeps the SQLite store (contacts, events, messages), the link-signing
key and the dev write key in its data directory, and the embedded Temporal server its
database and log (`temporal.db` holds contact ids). Each is created 0600 as it is
opened (a `chmod` after writing leaves a window, and a crash in it leaves the file
readable for good), in a directory created 0700; the Temporal server, a child process
that creates its own files, runs with umask 077 (`PRIVATE_UMASK`). Existing directories
keep their mode, since the operator may have chosen it; one open to other users gets a
warning, once per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077  # for child processes that create files of their own

log = logging.getLogger(__name__)
_warned: set[Path] = set()


def private_dir(path: Path) -> Path:
    """`path` as a directory; created 0700 when missing (its missing parents as `mkdir -p`).
    An existing one open to group or others keeps its mode, with a warning."""
    existed = path.is_dir()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if existed:
        warn_if_open(path)
    return path


def warn_if_open(path: Path) -> None:
    """Warn (once per directory) when others may list or enter `path`: the files made
    there are 0600, but their names show, and files other programs leave there (an editor's
    backup, a copy) may be readable."""
    mode = stat.S_IMODE(path.stat().st_mode)
    resolved = path.resolve()
    if mode & 0o077 == 0 or resolved in _warned:
        return
    _warned.add(resolved)
    log.warning(
        "%s is open to other users (mode %03o), and it holds personal data and secrets: "
        "its files are created readable by their owner only, but make the directory "
        "private too: chmod 700 %s",
        path,
        mode,
        path,
    )


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
