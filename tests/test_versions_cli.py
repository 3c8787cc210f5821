"""`journeys versions JOURNEY`: what a marketer asks before and after an edit — which
version new entries start on, how many runs each version still has, what changed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from click.testing import CliRunner
from harness import tiny_templates, write_journey
from test_versioning import V1

from orchestrator.cli import main
from orchestrator.deployment.deploy import deploy
from orchestrator.rendering import Renderer
from orchestrator.store.db import make_engine, migrate, session_scope, sqlite_url
from orchestrator.store.tables import JourneyRun

V2 = V1.replace("wait: 1d", "wait: 2d")


def runs(engine, version: int, active: int, done: int) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        for i in range(active + done):
            session.add(
                JourneyRun(
                    workflow_id=f"promo:v{version}:{i}",
                    entry_seq=1,
                    journey_id="promo",
                    version=version,
                    contact_id=f"c{version}-{i}",
                    status="active" if i < active else "completed",
                )
            )


def test_versions_lists_each_version_with_its_runs_and_changes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data))
    migrate(engine)
    folder = tmp_path / "journeys"
    renderer = Renderer(tiny_templates(tmp_path / "templates", ("hello",)))
    write_journey(folder, "promo", textwrap.dedent(V1))
    deploy(engine, folder, renderer)
    runs(engine, 1, active=2, done=3)
    write_journey(folder, "promo", textwrap.dedent(V2))
    deploy(engine, folder, renderer)
    runs(engine, 2, active=1, done=0)
    engine.dispose()

    result = CliRunner().invoke(main, ["versions", "promo", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "promo: 2 version(s), v2 is current for new entries"
    assert lines[1].startswith("v2  deployed ") and lines[1].endswith(
        "current  runs in flight 1 of 1"
    )
    assert lines[2].startswith("    - ") and "1d" in lines[2] and "2d" in lines[2]
    assert lines[3].startswith("v1  deployed ") and lines[3].endswith("runs in flight 2 of 5")
    assert lines[4] == "    first version"

    as_json = CliRunner().invoke(main, ["versions", "promo", "--json", "--data-dir", str(data)])
    versions = json.loads(as_json.output)["versions"]
    assert [(v["version"], v["current"], v["runs_active"], v["runs_total"]) for v in versions] == [
        (2, True, 1, 1),
        (1, False, 2, 5),
    ]

    typo = CliRunner().invoke(main, ["versions", "prom", "--data-dir", str(data)])
    assert typo.exit_code == 1
    assert "no journey 'prom' was ever deployed; did you mean 'promo'?" in typo.output


def test_a_template_edit_is_a_version_and_a_rollback_is_shown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data))
    migrate(engine)
    folder = tmp_path / "journeys"
    templates = tiny_templates(tmp_path / "templates", ("hello",))
    write_journey(folder, "promo", textwrap.dedent(V1))
    deploy(engine, folder, Renderer(templates))
    (templates / "hello" / "email.subject").write_text("Hello again, {{ contact.id }}")
    (templates / "hello" / "ru").mkdir()
    (templates / "hello" / "ru" / "email.subject").write_text("Привет")
    (templates / "hello" / "ru" / "email.text").write_text("Текст")
    deploy(engine, folder, Renderer(templates))
    with session_scope(engine) as session:
        from orchestrator.store.versions import roll_back

        roll_back(session, "promo", 1)
    engine.dispose()

    result = CliRunner().invoke(main, ["versions", "promo", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "promo: 2 version(s), v1 is current for new entries (rolled back; journeys deploy "
        "--release promo deploys the file)"
    )
    assert lines[1:5] == [
        lines[1],
        "    - template file hello/email.subject edited (message hello)",
        "    - template file hello/ru/email.subject added (message hello)",
        "    - template file hello/ru/email.text added (message hello)",
    ]
    assert lines[1].startswith("v2  deployed ") and "current" not in lines[1]
    assert lines[5].startswith("v1  deployed ") and "  current, rolled back  " in lines[5]
    as_json = CliRunner().invoke(main, ["versions", "promo", "--json", "--data-dir", str(data)])
    versions = json.loads(as_json.output)["versions"]
    assert [(v["version"], v["current"], v["rolled_back"]) for v in versions] == [
        (2, False, False),
        (1, True, True),
    ]
