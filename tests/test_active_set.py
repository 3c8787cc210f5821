"""Deploying a folder makes exactly its journeys the active set.

A journey whose file is gone is retired: no new runs start, while its runs in flight
keep hearing the events they wait for and finish on their version. Its file back,
it is reactivated (a new version only if the spec changed). `journeys worker` never
changes the active set: its checkout may be older than what is deployed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness import Bench, end_open_runs, tiny_templates, write_journey
from sqlalchemy import Engine
from sqlmodel import select
from temporalio.service import RPCError

from orchestrator.cli import main
from orchestrator.deployment import deploy
from orchestrator.processes.launch import run_worker
from orchestrator.settings import Settings
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url
from orchestrator.store.tables import JourneyRun, JourneyVersion, utcnow
from orchestrator.store.versions import active_versions, deploy_journey

MESSAGES = ("promo", "other")

PROMO = """
# A promo a day after sign-up, unless they buy first.
id: promo
name: Promo
trigger: { event: Signed Up }
exit_on: [Order Completed]
steps:
  - wait: 1d
  - send: { id: offer, channel: email, template: promo }
"""
OTHER = """
# Something else entirely.
id: other
name: Other
trigger: { event: Trial Started }
steps:
  - send: { id: hello, channel: email, template: other }
"""


def folder(root: Path, **journeys: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for path in root.glob("*.yaml"):
        path.unlink()
    for name, text in journeys.items():
        write_journey(root, name, text)
    return root


def states(engine: Engine) -> dict[str, list[tuple[int, bool, bool]]]:
    """journey -> [(version, active, retired_at set)], by version."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(JourneyVersion).order_by(JourneyVersion.journey_id, JourneyVersion.version)
        ).all()
        found: dict[str, list[tuple[int, bool, bool]]] = {}
        for row in rows:
            found.setdefault(row.journey_id, []).append(
                (row.version, row.active, row.retired_at is not None)
            )
        return found


def active(engine: Engine) -> list[tuple[str, int]]:
    with session_scope(engine) as session:
        return [(v.journey_id, v.version) for v in active_versions(session)]


# --- deploying folders (store: SQLite and PostgreSQL) --------------------------------


def test_deploying_a_folder_retires_the_journeys_it_lacks_and_reactivates_them(
    engine: Engine, tmp_path: Path
) -> None:
    templates = tiny_templates(tmp_path / "templates", MESSAGES)
    shop = folder(tmp_path / "shop", promo=PROMO, other=OTHER)
    demo = folder(tmp_path / "demo", other=OTHER)

    first = deploy(engine, shop, templates)
    assert [(v.journey_id, v.version, v.status) for v in first] == [
        ("other", 1, "active"),
        ("promo", 1, "active"),
    ]

    switched = deploy(engine, demo, templates)
    assert [(v.journey_id, v.version, v.status) for v in switched] == [
        ("other", 1, "active"),
        ("promo", 1, "retired"),
    ]
    assert switched[1].path == str(shop / "promo.yaml")
    assert active(engine) == [("other", 1)]
    assert states(engine)["promo"] == [(1, False, True)]

    # Back on the shop: the same spec is the same version, active again.
    back = deploy(engine, shop, templates)
    assert [(v.journey_id, v.version, v.status) for v in back] == [
        ("other", 1, "active"),
        ("promo", 1, "active"),
    ]
    assert states(engine)["promo"] == [(1, True, False)]

    # Retired again, then back with an edit: a new version, and nothing stays retired.
    deploy(engine, demo, templates)
    folder(shop, promo=PROMO.replace("wait: 1d", "wait: 2d"), other=OTHER)
    assert [(v.journey_id, v.version) for v in deploy(engine, shop, templates)] == [
        ("other", 1),
        ("promo", 2),
    ]
    assert states(engine)["promo"] == [(1, False, False), (2, True, False)]


