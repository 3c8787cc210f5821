"""benchmarks/ingest_throughput.py counts a request that timed out or lost its connection
(no HTTP status) as not acknowledged, and its rates count only the events acknowledged:
before, one status seen hid every such failure and the rate counted failed events as done."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import ingest_throughput as it  # noqa: E402


@pytest.mark.parametrize(
    ("requests", "statuses", "expected"),
    [
        (6, {"200": 3, "503": 1}, 3),  # 3 ok, 1 refused, 2 timed out
        (4, {}, 4),  # all timed out: no status at all
        (5, {"200": 2, "202": 3}, 0),
        (5, {"200": 3, "429": 1, "500": 1}, 2),
    ],
)
def test_every_request_without_a_2xx_answer_is_not_acknowledged(
    requests: int, statuses: dict[str, int], expected: int
) -> None:
    assert it.not_acknowledged(requests, statuses) == expected


def test_the_rates_count_only_the_events_acknowledged() -> None:
    result = it.Result("product", 10, 2, seconds=2.0, accepted_seconds=1.0, latencies=[])
    assert (result.done, result.rate, result.accept_rate) == (10, 5.0, 10.0)
    result.acknowledged = 7  # 3 refused or timed out: not ingested
    assert (result.done, result.rate, result.accept_rate) == (7, 3.5, 7.0)


def test_the_report_counts_timeouts_beside_refusals() -> None:
    args = argparse.Namespace(events=6, concurrency=2, batch=0, rounds=1, synchronous="normal")
    baseline = it.Result("baseline", 6, 2, 1.0, 0.5, [0.01] * 6, acknowledged=6)
    product = it.Result(
        "product",
        6,
        2,
        1.0,
        0.5,
        [0.01] * 6,
        errors=3,
        statuses={"200": 3, "503": 1},
        acknowledged=3,
    )
    report = it.report(args, [{"baseline": baseline, "product": product}])
    (figure,) = [f for f in report.figures if f.measure.startswith("requests not acknowledged")]
    assert (figure.ours, figure.met) == (3, False)
    assert figure.note == "HTTP 200: 3, HTTP 503: 1, no answer (timeout, reset): 2"
    (rate,) = [f for f in report.figures if f.measure.startswith("single track calls")]
    assert (rate.ours, rate.baseline) == (3.0, 6.0)
