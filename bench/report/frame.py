"""The data layer of reports: one tidy DataFrame of stored results, and the tables every
chart, table and recommendation is drawn from (built once per report, no plotting here)."""

from __future__ import annotations

import importlib.util
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.engine.attribution import GROUPS, SHARED_ENGINE, toolchain_share
from bench.engine.matrix import (
    HOST_EMULATOR,
    emulator_axis,
    host_class_of,
    host_classes,
    run_classes,
    variant_name,
)
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
    # Added with the emulator axis and build nodes, at the end so that columns read by
    # position stay put.
    "emulator",
    "emulator_version",
    "emulator_fault",
    "node",
    "built_on",
    "host_class",
]


STEP_CATEGORIES = ("base-image", "toolchain", "copy", "compile", "export", "internal", "other")
VM_PHASES = ("boot", "build", "shutdown")


def frame(records: list[Record]) -> pd.DataFrame:
    """Return one row per record with every axis and measure as a column.

    `host_class` is the hardware class measured on (`bench.engine.matrix.host_class_of`:
    a record older than the field takes its cell's one class), '' when none is known.
    """
    rows = []
    classes, runs = host_classes(records), run_classes(records)
    for r in records:
        emulator = emulator_axis(r)
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
            "emulator": emulator or HOST_EMULATOR,
            # A node is part of a cell's identity: its rows never pool with this host's.
            "variant": variant_name(r.strategy, r.cpu, emulator) + (f"@{r.node}" if r.node else ""),
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
            "emulator_version": emulator_version(r),
            "emulator_fault": r.emulator_fault,
            "node": r.node,
            "built_on": r.built_on,
            "host_class": host_class_of(r, classes, runs),
        }
        for cat in STEP_CATEGORIES:
            row[f"step_{cat}_s"] = steps.get(cat)
        for phase in VM_PHASES:
            row[f"vm_{phase}_s"] = getattr(guest, f"{phase}_s") if guest else None
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def emulator_version(r: Record) -> str:
    """Return the QEMU version a record names: what its binaries reported, else its
    Debian version ('' when the record names no emulator)."""
    facts = r.emulator
    if facts is None:
        return ""
    return facts.reported or facts.version


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
    "host_class",
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
    return (
        table[WALL_COLUMNS]
        .sort_values([*SUMMARY_KEYS, "host_class"], kind="stable")
        .reset_index(drop=True)
    )


AXIS_KEYS = ["scenario", "size", "strategy", "variant", "cpu", "emulator", "cache", "platform"]
"""The axes that name a cell in `frame()` rows."""
CELL_KEYS = [*AXIS_KEYS, "host_class"]
"""The columns every statistic groups by: the axes and the hardware class, so that the
same cell measured on two classes of host is two cells, never one sample."""


def host_class_values(table: pd.DataFrame) -> list[str]:
    """Return the hardware classes `table` (rows with a `host_class` column, or none)
    holds, sorted; [''] when it names none."""
    if "host_class" not in table.columns or table.empty:
        return [""]
    return sorted({_class_text(v) for v in table["host_class"]})


def class_names(classes: Sequence[str]) -> dict[str, str]:
    """Return the short name of each hardware class of a report: host class 1, 2, ... in
    the order given (`host_class_values`)."""
    return {c: f"host class {i}" for i, c in enumerate(classes, start=1)}


def _class_text(value: Any) -> str:
    # A table built without the column (or with a gap in it) measured on one host.
    return value if isinstance(value, str) else ""


def _row_class(row: pd.Series) -> str:
    return _class_text(row.get("host_class", ""))


def host_class_column(table: pd.DataFrame) -> pd.Series:
    """Return the `host_class` of each row of `table` as text ('' where it has none)."""
    if "host_class" not in table.columns:
        return pd.Series("", index=table.index, dtype=object)
    return table["host_class"].map(_class_text)


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

    @property
    def host_classes(self) -> list[str]:
        """The hardware classes the frame's records were measured on, sorted ('' for
        records that name none)."""
        return host_class_values(self.frame)

    def of_class(self, host_class: str) -> ReportData:
        """Return this data restricted to the records measured on `host_class` (the same
        runs, history and skipped results): what one section of a report on several
        hardware classes shows."""
        classes, by_run = host_classes(self.records), run_classes(self.records)

        def own(table: pd.DataFrame) -> pd.DataFrame:
            return table[host_class_column(table) == host_class].reset_index(drop=True)

        runs = tuple(
            replace(
                run,
                records=tuple(
                    r for r in run.records if host_class_of(r, classes, by_run) == host_class
                ),
            )
            for run in self.runs
        )
        return replace(
            self,
            runs=runs,
            frame=own(self.frame),
            stats=own(self.stats),
            wall=own(self.wall),
            slowdown=own(self.slowdown),
        )


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


