"""The data layer of reports: one tidy DataFrame of stored results, and the tables every
chart, table and recommendation is drawn from (built once per report, no plotting here)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.engine.results import (
    DamagedRun,
    LoadWarning,
    Record,
    StoredRun,
    list_runs,
    read_runs,
    replace_file,
)
from bench.report import EXPORT_FORMATS

COLUMNS: list[str] = [
    "run_id",
    "kind",
    "scenario",
    "size",
    "strategy",
    "cpu",
    "variant",
    "cache",
    "warmup",
    "platform",
    "rep",
    "status",
    "wall_s",
    "started_at",
    "failure_class",
    "validation_passed",
    "tag",
    "digest",
    "compiler",
    "host",
    "commit",
    "reason",
    "accel",
    "qemu_cpu",
    "recipe_sha256",
    "cpu_user_s",
    "cpu_system_s",
    "peak_memory_bytes",
    "flakes",
    "phase",
    "approximate",
    *[
        f"step_{c}_s"
        for c in ("base-image", "toolchain", "copy", "compile", "export", "internal", "other")
    ],
    *[f"vm_{p}_s" for p in ("boot", "build", "shutdown")],
    "node",
    "built_on",
    "host_class",
]


STEP_CATEGORIES = ("base-image", "toolchain", "copy", "compile", "export", "internal", "other")
VM_PHASES = ("boot", "build", "shutdown")


def frame(records: list[Record]) -> pd.DataFrame:
    """Return one row per record with every axis and measure as a column."""
    rows = []
    for r in records:
        steps = r.steps.by_category
        res = r.resources
        guest = r.guest
        row: dict[str, Any] = {
            "run_id": r.run_id,
            "kind": r.kind,
            "scenario": r.scenario,
            "size": r.size,
            "strategy": r.strategy,
            "cpu": r.cpu or "default",
            # A node is part of a cell's identity: its rows never pool with this host's.
            "variant": r.strategy
            + (f"-{r.cpu}" if r.cpu else "")
            + (f"@{r.node}" if r.node else ""),
            "cache": r.cache,
            "warmup": r.warmup,
            "platform": r.platform or "all",
            "rep": r.rep,
            "status": r.status,
            "wall_s": r.wall_s,
            "started_at": r.started_at,
            "failure_class": r.failure_class,
            "validation_passed": r.validation.get("passed") if r.validation else None,
            "tag": r.tag,
            "digest": r.digest,
            "compiler": r.compiler.version,
            "accel": guest.accel if guest else "",
            "qemu_cpu": guest.cpu if guest else "",
            "host": r.provenance.get("hostname", ""),
            "commit": r.provenance.get("harness_commit", ""),
            "reason": r.reason,
            "recipe_sha256": r.recipe_sha256,
            "cpu_user_s": res.cpu_user_s if res else None,
            "cpu_system_s": res.cpu_system_s if res else None,
            "peak_memory_bytes": res.peak_above_baseline_bytes if res else None,
            "flakes": len(r.flakes),
            "phase": r.phase,
            "approximate": r.approximate,
            "node": r.node,
            "built_on": r.built_on,
            "host_class": r.host_class,
        }
        for cat in STEP_CATEGORIES:
            row[f"step_{cat}_s"] = steps.get(cat)
        for phase in VM_PHASES:
            row[f"vm_{phase}_s"] = getattr(guest, f"{phase}_s") if guest else None
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


SUMMARY_KEYS = ["scenario", "size", "kind", "variant", "strategy", "cache", "platform"]
WALL_COLUMNS = [
    *SUMMARY_KEYS,
    "median_s",
    "n",
    "vs_native",
    "cpu",
    "ci_low_s",
    "ci_high_s",
    "ci_coverage",
    "reference",
]
"""The columns of `wall_summary`; walltime.csv holds them up to `vs_native` as before."""


def wall_summary(df: pd.DataFrame, stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return one row per cell and per combined build of the measured ok repetitions in
    `df`: median wall time, n, the median's confidence interval and the ratio to native
    (`versus_native`). `stats` is `cell_statistics(df)` when the caller has it already.

    This table feeds walltime.csv, the wall-time chart and `run`'s closing table.
    """
    cells = cell_statistics(df) if stats is None else stats
    combined = _describe_groups(_measured(df, "combined"))
    parts = [t.assign(kind=k) for t, k in ((cells, "cell"), (combined, "combined")) if not t.empty]
    if not parts:
        return pd.DataFrame(columns=WALL_COLUMNS)
    table = versus_native(pd.concat(parts, ignore_index=True))
    return table[WALL_COLUMNS].sort_values(SUMMARY_KEYS, kind="stable").reset_index(drop=True)


