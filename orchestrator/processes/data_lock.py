"""One `journeys dev` per data directory: an exclusive lock on `<data-dir>/dev.lock`.

Two of them on one directory would run two Temporal servers on one `temporal.db` and
two workers on one store, each deploying its own folder over the other's. The lock
is the operating system's (`flock`): it goes with the process however that ends, a
SIGKILL or a crash included, so a lock file left behind never blocks the next start.
The file holds the pid of the process that has it, for the error the next one prints,
and the address of its embedded Temporal server, for the commands run beside it
(`journeys campaigns pause`, `contacts erase`) when it was started on another port.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..services.private_files import FILE_MODE, private_dir

LOCK_FILE = "dev.lock"
TEMPORAL = "temporal "  # the line naming the embedded Temporal server's address


class DataDirInUse(Exception):
    """Another process holds the data directory; the message names it and the way out."""


class DataDirLock:
    """Held from `acquire()` until `release()` (or the process ends)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, temporal: str | None = None) -> DataDirLock:
        """Take the directory, noting `temporal`, the embedded server's address."""
        private_dir(self.data_dir)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").partition("\n")[0].strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise DataDirInUse(
                f"the data directory {self.data_dir} is in use by another `journeys dev` "
                f"({who}): stop that one first, or give this one a data directory of its "
                "own with --data-dir DIR (or JOURNEYS_DATA_DIR)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        noted = f"{os.getpid()}\n" + (f"{TEMPORAL}{temporal}\n" if temporal else "")
        os.write(fd, noted.encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the next `journeys dev` in; the file stays (removing it would race a
        process opening it right then)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def running_dev_temporal(data_dir: Path) -> str | None:
    """The embedded Temporal server's address of the `journeys dev` running on
    `data_dir`, or None when none runs there (its lock is free) or it noted none."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a `journeys dev` runs there
            text = os.read(fd, 256).decode("ascii", "replace")
            for line in text.splitlines():
                if line.startswith(TEMPORAL):
                    return line.removeprefix(TEMPORAL).strip() or None
        return None  # free (the shared lock goes with the descriptor)
    finally:
        os.close(fd)
