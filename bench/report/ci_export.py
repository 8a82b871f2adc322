"""Stored results in the formats CI dashboards read: github-action-benchmark's
`customSmallerIsBetter` JSON and Bencher's Metric Format (BMF), one benchmark per cell
with its median wall time and the confidence interval of that median."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from bench.report.frame import cell_statistics

GITHUB_ACTION_BENCHMARK = "github-action-benchmark"
BENCHER = "bencher"
BENCHER_MEASURE = "build-time"  # Bencher's own slug for a build's duration
# Bencher names a benchmark by at most 1024 characters.
BENCHER_NAME_MAX = 1024


def benchmark_name(row: pd.Series) -> str:
    """Return a cell's benchmark name: `scenario/strategy/platform[/size N][/cache]`
    (`/` groups the charts of a dashboard)."""
    parts = [str(row["scenario"]), str(row["variant"]), str(row["platform"])]
    if int(row["size"]) != 1:
        parts.append(f"size {row['size']}")
    if str(row["cache"]) != "cold":
        parts.append(str(row["cache"]))
    return "/".join(parts)


def _stats(df: pd.DataFrame) -> pd.DataFrame:
    stats = cell_statistics(df)
    return stats[stats["n"] > 0]


def github_action_benchmark(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Return github-action-benchmark's customSmallerIsBetter entries: `name`, `unit`
    (seconds), `value` (the median), `range` (the median's confidence interval, as
    text) and `extra` (n, coverage, CV, validation, as text)."""
    out = []
    for _, r in _stats(df).iterrows():
        low, high = float(r["ci_low_s"]), float(r["ci_high_s"])
        validated = "-" if r["validated"] is None else str(bool(r["validated"]))
        extra = (
            f"n={int(r['n'])}; median CI [{low:.3f}, {high:.3f}] s "
            f"({float(r['ci_coverage']):.0%} coverage); CV {float(r['cv']):.1%}; "
            f"validated: {validated}"
        )
        out.append(
            {
                "name": benchmark_name(r),
                "unit": "s",
                "value": round(float(r["median_s"]), 3),
                # The interval is asymmetric; half its width is the ± the dashboard shows.
                "range": f"± {(high - low) / 2:.3f}",
                "extra": extra,
            }
        )
    return out


def bencher(df: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Return Bencher Metric Format JSON: per cell, a `build-time` measure with `value`
    (the median, seconds) and `lower_value`/`upper_value` (its confidence interval)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for _, r in _stats(df).iterrows():
        name = benchmark_name(r)[:BENCHER_NAME_MAX]
        out[name] = {
            BENCHER_MEASURE: {
                "value": round(float(r["median_s"]), 3),
                "lower_value": round(float(r["ci_low_s"]), 3),
                "upper_value": round(float(r["ci_high_s"]), 3),
            }
        }
    return out


def export_text(df: pd.DataFrame, fmt: str) -> str:
    """Return `df`'s cells as `fmt` (github-action-benchmark or bencher) JSON text.
    Raises ValueError for another format."""
    if fmt == GITHUB_ACTION_BENCHMARK:
        return json.dumps(github_action_benchmark(df), indent=2, ensure_ascii=False) + "\n"
    if fmt == BENCHER:
        return json.dumps(bencher(df), indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}; valid: {GITHUB_ACTION_BENCHMARK}, {BENCHER}")
