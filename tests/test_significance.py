"""The split statistics against published and hand-worked figures."""

from __future__ import annotations

import math

import pytest

from orchestrator.analytics.significance import (
    mean_difference,
    rate_difference,
    too_few,
    wilson,
)


# Newcombe (1998), "Interval estimation for the difference between independent
# proportions", Statistics in Medicine 17:873-890, Table II, method 10 (score, no
# continuity correction), the four worked examples.
@pytest.mark.parametrize(
    ("b", "n_b", "a", "n_a", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 5, -0.0658, 0.7629),
        (5, 56, 0, 29, -0.0381, 0.1926),
    ],
)
def test_rate_difference_matches_newcombe_method_10(
    b: int, n_b: int, a: int, n_a: int, low: float, high: float
) -> None:
    d, interval = rate_difference(b, n_b, a, n_a)
    assert d == pytest.approx(b / n_b - a / n_a)
    assert interval.low == pytest.approx(low, abs=0.00006)
    assert interval.high == pytest.approx(high, abs=0.00006)


def test_wilson_interval_by_hand() -> None:
    # 8 of 10, z = 1.959964: centre (0.8 + z²/20) / (1 + z²/10) = 0.7167; half-width
    # z * sqrt(0.016 + z²/400) / 1.3841 = 0.2266; so 0.4902 to 0.9433.
    interval = wilson(8, 10)
    assert interval.low == pytest.approx(0.4902, abs=0.0001)
    assert interval.high == pytest.approx(0.9433, abs=0.0001)
    assert wilson(0, 0).low == 0 and wilson(0, 0).high == 1


def test_a_difference_is_significant_only_when_the_interval_leaves_out_zero() -> None:
    assert rate_difference(56, 70, 48, 80)[1].excludes_zero
    assert not rate_difference(6, 7, 2, 5)[1].excludes_zero
    assert not rate_difference(0, 0, 3, 10)[1].excludes_zero  # no data: no verdict


def test_revenue_per_entrant_difference_by_hand() -> None:
    # a = [10, 20, 30] (mean 20, variance 100); b = [40, 50, 60, 70] (mean 55, variance
    # 166.67); se = sqrt(100/3 + 166.67/4) = 8.6603; 35 ± 1.959964 * 8.6603.
    a = [10.0, 20.0, 30.0]
    b = [40.0, 50.0, 60.0, 70.0]
    d, interval = mean_difference(
        sum(b), sum(x * x for x in b), len(b), sum(a), sum(x * x for x in a), len(a)
    )
    assert d == 35
    se = math.sqrt(100 / 3 + (500 / 3) / 4)
    assert se == pytest.approx(8.6603, abs=0.0001)
    assert interval is not None
    assert (interval.low, interval.high) == pytest.approx((35 - 16.974, 35 + 16.974), abs=0.001)
    assert mean_difference(5, 25, 1, 3, 9, 1)[1] is None  # one entrant each: no interval


def test_small_samples_are_flagged() -> None:
    assert too_few(3, 100)  # fewer than 5 conversions
    assert too_few(97, 100)  # fewer than 5 non-conversions
    assert too_few(10, 29)  # fewer than 30 entrants
    assert not too_few(10, 30)
