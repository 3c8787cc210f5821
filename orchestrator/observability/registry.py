"""Process-local Prometheus counters and histograms, with no client library.

What one process did (the API's requests, a worker's provider calls): every process is
scraped on its own (the API's `/metrics`, JOURNEYS_METRICS_PORT on workers and routers),
and Prometheus sums them. Fleet-wide figures read from the store stay in
`analytics/metrics.py`. Thread-safe: activities run in threads.

Labels are fixed words (routes as templates, channels, providers, outcomes): never ids
or addresses (Prometheus naming: `../shared/CONVENTIONS.md`).
"""

from __future__ import annotations

import bisect
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence

# Prometheus clients' default buckets (seconds): from a fast local call to a slow provider.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelValues = tuple[str, ...]


class Metric(ABC):
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, values: dict[str, str]) -> LabelValues:
        if set(values) != set(self.labels):
            raise ValueError(f"{self.name}: labels {sorted(values)}, expected {list(self.labels)}")
        return tuple(str(values[label]) for label in self.labels)

    def _labels(self, key: LabelValues, le: str | None = None) -> str:
        pairs = dict(zip(self.labels, key, strict=True))
        if le is not None:
            pairs["le"] = le
        return label_text(pairs)

    @abstractmethod
    def samples(self) -> list[str]:
        """Its sample lines in the text format (none before the first observation)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget every sample."""


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            values = sorted(self._values.items())
        return [f"{self.name}{self._labels(k)} {_number(v)}" for k, v in values]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Histogram(Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        # Per label set: observations per bucket (not cumulative; the last is +Inf), sum.
        self._series: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)  # le: a value on a bound is in it
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[index] += 1
            total[0] += value

    def count(self, **labels: str) -> int:
        with self._lock:
            series = self._series.get(self._key(labels))
            return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        with self._lock:
            series = sorted((k, (list(c), t[0])) for k, (c, t) in self._series.items())
        lines = []
        for key, (counts, total) in series:
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                le = "+Inf" if bound == math.inf else _number(bound)
                lines.append(f"{self.name}_bucket{self._labels(key, le)} {running}")
            lines.append(f"{self.name}_sum{self._labels(key)} {_number(total)}")
            lines.append(f"{self.name}_count{self._labels(key)} {running}")
        return lines

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


class Registry:
    """The metrics of this process, in the order they were registered."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def register(self, metric: Metric) -> Metric:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is registered twice")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        metric = self.register(Counter(name, help_text, labels))
        assert isinstance(metric, Counter)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = self.register(Histogram(name, help_text, labels, buckets))
        assert isinstance(metric, Histogram)
        return metric

    def write(self, out: Exposition) -> None:
        """Add every metric with samples to `out` (HELP and TYPE first)."""
        for metric in self.metrics():
            samples = metric.samples()
            if samples:
                out.declare(metric.name, metric.kind, metric.help)
                out.lines += samples

    def lines(self) -> list[str]:
        """The text exposition of every metric with samples."""
        out = Exposition()
        self.write(out)
        return out.lines

    def clear(self) -> None:
        """Forget every sample (tests count from zero)."""
        for metric in self.metrics():
            metric.clear()

    def metrics(self) -> Iterable[Metric]:
        with self._lock:
            return list(self._metrics.values())


REGISTRY = Registry()


class Exposition:
    """Prometheus text exposition: HELP and TYPE once per metric, then its samples. The
    one writer of the format: `/metrics` adds what it reads from the store (one value at
    a time) and then the process's own metrics (`Registry.write`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def declare(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._declared:
            self._declared.add(name)
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def add(
        self,
        name: str,
        kind: str,
        help_text: str,
        value: float,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.declare(name, kind, help_text)
        self.lines.append(f"{name}{label_text(labels or {})} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: float) -> str:
    """`3` for whole numbers, else Python's shortest exact form (`0.25`, `1e-05`); the
    text format's own words for infinities and NaN."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def label_text(labels: Mapping[str, str]) -> str:
    """`{name="value",...}` with the values escaped as the text format asks ("" if none)."""
    if not labels:
        return ""
    return "{" + ",".join(f'{n}="{label_value(v)}"' for n, v in labels.items()) + "}"


def label_value(value: str) -> str:
    """A label value as the Prometheus text format escapes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