RefKey = tuple[str, int, str, str, str]


def _ref_key(row: pd.Series) -> RefKey:
    return (
        str(row["scenario"]),
        int(row["size"]),
        str(row["cache"]),
        str(row["platform"]),
        _row_class(row),
    )


def native_references(table: pd.DataFrame) -> dict[RefKey, pd.Series]:
    """Return, per (scenario, size, cache, platform, host class) of `table` (rows with
    those columns, strategy, variant and median_s; no `host_class` column is one class),
    the native cell that is the reference for that platform: native on that platform
    when it ran, else the fastest native cell of the same scenario, size and cache (the
    host's own platform), always of the same hardware class. Only cells (not combined
    builds) are references."""
    refs: dict[RefKey, pd.Series] = {}
    native = table[table["strategy"] == "native"]
    if "kind" in native.columns:
        native = native[native["kind"] == "cell"]
    native_classes = host_class_column(native)
    for _, row in table.iterrows():
        key = _ref_key(row)
        same = native[
            (native["scenario"] == key[0])
            & (native["size"] == key[1])
            & (native["cache"] == key[2])
            & (native_classes == key[4])
        ]
        if same.empty:
            continue
        own = same[same["platform"] == key[3]]
        pick = own if not own.empty else same
        refs[key] = pick.sort_values("median_s").iloc[0]
    return refs


def versus_native(table: pd.DataFrame) -> pd.DataFrame:
    """Return `table` (rows with scenario, size, strategy, variant, cache, platform,
    host_class and median_s) with three more columns: `reference` (the native cell it is
    compared with, of the same hardware class, "variant platform", see
    `native_references`; "" when none ran), `ref_median_s` and `vs_native` (median / the
    reference's median; NaN without a reference).

    This is the one "versus native" computation: the wall-time table and chart, the
    slowdown table and heatmap and the recommendation all read it.
    """
    refs = native_references(table)
    out = table.copy()
    references: list[str] = []
    ref_medians: list[float] = []
    for _, row in table.iterrows():
        ref = refs.get(_ref_key(row))
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


EMULATOR_COLUMNS = [
    "scenario",
    "size",
    "strategy",
    "cpu",
    "cache",
    "platform",
    "emulator",
    "version",
    "reference",
    "reference_version",
    "pairs",
    "ratio",
    "ci_low",
    "ci_high",
    "p_slower",
    "p_faster",
    "median_s",
    "n",
    "failed",
    "crashes",
    "flakes",
    "faults",
    "host_class",
]
"""The columns of `emulator_versions` (emulators.csv)."""
_VERSION_GROUP = ["scenario", "size", "strategy", "cpu", "cache", "platform", "host_class"]


def _version_order(version: str, name: str) -> tuple[tuple[int, ...], str]:
    """Sort key of an emulator: its QEMU version's numbers (10.0.13 -> (10, 0, 13))."""
    head = version.split(" ", 1)[0]
    numbers = tuple(int(n) for n in re.findall(r"\d+", head.split("+", 1)[0])[:3])
    return numbers or (10**6,), name


def _ok_times(group: pd.DataFrame, emulator: str) -> dict[tuple[str, int], float]:
    """Return {(run, repetition): wall seconds} of the ok rows of `emulator` in `group`."""
    rows = group[(group["emulator"] == emulator) & (group["status"] == "ok")]
    return {(str(r["run_id"]), int(r["rep"])): float(r["wall_s"]) for _, r in rows.iterrows()}


