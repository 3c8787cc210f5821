"""`journeys dev` that does not get to serve: refused, or stopped while it starts.

A start that fails changes nothing: a busy port (API, Temporal gRPC or UI) or another
`journeys dev` on the same data directory is found before the journeys are deployed,
so the instance already running keeps its active set. Ctrl-C (SIGINT to the whole
process group, as a terminal sends it) at any moment of the start - while it loads,
validates the journeys, starts the Temporal server or connects - ends it at once and
quietly, with nothing deployed and nothing left running.

Real processes (tests/devstack.py), a real Temporal dev server. Slow.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from devstack import DevStack, free_ports, port_open, run_journeys
from sqlalchemy import func
from sqlmodel import select as sql_select

from orchestrator.store.db import make_engine, session_scope, sqlite_url
from orchestrator.store.tables import JourneyVersion

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

OTHER = """\
id: other_welcome
name: Another folder's welcome
trigger:
  event: Signed Up
steps:
  - send: { id: hello, channel: email, template: hello }
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The shipped project (its journeys take a moment to validate), and another folder."""
    root = tmp_path / "shop"
    for folder in ("journeys", "templates"):
        shutil.copytree(ROOT / folder, root / folder)
    (root / "other").mkdir()
    (root / "other" / "other_welcome.yaml").write_text(OTHER)
    (root / "templates" / "hello").mkdir()
    (root / "templates" / "hello" / "email.subject").write_text("Hello")
    (root / "templates" / "hello" / "email.text").write_text("Hello {{ contact.id }}")
    return root


@pytest.fixture
def stacks() -> Iterator[list[DevStack]]:
    started: list[DevStack] = []
    yield started
    for stack in started:
        stack.close()


def deployed(data_dir: Path) -> dict[str, list[tuple[int, bool]]]:
    """journey -> [(version, active)] in the data dir's store ({} before there is one)."""
    if not (data_dir / "journeys.db").exists():
        return {}
    engine = make_engine(sqlite_url(data_dir))
    try:
        with session_scope(engine) as session:
            rows = session.exec(sql_select(JourneyVersion).order_by(JourneyVersion.id)).all()
            found: dict[str, list[tuple[int, bool]]] = {}
            for row in rows:
                found.setdefault(row.journey_id, []).append((row.version, row.active))
            return found
    finally:
        engine.dispose()


def versions_stored(data_dir: Path) -> int:
    if not (data_dir / "journeys.db").exists():
        return 0
    engine = make_engine(sqlite_url(data_dir))
    try:
        with session_scope(engine) as session:
            return session.exec(sql_select(func.count()).select_from(JourneyVersion)).one()
    finally:
        engine.dispose()


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A port something listens on, for as long as the block lasts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# --- a start that is refused changes nothing -----------------------------------------------


