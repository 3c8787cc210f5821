"""A package that is an extra of ours and is not installed: one line naming the extra.

Each command runs as a real process in which the package cannot be imported (an import
hook refuses it, as a venv without the extra would), so what is checked is what a user
sees: exit status 1, one `error: …` line on stderr ending in the pip command, and no
traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from devstack import free_ports, subprocess_env

ROOT = Path(__file__).resolve().parent.parent

# Runs `journeys ARGS…` with the packages in JOURNEYS_TEST_MISSING (and their submodules)
# unimportable.
WITHOUT_PACKAGES = """
import os, sys

class Missing:
    blocked = set(os.environ["JOURNEYS_TEST_MISSING"].split(","))

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.blocked):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from orchestrator.cli import main
main(args=sys.argv[1:], prog_name="journeys")
"""

POSTGRES = "pip install 'journeys-orchestrator[postgres]'"
# Not a server: the driver is needed before any connection is tried.
POSTGRES_URL = "postgresql://journeys@127.0.0.1:1/journeys"


def journeys_without(
    missing: str, *args: str, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PACKAGES, *args],
        cwd=cwd,
        env=subprocess_env(JOURNEYS_TEST_MISSING=missing, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def _ports() -> list[str]:
    api, temporal, ui = free_ports(3)
    return ["--port", str(api), "--temporal-port", str(temporal), "--temporal-ui-port", str(ui)]


# Every command that opens the store; Temporal settings where the command asks for them
# first (the store is opened before Temporal is dialled).
TEMPORAL = {"TEMPORAL_ADDRESS": "127.0.0.1:1", "JOURNEYS_SECRET_KEY": "k" * 32}
STORE_COMMANDS = {
    "dev": (lambda: ["dev", "--journeys", str(ROOT / "journeys"), *_ports()], {}),
    "api": (lambda: ["api"], TEMPORAL),
    "worker": (lambda: ["worker"], {**TEMPORAL, "JOURNEYS_JOURNEYS_DIR": str(ROOT / "journeys")}),
    "router": (lambda: ["router"], TEMPORAL),
    "runs": (lambda: ["runs"], {}),
    "keys create": (lambda: ["keys", "create", "shop"], {}),
    "keys list": (lambda: ["keys", "list"], {}),
    "keys revoke": (lambda: ["keys", "revoke", "shop"], {}),
    "contacts export": (lambda: ["contacts", "export", "ann"], {}),
    "contacts erase": (lambda: ["contacts", "erase", "ann", "--yes"], {}),
    "segments list": (lambda: ["segments", "list"], {}),
    "segments preview": (
        lambda: ["segments", "preview", "big_spenders", "--journeys", str(ROOT / "journeys")],
        {},
    ),
    "segments refresh": (lambda: ["segments", "refresh", "big_spenders"], {}),
    "preview": (
        lambda: [
            "preview",
            "cart_reminder",
            "--contact",
            "ann",
            "--templates",
            str(ROOT / "templates"),
        ],
        {},
    ),
}


@pytest.mark.parametrize("command", list(STORE_COMMANDS))
def test_postgres_url_without_its_driver_is_one_line_naming_the_extra(
    command: str, tmp_path: Path
) -> None:
    args, env = STORE_COMMANDS[command]
    result = journeys_without(
        "psycopg,psycopg_binary,psycopg_c", *args(), cwd=tmp_path, DATABASE_URL=POSTGRES_URL, **env
    )
    line = one_error_line(result)
    assert line == (
        "error: DATABASE_URL is a PostgreSQL database, but its driver psycopg is not installed "
        f"(No module named 'psycopg'): {POSTGRES}"
    )


def test_the_same_command_with_the_driver_gets_past_it(tmp_path: Path) -> None:
    """Control: with psycopg importable, the same URL fails later, at the connection."""
    result = journeys_without("nothing", "runs", cwd=tmp_path, DATABASE_URL=POSTGRES_URL)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "error: cannot use the database" in result.stderr, result.stderr
    assert "not installed" not in result.stderr


@pytest.mark.slow
def test_channel_adapter_without_its_sdk_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    """`journeys dev` with SendGrid as the email adapter and no `sendgrid` package.

    The adapters are built once Temporal is up; the line is the adapter's own, with no
    advice about Temporal tacked on.
    """
    result = journeys_without(
        "sendgrid,python_http_client",
        "dev",
        "--journeys",
        str(ROOT / "journeys"),
        "--templates",
        str(ROOT / "templates"),
        *_ports(),
        cwd=tmp_path,
        JOURNEYS_EMAIL_CHANNEL="sendgrid",
        SENDGRID_API_KEY="SG.test",
        JOURNEYS_EMAIL_FROM="shop@example.com",
    )
    line = one_error_line(result)
    assert line == (
        "error: the SendGrid adapter needs the `sendgrid` package: "
        "pip install 'journeys-orchestrator[sendgrid]'"
    )


@pytest.mark.parametrize("command", ["api", "worker", "router"])
def test_tracing_asked_for_without_opentelemetry_is_one_line_naming_the_extra(
    command: str, tmp_path: Path
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set and the `otel` extra missing: no silent untraced run.
    (The OpenTelemetry API is FastAPI's own dependency; the extra brings the SDK.)"""
    args, env = STORE_COMMANDS[command]
    if command == "api":  # it binds its port and checks its keys first
        env = {**env, "JOURNEYS_WRITE_KEYS": '["k"]', "JOURNEYS_API_PORT": str(free_ports(1)[0])}
    result = journeys_without(
        "opentelemetry.sdk,opentelemetry.exporter",
        *args(),
        cwd=tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1",
        **env,
    )
    line = one_error_line(result)
    assert line == (
        "error: OTEL_EXPORTER_OTLP_ENDPOINT asks for traces, but OpenTelemetry is not "
        "installed (No module named 'opentelemetry.sdk'): "
        "pip install 'journeys-orchestrator[otel]'"
    )
