"""`journeys dev` as a real subprocess, for end-to-end tests.

A `DevStack` runs the command in a project folder of its own (with `journeys/` and
`templates/`), on free ports, and waits for the lines it announces once it serves:

    API: http://127.0.0.1:PORT
    Temporal UI: http://127.0.0.1:PORT
    write key: dev_...

Everything the process prints goes to a log file (one per start), quoted in failure
messages. The process runs in a session of its own, so `kill()` can SIGKILL every
process of that session - the embedded Temporal dev server too, which runs in a
process group of its own - to simulate a crash, while `stop()` is a Ctrl+C-style
SIGINT that must end in a clean exit.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# Variables that would point `journeys` elsewhere than at its own embedded services.
_OUTSIDE_ENV = ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY")

_ANNOUNCED = {
    "api_url": re.compile(r"^API: (\S+)\s*$", re.M),
    "ui_url": re.compile(r"^Temporal UI: (\S+)\s*$", re.M),
    "write_key": re.compile(r"^write key: (\S+)\s*$", re.M),
}


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on the loopback right now (held together while picked).

    Picked below the kernel's ephemeral range: outgoing connections and every `bind(0)`
    draw from that range, so a port picked there could be taken again before the process
    given it binds it. A Temporal dev server failed to start so in CI ("address already in
    use" on the frontend port picked for it; its own internal services bind port 0 too).
    """
    low = _ephemeral_low()
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", random.randrange(max(1024, low - 12000), low)))
            except OSError:  # in use: pick again
                sock.close()
                continue
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out by itself (Linux's default is 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment without our settings, loopback exempt from proxies, unbuffered."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("JOURNEYS_") and k.upper() not in _OUTSIDE_ENV
    }
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env["PYTHONUNBUFFERED"] = "1"
    # The wall clock must not decide a test: no quiet hours unless a test sets them.
    env.update(JOURNEYS_QUIET_HOURS_PUSH="none", JOURNEYS_QUIET_HOURS_SMS="none")
    env.update(extra)
    return env


def journeys_command(*args: str) -> list[str]:
    """The `journeys` command, run by the interpreter running the tests."""
    return [sys.executable, "-m", "orchestrator.cli", *args]