def emulator_versions(df: pd.DataFrame) -> pd.DataFrame:
    """Return, per cell (scenario, size, strategy, CPU variant, cache, platform, host
    class) measured under more than one emulator, or under a pinned one, one row per
    emulator: its ratio to the reference emulator from the paired comparison within
    each run (repetition i of both, in the same run, form a pair;
    `bench.analysis.paired.paired_t`: the
    geometric-mean ratio, its 95 % t interval and one-sided p-values), its median, and
    its failed repetitions, emulator crashes (failed with `emulator-crash`), retried
    flakes and the faults named.

    The reference is the host's emulator where the cell ran under it, else the lowest
    QEMU version measured. With fewer than 2 pairs the ratio is NaN. Empty when no cell
    ran under a pinned emulator.
    """
    from bench.analysis.paired import paired_t
    from bench.engine.matrix import EMULATOR_STRATEGIES

    cells = df[
        (df["kind"] == "cell")
        & ~df["warmup"].astype(bool)
        & df["strategy"].isin(list(EMULATOR_STRATEGIES))
    ]
    if cells.empty or set(cells["emulator"]) <= {HOST_EMULATOR}:
        return pd.DataFrame(columns=EMULATOR_COLUMNS)
    out: list[dict[str, Any]] = []
    for key, group in cells.groupby(_VERSION_GROUP, sort=True):
        versions = {
            str(e): next((str(v) for v in rows["emulator_version"] if v), "")
            for e, rows in group.groupby("emulator", sort=False)
        }
        if set(versions) <= {HOST_EMULATOR}:
            continue
        order = sorted(versions, key=lambda e: _version_order(versions[e], e))
        reference = HOST_EMULATOR if HOST_EMULATOR in versions else order[0]
        order = [reference, *(e for e in order if e != reference)]
        ref_times = _ok_times(group, reference)
        for emulator in order:
            rows = group[group["emulator"] == emulator]
            times = _ok_times(group, emulator)
            common = sorted(set(ref_times) & set(times))
            ratio = low = high = math.nan
            p_slow: float | None = None
            p_fast: float | None = None
            if emulator == reference:
                ratio = low = high = 1.0
            elif len(common) >= 2:
                ratio, low, high, p_slow, p_fast = paired_t(
                    [ref_times[k] for k in common], [times[k] for k in common]
                )
            faults = [str(f) for f in rows["emulator_fault"] if f]
            out.append(
                {
                    **dict(zip(_VERSION_GROUP, key, strict=True)),
                    "emulator": emulator,
                    "version": versions[emulator],
                    "reference": reference,
                    "reference_version": versions[reference],
                    "pairs": len(common),
                    "ratio": ratio,
                    "ci_low": low,
                    "ci_high": high,
                    "p_slower": p_slow,
                    "p_faster": p_fast,
                    "median_s": statistics.median(times.values()) if times else math.nan,
                    "n": len(times),
                    "failed": int(rows["status"].isin(["failed", "timeout"]).sum()),
                    "crashes": int((rows["failure_class"] == "emulator-crash").sum()),
                    "flakes": int(rows["flakes"].sum()),
                    "faults": "; ".join(dict.fromkeys(faults)),
                }
            )
    return pd.DataFrame(out, columns=EMULATOR_COLUMNS)


ATTRIBUTION_COLUMNS = [
    *AXIS_KEYS,
    "n",
    "wall_s",
    "total_cpu_s",
    "accounted_cpu_s",
    "coverage",
    "processes",
    *[f"cpu_{g}_s" for g in GROUPS],
    "toolchain_share",
    "shared",
    "host_class",
]
"""`attribution_table`: medians over a cell's measured repetitions that were attributed;
`shared` when another build ran on the engine during any of them."""


def attribution_table(records: Sequence[Record]) -> pd.DataFrame:
    """Return one row per cell of the measured ok cell `records` whose attribution
    accounted any process: medians over its repetitions of the wall time, the build's
    CPU time (the coverage's denominator), the accounted CPU time, the coverage, the
    process count, the CPU seconds of each program group and the toolchain's share
    (compiler, assembler and linker over the accounted CPU time); n the repetitions."""
    rows = []
    classes = host_classes(records)
    for r in records:
        a = r.attribution
        if r.kind != "cell" or r.status != "ok" or r.warmup or a is None or not a.processes:
            continue
        emulator = emulator_axis(r)
        row: dict[str, Any] = {
            "scenario": r.scenario,
            "size": r.size,
            "strategy": r.strategy,
            "variant": variant_name(r.strategy, r.cpu, emulator),
            "cpu": r.cpu or "default",
            "emulator": emulator or HOST_EMULATOR,
            "cache": r.cache,
            "platform": r.platform,
            "wall_s": r.wall_s,
            "total_cpu_s": a.total_cpu_s,
            "accounted_cpu_s": a.accounted_cpu_s,
            "coverage": a.coverage,
            "processes": a.processes,
            "toolchain_share": toolchain_share(a),
            "shared": SHARED_ENGINE in a.notes,
            "host_class": host_class_of(r, classes),
        }
        for g in GROUPS:
            row[f"cpu_{g}_s"] = a.cpu_by_group.get(g, 0.0)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=ATTRIBUTION_COLUMNS)
    part = pd.DataFrame(rows)
    measures = [c for c in ATTRIBUTION_COLUMNS if c not in (*CELL_KEYS, "n", "shared")]
    part[measures] = part[measures].apply(pd.to_numeric, errors="coerce")
    table = part.groupby(CELL_KEYS, as_index=False, sort=True)[measures].median()
    table["n"] = part.groupby(CELL_KEYS, sort=True).size().to_numpy()
    table["shared"] = part.groupby(CELL_KEYS, sort=True)["shared"].any().to_numpy()
    return table[ATTRIBUTION_COLUMNS].reset_index(drop=True)


