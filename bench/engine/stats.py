"""Statistics of one cell's repetitions: spread, a distribution-free confidence interval of
the median with its real coverage, stability warnings, and the repetitions a given
difference would need."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.special import owens_t
from scipy.stats import binom, norm

from bench.analysis.compare import u_null_cdf

UNSTABLE_CV = 0.10
EXACT_CRITICAL_LIMIT = 30
"""Up to this many repetitions per side, `gate_power` uses the exact critical value."""


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
    reps_for_gate: int | None
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
    apart at 5 % significance and 80 % power with spread `cv` (normal approximation of a
    two-sided test on means), or None when the spread is zero (any difference shows).
    This is not the gate's test: see `reps_for_gate`."""
    if cv <= 0:
        return None
    return max(2, math.ceil(2 * ((z_alpha + z_power) * cv / difference) ** 2))


def gate_power(
    n: int,
    cv: float,
    change: float = 0.20,
    threshold: float = 0.10,
    alpha: float = 0.05,
    cells: int = 1,
) -> float:
    """Return the approximate chance that `archbench compare` flags a slowdown of
    `change` (relative) in one of `cells` cells, with n lognormal repetitions per side of
    spread `cv`. Two conditions, taken as independent: its one-sided exact Mann-Whitney
    test passes Holm's first step (the exact critical U at alpha/cells, 0 when
    1/C(2n, n) cannot reach it; U under the shift taken as normal with Lehmann's mean and
    variance), and the ratio of medians exceeds 1 + threshold (a median's variance taken
    as pi/2 times the mean's). The two are positively correlated, so the product errs
    low: against `bench.analysis.gatepower`'s simulation it is within 3 points near 90 % and up to
    25 points under it at low power, so the repetitions it asks for are never too few
    by more than one."""
    if n < 2 or math.comb(2 * n, n) < cells / alpha:
        return 0.0
    sigma = math.sqrt(math.log(1 + cv * cv))
    delta = math.log(1 + change)
    if sigma == 0:
        return 1.0 if change > threshold else 0.0
    level = alpha / cells * (1 + 1e-9)
    if n <= EXACT_CRITICAL_LIMIT:
        cdf = u_null_cdf(n, n)
        # Smallest c with P0(U >= c) <= level: P0(U >= c) = 1 - cdf[c - 1].
        c = float(next(c for c in range(1, n * n + 1) if 1 - cdf[c - 1] <= level))
    else:
        c = n * n / 2 + float(norm.isf(level)) * math.sqrt(n * n * (2 * n + 1) / 12) + 0.5
    d = delta / (sigma * math.sqrt(2))
    p1 = float(norm.cdf(d))
    # P(Y1 > X, Y2 > X): a bivariate normal orthant at correlation 1/2, by Owen's T.
    p2 = p1 - 2 * float(owens_t(d, math.sqrt(1 / 3)))
    mean = n * n * p1
    var = n * n * (p1 * (1 - p1) + 2 * (n - 1) * (p2 - p1 * p1))
    test = float(norm.sf((c - 0.5 - mean) / math.sqrt(max(var, 1e-12))))
    z_point = (delta - math.log(1 + threshold)) / (sigma * math.sqrt(math.pi / n))
    return test * float(norm.cdf(z_point))


def reps_for_gate(
    cv: float,
    change: float = 0.20,
    threshold: float = 0.10,
    alpha: float = 0.05,
    cells: int = 1,
    power: float = 0.90,
    limit: int = 200,
) -> int | None:
    """Return the repetitions per side at which the gate (see `gate_power`) flags a
    slowdown of `change` with at least `power`, or None beyond `limit` or when `change`
    is not above `threshold`."""
    if change <= threshold:
        return None
    for n in range(2, limit + 1):
        if gate_power(n, cv, change, threshold, alpha, cells) >= power:
            return n
    return None


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
        reps_for_gate(cv),
        tuple(warnings),
    )
