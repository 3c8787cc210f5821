"""benchmarks/engagement_signals.py puts a webhook post of B opens beside no baseline: a
signal RPC carries one open, so a ratio between them said we beat bare Temporal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import engagement_signals as es  # noqa: E402
import ingest_throughput as it  # noqa: E402


def _result(label: str, latencies: list[float]) -> it.Result:
    return it.Result(label, 100, 50, 2.0, 1.0, latencies)


def _latency_figures(runs: int, webhook_requests: int) -> dict[str, tuple[float, float | None]]:
    args = argparse.Namespace(runs=runs, concurrency=50, batch=100, warmup=5, quick=True)
    signals = _result("baseline", [0.1] * runs)
    pairs = {
        "webhook": (signals, _result("webhook", [0.05] * webhook_requests)),
        "track": (signals, _result("track", [0.4] * runs)),
    }
    report = es.build_report(args, pairs)
    return {
        f.measure: (f.ours, f.baseline)
        for f in report.figures
        if f.measure.startswith("ack latency")
    }


def test_one_webhook_request_is_one_figure_without_a_baseline() -> None:
    assert _latency_figures(100, 1) == {
        "ack latency p50, SendGrid Event Webhook, one request of 100 opens": (50.0, None),
        "ack latency p50, Segment track Email Opened": (400.0, 100.0),
        "ack latency p99, Segment track Email Opened": (400.0, 100.0),
    }


def test_webhook_percentiles_say_what_a_request_carries() -> None:
    figures = _latency_figures(250, 3)
    assert figures["ack latency p99, SendGrid Event Webhook, one request of up to 100 opens"] == (
        50.0,
        None,
    )
