"""Pinned templates over time: what a long-running worker, a rollback of a retired
journey and many pinned versions do."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import write_journey
from sqlalchemy import Engine
from sqlmodel import select
from test_pinned_templates import PROMO, templates

from orchestrator.activities.pinned_templates import PinnedTemplates
from orchestrator.deployment.deploy import deploy
from orchestrator.rendering import Renderer
from orchestrator.store.db import session_scope
from orchestrator.store.tables import JourneyRun, JourneyVersion
from orchestrator.store.versions import roll_back

OTHER = """
id: other
name: Other
trigger: { event: Ordered }
steps:
  - send: { id: thanks, channel: email, template: offer }
"""


def _run(engine: Engine, version: int = 1) -> JourneyRun:
    with session_scope(engine) as session:
        run = JourneyRun(
            workflow_id=f"promo-ann-{version}",
            entry_seq=1,
            journey_id="promo",
            version=version,
            contact_id="ann",
        )
        session.add(run)
        session.flush()
        session.expunge(run)
        return run


def test_a_pinned_folder_cleaned_from_tmp_is_written_again(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """A worker runs for weeks; tmp cleaners (systemd-tmpfiles: 10 days) remove files
    under /tmp nobody read lately. A run waking up after a 14-day wait must still find
    its version's files, not fail its send as "no email version"."""
    root = templates(tmp_path / "templates")
    write_journey(tmp_path / "journeys", "promo", PROMO)
    deploy(sqlite_engine, tmp_path / "journeys", root)
    run = _run(sqlite_engine)
    pins = PinnedTemplates(Renderer(root))
    context = {"contact": {"first_name": "Ann"}}
    with session_scope(sqlite_engine) as session:
        first = pins.for_run(session, run)
        assert first.render("offer", "email", context).parts["subject"] == "Old subject"
    # The cleaner deletes old files one by one (and then the folders left empty).
    for path in sorted(first.templates_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with session_scope(sqlite_engine) as session:
        again = pins.for_run(session, run)
        assert again.has_channel("offer", "email")
        assert again.render("offer", "email", context).parts["subject"] == "Old subject"
    shutil.rmtree(again.templates_dir)  # or the whole folder at once
    with session_scope(sqlite_engine) as session:
        assert pins.for_run(session, run).has_channel("offer", "email")


def _active(engine: Engine, journey_id: str) -> list[int]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(JourneyVersion).where(
                JourneyVersion.journey_id == journey_id, JourneyVersion.active
            )
        ).all()
        return [r.version for r in rows]


def test_a_rolled_back_journey_is_not_retired_again_by_the_next_deploy(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """`--rollback` of a retired journey brings it back on V; docs: "deploys from files
    then leave that journey on V" until `--release`. The next `journeys deploy` (CI, for
    another journey) must not retire it silently."""
    root = templates(tmp_path / "templates")
    journeys = tmp_path / "journeys"
    write_journey(journeys, "other", OTHER)
    promo = write_journey(journeys, "promo", PROMO)
    deploy(sqlite_engine, journeys, root)
    promo.unlink()
    retired = deploy(sqlite_engine, journeys, root)
    assert [(v.journey_id, v.status) for v in retired if v.journey_id == "promo"] == [
        ("promo", "retired")
    ]
    with session_scope(sqlite_engine) as session:
        roll_back(session, "promo", 1)
    assert _active(sqlite_engine, "promo") == [1]
    again = deploy(sqlite_engine, journeys, root)
    assert [(v.journey_id, v.version, v.status) for v in again if v.journey_id == "promo"] == [
        ("promo", 1, "held")
    ]
    assert _active(sqlite_engine, "promo") == [1]
    assert "--release promo" in next(v for v in again if v.journey_id == "promo").describe(journeys)
    # Released, the folder decides again: no file, so retired.
    released = deploy(sqlite_engine, journeys, root, release=["promo"])
    assert [(v.journey_id, v.status) for v in released if v.journey_id == "promo"] == [
        ("promo", "retired")
    ]
    assert _active(sqlite_engine, "promo") == []


def test_many_pinned_versions_keep_their_compiled_templates(tmp_path: Path) -> None:
    """Every pinned set is its own Renderer. Their Jinja environments shared one
    process-wide cache of 64 (and the brand file one of 8): a shop with more pinned sets
    x locales in use than that recompiled every template on every send (~20x the CPU
    of a warm render)."""
    from orchestrator.rendering import renderer as module

    root = templates(tmp_path / "templates")
    base = Renderer(root)
    renderers = [base.over(root) for _ in range(80)]
    chain = ("en",)
    context = {"contact": {"first_name": "Ann"}}
    envs = [r._environment(chain) for r in renderers]
    for r in renderers:
        r.render("offer", "email", context)
    assert all(r._environment(chain) is env for r, env in zip(renderers, envs, strict=True))
    brands = [tmp_path / f"pin{i}" for i in range(20)]
    for folder in brands:
        folder.mkdir()
        (folder / "_brand.yaml").write_text("name: Shop\n")
    before = module._brand.cache_info().misses
    for _ in range(2):
        for folder in brands:
            assert base.over(folder).brand() == {"name": "Shop"}
    assert module._brand.cache_info().misses - before == len(brands)


def test_rolling_back_to_a_version_without_pins_says_it_keeps_the_folders_templates(
    workdir: Path,
) -> None:
    """After the upgrade, v1 (deployed before pinning) has no files of its own: rolling
    back to it restores its steps, not the template edit the marketer wants undone."""
    from click.testing import CliRunner
    from harness import ROOT

    from orchestrator.cli.main import main
    from orchestrator.settings import Settings
    from orchestrator.store.db import make_engine

    for folder in ("journeys", "templates"):
        shutil.copytree(ROOT / folder, workdir / folder, dirs_exist_ok=True)
    runner = CliRunner()
    assert runner.invoke(main, ["deploy"]).exit_code == 0
    engine = make_engine(Settings().resolved_database_url)
    try:
        with session_scope(engine) as session:  # as the migration leaves older versions
            for row in session.exec(select(JourneyVersion)).all():
                row.templates = {}
                row.spec_hash = f"pre-{row.spec_hash}"
    finally:
        engine.dispose()
    subject = workdir / "templates" / "cart_reminder" / "email.subject"
    subject.write_text("A broken subject\n")
    assert "journey: abandoned_cart v2 (" in runner.invoke(main, ["deploy"]).output
    rolled = runner.invoke(main, ["deploy", "--rollback", "abandoned_cart", "1"])
    assert rolled.exit_code == 0, rolled.output
    assert "v1 was deployed before templates were pinned" in rolled.output