@pytest.mark.parametrize("taken", ["--port", "--temporal-port", "--temporal-ui-port"])
def test_a_start_refused_for_a_busy_port_deploys_nothing(shop: Path, taken: str) -> None:
    """The review: `journeys dev --journeys examples/storefront/journeys` said port 7233 was
    in use, exited 1 - and had retired the running instance's seven journeys."""
    data_dir = shop / ".journeys"
    first = run_journeys("deploy", "--data-dir", str(data_dir), cwd=shop)
    assert first.returncode == 0, first.stderr
    before = deployed(data_dir)
    assert len(before) == 11 and all(v == [(1, True)] for v in before.values()), before
    ports = dict(
        zip(("--port", "--temporal-port", "--temporal-ui-port"), free_ports(3), strict=True)
    )
    with busy_port() as port:
        ports[taken] = port
        result = run_journeys(
            "dev",
            "--journeys",
            "other",
            "--data-dir",
            str(data_dir),
            *(str(x) for option, value in ports.items() for x in (option, value)),
            cwd=shop,
            timeout=60,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert deployed(data_dir) == before  # nothing retired, `other_welcome` not deployed
    assert not (data_dir / "temporal.db").exists() and not (data_dir / "write_key").exists()
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: port {port} "), line
    assert f"{taken} or JOURNEYS_" in line, line
    assert result.stdout == ""
    assert not any(port_open(p) for p in ports.values() if p != port)


def test_dev_on_a_folder_without_journeys_retires_nothing(shop: Path) -> None:
    """The review's `journeys deploy --journeys /tmp/emptyj`, as `journeys dev`."""
    data_dir = shop / ".journeys"
    assert run_journeys("deploy", "--data-dir", str(data_dir), cwd=shop).returncode == 0
    before = deployed(data_dir)
    (shop / "empty").mkdir()
    api, grpc, ui = free_ports(3)
    result = run_journeys(
        *("dev", "--journeys", "empty", "--data-dir", str(data_dir), "--port", str(api)),
        *("--temporal-port", str(grpc), "--temporal-ui-port", str(ui)),
        cwd=shop,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert deployed(data_dir) == before
    assert result.stderr.strip().startswith(
        "error: empty has no journeys: deploying it would retire every active journey "
        "(abandoned_cart, back_in_stock, big_spenders, birthday, browse_abandonment, 6 more); "
        "nothing was deployed."
    ), result.stderr
    assert "--retire-all" in result.stderr
    assert not (data_dir / "temporal.db").exists()


def test_a_second_dev_on_the_same_data_dir_exits_at_once(
    shop: Path, stacks: list[DevStack]
) -> None:
    """Two stacks on one .journeys/ (one temporal.db, one journeys.db) are refused; the
    first keeps serving its folder. A killed first one leaves no lock behind."""
    first = DevStack(shop)
    stacks.append(first)
    first.start()
    assert first.process is not None
    before = deployed(first.data_dir)
    assert "other_welcome" not in before

    same_ports = DevStack(shop, extra_args=("--journeys", "other"))  # the review's command
    same_ports.api_port, same_ports.temporal_port, same_ports.ui_port = (
        first.api_port,
        first.temporal_port,
        first.ui_port,
    )
    other_ports = DevStack(shop, extra_args=("--journeys", "other"))  # the error's advice
    for second in (same_ports, other_ports):
        stacks.append(second)
        started = time.monotonic()
        second.spawn()
        code = second.wait_exit(timeout=30, ports=second is not same_ports)
        took = time.monotonic() - started
        assert code == 1, second.report()
        [line] = [x for x in second.output().splitlines() if x.strip()]
        assert line == (
            f"error: the data directory {first.data_dir} is in use by another `journeys dev` "
            f"(pid {first.process.pid}): stop that one first, or give this one a data "
            "directory of its own with --data-dir DIR (or JOURNEYS_DATA_DIR)"
        ), second.report()
        assert took < 15, took
        assert deployed(first.data_dir) == before
    with httpx.Client(base_url=first.api_url, trust_env=False) as client:
        assert client.get("/health", timeout=10).status_code == 200

    first.kill()  # SIGKILL: the lock goes with the process
    other_ports.start()
    assert "journey: other_welcome v1 (other/other_welcome.yaml)" in other_ports.output()
    other_ports.stop()


# --- Ctrl-C while it starts ----------------------------------------------------------------


def wait_until(what: str, probe: Callable[[], bool], stack: DevStack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert stack.process is not None and stack.process.poll() is None, (
            f"`journeys dev` exited before {what}\n{stack.report()}"
        )
        assert time.monotonic() < deadline, f"never {what}\n{stack.report()}"
        time.sleep(0.01)


def temporal_running(stack: DevStack) -> bool:
    return any("start-dev" in command for command in stack.commands())


def stopped_quietly(stack: DevStack, sig: int = signal.SIGINT, group: bool = True) -> float:
    """Signal it (the whole group: Ctrl-C in a terminal); it must exit 0 at once, saying
    only that it shuts down, with nothing left running. Returns how long it took."""
    assert stack.process is not None
    started = time.monotonic()
    if group:
        os.killpg(stack.process.pid, sig)
    else:
        stack.process.send_signal(sig)
    code = stack.wait_exit(timeout=30)
    took = time.monotonic() - started
    assert code == 0, stack.report()
    assert stack.output() == "shutting down...\n", stack.report()
    assert took < 10, f"{took:.1f} s\n{stack.report()}"
    return took


def test_ctrl_c_while_the_journeys_are_validated(shop: Path, stacks: list[DevStack]) -> None:
    stack = DevStack(shop)
    stacks.append(stack)
    stack.spawn()
    # The store is open and the Temporal server not started: validating the journeys.
    wait_until(
        "validating",
        lambda: (stack.data_dir / "journeys.db").exists() and not temporal_running(stack),
        stack,
    )
    stopped_quietly(stack)
    assert versions_stored(stack.data_dir) == 0
    assert not (stack.data_dir / "temporal.db").exists()


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "sigterm"],
)
def test_stopped_while_the_temporal_server_starts(
    shop: Path, stacks: list[DevStack], sig: int, group: bool
) -> None:
    stack = DevStack(shop)
    stacks.append(stack)
    stack.spawn()
    wait_until(
        "starting the Temporal server",
        lambda: temporal_running(stack) and not port_open(stack.temporal_port),
        stack,
    )
    stopped_quietly(stack, sig, group)  # and the Temporal server is stopped too
    assert versions_stored(stack.data_dir) == 0  # deployed only once it is up


def test_ctrl_c_while_connecting_to_temporal(shop: Path, stacks: list[DevStack]) -> None:
    """TEMPORAL_ADDRESS names a server that takes the connection and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        stack = DevStack(shop, env={"TEMPORAL_ADDRESS": address})
        stacks.append(stack)
        stack.spawn()
        ready, _, _ = select.select([silent], [], [], 60)
        assert ready, f"never connected\n{stack.report()}"
        connection, _ = silent.accept()
        with connection:
            time.sleep(0.5)  # in the middle of the handshake
            stopped_quietly(stack)
    assert versions_stored(stack.data_dir) == 0


def loaded(stack: DevStack, library: str) -> bool:
    """The process has mapped this shared library: its import has begun."""
    assert stack.process is not None
    try:
        return library in Path(f"/proc/{stack.process.pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize(
    "library",
    ["_pydantic_core", "temporal_sdk_bridge"],
    ids=["loading-the-command", "loading-the-dev-stack"],
)
def test_ctrl_c_while_it_loads(shop: Path, stacks: list[DevStack], library: str) -> None:
    """While Python imports the command (pydantic, for its settings) or what `journeys dev`
    runs (the Temporal SDK): no KeyboardInterrupt traceback, no "Aborted!". (Before our
    first line runs - the interpreter starting - nothing of ours can answer a signal.)"""
    stack = DevStack(shop)
    stacks.append(stack)
    stack.spawn()
    wait_until(f"loading {library}", lambda: loaded(stack, library), stack)
    assert stack.process is not None
    os.killpg(stack.process.pid, signal.SIGINT)
    code = stack.wait_exit(timeout=30)
    # 130 (the shell's code for Ctrl-C) while the command itself is still loading; once
    # `journeys dev` runs, a stop is a clean exit.
    assert (code, stack.output()) in ((130, ""), (0, "shutting down...\n")), stack.report()
    assert versions_stored(stack.data_dir) == 0
