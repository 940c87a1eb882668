"""Units and the arithmetic of results: ratios against a baseline, medians of paired ratios,
nearest-rank percentiles of a latency distribution."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


def ratio(top: float | None, bottom: float | None) -> float | None:
    """top / bottom; None when either is missing or the bottom (the baseline) is 0."""
    return top / bottom if bottom and top is not None else None


def median_ratio(tops: Iterable[float], bottoms: Iterable[float]) -> float | None:
    """The median over the rounds of tops_i / bottoms_i, paired in order (a round without a baseline
    left out). Rounds run back to back see about the same machine, so its drift cancels out of each
    ratio, and one round caught by a burst of other work cannot move the median."""
    known = [value for value in map(ratio, tops, bottoms) if value is not None]
    return statistics.median(known) if known else None


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (the smallest value >= `fraction` of them)."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Stats:
    """A latency distribution, in seconds."""

    count: int = 0
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    min: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        if not values:
            return cls()
        ordered = sorted(values)
        return cls(
            len(ordered),
            percentile(ordered, 0.50),
            percentile(ordered, 0.99),
            ordered[-1],
            ordered[0],
            sum(ordered) / len(ordered),
        )

    def as_dict(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "count": self.count,
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
            "min_ms": ms(self.min),
            "mean_ms": ms(self.mean),
        }
