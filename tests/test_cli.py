"""The `journeys` command's answers to good and bad input (in-process, click's runner)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_validate_accepts_the_shipped_journeys() -> None:
    result = CliRunner().invoke(
        main,
        ["validate", "--strict", str(ROOT / "journeys"), "--templates", str(ROOT / "templates")],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "11 journey(s) and 4 segment(s) valid"


def test_validate_prints_located_problems_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "journeys" / "abandoned_cart.yaml").read_text().replace("wait: 24h", "wait: 24x")
    )
    result = CliRunner().invoke(
        main, ["validate", str(bad), "--templates", str(ROOT / "templates")]
    )
    assert result.exit_code == 1
    line = (
        (ROOT / "journeys" / "abandoned_cart.yaml").read_text().splitlines().index("  - wait: 24h")
    )
    assert f"{bad}:{line + 1}:11: invalid duration '24x'" in result.output


def test_validate_names_a_missing_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output


def test_validate_refuses_a_folder_with_no_journey_naming_it(tmp_path: Path) -> None:
    """`journeys validate docs` said "0 journey(s) valid" and passed: a wrong path looked
    like a clean project (and deploying an empty folder retires every journey)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "journeys.md").write_text("# The journey language\n")
    empty = tmp_path / "emptyj"
    empty.mkdir()
    for folder in (docs, empty):
        result = CliRunner().invoke(main, ["validate", str(folder)])
        assert result.exit_code == 1, result.output
        assert result.stdout.splitlines() == [
            f"{folder}/: no journey in this folder: a journey is a .yaml or .yml file with "
            "id, name, trigger and steps (and a journeys folder may hold segments.yaml and "
            "events.yaml)"
        ]
        assert "1 problem(s) found" in result.stderr
    # Hand-written journeys may leave the YAML folder empty (examples/python_journey).
    python = CliRunner().invoke(
        main, ["validate", str(empty)], env={"JOURNEYS_PYTHON_JOURNEYS": '["m:VipWelcome"]'}
    )
    assert python.exit_code == 0, python.output


def test_runs_with_an_unsupported_database_url_is_one_clear_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", "mysql://db/x")
    result = CliRunner().invoke(main, ["runs"])
    assert result.exit_code == 1
    assert "error: DATABASE_URL scheme 'mysql' is not supported" in result.output
    assert "Traceback" not in result.output


def test_runs_lists_nothing_yet_in_a_fresh_database(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/j.db")
    result = CliRunner().invoke(main, ["runs"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no journey runs"


@pytest.mark.parametrize(
    ("command", "environment"),
    [
        (["worker"], {"TEMPORAL_ADDRESS": "127.0.0.1:1"}),
        (["api"], {"TEMPORAL_ADDRESS": "127.0.0.1:1", "JOURNEYS_WRITE_KEYS": '["k"]'}),
    ],
)
def test_production_processes_refuse_to_start_without_a_shared_link_key(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], environment: dict[str, str]
) -> None:
    monkeypatch.delenv("JOURNEYS_SECRET_KEY", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert "JOURNEYS_SECRET_KEY is not set" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("command", "environment", "says"),
    [
        (
            ["worker"],
            {"TEMPORAL_ADDRESS": "127.0.0.1:1", "JOURNEYS_SECRET_KEY": "REPLACE_ME"},
            "JOURNEYS_SECRET_KEY is still the template's placeholder",
        ),
        (
            ["api"],
            {"TEMPORAL_ADDRESS": "127.0.0.1:1", "JOURNEYS_WRITE_KEYS": '["REPLACE_ME"]'},
            "JOURNEYS_WRITE_KEYS holds the template's placeholder (REPLACE_ME)",
        ),
        (
            ["api"],
            {"JOURNEYS_WRITE_KEYS": '["k"]', "JOURNEYS_SECRET_KEY": "s" * 32},
            "TEMPORAL_ADDRESS is not set: the API stops a contact's runs on erasure",
        ),
    ],
)
def test_production_processes_refuse_placeholders_and_a_missing_temporal_address(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    environment: dict[str, str],
    says: str,
) -> None:
    """A Kubernetes Secret applied with its `REPLACE_ME` values, or an API that would quietly
    talk to a Temporal at 127.0.0.1:7233, is refused at start with what to set."""
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert says in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["write_key", "secret_key"])
def test_the_dev_keys_are_never_readable_by_others_even_after_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """`journeys dev` writes its write key and link-signing key into the data directory.
    Made 0600 only after the write, a key stays world-readable for good if the process
    dies in between (it is reused as it is on the next start): made private from its
    first byte, it never is."""
    from orchestrator.processes.launch import ensure_write_key
    from orchestrator.services.links import dev_secret

    make = {"write_key": ensure_write_key, "secret_key": dev_secret}[name]
    data = tmp_path / ".journeys"

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C (or a kill) right after the key was written

    previous = os.umask(0o022)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(Path, "chmod", killed)
            patched.setattr(os, "chmod", killed)
            with contextlib.suppress(KeyboardInterrupt):
                make(data)
        key = make(data)  # the next start reuses what is there
    finally:
        os.umask(previous)
    assert key and (data / name).read_text().strip() == key
    assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
