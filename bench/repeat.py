"""Repetitions that hold on a noisy machine: the measured thing and its baseline run back to back (A, B, A, B …),
so drift in the machine's load hits both alike; a ratio is reported as the median over the repetitions, with its
smallest and largest value beside it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """One figure over the repetitions: its median, smallest and largest value."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no repetitions")
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def runs(self) -> int:
        return len(self.values)

    def width(self) -> float:
        """(max − min) ÷ median: how far apart the repetitions were, as a fraction of the median."""
        return (self.high - self.low) / self.median if self.median else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