CELL_KEYS = ["scenario", "size", "strategy", "variant", "cpu", "cache", "platform"]
"""The columns that name a cell in `frame()` rows."""


def history_runs(run_dirs: Sequence[Path]) -> list[Path]:
    """Return the runs a history chart covers: the given runs when there are several,
    else every run stored beside the one given (its results folder)."""
    if len(run_dirs) > 1:
        return list(run_dirs)
    return list_runs(run_dirs[0].parent) if run_dirs else []


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows, read from stored results once: the runs, the tidy
    frame of their usable records and the tables derived from it, the runs the history
    covers, and the stored results skipped as damaged."""

    runs: tuple[StoredRun, ...]
    frame: pd.DataFrame
    stats: pd.DataFrame  # cell_statistics(frame)
    wall: pd.DataFrame  # wall_summary(frame, stats)
    slowdown: pd.DataFrame  # slowdown_table(stats)
    history: tuple[StoredRun, ...]
    skipped: tuple[LoadWarning, ...]

    @property
    def manifests(self) -> list[dict[str, Any]]:
        """The manifests of the runs, in the order given."""
        return [run.manifest for run in self.runs]

    @property
    def records(self) -> list[Record]:
        """Every usable record of the runs, in the order given."""
        return [r for run in self.runs for r in run.records]


def load_report_data(
    run_dirs: Sequence[Path | StoredRun], skipped: Sequence[LoadWarning] = ()
) -> ReportData:
    """Return the data of a report on `run_dirs` (folders, or runs already read): each run
    is read once through the one loader, those the history covers beside them too (see
    `history_runs`), and the frame and its tables are built once. `skipped` are the
    stored results the caller already left out; the ones left out here follow them.

    Raises ValueError when no run is given, FileNotFoundError when a folder is not a run,
    DamagedRun when no run given can be used.
    """
    if not run_dirs:
        raise ValueError("no run to report on")
    runs, damaged = read_runs(run_dirs)
    if not runs:
        raise DamagedRun(damaged[0])
    # Runs already read are not read again; the others' damaged files are named too.
    given = {run.path: run for run in runs}
    history, hist_damaged = read_runs(
        [given.get(p, p) for p in history_runs([run.path for run in runs])]
    )
    df = frame([r for run in runs for r in run.records])
    stats = cell_statistics(df)
    return ReportData(
        runs=tuple(runs),
        frame=df,
        stats=stats,
        wall=wall_summary(df, stats),
        slowdown=slowdown_table(stats),
        history=tuple(history),
        skipped=tuple(dict.fromkeys([*skipped, *damaged, *hist_damaged])),
    )


class ExportUnavailable(RuntimeError):
    """The export format needs a library that is not installed."""


def export_frame(df: pd.DataFrame, fmt: str, out: Path | None) -> str | bool:
    """Write `df` as `fmt` (csv, parquet or json: an array of row objects) to `out`,
    atomically (temp file + os.replace).

    Returns the text instead when `out` is None (csv and json only), else whether an
    existing file was replaced. Raises ValueError for an unknown format, parquet without
    `out` or an `out` that is a folder, ExportUnavailable when parquet is asked for and
    pyarrow is missing.
    """
    if out is not None and out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        if out is None:
            raise ValueError("parquet is binary: give --out FILE")
        if importlib.util.find_spec("pyarrow") is None:
            raise ExportUnavailable(
                "parquet needs pyarrow: pip install pyarrow (or use --format csv)"
            )
        return replace_file(out, lambda tmp: df.to_parquet(tmp, index=False))
    text = df.to_csv(index=False) if fmt == "csv" else df.to_json(orient="records", indent=2)
    if out is None:
        return text
    return replace_file(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))


STAT_COLUMNS = [
    *CELL_KEYS,
    "n",
    "median_s",
    "ci_low_s",
    "ci_high_s",
    "ci_coverage",
    "cv",
    "warnings",
    "validated",
    "approximate",
]


def _measured(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    return df[(df["kind"] == kind) & (df["status"] == "ok") & ~df["warmup"].astype(bool)]


def _describe_groups(rows: pd.DataFrame) -> pd.DataFrame:
    from bench.engine.stats import describe

    out: list[dict[str, Any]] = []
    for key, group in rows.groupby(CELL_KEYS, sort=True):
        st = describe([float(x) for x in group.sort_values("started_at")["wall_s"]])
        checked = [v for v in group["validation_passed"] if v is not None and v == v]
        out.append(
            {
                **dict(zip(CELL_KEYS, key, strict=True)),
                "n": st.n,
                "median_s": st.median,
                "ci_low_s": st.ci_low,
                "ci_high_s": st.ci_high,
                "ci_coverage": st.ci_coverage,
                "cv": st.cv,
                "warnings": st.warnings,
                "validated": all(bool(v) for v in checked) if checked else None,
                "approximate": next((str(a) for a in group["approximate"] if a and a == a), ""),
            }
        )
    return pd.DataFrame(out, columns=STAT_COLUMNS)


def cell_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """Return one row per cell of the measured (not warm-up) ok cell repetitions in `df`:
    n, median, the order-statistic confidence interval of the median (stats.median_ci)
    with its real coverage, CV, stats warnings as a tuple, and `validated` (True when
    every repetition that carries a validation passed, None when none does)."""
    return _describe_groups(_measured(df, "cell"))


def native_references(table: pd.DataFrame) -> dict[tuple[str, int, str, str], pd.Series]:
    """Return, per (scenario, size, cache, platform) of `table` (rows with those columns,
    strategy, variant and median_s), the native cell that is the reference for that
    platform: native on that platform when it ran, else the fastest native cell of the
    same scenario, size and cache (the host's own platform). Only cells (not combined
    builds) are references."""
    refs: dict[tuple[str, int, str, str], pd.Series] = {}
    native = table[table["strategy"] == "native"]
    if "kind" in native.columns:
        native = native[native["kind"] == "cell"]
    for _, row in table.iterrows():
        key = (str(row["scenario"]), int(row["size"]), str(row["cache"]), str(row["platform"]))
        same = native[
            (native["scenario"] == key[0])
            & (native["size"] == key[1])
            & (native["cache"] == key[2])
        ]
        if same.empty:
            continue
        own = same[same["platform"] == key[3]]
        pick = own if not own.empty else same
        refs[key] = pick.sort_values("median_s").iloc[0]
    return refs


def versus_native(table: pd.DataFrame) -> pd.DataFrame:
    """Return `table` (rows with scenario, size, strategy, variant, cache, platform and
    median_s) with three more columns: `reference` (the native cell it is compared with,
    "variant platform", see `native_references`; "" when none ran), `ref_median_s` and
    `vs_native` (median / the reference's median; NaN without a reference).

    This is the one "versus native" computation: the wall-time table and chart, the
    slowdown table and heatmap and the recommendation all read it.
    """
    refs = native_references(table)
    out = table.copy()
    references: list[str] = []
    ref_medians: list[float] = []
    for _, row in table.iterrows():
        key = (str(row["scenario"]), int(row["size"]), str(row["cache"]), str(row["platform"]))
        ref = refs.get(key)
        references.append("" if ref is None else f"{ref['variant']} {ref['platform']}")
        ref_medians.append(float("nan") if ref is None else float(ref["median_s"]))
    out["reference"] = pd.Series(references, index=table.index, dtype=object)
    out["ref_median_s"] = pd.Series(ref_medians, index=table.index, dtype=float)
    out["vs_native"] = out["median_s"].astype(float) / out["ref_median_s"]
    return out


SLOWDOWN_COLUMNS = [*CELL_KEYS, "median_s", "reference", "ref_median_s", "ratio"]


def slowdown_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Return the cells of `stats` (`cell_statistics` rows) that have a native reference,
    with `reference`, `ref_median_s` and `ratio` (their `versus_native`)."""
    table = versus_native(stats)
    table = table[table["reference"] != ""].rename(columns={"vs_native": "ratio"})
    return table[SLOWDOWN_COLUMNS].reset_index(drop=True)