AMDAHL_COLUMNS = [
    "scenario",
    "size",
    "cpu",
    "cache",
    "platform",
    "emulator",
    "qemu_user_s",
    "toolchain_share",
    "limit_s",
    "hybrid_s",
    "native_s",
    "limit_vs_native",
    "hybrid_vs_native",
    "saving_reached",
    "shared",
    "host_class",
]
"""`amdahl_table`: per emulated platform and host class, what hybrid can save and what
it saved."""


def amdahl_table(attribution: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Return, per qemu-user cell of `attribution` (`attribution_table`) off the host's
    own platform (where a native cell ran, qemu-user emulates nothing), Amdahl's limit
    for hybrid: hybrid runs the compiler, assembler and linker natively, so with the
    share f of the qemu-user build's accounted CPU time spent in them, the best hybrid
    can do is the qemu-user median wall time x (1 - f) (those programs taking no time
    at all). Beside it: hybrid's median (same scenario, size, CPU variant, cache,
    platform and host class in `stats`; NaN when it did not run), the native reference's median and
    both ratios to it, `saving_reached`: the part of the possible saving hybrid got,
    (qemu-user - hybrid) / (qemu-user - limit), and `shared` when another build ran on
    the engine during either cell (its figures are then not this workload's alone).

    Wall time scales with CPU time only as far as the build's parallelism stays the
    same: the limit is an estimate, not a bound.
    """
    out: list[dict[str, Any]] = []
    ranked = versus_native(stats) if not stats.empty else stats
    emulated = attribution[
        (attribution["strategy"] == "qemu-user") & attribution["toolchain_share"].notna()
    ]
    for _, row in emulated.iterrows():
        key = {k: row[k] for k in ("scenario", "size", "cpu", "cache", "platform", "host_class")}
        same = ranked
        for k, v in key.items():
            same = same[same[k] == v] if not same.empty else same
        # One qemu-user cell per emulator: the attributed one's (hybrid has no such axis).
        qemu = (
            same[(same["strategy"] == "qemu-user") & (same["emulator"] == row["emulator"])]
            if not same.empty
            else same
        )
        if qemu.empty:
            continue
        if str(qemu["reference"].iloc[0]).endswith(f" {key['platform']}"):
            continue  # the host's own platform: qemu-user emulates nothing there
        hybrid = same[same["strategy"] == "hybrid"]
        t_q = float(qemu["median_s"].iloc[0])
        share = float(row["toolchain_share"])
        limit = t_q * (1 - share)
        t_h = float(hybrid["median_s"].iloc[0]) if not hybrid.empty else float("nan")
        native = float(qemu["ref_median_s"].iloc[0])
        possible = t_q - limit
        shared = bool(row["shared"]) or bool(
            attribution[
                (attribution["strategy"] == "hybrid")
                & (attribution["scenario"] == key["scenario"])
                & (attribution["size"] == key["size"])
                & (attribution["cpu"] == key["cpu"])
                & (attribution["cache"] == key["cache"])
                & (attribution["platform"] == key["platform"])
                & (attribution["host_class"] == key["host_class"])
            ]["shared"].any()
        )
        out.append(
            {
                **key,
                "emulator": row["emulator"],
                "shared": shared,
                "qemu_user_s": t_q,
                "toolchain_share": share,
                "limit_s": limit,
                "hybrid_s": t_h,
                "native_s": native,
                "limit_vs_native": limit / native,
                "hybrid_vs_native": t_h / native,
                "saving_reached": (t_q - t_h) / possible if possible > 0 else float("nan"),
            }
        )
    return pd.DataFrame(out, columns=AMDAHL_COLUMNS)
