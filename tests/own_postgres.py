"""A PostgreSQL instance of a test's own, from the machine's PostgreSQL binaries.

The fault suite restarts its database mid-traffic; the shared server that the rest of the
suite (and other programs) use must be left alone, so the test runs its own: `initdb`
into a temporary folder, `pg_ctl start` on a free port, trust authentication on
127.0.0.1 only. PostgreSQL refuses to run as root: under root (CI containers) the
cluster belongs to the `postgres` system user and the commands run as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack import free_ports


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, or where pg_config says."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    folder = Path(
        subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
    )
    return folder if (folder / "initdb").exists() else None


@dataclass
class OwnPostgres:
    """`start()`, `restart(mode)`, `stop()`, `close()`; `url` for DATABASE_URL."""

    bin: Path
    port: int = field(default_factory=lambda: free_ports(1)[0])
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="journeys-pg-")))
    user: str | None = None  # the system user the server runs as (None: ourselves)

    def __post_init__(self) -> None:
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://journeys@127.0.0.1:{self.port}/journeys"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> OwnPostgres:
        if not self.data.exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "journeys",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            )
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = ''\nmax_connections = 200\n"
                    "fsync = on\nsynchronous_commit = on\n"
                )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        if not self._has_database():
            self._run(
                "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "journeys", "journeys"
            )
        return self

    def _has_database(self) -> bool:
        listed = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "journeys",
            "-d",
            "postgres",
            "-Atc",
            "SELECT 1 FROM pg_database WHERE datname = 'journeys'",
        )
        return listed.stdout.strip() == "1"

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash as far as clients and recovery are concerned."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "immediate", down: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down)
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
