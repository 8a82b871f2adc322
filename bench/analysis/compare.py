"""Compare two stored runs cell by cell: is NEW slower than BASE?

Cells are matched on scenario, strategy, CPU variant, platform and cache mode. Per cell:

- the ratio of medians NEW/BASE with a 95 % percentile bootstrap confidence interval
  (each side resampled with replacement, BOOTSTRAP_RESAMPLES times, fixed seed, so the
  same runs always give the same interval);
- one-sided exact Mann-Whitney U tests (scipy.stats.mannwhitneyu, method='exact'):
  alternative='greater' (NEW slower) and alternative='less' (NEW faster);
- a verdict: 'slower' when the ratio exceeds 1 + threshold and the test is significant
  at alpha, 'faster' likewise the other way, else 'no significant change'.

With n and m repetitions the smallest p-value an exact rank test can give is
1 / C(n + m, n) (0.05 at 3 against 3): when that is not under alpha, no test can be
significant, and the verdict is decided by the threshold alone (`threshold_only`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from bench.engine.results import Record, StoredRun, as_run

BOOTSTRAP_RESAMPLES = 5000
BOOTSTRAP_SEED = 20240607
CI_METHOD = f"95 % percentile bootstrap of the ratio of medians ({BOOTSTRAP_RESAMPLES} resamples)"

SLOWER, FASTER, SAME = "slower", "faster", "no significant change"


def parse_threshold(text: str) -> float:
    """Return a relative threshold from '10%', '10' (percent) or '0.1'.

    Raises ValueError for anything else or a negative value.
    """
    value = text.strip()
    try:
        number = float(value.rstrip("%"))
    except ValueError as exc:
        raise ValueError(f"bad threshold {text!r}; expected e.g. 10% or 0.1") from exc
    if value.endswith("%") or number >= 1:
        number /= 100
    if number < 0:
        raise ValueError(f"bad threshold {text!r}; expected a value of 0 or more")
    return number


@dataclass(frozen=True)
class CellComparison:
    """The comparison of one matched cell."""

    cell: str
    base_n: int
    new_n: int
    base_median_s: float
    new_median_s: float
    ratio: float
    ci_low: float
    ci_high: float
    p_slower: float | None
    p_faster: float | None
    threshold_only: bool
    verdict: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class RunComparison:
    """Every matched cell, the cells only one run has, and warnings about what differs."""

    base_run: str
    new_run: str
    threshold: float
    alpha: float
    cells: tuple[CellComparison, ...]
    only_base: tuple[str, ...]
    only_new: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def regressed(self) -> bool:
        """True when any cell is slower beyond the threshold (and significantly so, where a
        test can be significant)."""
        return any(c.verdict == SLOWER for c in self.cells)

    def as_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict."""
        data = asdict(self)
        data["regressed"] = self.regressed
        data["ci_method"] = CI_METHOD
        return data


def match_key(r: Record) -> tuple[str, str, str, str, str]:
    """Return the key cells are matched on: scenario, strategy, CPU, platform, cache."""
    return (r.scenario, r.strategy, r.cpu or "default", r.platform, r.cache)


def key_name(key: tuple[str, str, str, str, str]) -> str:
    """Return a readable cell name for a match key."""
    scenario, strategy, cpu, platform, cache = key
    variant = strategy if cpu in ("", "default") else f"{strategy}-{cpu}"
    tail = "" if cache == "cold" else f" ({cache})"
    return f"{scenario} {variant} {platform}{tail}"


def _groups(records: Sequence[Record]) -> dict[tuple[str, str, str, str, str], list[Record]]:
    groups: dict[tuple[str, str, str, str, str], list[Record]] = {}
    for r in records:
        if r.kind == "cell" and not r.warmup and r.status == "ok":
            groups.setdefault(match_key(r), []).append(r)
    return groups


