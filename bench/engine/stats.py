"""Statistics of one cell's repetitions: spread, a distribution-free confidence interval of
the median with its real coverage, stability warnings, and the repetitions a given
difference would need."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.stats import binom

UNSTABLE_CV = 0.10


@dataclass(frozen=True)
class CellStats:
    """Summary of n samples (seconds)."""

    n: int
    median: float
    minimum: float
    maximum: float
    mean: float
    stdev: float
    cv: float
    ci_low: float
    ci_high: float
    ci_coverage: float
    reps_for_5pct: int | None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Return (low, high, coverage): the narrowest order-statistic interval around the
    median whose exact binomial coverage reaches `confidence`, or the widest available
    ([min, max]) with its real, lower coverage when n is too small.

    At n = 3 that is [min, max] with coverage 1 - 2 * 0.5**3 = 75 %.
    """
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")
    if n == 1:
        return xs[0], xs[0], 0.0
    best: tuple[float, float, float] | None = None
    # Interval [x_(k), x_(n-1-k)] (0-based) covers the median with probability
    # P(k < B <= n-1-k) for B ~ Binomial(n, 1/2), i.e. 1 - 2 * P(B <= k).
    for k in range((n - 1) // 2, -1, -1):
        coverage = float(1 - 2 * binom.cdf(k, n, 0.5))
        if coverage >= confidence:
            best = (xs[k], xs[n - 1 - k], coverage)
            break
    if best is None:
        best = (xs[0], xs[-1], float(1 - 2 * binom.cdf(0, n, 0.5)))
    return best


def reps_for_difference(
    cv: float, difference: float = 0.05, z_alpha: float = 1.96, z_power: float = 0.84
) -> int | None:
    """Return the repetitions per side a `difference` (relative) would need to be told
    apart at 5 % significance and 80 % power with spread `cv` (normal approximation),
    or None when the spread is zero (any difference shows)."""
    if cv <= 0:
        return None
    return max(2, math.ceil(2 * ((z_alpha + z_power) * cv / difference) ** 2))


def describe(samples: Sequence[float]) -> CellStats:
    """Return the statistics of `samples`, in their measured order (the first sample is
    checked for being an outlier). Raises ValueError on an empty list."""
    xs = list(samples)
    if not xs:
        raise ValueError("no samples")
    n = len(xs)
    med = statistics.median(xs)
    mean = statistics.fmean(xs)
    stdev = statistics.stdev(xs) if n > 1 else 0.0
    cv = stdev / mean if mean > 0 else 0.0
    low, high, coverage = median_ci(xs)
    warnings: list[str] = []
    if cv > UNSTABLE_CV:
        warnings.append(f"unstable: CV {cv:.1%} is over {UNSTABLE_CV:.0%}")
    if n >= 3:
        rest = xs[1:]
        rest_med = statistics.median(rest)
        spread = max(statistics.median([abs(x - rest_med) for x in rest]), 0.02 * rest_med)
        if abs(xs[0] - rest_med) > 3 * spread and abs(xs[0] - rest_med) > 0.1 * rest_med:
            warnings.append(
                f"first repetition ({xs[0]:.2f} s) is an outlier against the "
                f"others' median {rest_med:.2f} s: consider --warmup 1"
            )
    if n < 3:
        warnings.append(f"only {n} repetition(s): no spread to judge by")
    return CellStats(
        n,
        med,
        min(xs),
        max(xs),
        mean,
        stdev,
        cv,
        low,
        high,
        coverage,
        reps_for_difference(cv),
        tuple(warnings),
    )
