"""Change points in the build time of each cell across stored runs.

Runs are the unit: repetitions within one run share that run's machine state (load, cache,
thermal), so they are not independent across runs, and pooling them would count a run's
offset as many times as it has repetitions. Each run contributes its median.

Method: binary segmentation on the per-run medians. For a stretch of runs, every split
between two runs is tried; the run medians before and after the split are compared with a
two-sided Mann-Whitney U test (exact for small samples). The split with the smallest
p-value is a change point when that p-value, Bonferroni-corrected for the number of
splits tried, is under `alpha` and the step (ratio of the medians of the run medians either
side) is at least the minimum step: `min_step`, or twice the measured run-to-run noise if
that is larger (the noise is the robust spread of successive run medians, 1.4826 * the
median absolute difference of successive log medians / sqrt 2, which a step barely
moves). The search then recurses into both sides. Each step is given with the exact
distribution-free interval of its ratio (`bench.analysis.compare.ratio_interval`) and that
interval's coverage. With Bonferroni over 19 splits (20 runs), a step needs at least 3
runs on each side to be found.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import mannwhitneyu

from bench.analysis.compare import p_greater, ratio_interval
from bench.engine.matrix import cell_of
from bench.engine.results import StoredRun, as_run

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_STEP = 0.05
METHOD = (
    "binary segmentation on per-run medians (runs are the unit), two-sided exact "
    "Mann-Whitney U per split, Bonferroni-corrected over the splits tried; minimum step "
    "max(5 %, twice the run-to-run noise); step interval: exact distribution-free"
)
EXACT_LIMIT = 60
"""Pooled sample sizes up to this use the exact Mann-Whitney distribution."""


@dataclass(frozen=True)
class RunPoint:
    """The measured ok repetitions of one cell in one run."""

    cell: str
    strategy: str
    run_id: str
    started_at: str
    commit: str
    samples: tuple[float, ...]

    @property
    def median_s(self) -> float:
        """Median of the samples (seconds)."""
        return float(statistics.median(self.samples))


@dataclass(frozen=True)
class Step:
    """A change point: the cell's time changes from `before_s` to `after_s` (medians of
    the run medians either side) at run `run_id`, the first run after the change; `ratio`
    with its interval [ci_low, ci_high] (coverage `ci_coverage`), `n_before`/`n_after`
    runs, and the minimum step that applied (from the measured run-to-run noise)."""

    cell: str
    run_id: str
    started_at: str
    commit: str
    index: int
    before_s: float
    after_s: float
    ratio: float
    p_value: float
    n_before: int
    n_after: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    ci_coverage: float = 0.0
    min_step: float = DEFAULT_MIN_STEP

    def as_dict(self) -> dict[str, Any]:
        """Return the step as a JSON-ready dict."""
        return asdict(self)


def collect(run_dirs: Sequence[Path | StoredRun]) -> dict[str, list[RunPoint]]:
    """Return, per cell key, the points of every run in `run_dirs` (folders, or runs
    already read) that measured it ok, ordered by run start time (then run id).

    Raises FileNotFoundError when a folder is not a run, DamagedRun when its manifest
    cannot be used.
    """
    series: dict[str, list[RunPoint]] = {}
    for run_dir in run_dirs:
        run = as_run(run_dir)
        manifest, records = run.manifest, run.records
        groups: dict[str, list[float]] = {}
        strategy: dict[str, str] = {}
        first_start = ""
        commit = str(manifest.get("provenance", {}).get("harness_commit", ""))
        for r in records:
            if r.kind != "cell" or r.warmup or r.status != "ok":
                continue
            key = cell_of(r).key
            groups.setdefault(key, []).append(r.wall_s)
            strategy[key] = r.strategy
            first_start = first_start or r.started_at
            commit = commit or str(r.provenance.get("harness_commit", ""))
        started = str(manifest.get("started_at") or first_start)
        run_id = run.run_id
        for key, samples in groups.items():
            point = RunPoint(key, strategy[key], run_id, started, commit, tuple(samples))
            series.setdefault(key, []).append(point)
    for points in series.values():
        points.sort(key=lambda p: (p.started_at, p.run_id))
    return series


def two_sided_p(left: Sequence[float], right: Sequence[float]) -> float:
    """Return the two-sided Mann-Whitney p-value of `left` against `right`: exact (twice
    the smaller one-sided exact p, as scipy's method='exact') up to EXACT_LIMIT values
    in all, asymptotic beyond."""
    if len(left) + len(right) > EXACT_LIMIT:
        return float(mannwhitneyu(left, right, alternative="two-sided").pvalue)
    return min(1.0, 2 * min(p_greater(left, right), p_greater(right, left)))


def run_noise(medians: Sequence[float]) -> float:
    """Return the run-to-run noise of a series of run medians (relative, log scale): the
    robust spread of successive differences, 1.4826 * median |d log m| / sqrt 2; 0 with
    fewer than 3 runs."""
    logs = [math.log(m) for m in medians if m > 0 and math.isfinite(m)]
    if len(logs) < 3:
        return 0.0
    diffs = [abs(b - a) for a, b in zip(logs, logs[1:], strict=False)]
    return 1.4826 * statistics.median(diffs) / math.sqrt(2)


def minimum_step(medians: Sequence[float], min_step: float = DEFAULT_MIN_STEP) -> float:
    """Return the smallest step (relative) history reports for these run medians:
    `min_step`, or twice the measured run-to-run noise when that is larger."""
    return max(min_step, math.exp(2 * run_noise(medians)) - 1)


def detect(
    points: Sequence[RunPoint], alpha: float = DEFAULT_ALPHA, min_step: float = DEFAULT_MIN_STEP
) -> list[Step]:
    """Return the change points of one cell's `points` (ordered runs), earliest first, by
    binary segmentation on the per-run medians (see the module docstring)."""
    medians = [p.median_s for p in points]
    if not all(m > 0 and math.isfinite(m) for m in medians):
        return []  # a time that cannot be judged is rejected where it is loaded
    floor = minimum_step(medians, min_step)
    found: list[Step] = []

    def segment(lo: int, hi: int) -> None:
        if hi - lo < 2:
            return
        best: tuple[float, int] | None = None
        for k in range(lo + 1, hi):
            left, right = medians[lo:k], medians[k:hi]
            before, after = statistics.median(left), statistics.median(right)
            if abs(after / before - 1) < floor:
                continue
            p = two_sided_p(left, right)
            if best is None or p < best[0]:
                best = (p, k)
        if best is None:
            return
        p_adj = min(1.0, best[0] * (hi - lo - 1))
        if p_adj >= alpha:
            return
        k = best[1]
        left, right = medians[lo:k], medians[k:hi]
        before, after = float(statistics.median(left)), float(statistics.median(right))
        low, high, coverage = ratio_interval(left, right)
        at = points[k]
        found.append(
            Step(
                at.cell,
                at.run_id,
                at.started_at,
                at.commit,
                k,
                before,
                after,
                after / before,
                p_adj,
                len(left),
                len(right),
                low,
                high,
                coverage,
                floor,
            )
        )
        segment(lo, k)
        segment(k, hi)

    segment(0, len(points))
    return sorted(found, key=lambda s: s.index)


def series_frame(series: dict[str, list[RunPoint]]) -> pd.DataFrame:
    """Return one row per (cell, run): cell, strategy, run_id, started_at, commit, n,
    median_s."""
    rows = [
        {
            "cell": p.cell,
            "strategy": p.strategy,
            "run_id": p.run_id,
            "started_at": p.started_at,
            "commit": p.commit,
            "n": len(p.samples),
            "median_s": p.median_s,
        }
        for points in series.values()
        for p in points
    ]
    return pd.DataFrame(
        rows, columns=["cell", "strategy", "run_id", "started_at", "commit", "n", "median_s"]
    )


def steps_frame(steps: Sequence[Step]) -> pd.DataFrame:
    """Return one row per change point, with the columns of `Step`."""
    columns = list(Step.__dataclass_fields__)
    return pd.DataFrame([s.as_dict() for s in steps], columns=columns)


def analyse(
    run_dirs: Sequence[Path | StoredRun],
    cells: Sequence[str] = (),
    alpha: float = DEFAULT_ALPHA,
    min_step: float = DEFAULT_MIN_STEP,
) -> tuple[dict[str, list[RunPoint]], dict[str, list[Step]]]:
    """Return the per-cell series of `run_dirs` (only the cell keys in `cells`, when
    given) and the change points detected in each.

    Raises FileNotFoundError when a folder is not a run.
    """
    series = collect(run_dirs)
    if cells:
        series = {k: v for k, v in series.items() if k in set(cells)}
    return series, {k: detect(v, alpha, min_step) for k, v in series.items()}
