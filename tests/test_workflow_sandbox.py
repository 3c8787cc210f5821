"""How journey workflow code runs: `JOURNEYS_WORKFLOW_SANDBOX` (docs/performance.md).

The suite runs "strict" (conftest), which catches a non-deterministic call in new
workflow code at once; production runs "passthrough" by default. These tests run the
production modes end to end, so what ships is what was tested.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from harness import Bench, tiny_templates, write_journey
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from orchestrator.processes.worker import workflow_runner
from orchestrator.settings import Settings

JOURNEY = """
id: sandbox_modes
name: Sandbox modes
trigger: { event: Checkout Started }
goal: { event: Order Completed, within: 7d }
steps:
  - branch:
      - if: "event.properties.total > 100"
        then:
          - send: { id: big, channel: email, template: gold }
    else:
      - send: { id: small, channel: email, template: basic }
  - wait_for: { event: Order Completed, timeout: 1d }
    then:
      - send: { id: thanks, channel: email, template: thanks }
    on_timeout:
      - send: { id: nudge, channel: email, template: nudge }
"""


def test_production_passes_our_workflow_modules_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNEYS_WORKFLOW_SANDBOX", raising=False)
    settings = Settings()
    assert settings.workflow_sandbox == "passthrough"
    runner = workflow_runner(settings)
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert "orchestrator" in runner.restrictions.passthrough_modules
    strict = workflow_runner(Settings(workflow_sandbox="strict"))
    assert isinstance(strict, SandboxedWorkflowRunner)
    assert "orchestrator" not in strict.restrictions.passthrough_modules
    assert isinstance(workflow_runner(Settings(workflow_sandbox="off")), UnsandboxedWorkflowRunner)


def test_an_unknown_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"passthrough.*strict.*off"):
        Settings(workflow_sandbox="fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["passthrough", "off"])
async def test_a_journey_runs_the_same_in_each_production_mode(
    ts_env,  # type: ignore[no-untyped-def]
    sqlite_engine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    mode: str,
) -> None:
    templates = tiny_templates(tmp_path / "templates", ("gold", "basic", "thanks", "nudge"))
    bench = Bench(
        ts_env,
        sqlite_engine,
        tmp_path / "journeys",
        templates,
        overrides={"workflow_sandbox": mode},
    )
    write_journey(bench.journeys_dir, "sandbox_modes", textwrap.dedent(JOURNEY))
    bench.deploy()
    async with bench.worker():
        for user in ("big", "small"):
            await bench.identify(user, email=f"{user}@example.com")
        await bench.track("big", "Checkout Started", total=250)
        await bench.track("small", "Checkout Started", total=20)
        await bench.track("big", "Order Completed", total=250)
        assert await bench.result("sandbox_modes", "big") == "completed"
        assert await bench.result("sandbox_modes", "small") == "completed"
    assert [m.template for m in bench.messages("big")] == ["gold", "thanks"]
    assert [m.template for m in bench.messages("small")] == ["basic", "nudge"]
    runs = {r.contact_id: r for r in bench.runs()}
    assert runs["big"].converted_at is not None
    assert runs["small"].converted_at is None