def run_journeys(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a `journeys` command to completion, capturing its output.

    In a session of its own: when it overstays `timeout`, everything it started (an
    embedded Temporal server too) is killed before `TimeoutExpired` is raised.
    """
    command = journeys_command(*args)
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env or subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [process.pid, *_live_members(process.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@dataclass
class DevStack:
    """One `journeys dev` in `root`; restartable (same data dir and ports) after stop/kill."""

    root: Path
    data_dir: Path = field(default=None)  # type: ignore[assignment]  # default: root/.journeys
    api_port: int = 0
    temporal_port: int = 0
    ui_port: int = 0
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)

    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    log_path: Path | None = field(default=None, init=False)
    api_url: str = field(default="", init=False)
    ui_url: str = field(default="", init=False)
    write_key: str = field(default="", init=False)
    starts: int = field(default=0, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.data_dir = Path(self.data_dir) if self.data_dir else self.root / ".journeys"
        if not (self.api_port and self.temporal_port and self.ui_port):
            self.api_port, self.temporal_port, self.ui_port = free_ports(3)

    # --- lifecycle -------------------------------------------------------------

    def command(self) -> list[str]:
        return journeys_command(
            "dev",
            "--port",
            str(self.api_port),
            "--data-dir",
            str(self.data_dir),
            "--temporal-port",
            str(self.temporal_port),
            "--temporal-ui-port",
            str(self.ui_port),
            *self.extra_args,
        )

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start without waiting for it to serve (a test may catch it while it starts)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        self.api_url = self.ui_url = self.write_key = ""
        self.log_path = self.root / f"dev-{self.starts}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in _reaped
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.root,
            env=subprocess_env(**self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self.process

    def start(self, timeout: float = 90) -> DevStack:
        """Start and wait until the API, UI and write key are announced."""
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            found = {k: p.search(self.output()) for k, p in _ANNOUNCED.items()}
            if all(found.values()):
                self.api_url, self.ui_url, self.write_key = (
                    m.group(1)  # type: ignore[union-attr]
                    for m in found.values()
                )
                return self
            code = self.process.poll()
            if code is not None:
                self._reaped()
                raise AssertionError(
                    f"`journeys dev` exited with code {code} before serving\n{self.report()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"`journeys dev` did not announce API, UI and write key within "
                    f"{timeout:.0f}s\n{self.report()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30, group: bool = False, sig: int = signal.SIGINT) -> int:
        """SIGINT (or `sig`): must exit 0 within `timeout` and leave no process behind.

        `group=True` signals the whole foreground process group, as Ctrl+C in a terminal
        does (the embedded Temporal server has a group of its own and is stopped by
        `journeys dev` after its worker).
        """
        process = self._running()
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"`journeys dev` did not exit within {timeout:.0f}s of SIGINT\n{self.report()}"
            ) from None
        self._reaped()
        assert code == 0, f"`journeys dev` exited with code {code} on SIGINT\n{self.report()}"
        self._wait_group_gone(timeout)
        return code

    def wait_exit(self, timeout: float = 30, ports: bool = True) -> int:
        """Its exit code, once it and everything it started are gone (and, with `ports`,
        its ports closed: not when another process was given the same ones)."""
        assert self.process is not None, "not started"
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"`journeys dev` did not exit within {timeout:.0f}s\n{self.report()}"
            ) from None
        self._reaped()
        self._wait_group_gone(timeout, ports)
        return code

    def commands(self) -> list[str]:
        """The command lines of the processes it runs now (itself, the Temporal server)."""
        if self.process is None:
            return []
        found = []
        for pid in _live_members(self.process.pid):
            with contextlib.suppress(OSError):
                found.append(
                    Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        return found

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL every process of the session (API, worker and the Temporal dev server):
        a crash of everything."""
        if self.process is None:
            return
        for pid in [self.process.pid, *_live_members(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=timeout)
        self._reaped()
        self._wait_group_gone(timeout)

    def close(self) -> None:
        """Teardown: kill whatever is still running; never raises for a dead stack."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        elif self.process is not None:
            for pid in _live_members(self.process.pid):  # stray children, if any
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self._reaped()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- output ----------------------------------------------------------------

    def output(self) -> str:
        """Everything the current (or last) run printed so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def report(self, lines: int = 60) -> str:
        """The tails of the dev output and of the Temporal server log, for assertion messages."""
        out = tail(self.log_path, lines) if self.log_path else "(not started)"
        return (
            f"--- journeys dev output (tail) ---\n{out}\n"
            f"--- temporal.log (tail) ---\n{tail(self.data_dir / 'temporal.log', 20)}"
        )

    # --- internals -------------------------------------------------------------

    def _running(self) -> subprocess.Popen[bytes]:
        assert self.process is not None and self.process.poll() is None, (
            f"`journeys dev` is not running\n{self.report()}"
        )
        return self.process

    def _reaped(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_group_gone(self, timeout: float, ports: bool = True) -> None:
        """Wait until no live process is left in the session and our ports are closed."""
        assert self.process is not None
        sid = self.process.pid
        deadline = time.monotonic() + timeout
        while True:
            left = _live_members(sid)
            mine = (self.api_port, self.temporal_port, self.ui_port) if ports else ()
            busy = [p for p in mine if port_open(p)]
            if not left and not busy:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after `journeys dev` exited, processes {left} are still alive and ports "
                    f"{busy} still open\n{self.report()}"
                )
            time.sleep(0.1)


def _live_members(sid: int) -> list[int]:
    """Pids of the session's processes that are not zombies (Linux /proc; else probe the
    leader's group)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(sid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [sid]
    live = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after the
        # last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 4 and fields[0] != "Z" and int(fields[3]) == sid:
            live.append(int(entry.name))
    return live