def bootstrap_ratio_ci(
    base: Sequence[float], new: Sequence[float], confidence: float = 0.95
) -> tuple[float, float]:
    """Return the percentile bootstrap interval of median(new) / median(base)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    b = np.asarray(base, dtype=float)
    n = np.asarray(new, dtype=float)
    b_med = np.median(rng.choice(b, size=(BOOTSTRAP_RESAMPLES, b.size), replace=True), axis=1)
    n_med = np.median(rng.choice(n, size=(BOOTSTRAP_RESAMPLES, n.size), replace=True), axis=1)
    ratios = n_med / b_med
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def smallest_p(n: int, m: int) -> float:
    """Return the smallest one-sided p-value an exact rank test of n against m samples
    can reach: 1 / C(n + m, n)."""
    return 1.0 / math.comb(n + m, n)


def compare_cells(
    name: str, base: Sequence[float], new: Sequence[float], threshold: float, alpha: float
) -> CellComparison:
    """Return the comparison of one cell's BASE and NEW samples (seconds).

    Raises ValueError when either side is empty.
    """
    if not base or not new:
        raise ValueError(f"{name}: a side has no samples")
    b_med, n_med = float(statistics.median(base)), float(statistics.median(new))
    ratio = n_med / b_med
    low, high = bootstrap_ratio_ci(base, new)
    threshold_only = smallest_p(len(base), len(new)) >= alpha
    notes: list[str] = []
    p_slower: float | None = None
    p_faster: float | None = None
    if threshold_only:
        notes.append(
            f"{len(base)} vs {len(new)} repetitions: no exact test can reach alpha {alpha:g} "
            f"(smallest p {smallest_p(len(base), len(new)):.3g}); the threshold alone decided"
        )
    else:
        p_slower = float(mannwhitneyu(new, base, alternative="greater", method="exact").pvalue)
        p_faster = float(mannwhitneyu(new, base, alternative="less", method="exact").pvalue)
    verdict = SAME
    if ratio > 1 + threshold and (threshold_only or (p_slower is not None and p_slower < alpha)):
        verdict = SLOWER
    elif ratio < 1 - threshold and (threshold_only or (p_faster is not None and p_faster < alpha)):
        verdict = FASTER
    return CellComparison(name, len(base), len(new), b_med, n_med, ratio, low, high,
                          p_slower, p_faster, threshold_only, verdict, tuple(notes))  # fmt: skip


def _differences(name: str, base: Sequence[Record], new: Sequence[Record]) -> list[str]:
    out = []
    checks: tuple[tuple[str, Callable[[Record], str]], ...] = (
        ("size", lambda r: str(r.size)),
        ("recipe hash", lambda r: str(r.extra.get("recipe_sha256", ""))),
        ("host", lambda r: str(r.provenance.get("hostname", ""))),
    )
    for label, get in checks:
        b = sorted({get(r) for r in base} - {""})
        n = sorted({get(r) for r in new} - {""})
        if b and n and b != n:
            out.append(f"{name}: {label} differs ({', '.join(b)[:16]} -> {', '.join(n)[:16]}); "
                       "compared anyway")  # fmt: skip
    return out


def compare_runs(
    base_dir: Path | StoredRun,
    new_dir: Path | StoredRun,
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> RunComparison:
    """Return the comparison of the runs in `base_dir` and `new_dir` (folders, or runs
    already read).

    Raises FileNotFoundError when a folder is not a run, DamagedRun when its manifest
    cannot be used.
    """
    base_run, new_run = as_run(base_dir), as_run(new_dir)
    base_records, new_records = list(base_run.records), list(new_run.records)
    base, new = _groups(base_records), _groups(new_records)
    cells: list[CellComparison] = []
    warnings: list[str] = []
    for key in sorted(set(base) & set(new)):
        name = key_name(key)
        warnings += _differences(name, base[key], new[key])
        cells.append(
            compare_cells(name, [r.wall_s for r in base[key]], [r.wall_s for r in new[key]],
                          threshold, alpha)
        )  # fmt: skip
    return RunComparison(
        base_run.run_id,
        new_run.run_id,
        threshold,
        alpha,
        tuple(cells),
        tuple(key_name(k) for k in sorted(set(base) - set(new))),
        tuple(key_name(k) for k in sorted(set(new) - set(base))),
        tuple(dict.fromkeys(warnings)),
    )
