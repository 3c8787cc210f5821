"""How sure we are that one split variant beats another.

- Conversion rates: the difference of two proportions with Newcombe's hybrid score
  interval (Newcombe 1998, method 10), built from each rate's Wilson interval. Unlike
  the textbook Wald interval it stays inside [-1, 1] and keeps its 95 % coverage with
  few conversions, where A/B tests spend their first days.
- Revenue per entrant: the difference of two means with a Welch (unequal variances)
  normal interval; entrants who did not buy count as 0.

A difference is significant when its 95 % interval leaves out 0. Below `MIN_ENTRANTS`
per variant, or `MIN_OUTCOMES` conversions or non-conversions, the numbers come with
a warning: the interval is honest, but a marketer should not stop a test on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
MIN_ENTRANTS = 30
MIN_OUTCOMES = 5


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson's score interval for a proportion."""
    if n == 0:
        return Interval(0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def rate_difference(
    successes_b: int, n_b: int, successes_a: int, n_a: int, z: float = Z95
) -> tuple[float, Interval]:
    """(p_b - p_a, its Newcombe hybrid score interval)."""
    if n_a == 0 or n_b == 0:
        return 0.0, Interval(-1.0, 1.0)
    p_a, p_b = successes_a / n_a, successes_b / n_b
    a, b = wilson(successes_a, n_a, z), wilson(successes_b, n_b, z)
    d = p_b - p_a
    low = d - math.sqrt((p_b - b.low) ** 2 + (a.high - p_a) ** 2)
    high = d + math.sqrt((b.high - p_b) ** 2 + (p_a - a.low) ** 2)
    return d, Interval(low, high)


def mean_difference(
    total_b: float,
    squares_b: float,
    n_b: int,
    total_a: float,
    squares_a: float,
    n_a: int,
    z: float = Z95,
) -> tuple[float, Interval | None]:
    """(mean_b - mean_a, its Welch normal interval) from sums and sums of squares;
    no interval with fewer than two in a group."""
    if n_a == 0 or n_b == 0:
        return 0.0, None
    mean_a, mean_b = total_a / n_a, total_b / n_b
    d = mean_b - mean_a
    if n_a < 2 or n_b < 2:
        return d, None
    var_a = max(0.0, (squares_a - n_a * mean_a * mean_a) / (n_a - 1))
    var_b = max(0.0, (squares_b - n_b * mean_b * mean_b) / (n_b - 1))
    se = math.sqrt(var_a / n_a + var_b / n_b)
    return d, Interval(d - z * se, d + z * se)


def too_few(successes: int, n: int) -> bool:
    return n < MIN_ENTRANTS or successes < MIN_OUTCOMES or n - successes < MIN_OUTCOMES
