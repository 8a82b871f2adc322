"""Reports from stored results only: one tidy DataFrame feeds every table and chart."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench.results import Record, load_run  # noqa: E402
from bench.strategies import REGISTRY  # noqa: E402

DEFAULT_REPORTS = Path(__file__).resolve().parent.parent / "reports"

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; one fixed
# colour per strategy in every chart.
STRATEGY_COLOURS = {
    "native": "#0072B2",
    "qemu-system": "#D55E00",
    "qemu-user": "#E69F00",
    "cross": "#009E73",
    "hybrid": "#CC79A7",
}

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
]


STEP_CATEGORIES = ("base-image", "toolchain", "copy", "compile", "export", "internal", "other")
VM_PHASES = ("boot", "build", "shutdown")


def frame(records: list[Record]) -> pd.DataFrame:
    """Return one row per record with every axis and measure as a column."""
    rows = []
    for r in records:
        d = asdict(r)
        steps = r.extra.get("step_seconds") or {}
        res = r.extra.get("resources") or {}
        row: dict[str, Any] = {
            "run_id": r.run_id, "kind": r.kind, "scenario": r.scenario, "size": r.size,
            "strategy": r.strategy, "cpu": r.cpu or "default",
            "variant": r.strategy + (f"-{r.cpu}" if r.cpu else ""), "cache": r.cache,
            "warmup": r.warmup, "platform": r.platform or "all", "rep": r.rep,
            "status": r.status, "wall_s": r.wall_s, "started_at": r.started_at,
            "failure_class": r.failure_class,
            "validation_passed": d["validation"].get("passed") if d["validation"] else None,
            "tag": r.tag, "digest": r.digest, "compiler": r.extra.get("compiler", ""),
            "accel": r.extra.get("accel", ""), "qemu_cpu": r.extra.get("cpu", ""),
            "host": r.provenance.get("hostname", ""),
            "commit": r.provenance.get("harness_commit", ""), "reason": r.reason,
            "recipe_sha256": r.extra.get("recipe_sha256", ""),
            "cpu_user_s": res.get("cpu_user_s"), "cpu_system_s": res.get("cpu_system_s"),
            "peak_memory_bytes": res.get("peak_above_baseline_bytes"),
            "flakes": r.extra.get("flakes", 0), "phase": r.extra.get("phase", ""),
            "approximate": r.extra.get("approximate", ""),
        }  # fmt: skip
        for cat in STEP_CATEGORIES:
            row[f"step_{cat}_s"] = steps.get(cat)
        for phase in VM_PHASES:
            row[f"vm_{phase}_s"] = r.extra.get(f"{phase}_s")
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


SUMMARY_KEYS = ["scenario", "size", "kind", "variant", "strategy", "cache", "platform"]


def wall_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Return median wall time per scenario, size, strategy variant, cache mode and
    platform of measured ok cells and combined builds, with the ratio to the native
    host-platform cold cell."""
    ok = df[(df["status"] == "ok") & df["kind"].isin(["cell", "combined"]) & ~df["warmup"]]
    if ok.empty:
        return pd.DataFrame(columns=[*SUMMARY_KEYS, "median_s", "n", "vs_native"])
    table = ok.groupby(SUMMARY_KEYS, as_index=False).agg(
        median_s=("wall_s", "median"), n=("wall_s", "size")
    )
    native = table[
        (table["kind"] == "cell") & (table["strategy"] == "native") & (table["cache"] == "cold")
    ]
    ref = native.groupby(["scenario", "size"])["median_s"].min().rename("native_s")
    table = table.join(ref, on=["scenario", "size"])
    table["vs_native"] = table["median_s"] / table["native_s"]
    return table.drop(columns=["native_s"])


