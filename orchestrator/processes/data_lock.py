"""One `journeys dev` per data directory: an exclusive lock on `<data-dir>/dev.lock`.

Two of them on one directory would run two Temporal servers on one `temporal.db` and
two workers on one store, each deploying its own folder over the other's. The lock
is the operating system's (`flock`): it goes with the process however that ends, a
SIGKILL or a crash included, so a lock file left behind never blocks the next start.
The file holds the pid of the process that has it, for the error the next one prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..services.private_files import FILE_MODE, private_dir

LOCK_FILE = "dev.lock"


class DataDirInUse(Exception):
    """Another process holds the data directory; the message names it and the way out."""


class DataDirLock:
    """Held from `acquire()` until `release()` (or the process ends)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        private_dir(self.data_dir)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
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
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the next `journeys dev` in; the file stays (removing it would race a
        process opening it right then)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
