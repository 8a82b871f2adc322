"""Change points in the build time of each cell across stored runs.

Method: binary segmentation on the pooled repetitions of consecutive runs. For a stretch
of runs, every split between two runs is tried; the repetitions before and after the split
are compared with a two-sided Mann-Whitney U test (exact for small samples). The split
with the smallest p-value is a change point when that p-value, Bonferroni-corrected for
the number of splits tried, is under `alpha` and the medians on either side differ by at
least `min_step` (relative); the search then recurses into both sides. A run's
repetitions stay together, so a change is always placed at a run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import mannwhitneyu

from bench.engine.matrix import Cell
from bench.engine.results import StoredRun, as_run

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_STEP = 0.05
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
    the pooled repetitions either side) at run `run_id`, the first run after the change."""

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
            key = Cell(r.scenario, r.size, r.strategy, r.platform, r.cache, r.cpu).key
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


def _p_value(left: Sequence[float], right: Sequence[float]) -> float:
    method = "exact" if len(left) + len(right) <= EXACT_LIMIT else "asymptotic"
    return float(mannwhitneyu(left, right, alternative="two-sided", method=method).pvalue)


def detect(
    points: Sequence[RunPoint], alpha: float = DEFAULT_ALPHA, min_step: float = DEFAULT_MIN_STEP
) -> list[Step]:
    """Return the change points of one cell's `points` (ordered runs), earliest first, by
    binary segmentation with a Mann-Whitney test per split (see the module docstring)."""
    found: list[Step] = []

    def segment(lo: int, hi: int) -> None:
        if hi - lo < 2:
            return
        best: tuple[float, int] | None = None
        for k in range(lo + 1, hi):
            left = [x for p in points[lo:k] for x in p.samples]
            right = [x for p in points[k:hi] for x in p.samples]
            before, after = statistics.median(left), statistics.median(right)
            if before <= 0 or abs(after / before - 1) < min_step:
                continue
            p = _p_value(left, right)
            if best is None or p < best[0]:
                best = (p, k)
        if best is None:
            return
        p_adj = min(1.0, best[0] * (hi - lo - 1))
        if p_adj >= alpha:
            return
        k = best[1]
        left = [x for p in points[lo:k] for x in p.samples]
        right = [x for p in points[k:hi] for x in p.samples]
        before, after = float(statistics.median(left)), float(statistics.median(right))
        at = points[k]
        found.append(
            Step(at.cell, at.run_id, at.started_at, at.commit, k, before, after,
                 after / before, p_adj, len(left), len(right))
        )  # fmt: skip
        segment(lo, k)
        segment(k, hi)

    segment(0, len(points))
    return sorted(found, key=lambda s: s.index)


def series_frame(series: dict[str, list[RunPoint]]) -> pd.DataFrame:
    """Return one row per (cell, run): cell, strategy, run_id, started_at, commit, n,
    median_s."""
    rows = [
        {"cell": p.cell, "strategy": p.strategy, "run_id": p.run_id, "started_at": p.started_at,
         "commit": p.commit, "n": len(p.samples), "median_s": p.median_s}
        for points in series.values() for p in points
    ]  # fmt: skip
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