def wall_chart(summary: pd.DataFrame) -> Figure:
    """Return a bar chart of median wall time per strategy and platform."""
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    cells = summary.sort_values(["kind", "platform"])
    order = [s for s in REGISTRY if s in set(cells["strategy"])]
    labels = []
    for x, (_, row) in enumerate(cells.iterrows()):
        colour = STRATEGY_COLOURS.get(str(row["strategy"]), "#999999")
        hatch = "//" if row["kind"] == "combined" else None
        ax.bar(
            x,
            row["median_s"],
            color=colour,
            hatch=hatch,
            edgecolor="black",
            linewidth=0.5,
            label=str(row["strategy"]),
        )
        ratio = row["vs_native"]
        text = f"{row['median_s']:.1f} s" + (f"\n{ratio:.1f}x" if pd.notna(ratio) else "")
        ax.annotate(text, (x, row["median_s"]), ha="center", va="bottom", fontsize=8)
        cache = "" if row["cache"] == "cold" else f" ({row['cache']})"
        labels.append(f"{row['variant']}{cache}\n{row['platform']}")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("median wall time (s)")
    scen = ", ".join(sorted(set(summary["scenario"])))
    ax.set_title(f"Build wall time per strategy and platform ({scen})")
    handles, names = ax.get_legend_handles_labels()
    unique = {n: h for h, n in zip(handles, names, strict=False)}
    ax.legend(
        [unique[s] for s in order if s in unique],
        [s for s in order if s in unique],
        title="strategy (hatched: combined build)",
        fontsize=8,
    )
    ax.margins(y=0.2)
    return fig


def write_basic_report(run_dir: Path, out_dir: Path) -> list[Path]:
    """Write `walltime.csv`, `cells.csv` and `walltime.png` for the run at `run_dir`.

    Returns the written paths.
    """
    _, records = load_run(run_dir)
    df = frame(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    cells_csv = out_dir / "cells.csv"
    df.to_csv(cells_csv, index=False)
    written.append(cells_csv)
    summary = wall_summary(df)
    summary_csv = out_dir / "walltime.csv"
    summary.to_csv(summary_csv, index=False, float_format="%.3f")
    written.append(summary_csv)
    if not summary.empty:
        fig = wall_chart(summary)
        png = out_dir / "walltime.png"
        fig.savefig(png, dpi=150)
        plt.close(fig)
        written.append(png)
    return written


CELL_KEYS = ["scenario", "size", "strategy", "variant", "cpu", "cache", "platform"]
"""The columns that name a cell in `frame()` rows."""


def load_runs(run_dirs: list[Path]) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Return the manifests of the run folders `run_dirs` and one `frame()` of all their
    records, in the order given.

    Raises FileNotFoundError when a folder is not a run.
    """
    manifests: list[dict[str, Any]] = []
    records: list[Record] = []
    for run_dir in run_dirs:
        manifest, recs = load_run(run_dir)
        manifests.append(manifest)
        records.extend(recs)
    return manifests, frame(records)


EXPORT_FORMATS = ("csv", "parquet", "json")


class ExportUnavailable(RuntimeError):
    """The export format needs a library that is not installed."""


def export_frame(df: pd.DataFrame, fmt: str, out: Path | None) -> str | None:
    """Write `df` as `fmt` (csv, parquet or json: an array of row objects) to `out`.

    Returns the text instead when `out` is None (csv and json only). Raises ValueError for
    an unknown format or parquet without `out`, ExportUnavailable when parquet is asked
    for and pyarrow is missing.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        if out is None:
            raise ValueError("parquet is binary: give --out FILE")
        if importlib.util.find_spec("pyarrow") is None:
            raise ExportUnavailable(
                "parquet needs pyarrow: pip install pyarrow (or use --format csv)"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out, index=False)
        return None
    text = df.to_csv(index=False) if fmt == "csv" else df.to_json(orient="records", indent=2)
    if out is None:
        return text
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return None


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


def cell_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """Return one row per cell of the measured (not warm-up) ok cell repetitions in `df`:
    n, median, the order-statistic confidence interval of the median (stats.median_ci)
    with its real coverage, CV, stats warnings as a tuple, and `validated` (True when
    every repetition that carries a validation passed, None when none does)."""
    from bench.stats import describe

    ok = df[(df["kind"] == "cell") & (df["status"] == "ok") & ~df["warmup"].astype(bool)]
    rows: list[dict[str, Any]] = []
    for key, group in ok.groupby(CELL_KEYS, sort=True):
        st = describe([float(x) for x in group.sort_values("started_at")["wall_s"]])
        checked = [v for v in group["validation_passed"] if v is not None and v == v]
        rows.append({
            **dict(zip(CELL_KEYS, key, strict=True)),
            "n": st.n, "median_s": st.median, "ci_low_s": st.ci_low, "ci_high_s": st.ci_high,
            "ci_coverage": st.ci_coverage, "cv": st.cv, "warnings": st.warnings,
            "validated": all(bool(v) for v in checked) if checked else None,
            "approximate": next((str(a) for a in group["approximate"] if a and a == a), ""),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=STAT_COLUMNS)
