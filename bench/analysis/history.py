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

A series is one cell on one hardware class (`Record.host_class`): the same cell measured
on two classes is two series, so that a change of hardware is never taken for a change
point. Records older than the field join their cell's one named class
(`bench.engine.matrix.host_class_of`).
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
from bench.engine.matrix import NO_HOST_CLASS, cell_of, host_class_of, host_classes
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
    """The measured ok repetitions of one cell in one run, on the hardware class
    `host_class` ('' when the records name none)."""

    cell: str
    strategy: str
    run_id: str
    started_at: str
    commit: str
    samples: tuple[float, ...]
    host_class: str = ""

    @property
    def median_s(self) -> float:
        """Median of the samples (seconds)."""
        return float(statistics.median(self.samples))


@dataclass(frozen=True)
class Step:
    """A change point: the cell's time changes from `before_s` to `after_s` (medians of
    the run medians either side) at run `run_id`, the first run after the change; `ratio`
    with its interval [ci_low, ci_high] (coverage `ci_coverage`), `n_before`/`n_after`
    runs, the minimum step that applied (from the measured run-to-run noise), and the
    hardware class of the series."""

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
    host_class: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the step as a JSON-ready dict."""
        return asdict(self)


def series_name(cell: str, host_class: str, several: bool) -> str:
    """Return the name of the series of `cell` on `host_class`: the cell key, followed by
    the class when the cell was measured on `several` classes."""
    return f"{cell} on {host_class or NO_HOST_CLASS}" if several else cell


def collect(run_dirs: Sequence[Path | StoredRun]) -> dict[str, list[RunPoint]]:
    """Return, per series (one cell on one hardware class, named by `series_name`), the
    points of every run in `run_dirs` (folders, or runs already read) that measured it
    ok, ordered by run start time (then run id).

    Raises FileNotFoundError when a folder is not a run, DamagedRun when its manifest
    cannot be used.
    """
    runs = [as_run(run_dir) for run_dir in run_dirs]
    measured = [
        r
        for run in runs
        for r in run.records
        if r.kind == "cell" and not r.warmup and r.status == "ok"
    ]
    classes = host_classes(measured)
    by_cell: dict[tuple[str, str], list[RunPoint]] = {}
    for run in runs:
        manifest = run.manifest
        groups: dict[tuple[str, str], list[float]] = {}
        strategy: dict[tuple[str, str], str] = {}
        first_start = ""
        commit = str(manifest.get("provenance", {}).get("harness_commit", ""))
        for r in run.records:
            if r.kind != "cell" or r.warmup or r.status != "ok":
                continue
            key = (cell_of(r).key, host_class_of(r, classes))
            groups.setdefault(key, []).append(r.wall_s)
            strategy[key] = r.strategy
            first_start = first_start or r.started_at
            commit = commit or str(r.provenance.get("harness_commit", ""))
        started = str(manifest.get("started_at") or first_start)
        for key, samples in groups.items():
            point = RunPoint(
                key[0], strategy[key], run.run_id, started, commit, tuple(samples), key[1]
            )
            by_cell.setdefault(key, []).append(point)
    per_cell: dict[str, int] = {}
    for cell, _ in by_cell:
        per_cell[cell] = per_cell.get(cell, 0) + 1
    series = {
        series_name(cell, host_class, per_cell[cell] > 1): points
        for (cell, host_class), points in by_cell.items()
    }
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
                at.host_class,
            )
        )
        segment(lo, k)
        segment(k, hi)

    segment(0, len(points))
    return sorted(found, key=lambda s: s.index)


def series_frame(series: dict[str, list[RunPoint]]) -> pd.DataFrame:
    """Return one row per (cell, host class, run): cell, strategy, run_id, started_at,
    commit, n, median_s, host_class."""
    rows = [
        {
            "cell": p.cell,
            "strategy": p.strategy,
            "run_id": p.run_id,
            "started_at": p.started_at,
            "commit": p.commit,
            "n": len(p.samples),
            "median_s": p.median_s,
            "host_class": p.host_class,
        }
        for points in series.values()
        for p in points
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "cell",
            "strategy",
            "run_id",
            "started_at",
            "commit",
            "n",
            "median_s",
            "host_class",
        ],
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
    """Return the series of `run_dirs` (one per cell and hardware class; only those of
    the cell keys in `cells`, when given) and the change points detected in each.

    Raises FileNotFoundError when a folder is not a run.
    """
    series = collect(run_dirs)
    if cells:
        series = {k: v for k, v in series.items() if v[0].cell in set(cells)}
    return series, {k: detect(v, alpha, min_step) for k, v in series.items()}