def test_a_worker_deploy_never_changes_the_active_set(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its checkout may be older or newer than what is deployed: it adds, and warns."""
    templates = tiny_templates(tmp_path / "templates", MESSAGES)
    shop = folder(tmp_path / "shop", promo=PROMO)
    newer = folder(tmp_path / "newer", other=OTHER)
    deploy(engine, shop, templates)

    caplog.set_level(logging.WARNING)
    added = deploy(engine, newer, templates, retire_missing=False)
    assert [(v.journey_id, v.status) for v in added] == [("other", "active")]
    assert active(engine) == [("other", 1), ("promo", 1)]  # promo is not retired
    assert [r.getMessage() for r in caplog.records] == [
        f"journey promo stays active although {newer} has no file for it "
        f"(deployed from {shop / 'promo.yaml'}): `journeys deploy` retires it"
    ]

    deploy(engine, newer, templates)  # `journeys deploy`: promo is retired
    caplog.clear()
    assert deploy(engine, shop, templates, retire_missing=False) == []
    assert active(engine) == [("other", 1)]  # an older checkout does not bring it back
    assert [r.getMessage() for r in caplog.records] == [
        f"journey promo is retired and stays retired, although {shop / 'promo.yaml'} "
        "is back: `journeys deploy` reactivates it",
        f"journey other stays active although {shop} has no file for it "
        f"(deployed from {newer / 'other.yaml'}): `journeys deploy` retires it",
    ]


async def test_journeys_worker_deploys_without_retiring(
    ts_env: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`journeys worker` starting on a folder that lacks an active journey."""
    templates = tiny_templates(tmp_path / "templates", MESSAGES)
    shop = folder(tmp_path / "shop", promo=PROMO)
    newer = folder(tmp_path / "newer", other=OTHER)
    url = sqlite_url(tmp_path)
    engine = make_engine(url)
    try:
        migrate(engine)
        deploy(engine, shop, templates)
        stop = asyncio.Event()
        stop.set()  # start, deploy, connect, then stop at once
        settings = Settings(
            journeys_dir=newer,
            templates_dir=templates,
            database_url=url,
            temporal_address=ts_env.client.service_client.config.target_host,
            task_queue=f"tq-{uuid.uuid4().hex[:8]}",
            secret_key="test-secret",
            router=False,
        )
        caplog.set_level(logging.WARNING, logger="orchestrator.deployment")
        await run_worker(settings, stop)
        assert active(engine) == [("other", 1), ("promo", 1)]
        deployment = [r for r in caplog.records if r.name.startswith("orchestrator.deployment")]
        assert [r.getMessage() for r in deployment] == [
            f"journey promo stays active although {newer} has no file for it "
            f"(deployed from {shop / 'promo.yaml'}): `journeys deploy` retires it"
        ]
    finally:
        engine.dispose()


# --- which versions the router serves ------------------------------------------------


def test_live_versions_are_what_may_still_have_runs(engine: Engine) -> None:
    from orchestrator.store.versions import RETIRED_GRACE, live_versions, retire_others

    with session_scope(engine) as session:
        for journey_id, spec_hash in [
            ("kept", "k1"),
            ("kept", "k2"),
            ("gone", "g1"),
            ("old", "o1"),
            ("old_running", "r1"),
        ]:
            deploy_journey(session, journey_id, {"id": journey_id}, spec_hash, None)
    long_ago = utcnow() - RETIRED_GRACE - timedelta(hours=1)
    with session_scope(engine) as session:
        retire_others(session, {"kept", "gone"}, long_ago)
        retire_others(session, {"kept"})
        session.add(
            JourneyRun(
                workflow_id="journey:old_running:ann",
                entry_seq=1,
                journey_id="old_running",
                version=1,
                contact_id="ann",
            )
        )
        session.add(
            JourneyRun(
                workflow_id="journey:old:bob",
                entry_seq=1,
                journey_id="old",
                version=1,
                contact_id="bob",
                status="completed",
            )
        )
    with session_scope(engine) as session:
        live = [(v.journey_id, v.version, v.starts) for v in live_versions(session)]
    assert live == [
        ("gone", 1, False),  # retired just now: its runs may not have recorded their entry yet
        ("kept", 1, False),  # an older version: its runs still hear their events
        ("kept", 2, True),
        ("old_running", 1, False),  # retired long ago, with a run in flight
    ]  # "old": retired long ago, its runs are over


async def test_a_retired_journeys_runs_finish_but_no_new_ones_start(
    ts_env: Any, engine: Engine, tmp_path: Path
) -> None:
    """The issue's scenario: deploy folder A, then folder B."""
    templates = tiny_templates(tmp_path / "templates", MESSAGES)
    shop = folder(tmp_path / "shop", promo=PROMO)
    demo = folder(tmp_path / "demo", other=OTHER)
    bench = Bench(ts_env, engine, shop, templates)
    deploy(engine, shop, templates)
    try:
        async with bench.worker():
            await bench.identify("ann", email="ann@example.com")
            await bench.track("ann", "Signed Up")
            await ts_env.sleep(timedelta(hours=1))  # ann waits for her day

            deploy(engine, demo, templates)  # promo's file is gone: retired
            await bench.identify("bob", email="bob@example.com")
            await bench.track("bob", "Trial Started")
            await bench.track("bob", "Signed Up")
            await bench.track("ann", "Order Completed")  # still heard by her run in flight
            assert await bench.result("promo", "ann") == "exited"
            assert await bench.result("other", "bob") == "completed"

        with pytest.raises(RPCError):  # no run was started for bob
            await bench.handle("promo", "bob").describe()
    finally:
        await end_open_runs(bench)
    runs = {(r.journey_id, r.contact_id): r for r in bench.runs()}
    assert sorted(runs) == [("other", "bob"), ("promo", "ann")]
    assert runs["promo", "ann"].exit_reason == "event: Order Completed"
    assert bench.messages("ann") == []


async def test_runs_of_an_older_version_still_hear_the_events_it_listens_for(
    ts_env: Any, sqlite_engine: Engine, tmp_path: Path
) -> None:
    templates = tiny_templates(tmp_path / "templates", MESSAGES)
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    write_journey(bench.journeys_dir, "promo", PROMO)
    bench.deploy()
    async with bench.worker():
        await bench.identify("cleo", email="cleo@example.com")
        await bench.track("cleo", "Signed Up")
        await ts_env.sleep(timedelta(hours=1))
        # v2 no longer exits on an order; cleo's run is on v1, which does.
        write_journey(bench.journeys_dir, "promo", PROMO.replace("exit_on: [Order Completed]", ""))
        assert [v.version for v in bench.deploy()] == [2]
        await bench.track("cleo", "Order Completed")
        assert await bench.result("promo", "cleo") == "exited"
    assert bench.messages("cleo") == []


# --- the commands ---------------------------------------------------------------------


def test_journeys_deploy_and_list(workdir: Path) -> None:
    tiny_templates(Path("templates"), MESSAGES)
    folder(Path("journeys"), promo=PROMO, other=OTHER)
    env = {"DATABASE_URL": f"sqlite:///{workdir}/journeys.db"}

    def journeys(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert journeys("deploy").splitlines() == [
        "journey: other v1 (journeys/other.yaml)",
        "journey: promo v1 (journeys/promo.yaml)",
    ]
    Path("journeys/promo.yaml").unlink()
    assert journeys("deploy").splitlines() == [
        "journey: other v1 (journeys/other.yaml)",
        "journey: promo v1 retired: not in journeys",
    ]
    engine = make_engine(env["DATABASE_URL"])
    with session_scope(engine) as session:
        for contact, status, version in [("ann", "active", 1), ("bob", "completed", 1)]:
            session.add(
                JourneyRun(
                    workflow_id=f"journey:promo:{contact}",
                    entry_seq=1,
                    journey_id="promo",
                    version=version,
                    contact_id=contact,
                    status=status,
                )
            )
    engine.dispose()

    listed = [line.split() for line in journeys("list").splitlines()]
    assert listed[0] == [
        "journey", "status", "version", "older", "in", "flight", "runs", "active", "total", "file"
    ]  # fmt: skip
    assert listed[1] == ["other", "active", "v1", "-", "0", "0", "journeys/other.yaml"]
    assert listed[2][:2] == ["promo", "retired"]
    assert listed[2][4:] == ["v1", "-", "1", "2", "journeys/promo.yaml"]


def test_journeys_deploy_says_which_journeys_came_back(workdir: Path) -> None:
    tiny_templates(Path("templates"), MESSAGES)
    folder(Path("journeys"), promo=PROMO, other=OTHER)
    env = {"DATABASE_URL": f"sqlite:///{workdir}/journeys.db"}

    def journeys(*args: str) -> list[str]:
        result = CliRunner().invoke(main, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()

    journeys("deploy")
    folder(Path("journeys"), other=OTHER)
    assert journeys("deploy")[-1] == "journey: promo v1 retired: not in journeys"
    folder(Path("journeys"), promo=PROMO, other=OTHER)
    assert journeys("deploy") == [
        "journey: other v1 (journeys/other.yaml)",
        "journey: promo v1 reactivated (journeys/promo.yaml)",
    ]
    assert journeys("deploy") == [  # active already: nothing to say about it
        "journey: other v1 (journeys/other.yaml)",
        "journey: promo v1 (journeys/promo.yaml)",
    ]


def test_deploying_a_folder_without_journeys_retires_nothing_unless_asked(
    workdir: Path,
) -> None:
    """The review's `journeys deploy --journeys /tmp/emptyj` retired all seven journeys."""
    tiny_templates(Path("templates"), MESSAGES)
    folder(Path("journeys"), promo=PROMO, other=OTHER)
    Path("empty").mkdir()
    env = {"DATABASE_URL": f"sqlite:///{workdir}/journeys.db"}
    assert CliRunner().invoke(main, ["deploy"], env=env).exit_code == 0
    engine = make_engine(env["DATABASE_URL"])

    result = CliRunner().invoke(main, ["deploy", "--journeys", "empty"], env=env)

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: empty has no journeys: deploying it would retire every active journey "
        "(other, promo); nothing was deployed. Check the folder (--journeys DIR), or pass "
        "--retire-all if retiring them all is what you mean"
    )
    assert active(engine) == [("other", 1), ("promo", 1)]

    result = CliRunner().invoke(main, ["deploy", "--journeys", "empty", "--retire-all"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "journey: other v1 retired: not in empty",
        "journey: promo v1 retired: not in empty",
    ]
    assert active(engine) == []
    # Nothing active: an empty folder has nothing to retire, and says so.
    result = CliRunner().invoke(main, ["deploy", "--journeys", "empty"], env=env)
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        "no journeys in empty: nothing deployed, nothing retired",
    )
    engine.dispose()


def test_journeys_deploy_names_the_folder_it_could_not_find(workdir: Path) -> None:
    """`--journeys journey` used to say "no journeys folder at journey: pass --journeys"."""
    env = {"DATABASE_URL": f"sqlite:///{workdir}/journeys.db"}
    Path("journeys").rmdir()
    Path("notes.yaml").write_text("id: x\n")

    def refused(*args: str, **more: str) -> str:
        result = CliRunner().invoke(main, list(args), env={**env, **more})
        assert result.exit_code == 1, result.output
        return result.stderr.strip()

    assert refused("deploy", "--journeys", "journey") == (
        "error: no journeys folder at --journeys journey: no such folder; "
        "pass the folder that holds the journey files (*.yaml)"
    )
    assert refused("deploy", "--journeys", "notes.yaml") == (
        "error: no journeys folder at --journeys notes.yaml: is a file, not a folder; "
        "pass the folder that holds the journey files (*.yaml)"
    )
    assert refused("deploy") == (
        "error: no journeys folder at journeys (the default): no such folder; "
        "run from a directory that holds journeys/ and templates/, or pass --journeys DIR"
    )
    assert refused("deploy", JOURNEYS_JOURNEYS_DIR="shop/journeys") == (
        "error: no journeys folder at JOURNEYS_JOURNEYS_DIR=shop/journeys: no such folder; "
        "set it to the folder that holds the journey files, or pass --journeys DIR"
    )


def test_journeys_list_with_nothing_deployed(workdir: Path) -> None:
    result = CliRunner().invoke(
        main, ["list"], env={"DATABASE_URL": f"sqlite:///{workdir}/journeys.db"}
    )
    assert result.exit_code == 0, result.output
    assert "no journeys deployed" in result.stdout


def test_journeys_list_shows_older_versions_with_runs_in_flight(engine: Engine) -> None:
    from orchestrator.store.versions import journey_summaries

    with session_scope(engine) as session:
        deploy_journey(session, "promo", {"id": "promo"}, "h1", "journeys/promo.yaml")
    with session_scope(engine) as session:
        deploy_journey(session, "promo", {"id": "promo", "v": 2}, "h2", "journeys/promo.yaml")
        for n, (version, status) in enumerate(
            [(1, "active"), (1, "active"), (1, "completed"), (2, "active"), (2, "exited")]
        ):
            session.add(
                JourneyRun(
                    workflow_id=f"journey:promo:c{n}",
                    entry_seq=1,
                    journey_id="promo",
                    version=version,
                    contact_id=f"c{n}",
                    status=status,
                )
            )
    with session_scope(engine) as session:
        [summary] = journey_summaries(session)
    assert (summary.status, summary.version, summary.older_in_flight) == ("active", 2, {1: 2})
    assert (summary.runs_active, summary.runs_total) == (3, 5)
