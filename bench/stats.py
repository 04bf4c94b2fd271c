"""How far a median of a few noisy rounds can be trusted.

A round's ratio on this shared machine moves with the host's phase, so a run's median can land on
either side of a target by luck. The interval below is distribution-free (order statistics of the
rounds, no assumption about their spread): the true median lies inside it with at least the stated
coverage if the rounds are independent draws, and a run whose interval straddles a target does not
settle that target either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Interval(NamedTuple):
    low: float
    high: float
    coverage: float  # the exact binomial coverage of [low, high], at least the confidence asked


def median_interval(values: Sequence[float], confidence: float = 0.90) -> Interval | None:
    """The narrowest interval [x(k), x(n+1-k)] of the sorted values with coverage >= confidence,
    or None when there are too few values for any (5 rounds are needed for 90%)."""
    n = len(values)
    ordered = sorted(values)

    def coverage(k: int) -> float:  # P(x(k) <= median <= x(n+1-k)) = 1 - 2 P(Binomial(n, 1/2) < k)
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    best = None
    for k in range(1, n // 2 + 1):
        if coverage(k) < confidence:
            break
        best = Interval(ordered[k - 1], ordered[n - k], coverage(k))
    return best


def settles(interval: Interval | None, op: str, bound: float) -> bool:
    """Whether the whole interval lies on one side of the bound (met or missed, either way)."""
    if interval is None:
        return False
    if op in ("≥", "<"):
        return interval.low >= bound or interval.high < bound
    return interval.high <= bound or interval.low > bound  # "≤"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(samples)
    return float(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)])
