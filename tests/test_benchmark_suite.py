"""`python -m benchmarks --quick` runs in CI as a smoke test: every benchmark must run and
report its figures beside a baseline; meeting the targets is for the full run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from figures import Figure, Report, load, number  # noqa: E402

BENCHMARKS = {
    "starts",
    "engagement",
    "provider",
    "at-rest",
    "rendering",
    "simulation",
    "dashboard",
    "campaign",
}


def test_ratio_is_oriented_so_that_one_means_as_good_as_the_baseline() -> None:
    rate = Figure("starts", 45.0, "events/s", 50.0)  # higher is better: 45 / 50
    latency = Figure("p99", 200.0, "ms", 50.0, better="lower")  # 50 / 200
    assert rate.ratio == pytest.approx(0.9)
    assert latency.ratio == pytest.approx(0.25)
    assert Figure("no baseline", 1.0, "x").ratio is None
    assert Figure("nan", float("nan"), "x", 2.0).ratio is None
    # a negative latency (the send beat the API's answer to the client) has no ratio
    assert Figure("p50", -18242.0, "ms", 250.0, better="lower").ratio is None
    assert Figure("rate", 0.0, "/s", 10.0).ratio is None
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


def suite(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "f.json"
    done = suite("--quick", "--json", str(missing))
    assert done.returncode == 2
    assert f"--json {missing}: the folder {missing.parent} does not exist" in done.stderr
    assert "===" not in done.stdout  # nothing was measured, then lost
    assert "above 0" in suite("--timeout", "-5").stderr
    assert "cannot read it" in suite("--from-json", str(tmp_path / "gone.json")).stderr
    one = tmp_path / "one.json"
    Report("x").write(one)  # a benchmark script's file, not the suite's
    assert "not a suite file" in suite("--from-json", str(one)).stderr
    assert "cannot apply" in suite("--from-json", str(one), "--only", "starts").stderr


def test_a_reprinted_quick_run_says_it_is_one(tmp_path: Path) -> None:
    saved = tmp_path / "suite.json"
    figure = Figure("rate", 10.0, "/s", 20.0).as_json()
    saved.write_text(
        json.dumps(
            {
                "measured_at": "2026-12-06T10:00:00+00:00",
                "quick": True,
                "seconds": 80,
                "machine": {"cpus": 2},
                "benchmarks": [{"name": "starts", "benchmark": "x", "figures": [figure]}],
            }
        )
    )
    done = suite("--from-json", str(saved), "--markdown", str(tmp_path / "t.md"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("QUICK run (smoke-test sizes: not measurements)")
    assert "2026-12-06" in done.stdout and "0.50" in done.stdout
    assert "| 0.50 |" in (tmp_path / "t.md").read_text()


def test_a_benchmark_that_overruns_is_stopped_with_the_processes_it_started(
    tmp_path: Path,
) -> None:
    """The dev server a benchmark starts must not outlive it (it used to, adopted by init)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("suite_main", ROOT / "benchmarks" / "__main__.py")
    assert spec and spec.loader
    runner = importlib.util.module_from_spec(spec)
    sys.modules["suite_main"] = runner  # dataclasses look their module up there
    spec.loader.exec_module(runner)
    pids = tmp_path / "pids"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pids)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        runner.run_grouped([sys.executable, "-c", script], timeout=2)
    child = int(pids.read_text())
    time.sleep(0.5)
    assert not alive(child)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status
