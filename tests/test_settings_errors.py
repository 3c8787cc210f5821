"""A bad setting is reported as the variable to fix, its value (never a secret's), what is
wrong and the default: not pydantic's report, which names the Python field and links to
its docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.cli import main
from orchestrator.settings import explain

ROOT = Path(__file__).resolve().parent.parent


def _errors(env: dict[str, str]) -> list[str]:
    """The lines `journeys validate` prints with `env` set; it must fail before reading."""
    result = CliRunner().invoke(main, ["validate", str(ROOT / "journeys")], env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "pydantic" not in result.output  # neither its docs link nor its type names
    return result.stderr.splitlines()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"JOURNEYS_WORKFLOW_CACHE": "-1"},
            "error: JOURNEYS_WORKFLOW_CACHE=-1: must be greater than or equal to 0 (default 1000)",
        ),
        (
            {"JOURNEYS_WORKFLOW_SANDBOX": "strcit"},
            "error: JOURNEYS_WORKFLOW_SANDBOX=strcit: must be 'passthrough', 'strict' or 'off' "
            "(default passthrough)",
        ),
        (
            {"JOURNEYS_GROUP_COMMIT": "maybe"},
            "error: JOURNEYS_GROUP_COMMIT=maybe: must be true or false (default true)",
        ),
        # A standard name has no prefix; it is named as documented whatever its case.
        (
            {"temporal_tls": "sure"},
            "error: TEMPORAL_TLS=sure: must be true or false (default false)",
        ),
        (
            {"JOURNEYS_MARKETING_CAP": "3 a day"},
            "error: JOURNEYS_MARKETING_CAP='3 a day': invalid frequency cap '3 a day': "
            "expected <count>/<duration> like 3/24h, or none (default 3/24h)",
        ),
        (
            {"JOURNEYS_WORKER_QUEUES": '["main", "mail"]'},
            "error: JOURNEYS_WORKER_QUEUES item 2=\"mail\": must be 'main', 'email', 'push' or "
            '\'sms\' (default ["main", "email", "push", "sms"])',
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], line: str) -> None:
    assert _errors(env) == [line]


@pytest.mark.parametrize("value", ["wk_live_s3cret", '["wk_live_s3cret", 7]'])
def test_a_secret_setting_is_named_without_its_value(value: str) -> None:
    """A write key not given as a JSON list (the usual slip) or with a bad item."""
    lines = _errors({"JOURNEYS_WRITE_KEYS": value})
    assert "s3cret" not in "\n".join(lines)
    assert lines == [
        'error: JOURNEYS_WRITE_KEYS=***: must be a JSON list, such as ["a", "b"] (default [])'
        if value.startswith("wk")
        else "error: JOURNEYS_WRITE_KEYS item 2=***: must be a valid string (default [])"
    ]


def test_two_bad_settings_are_two_lines() -> None:
    lines = _errors({"JOURNEYS_WORKFLOW_CACHE": "-1", "JOURNEYS_API_PORT": "http"})
    assert lines == [
        "error: JOURNEYS_API_PORT=http: must be a whole number (default 8000)",
        "error: JOURNEYS_WORKFLOW_CACHE=-1: must be greater than or equal to 0 (default 1000)",
    ]


def test_a_url_is_shown_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of ours that holds a URL can fail today: a model of one that can."""

    class Hooks(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="HOOKS_")
        retries: int = 3

    monkeypatch.setenv("HOOKS_RETRIES", "https://user:hunter2@hooks.example/x")
    with pytest.raises(ValidationError) as raised:
        Hooks()
    assert explain(raised.value, Hooks) == (
        "HOOKS_RETRIES='https://user:***@hooks.example/x': must be a whole number (default 3)"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:hunter2@db/app", "postgresql://u:***@db/app"),
        ("postgresql://db/app?user=u&password=hunter2", "postgresql://db/app?password=***&user=u"),
        ("postgresql://u@db/app?sslpassword=hunter2", "postgresql://u@db/app?sslpassword=***"),
        ("postgresql://u:hun@ter2@db/app", "<unparseable>"),  # an unencoded @: not shown
        ("postgresql://u:p%40ss@db/app", "postgresql://u:***@db/app"),
        ("sqlite:///data/journeys.db", "sqlite:///data/journeys.db"),
    ],
)
def test_database_urls_are_shown_without_any_password(url: str, shown: str) -> None:
    """The worker's start-up line and settings errors print URLs through redact_url:
    libpq also takes the password as a query parameter."""
    from orchestrator.services.redaction import redact_url

    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url)
