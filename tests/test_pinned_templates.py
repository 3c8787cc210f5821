"""Templates are part of a journey's version: runs in flight render what they were
deployed with; a template edit alone is a new version; `--rollback` and `--release`."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from harness import ROOT, Bench, write_journey
from sqlmodel import select

from orchestrator.cli.main import main
from orchestrator.deployment.template_pins import pinned_files
from orchestrator.store.db import session_scope
from orchestrator.store.tables import JourneyVersion, TemplateBlob
from orchestrator.store.versions import RollbackRefused, roll_back

PROMO = """
id: promo
name: Promo
trigger: { event: Signed Up }
steps:
  - wait: 1d
  - send: { id: offer, channel: email, template: offer }
"""


def templates(root: Path) -> Path:
    offer = root / "offer"
    (offer / "ru").mkdir(parents=True)
    (offer / "email.subject").write_text("Old subject")
    (offer / "email.text").write_text('{% include "_partials/sign.text" %}')
    (offer / "sample.yaml").write_text("contact: {first_name: Ann}\n")
    (root / "_partials" / "ru").mkdir(parents=True)
    (root / "_partials" / "sign.text").write_text("The team")
    (root / "_partials" / "ru" / "sign.text").write_text("Команда")
    (root / "_partials" / "unused.text").write_text("Nobody includes me")
    (root / "_brand.yaml").write_text("name: Shop\n")
    return root


def versions(bench: Bench) -> list[tuple[int, bool, bool]]:
    with session_scope(bench.engine) as session:
        rows = session.exec(select(JourneyVersion).order_by(JourneyVersion.version)).all()
        return [(r.version, r.active, r.rolled_back_at is not None) for r in rows]


def test_a_version_pins_its_messages_and_the_shared_files_they_use(tmp_path: Path) -> None:
    root = templates(tmp_path / "templates")
    assert sorted(pinned_files(root, ["offer"])) == [
        "_brand.yaml",
        "_partials/ru/sign.text",  # a Russian contact's footer
        "_partials/sign.text",
        "offer/email.subject",
        "offer/email.text",
    ]  # not sample.yaml (previews only), not a partial no one includes
    (root / "offer" / "email.text").write_text("{% include partial %}")  # a variable
    assert "_partials/unused.text" in pinned_files(root, ["offer"])  # every shared file


async def test_a_run_in_flight_keeps_its_old_subject_after_a_template_edit(  # type: ignore[no-untyped-def]
    ts_env, sqlite_engine, tmp_path: Path
) -> None:
    root = templates(tmp_path / "templates")
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", root)
    write_journey(bench.journeys_dir, "promo", PROMO)
    assert [v.version for v in bench.deploy()] == [1]
    async with bench.worker():
        await bench.identify("early", email="early@example.com")
        await bench.track("early", "Signed Up")
        await ts_env.sleep(timedelta(hours=1))
        # The marketer rewrites the subject and redeploys while early's run waits.
        (root / "offer" / "email.subject").write_text("New subject")
        assert [v.version for v in bench.deploy()] == [2]  # a template edit alone
        (root / "offer" / "sample.yaml").write_text("contact: {first_name: Bob}\n")
        (root / "_partials" / "unused.text").write_text("Still unused")
        assert [v.version for v in bench.deploy()] == [2]  # nothing the message uses
        await bench.identify("late", email="late@example.com")
        await bench.track("late", "Signed Up")
        assert await bench.result("promo", "early") == "completed"
        assert await bench.result("promo", "late") == "completed"
    subjects = {m.contact_id: m.content["subject"] for m in bench.messages()}
    assert subjects == {"early": "Old subject", "late": "New subject"}
    assert {r.contact_id: r.version for r in bench.runs()} == {"early": 1, "late": 2}
    with session_scope(bench.engine) as session:  # one copy of each content
        stored = len(session.exec(select(TemplateBlob)).all())
    assert stored == 6  # brand, 2 footers, old and new subject, the text


async def test_rollback_holds_against_deploys_until_released(  # type: ignore[no-untyped-def]
    ts_env, sqlite_engine, tmp_path: Path
) -> None:
    root = templates(tmp_path / "templates")
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", root)
    write_journey(bench.journeys_dir, "promo", PROMO)
    bench.deploy()
    (root / "offer" / "email.subject").write_text("Broken subject")
    bench.deploy()
    with session_scope(bench.engine) as session:
        assert roll_back(session, "promo", 1).version == 1
    assert versions(bench) == [(1, True, True), (2, False, False)]
    # A worker starting with the checkout (or anyone deploying it) leaves the rollback.
    held = bench.deploy()
    assert [(v.version, v.status) for v in held] == [(1, "held")]
    assert versions(bench) == [(1, True, True), (2, False, False)]
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com")
        await bench.track("ann", "Signed Up")
        assert await bench.result("promo", "ann") == "completed"
    assert [m.content["subject"] for m in bench.messages("ann")] == ["Old subject"]
    # Released: the file's version (the fixed subject is a third one) becomes current.
    (root / "offer" / "email.subject").write_text("Fixed subject")
    from orchestrator.deployment.deploy import deploy

    released = deploy(bench.engine, bench.journeys_dir, root, release=["promo"])
    assert [(v.version, v.status) for v in released] == [(3, "active")]
    assert versions(bench)[-1] == (3, True, False)
    assert not any(held for _, _, held in versions(bench))


def test_rollback_refusals(sqlite_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from orchestrator.deployment.deploy import deploy

    root = templates(tmp_path / "templates")
    write_journey(tmp_path / "journeys", "promo", PROMO)
    deploy(sqlite_engine, tmp_path / "journeys", root)
    with session_scope(sqlite_engine) as session, pytest.raises(RollbackRefused) as caught:
        roll_back(session, "promo", 7)
    assert str(caught.value) == (
        "journey 'promo' has no version 7 (it has v1; see journeys versions promo)"
    )
    with session_scope(sqlite_engine) as session, pytest.raises(RollbackRefused) as caught:
        roll_back(session, "promo", 1)
    assert str(caught.value) == "v1 of promo is already the current version: nothing to roll back"
    with session_scope(sqlite_engine) as session, pytest.raises(RollbackRefused) as caught:
        roll_back(session, "promx", 1)
    assert str(caught.value) == "no journey 'promx' was ever deployed"


def test_deploy_rollback_and_release_from_the_command_line(workdir: Path) -> None:
    for folder in ("journeys", "templates"):
        shutil.copytree(ROOT / folder, workdir / folder, dirs_exist_ok=True)
    runner = CliRunner()
    assert runner.invoke(main, ["deploy"]).exit_code == 0
    subject = workdir / "templates" / "cart_reminder" / "email.subject"
    subject.write_text("Still thinking it over?\n")
    edited = runner.invoke(main, ["deploy"])
    assert "journey: abandoned_cart v2 (" in edited.output, edited.output
    rolled = runner.invoke(main, ["deploy", "--rollback", "abandoned_cart", "v1"])
    assert rolled.exit_code == 0, rolled.output
    assert rolled.output.startswith("journey: abandoned_cart rolled back to v1: new entries")
    again = runner.invoke(main, ["deploy"])
    assert (
        "journey: abandoned_cart stays on v1 (rolled back; journeys deploy --release "
        "abandoned_cart deploys" in again.output
    )
    released = runner.invoke(main, ["deploy", "--release", "abandoned_cart"])
    assert "journey: abandoned_cart v2 (" in released.output
    bad = runner.invoke(main, ["deploy", "--rollback", "abandoned_cart", "two"])
    assert bad.exit_code == 1
    assert "the version is a number, e.g. 2 or v2" in bad.output
