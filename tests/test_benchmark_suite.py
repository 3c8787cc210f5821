"""`python -m benchmarks --quick` runs in CI as a smoke test: every benchmark must run and
report its figures beside a baseline; meeting the targets is for the full run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from figures import Figure, Report, load, number  # noqa: E402

BENCHMARKS = {"starts", "engagement", "provider", "at-rest", "rendering", "simulation", "dashboard"}


def test_ratio_is_oriented_so_that_one_means_as_good_as_the_baseline() -> None:
    rate = Figure("starts", 45.0, "events/s", 50.0)  # higher is better: 45 / 50
    latency = Figure("p99", 200.0, "ms", 50.0, better="lower")  # 50 / 200
    assert rate.ratio == pytest.approx(0.9)
    assert latency.ratio == pytest.approx(0.25)
    assert Figure("no baseline", 1.0, "x").ratio is None
    assert Figure("nan", float("nan"), "x", 2.0).ratio is None
    assert number(1234.5, "ms") == "1,234 ms" and number(0.123456, "s") == "0.123 s"


def test_a_report_survives_its_json(tmp_path: Path) -> None:
    report = Report("x", settings={"n": 3})
    report.add(Figure("rate", 10.0, "/s", 20.0, target="ratio >= 0.9", met=False))
    report.write(tmp_path / "r.json")
    again = load(tmp_path / "r.json")
    assert again.figures[0].ratio == pytest.approx(0.5)
    assert (again.benchmark, again.settings, again.figures[0].met) == ("x", {"n": 3}, False)


def test_the_quick_suite_runs_every_benchmark_and_reports_ours_beside_a_baseline(
    tmp_path: Path,
) -> None:
    out = tmp_path / "suite.json"
    # the product's own settings, not the suite's strict sandbox (conftest)
    env = {k: v for k, v in os.environ.items() if k != "JOURNEYS_WORKFLOW_SANDBOX"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    suite = json.loads(out.read_text())
    assert suite["quick"] is True
    assert suite["machine"]["cpus"] and suite["machine"]["versions"]["temporalio"]
    found = {b["name"]: b for b in suite["benchmarks"]}
    assert set(found) == BENCHMARKS
    for name, bench in found.items():
        assert bench["problem"] is None, (name, bench["problem"])
        assert bench["figures"], name
        assert all(isinstance(f["ours"], int | float) for f in bench["figures"]), name
        # every benchmark measures something against a baseline from the same run
        assert any(f["baseline"] is not None for f in bench["figures"]), name
    assert "ours" in done.stdout and "baseline" in done.stdout and "ratio" in done.stdout
