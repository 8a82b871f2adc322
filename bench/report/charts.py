"""Documentation-quality charts of stored results: the one module that plots.

Every function takes tables of `bench.report.frame` (the data layer) and returns a
matplotlib `Figure`; none calls `plt.show()`. Strategies keep one Okabe-Ito colour in every
chart (`STRATEGY_COLOURS`); warm-cache bars are hatched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.engine.attribution import GROUP_LABELS  # noqa: E402
from bench.engine.matrix import NO_HOST_CLASS  # noqa: E402
from bench.report.frame import (  # noqa: E402
    CELL_KEYS,
    STEP_CATEGORIES,
    VM_PHASES,
    class_names,
    host_class_column,
    host_class_values,
)
from bench.strategies import REGISTRY  # noqa: E402

LOG_SCALE_RATIO = 20.0
"""Wall-time axes turn logarithmic when the largest bar is this many times the smallest."""

# Colours of build steps: distinct from one another, drawn from Okabe-Ito and greys so
# that they read apart with the common colour-vision deficiencies.
STEP_COLOURS = {
    "base-image": "#999999",
    "toolchain": "#56B4E9",
    "copy": "#F0E442",
    "compile": "#CC79A7",
    "export": "#000000",
    "internal": "#DDDDDD",
    "other": "#666666",
    "boot": "#0072B2",
    "build": "#D55E00",
    "shutdown": "#009E73",
}
# Okabe-Ito: distinguishable with the common colour-vision deficiencies; one fixed
# colour per strategy in every chart.
STRATEGY_COLOURS = {
    "native": "#0072B2",
    "qemu-system": "#D55E00",
    "qemu-user": "#E69F00",
    "cross": "#009E73",
    "hybrid": "#CC79A7",
}
WARM_HATCH = "//"
COMBINED_HATCH = ".."
UNKNOWN_COLOUR = "#999999"

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.fonttype": "none",
        "svg.hashsalt": "archbench",
        # Labels carry names from scenario files: a `$` there is text, not mathtext.
        "text.parse_math": False,
    }
)


def strategy_colour(strategy: str) -> str:
    """Return the fixed colour of `strategy` (grey for one not in the registry)."""
    return STRATEGY_COLOURS.get(strategy, UNKNOWN_COLOUR)


def cell_label(
    row: pd.Series,
    with_cache: bool = True,
    with_scenario: bool = False,
    classes: dict[str, str] | None = None,
) -> str:
    """Return a multi-line axis label for a cell row: variant, platform, the cache mode when
    not cold, with `with_scenario` the scenario and size, and with `classes` (short names
    of the hardware classes, `frame.class_names`) the row's class."""
    lines = [str(row["variant"]), str(row["platform"])]
    if with_cache and row["cache"] != "cold":
        lines.append(f"({row['cache']})")
    if with_scenario:
        lines.append(f"{row['scenario']} s{row['size']}")
    if classes:
        lines.append(classes.get(_class_of(row), NO_HOST_CLASS))
    return "\n".join(lines)


def _class_of(row: pd.Series) -> str:
    value = row.get("host_class", "")
    return value if isinstance(value, str) else ""


def _class_names(table: pd.DataFrame) -> dict[str, str] | None:
    """Return the short names of the hardware classes of `table` when it holds several
    (charts then name each bar's class), else None."""
    classes = host_class_values(table)
    return class_names(classes) if len(classes) > 1 else None


def _several_scenarios(table: pd.DataFrame) -> bool:
    return table[["scenario", "size"]].drop_duplicates().shape[0] > 1


def _xticks(ax: Axes, table: pd.DataFrame, with_cache: bool = True) -> None:
    many = _several_scenarios(table)
    classes = _class_names(table)
    labels = [cell_label(r, with_cache, many, classes) for _, r in table.iterrows()]
    if len(labels) > 6:
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=35, ha="right")
    else:
        ax.set_xticks(range(len(labels)), labels, fontsize=8)


def _ordered(stats: pd.DataFrame) -> pd.DataFrame:
    rank = {s: i for i, s in enumerate(REGISTRY)}
    out = stats.copy()
    out["_rank"] = out["strategy"].map(lambda s: rank.get(str(s), len(rank)))
    # One hardware class's bars together, and in each the order of one class alone.
    out["_class"] = host_class_column(out)
    out = out.sort_values(["_class", "scenario", "size", "platform", "_rank", "variant", "cache"])
    return out.drop(columns=["_rank", "_class"]).reset_index(drop=True)


def _strategy_legend(
    ax: Axes, strategies: Sequence[str], warm: bool, combined: bool = False, **kwargs: Any
) -> None:
    order = [s for s in REGISTRY if s in strategies] + sorted(
        s for s in set(strategies) if s not in REGISTRY
    )
    handles = [Patch(facecolor=strategy_colour(s), edgecolor="black", label=s) for s in order]
    if warm:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=WARM_HATCH, label="warm"))
    if combined:
        handles.append(
            Patch(facecolor="white", edgecolor="black", hatch=COMBINED_HATCH, label="combined")
        )
    ax.legend(handles=handles, title="strategy", fontsize=8, **kwargs)


def _subtitle(stats: pd.DataFrame) -> str:
    scen = ", ".join(sorted({str(s) for s in stats["scenario"]}))
    sizes = ", ".join(str(s) for s in sorted({int(s) for s in stats["size"]}))
    return f"{scen}, size {sizes}"


def _log_scale(ax: Axes, which: str = "y") -> None:
    """Make the `which` axis of `ax` logarithmic with plain-number tick labels: the default
    labels are mathtext, which `text.parse_math: False` (set above, for names from
    scenario files) would print raw, as `$\\mathdefault{10^{2}}$`."""
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def needs_log_scale(values: Sequence[float]) -> bool:
    """Return True when the positive `values` span more than LOG_SCALE_RATIO."""
    pos = [v for v in values if v > 0]
    return bool(pos) and max(pos) / min(pos) > LOG_SCALE_RATIO


def wall_chart(wall: pd.DataFrame) -> Figure:
    """Return a bar chart of median wall time per cell (strategy variant, platform, cache)
    and per combined build (hatched dots, after the cells), from `frame.wall_summary`
    rows: the median's confidence interval as error bars, and each bar annotated with its
    median and its ratio to the native reference (`frame.versus_native`). The axis is
    logarithmic when the medians span more than LOG_SCALE_RATIO.

    Raises ValueError when `wall` is empty.
    """
    if wall.empty:
        raise ValueError("no ok cells to chart")
    cells = pd.concat(
        [_ordered(wall[wall["kind"] == "cell"]), _ordered(wall[wall["kind"] != "cell"])],
        ignore_index=True,
    )
    combined = [k != "cell" for k in cells["kind"]]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cells) + 2), 4.8), layout="constrained")
    medians = cells["median_s"].astype(float).to_numpy()
    lower = medians - cells["ci_low_s"].astype(float).to_numpy()
    upper = cells["ci_high_s"].astype(float).to_numpy() - medians
    colours = [strategy_colour(str(s)) for s in cells["strategy"]]
    hatches = [
        (WARM_HATCH if c == "warm" else "") + (COMBINED_HATCH if comb else "")
        for c, comb in zip(cells["cache"], combined, strict=True)
    ]
    x = np.arange(len(cells))
    bars = ax.bar(
        x,
        medians,
        color=colours,
        edgecolor="black",
        linewidth=0.6,
        yerr=np.vstack([lower, upper]),
        capsize=4,
        error_kw={"elinewidth": 1.0, "ecolor": "black"},
    )
    for bar, hatch in zip(bars, hatches, strict=True):
        bar.set_hatch(hatch)
    for xi, (_, row) in zip(x, cells.iterrows(), strict=True):
        ratio = row["vs_native"]
        text = f"{row['median_s']:.3g} s" + (f"\n{ratio:.1f}x" if pd.notna(ratio) else "")
        ax.annotate(
            text,
            (xi, float(row["ci_high_s"])),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    _xticks(ax, cells)
    log = needs_log_scale(list(medians))
    if log:
        _log_scale(ax)
    ax.set_ylabel("median wall time (s)" + (", log scale" if log else ""))
    coverage = sorted({f"{c:.0%}" for c in cells["ci_coverage"]})
    ax.set_title(f"Build wall time per strategy and platform ({_subtitle(cells)})")
    refs = sorted({str(r) for r in cells["reference"] if r})
    note = (
        f"error bars: order-statistic confidence interval of the median "
        f"(coverage {', '.join(coverage)}); n = {', '.join(sorted({str(n) for n in cells['n']}))}"
    )
    if refs:
        note += f"\nNx: median / median of the native reference ({', '.join(refs)})"
    classes = _class_names(cells)
    if classes:
        note += "\nratios within each host class: " + "; ".join(
            f"{name}: {c or NO_HOST_CLASS}" for c, name in classes.items()
        )
    ax.text(0.0, -0.02, note, transform=fig.transFigure, fontsize=7, va="top")
    _strategy_legend(
        ax, list(cells["strategy"]), "warm" in set(cells["cache"]), any(combined), loc="best"
    )
    ax.margins(y=0.2)
    return fig


def slowdown_matrix(slowdown: pd.DataFrame) -> pd.DataFrame:
    """Return the ratios of `frame.slowdown_table` rows as a matrix: rows are strategy variants
    (with the cache mode when not cold), columns platforms; NaN where no cell ran."""
    table = slowdown.copy()
    several = table[["scenario", "size"]].drop_duplicates().shape[0] > 1
    table["row"] = [
        f"{v}" + ("" if c == "cold" else f" ({c})") + (f" [{sc} s{sz}]" if several else "")
        for v, c, sc, sz in zip(
            table["variant"], table["cache"], table["scenario"], table["size"], strict=True
        )
    ]
    rank = {s: i for i, s in enumerate(REGISTRY)}
    strategy_of = dict(zip(table["row"], table["strategy"], strict=True))
    order = sorted(strategy_of, key=lambda r: (rank.get(str(strategy_of[r]), len(rank)), r))
    matrix = table.pivot_table(index="row", columns="platform", values="ratio", aggfunc="first")
    return matrix.reindex(order)


def slowdown_heatmap(slowdown: pd.DataFrame) -> Figure:
    """Return a heatmap of the slowdown against native (`frame.slowdown_table` rows), one square
    per strategy variant and platform, annotated with the ratio; the colour scale is
    logarithmic. Raises ValueError when `slowdown` is empty."""
    if slowdown.empty:
        raise ValueError("no cell has a native reference")
    matrix = slowdown_matrix(slowdown)
    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.6 * matrix.shape[1] + 3), max(2.8, 0.6 * matrix.shape[0] + 1.6)),
        layout="constrained",
    )
    finite = values[np.isfinite(values)]
    vmax = max(2.0, float(finite.max())) if finite.size else 2.0
    from matplotlib.colors import LogNorm

    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap="cividis_r",
        norm=LogNorm(vmin=min(1.0, float(finite.min())) if finite.size else 1.0, vmax=vmax),
        aspect="auto",
    )
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in matrix.index])
    for (i, j), v in np.ndenumerate(values):
        if math.isfinite(v):
            ax.text(
                j,
                i,
                f"{v:.2f}x",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if v > math.sqrt(vmax) else "black",
            )
        else:
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#666666")
    refs = ", ".join(sorted(set(slowdown["reference"])))
    ax.set_title("Slowdown against native (median / native median)")
    ax.set_xlabel(f"target platform (reference: native cell {refs})")
    fig.colorbar(image, ax=ax, label="times the native wall time (log scale)")
    ax.spines[:].set_visible(False)
    return fig


def step_table(df: pd.DataFrame) -> pd.DataFrame:
    """Return the median seconds of each build step (step_* columns) and VM phase
    (vm_* columns) per cell of the measured ok cell rows of `df`; absent steps are 0."""
    ok = df[(df["kind"] == "cell") & (df["status"] == "ok") & ~df["warmup"].astype(bool)]
    cols = [f"step_{c}_s" for c in STEP_CATEGORIES] + [f"vm_{p}_s" for p in VM_PHASES]
    if ok.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, *cols, "median_s"])
    numeric = ok[[*CELL_KEYS, *cols, "wall_s"]].copy()
    numeric[cols] = numeric[cols].apply(pd.to_numeric, errors="coerce")
    table = numeric.groupby(CELL_KEYS, as_index=False).median(numeric_only=True)
    table[cols] = table[cols].fillna(0.0)
    return _ordered(table.rename(columns={"wall_s": "median_s"}))


def step_breakdown_chart(steps: pd.DataFrame) -> Figure:
    """Return horizontal stacked bars of where each cell's time goes: median seconds per
    build step (toolchain, compile, export, ...) and, for VM cells, boot, build and
    shutdown; the unattributed rest of the median wall time is shown as 'unaccounted'.

    Raises ValueError when no cell has step times.
    """
    step_cols = [f"step_{c}_s" for c in STEP_CATEGORIES]
    vm_cols = [f"vm_{p}_s" for p in VM_PHASES]
    has = steps[(steps[step_cols].sum(axis=1) > 0) | (steps[vm_cols].sum(axis=1) > 0)]
    if has.empty:
        raise ValueError("no cell has per-step times")
    has = has.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, max(2.8, 0.55 * len(has) + 1.8)), layout="constrained")
    labels = []
    used: dict[str, str] = {}
    for i, (_, row) in enumerate(has.iterrows()):
        vm = float(row[vm_cols].sum()) > 0
        parts = (
            [(p, float(row[f"vm_{p}_s"])) for p in VM_PHASES]
            if vm
            else [(c, float(row[f"step_{c}_s"])) for c in STEP_CATEGORIES]
        )
        left = 0.0
        for name, seconds in parts:
            if seconds <= 0:
                continue
            bars = ax.barh(
                i,
                seconds,
                left=left,
                color=STEP_COLOURS[name],
                edgecolor="black",
                linewidth=0.4,
                label=name,
            )
            bars.patches[0].set_gid(name)
            used[name] = STEP_COLOURS[name]
            left += seconds
        rest = float(row["median_s"]) - left
        if rest > 0.02 * float(row["median_s"]):
            bars = ax.barh(
                i,
                rest,
                left=left,
                color="white",
                edgecolor="#666666",
                linewidth=0.4,
                hatch="..",
                label="unaccounted",
            )
            bars.patches[0].set_gid("unaccounted")
            used["unaccounted"] = "white"
        ax.annotate(
            f"{row['median_s']:.3g} s",
            (max(left, float(row["median_s"])), i),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
        labels.append(cell_label(row, True, _several_scenarios(has)).replace("\n", "  "))
    ax.set_yticks(range(len(has)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median seconds per step (wall time of the build)")
    ax.set_title(f"Where the build time goes ({_subtitle(has)})")
    handles = [
        Patch(facecolor=c, edgecolor="black", hatch=".." if n == "unaccounted" else None, label=n)
        for n, c in used.items()
    ]
    ax.legend(handles=handles, title="step", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.margins(x=0.12)
    return fig


def cache_pairs(stats: pd.DataFrame) -> pd.DataFrame:
    """Return the cells of `stats` measured both cold and warm, one row per cell with
    cold_s, warm_s and their CI bounds."""
    keys = [k for k in CELL_KEYS if k != "cache"]
    cold = stats[stats["cache"] == "cold"].set_index(keys)
    warm = stats[stats["cache"] == "warm"].set_index(keys)
    both = cold.merge(warm, left_index=True, right_index=True, suffixes=("_cold", "_warm"))
    out = pd.DataFrame(
        {
            "cold_s": both["median_s_cold"],
            "warm_s": both["median_s_warm"],
            "cold_low": both["ci_low_s_cold"],
            "cold_high": both["ci_high_s_cold"],
            "warm_low": both["ci_low_s_warm"],
            "warm_high": both["ci_high_s_warm"],
        }
    ).reset_index()
    out["cache"] = "cold"
    return _ordered(out) if not out.empty else out


def cache_chart(pairs: pd.DataFrame) -> Figure:
    """Return grouped bars of cold against warm median wall time per cell (warm hatched),
    with confidence-interval error bars and the warm/cold ratio above each pair.

    Raises ValueError when no cell was measured in both cache modes.
    """
    if pairs.empty:
        raise ValueError("no cell was measured both cold and warm")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(pairs) + 2), 4.5), layout="constrained")
    x = np.arange(len(pairs))
    width = 0.38
    colours = [strategy_colour(str(s)) for s in pairs["strategy"]]
    for offset, mode, hatch in ((-width / 2, "cold", ""), (width / 2, "warm", WARM_HATCH)):
        med = pairs[f"{mode}_s"].astype(float).to_numpy()
        err = np.vstack(
            [
                med - pairs[f"{mode}_low"].to_numpy(dtype=float),
                pairs[f"{mode}_high"].to_numpy(dtype=float) - med,
            ]
        )
        bars = ax.bar(
            x + offset,
            med,
            width,
            color=colours,
            edgecolor="black",
            linewidth=0.6,
            yerr=err,
            capsize=3,
            label=mode,
        )
        for b in bars:
            b.set_hatch(hatch)
    for xi, (_, row) in zip(x, pairs.iterrows(), strict=True):
        top = max(float(row["cold_high"]), float(row["warm_high"]))
        ax.annotate(
            f"warm/cold {row['warm_s'] / row['cold_s']:.2f}",
            (xi, top),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    _xticks(ax, pairs, with_cache=False)
    ax.set_ylabel("median wall time (s)")
    ax.set_title(f"Cold against warm (incremental) build ({_subtitle(pairs)})")
    _strategy_legend(ax, list(pairs["strategy"]), True, loc="best")
    ax.margins(y=0.18)
    return fig


def growth_exponents(stats: pd.DataFrame) -> pd.DataFrame:
    """Return, per strategy variant, platform and cache mode with at least two sizes, the
    exponent b of median = a * size**b fitted by least squares on the logs
    (numpy.polyfit), with the sizes used."""
    rows = []
    keys = ["scenario", "strategy", "variant", "cache", "platform"]
    for key, group in stats.groupby(keys, sort=True):
        g = group[(group["size"] > 0) & (group["median_s"] > 0)].sort_values("size")
        if g["size"].nunique() < 2:
            continue
        slope, intercept = np.polyfit(
            np.log(g["size"].to_numpy(dtype=float)), np.log(g["median_s"].to_numpy(dtype=float)), 1
        )
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "exponent": float(slope),
                "coefficient_s": float(math.exp(intercept)),
                "sizes": tuple(int(s) for s in g["size"]),
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "exponent", "coefficient_s", "sizes"])


def scaling_chart(stats: pd.DataFrame) -> Figure:
    """Return a log-log chart of median wall time against work size per strategy variant
    and platform, with the fitted line and its growth exponent in the legend.

    Raises ValueError when no cell was measured at two or more sizes.
    """
    fits = growth_exponents(stats)
    if fits.empty:
        raise ValueError("no cell was measured at two or more sizes")
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    markers = ["o", "s", "^", "D", "v", "P"]
    platforms = sorted(set(fits["platform"]))
    for _, fit in fits.iterrows():
        g = stats[
            (stats["scenario"] == fit["scenario"])
            & (stats["variant"] == fit["variant"])
            & (stats["cache"] == fit["cache"])
            & (stats["platform"] == fit["platform"])
        ].sort_values("size")
        colour = strategy_colour(str(fit["strategy"]))
        marker = markers[platforms.index(str(fit["platform"])) % len(markers)]
        sizes = g["size"].to_numpy(dtype=float)
        med = g["median_s"].to_numpy(dtype=float)
        err = np.vstack(
            [med - g["ci_low_s"].to_numpy(dtype=float), g["ci_high_s"].to_numpy(dtype=float) - med]
        )
        ax.errorbar(sizes, med, yerr=err, fmt=marker, color=colour, capsize=3)
        line = fit["coefficient_s"] * sizes ** fit["exponent"]
        cache = "" if fit["cache"] == "cold" else f" ({fit['cache']})"
        label = f"{fit['variant']}{cache} {fit['platform']}: b = {fit['exponent']:.2f}"
        style = "--" if fit["cache"] == "warm" else "-"
        ax.plot(sizes, line, style, color=colour, label=label)
    _log_scale(ax, "x")
    _log_scale(ax)
    ax.set_xlabel("work size (times the work of size 1), log scale")
    ax.set_ylabel("median wall time (s), log scale")
    ax.set_title("Cost against work size: median = a * size^b")
    ax.legend(title="fitted growth exponent b", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def history_chart(series: pd.DataFrame, steps: pd.DataFrame) -> Figure:
    """Return median wall time per cell across runs (x = run start time) with each
    detected change point marked by a vertical dotted line at its first run.

    `series` has one row per (cell, run): cell, strategy, run_id, started_at, commit,
    median_s and optionally host_class; `steps` has one row per change point with cell,
    started_at and optionally host_class (see `bench.analysis.history`). A cell on two
    hardware classes is two lines, each labelled with its class when the series hold
    several. Raises ValueError when no cell has two or more runs.
    """
    series = series.assign(host_class=host_class_column(series))
    steps = steps.assign(host_class=host_class_column(steps))
    counts = series.groupby(["cell", "host_class"], sort=True)["run_id"].nunique()
    cells = [c for c in counts.index if counts[c] >= 2]
    if not cells:
        raise ValueError("no cell has two or more runs")
    several = series["host_class"].nunique() > 1
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    styles = ["-", "--", ":", "-."]
    per_strategy: dict[str, int] = {}
    for cell, host_class in cells:
        g = series[(series["cell"] == cell) & (series["host_class"] == host_class)]
        g = g.sort_values("started_at")
        strategy = str(g["strategy"].iloc[0])
        n = per_strategy.get(strategy, 0)
        per_strategy[strategy] = n + 1
        times = pd.to_datetime(g["started_at"], utc=True)
        ax.plot(
            times,
            g["median_s"],
            marker="o",
            linestyle=styles[n % len(styles)],
            color=strategy_colour(strategy),
            label=f"{cell} ({host_class or NO_HOST_CLASS})" if several else str(cell),
        )
        own = steps[(steps["cell"] == cell) & (steps["host_class"] == host_class)]
        for _, step in own.iterrows():
            when = pd.to_datetime(step["started_at"], utc=True)
            ax.axvline(when, color=strategy_colour(strategy), linestyle=":", linewidth=1.2)
            ax.annotate(
                f"{step['ratio']:.2f}x",
                (when, float(step["after_s"])),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=8,
                color="black",
            )
    values = series[series["cell"].isin([c for c, _ in cells])]["median_s"].astype(float).tolist()
    if needs_log_scale(values):
        _log_scale(ax)
    ax.set_xlabel("run start (UTC); dotted lines: detected change points")
    ax.set_ylabel("median wall time (s)")
    ax.set_title("Build time history per cell")
    ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    return fig


def validation_table(records: Sequence[Any]) -> pd.DataFrame:
    """Return the share of passed validation checks per cell (rows: cell key) and check
    (columns: check name, with the platform when the check has one) over the measured cell
    and merge records; NaN where a check never ran or was skipped."""
    from dataclasses import replace

    from bench.engine.matrix import cell_of

    tally: dict[tuple[str, str], list[bool]] = {}
    for r in records:
        if r.kind not in ("cell", "merge") or r.warmup:
            continue
        # A merge record is the strategy's index: its platform is '' in the record.
        cell = cell_of(r)
        key = cell.key if r.kind == "cell" else replace(cell, platform="index").key
        for check in (r.validation or {}).get("checks", []):
            if check.get("skipped"):
                continue
            tally.setdefault((key, str(check.get("name", "?"))), []).append(
                bool(check.get("passed"))
            )
    if not tally:
        return pd.DataFrame()
    data = {k: sum(v) / len(v) for k, v in tally.items()}
    series = pd.Series(data)
    table = series.unstack()
    order = ["index", "platforms", "config", "elf", "smoke", "same-artifact"]
    cols = [c for c in order if c in table.columns] + sorted(
        c for c in table.columns if c not in order
    )
    return table[cols]


def validation_chart(table: pd.DataFrame) -> Figure:
    """Return a cell x check matrix of the share of passed validation checks
    (`validation_table`): green all passed, vermillion all failed, grey not run.

    Raises ValueError when no record carries validation checks.
    """
    if table.empty:
        raise ValueError("no record carries validation checks")
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list(
        "fail-pass", ["#D55E00", "#F0E442", "#009E73"]
    ).with_extremes(bad="#EEEEEE")
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.0 * table.shape[1] + 4), max(2.5, 0.45 * table.shape[0] + 1.5)),
        layout="constrained",
    )
    ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        text = "-" if not math.isfinite(v) else ("pass" if v == 1 else f"{v:.0%}")
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=8,
            color="white" if math.isfinite(v) and v < 0.5 else "black",
        )
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index], fontsize=8)
    ax.set_title("Validation of the pushed images (share of repetitions passed)")
    ax.set_xlabel("check ('-': not run or skipped)")
    ax.spines[:].set_visible(False)
    return fig


def resource_table(df: pd.DataFrame) -> pd.DataFrame:
    """Return median user and system CPU seconds and peak memory above baseline (MiB) per
    cell of the measured ok cell rows of `df` that carry resource measurements."""
    ok = df[(df["kind"] == "cell") & (df["status"] == "ok") & ~df["warmup"].astype(bool)]
    ok = ok[ok["cpu_user_s"].notna()]
    if ok.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "cpu_user_s", "cpu_system_s", "peak_mib"])
    cols = ["cpu_user_s", "cpu_system_s", "peak_memory_bytes"]
    part = ok[[*CELL_KEYS, *cols]].copy()
    part[cols] = part[cols].apply(pd.to_numeric, errors="coerce")
    table = part.groupby(CELL_KEYS, as_index=False).median(numeric_only=True)
    table["peak_mib"] = table["peak_memory_bytes"] / 2**20
    return _ordered(table.drop(columns=["peak_memory_bytes"]))


def resources_chart(resources: pd.DataFrame) -> Figure:
    """Return two panels per cell: median CPU seconds (user, with system stacked on top)
    and median peak memory above the baseline in MiB.

    Raises ValueError when no cell carries resource measurements.
    """
    if resources.empty:
        raise ValueError("no cell carries resource measurements")
    fig, (cpu_ax, mem_ax) = plt.subplots(
        1, 2, figsize=(max(8.0, 1.5 * len(resources) + 3), 4.5), layout="constrained"
    )
    x = np.arange(len(resources))
    colours = [strategy_colour(str(s)) for s in resources["strategy"]]
    hatches = [WARM_HATCH if c == "warm" else "" for c in resources["cache"]]
    user = resources["cpu_user_s"].to_numpy(dtype=float)
    system = np.nan_to_num(resources["cpu_system_s"].to_numpy(dtype=float))
    cpu_ax.bar(x, user, color=colours, edgecolor="black", linewidth=0.6, label="user")
    cpu_ax.bar(
        x,
        system,
        bottom=user,
        color="white",
        edgecolor="black",
        linewidth=0.6,
        hatch="xx",
        label="system",
    )
    mem_bars = mem_ax.bar(
        x,
        resources["peak_mib"].to_numpy(dtype=float),
        color=colours,
        edgecolor="black",
        linewidth=0.6,
    )
    for b, h in zip(mem_bars, hatches, strict=True):
        b.set_hatch(h)
    many = _several_scenarios(resources)
    labels = [cell_label(r, True, many).replace("\n", " ") for _, r in resources.iterrows()]
    for ax in (cpu_ax, mem_ax):
        ax.set_xticks(x, labels, fontsize=7, rotation=35, ha="right")
    cpu_ax.set_ylabel("median CPU time (s)")
    cpu_ax.set_title("CPU time (white, crossed: system)")
    mem_ax.set_ylabel("median peak memory above baseline (MiB)")
    mem_ax.set_title("Peak memory")
    fig.suptitle("Resources used by the build", fontweight="bold")
    _strategy_legend(
        mem_ax, list(resources["strategy"]), "warm" in set(resources["cache"]), loc="best"
    )
    return fig


def emulator_chart(versions: pd.DataFrame) -> Figure:
    """Return a chart of each emulator version's ratio to the reference emulator per
    cell (`frame.emulator_versions` rows): a point per version at its paired
    geometric-mean ratio, whiskers its 95 % interval, the reference at 1.

    Raises ValueError when no version has a ratio (fewer than 2 pairs everywhere).
    """
    compared = versions[
        (versions["emulator"] != versions["reference"]) & versions["ratio"].notna()
    ].reset_index(drop=True)
    if compared.empty:
        raise ValueError("no emulator version has 2 or more pairs with its reference")
    group_cols = ["scenario", "size", "strategy", "cpu", "cache", "platform"]
    groups = compared[group_cols].drop_duplicates().reset_index(drop=True)
    names = list(dict.fromkeys(str(e) for e in compared["emulator"]))
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2.5), 4.6), layout="constrained")
    for i, name in enumerate(names):
        mine = compared[compared["emulator"] == name]
        xs, ys, lows, highs = [], [], [], []
        for _, row in mine.iterrows():
            g = groups[(groups[group_cols] == row[group_cols]).all(axis=1)].index[0]
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(float(row["ratio"]))
            lows.append(float(row["ratio"]) - float(row["ci_low"]))
            highs.append(float(row["ci_high"]) - float(row["ratio"]))
        version = next((str(v) for v in mine["version"] if v), "")
        ax.errorbar(
            xs,
            ys,
            yerr=[lows, highs],
            fmt="o",
            capsize=4,
            color=colours(i % 10),
            label=f"{name} ({version.split(' ', 1)[0]})" if version else name,
        )
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(6, 0), fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    refs = ", ".join(
        dict.fromkeys(
            f"{r['reference']} ({str(r['reference_version']).split(' ', 1)[0]})"
            if r["reference_version"]
            else str(r["reference"])
            for _, r in compared.iterrows()
        )
    )
    labels = [
        "\n".join(
            [
                f"{g['scenario']} s{g['size']}",
                str(g["platform"]),
                "-".join(p for p in (str(g["strategy"]), str(g["cpu"])) if p != "default")
                + (f" ({g['cache']})" if g["cache"] != "cold" else ""),
            ]
        )
        for _, g in groups.iterrows()
    ]
    ax.set_xticks(range(len(groups)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel("build time / reference's (paired, 95 % interval)")
    ax.set_xlabel(f"reference emulator (dashed, 1.0): {refs}")
    ax.set_title("Emulator versions: build time against the reference emulator")
    ax.legend(title="emulator", fontsize=8)
    ax.margins(y=0.15)
    return fig


# Program groups of the attribution chart: the toolchain hybrid runs natively in warm
# colours, the rest in cool ones and greys (Okabe-Ito).
GROUP_COLOURS = {
    "compiler": "#D55E00",
    "assembler": "#E69F00",
    "linker": "#F0E442",
    "make": "#0072B2",
    "shell": "#56B4E9",
    "package-manager": "#009E73",
    "other": "#999999",
}
UNACCOUNTED_HATCH = "xx"


def attribution_chart(table: pd.DataFrame) -> Figure:
    """Return two panels per attributed cell (`frame.attribution_table` rows): median CPU
    seconds stacked by program group, with the build's CPU time that accounting did not
    attribute hatched on top and the coverage above each bar; and each group's share of
    the build's CPU time.

    Raises ValueError when no cell was attributed.
    """
    if table.empty:
        raise ValueError("no cell carries a CPU-time attribution (run --attribute)")
    table = _ordered(table)
    fig, (abs_ax, share_ax) = plt.subplots(
        1, 2, figsize=(max(9.0, 1.6 * len(table) + 6), 4.8), layout="constrained"
    )
    x = np.arange(len(table))
    accounted = table["accounted_cpu_s"].to_numpy(dtype=float)
    total = np.fmax(np.nan_to_num(table["total_cpu_s"].to_numpy(dtype=float)), accounted)
    bottom = np.zeros(len(table))
    share_bottom = np.zeros(len(table))
    for group in GROUP_COLOURS:
        seconds = np.nan_to_num(table[f"cpu_{group}_s"].to_numpy(dtype=float))
        style = {"color": GROUP_COLOURS[group], "edgecolor": "black", "linewidth": 0.5}
        abs_ax.bar(x, seconds, bottom=bottom, label=GROUP_LABELS[group], **style)
        share = np.divide(seconds, total, out=np.zeros_like(seconds), where=total > 0) * 100
        share_ax.bar(x, share, bottom=share_bottom, **style)
        bottom += seconds
        share_bottom += share
    rest = total - accounted
    hatched = {"color": "white", "edgecolor": "black", "linewidth": 0.5}
    abs_ax.bar(x, rest, bottom=bottom, hatch=UNACCOUNTED_HATCH, label="not attributed", **hatched)
    share_ax.bar(x, 100 - share_bottom, bottom=share_bottom, hatch=UNACCOUNTED_HATCH, **hatched)
    for i, (top, cov) in enumerate(zip(total, table["coverage"], strict=True)):
        text = "-" if cov != cov else f"{cov:.0%}"
        abs_ax.annotate(
            text, (i, top), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8
        )
    many = _several_scenarios(table)
    labels = [cell_label(r, True, many).replace("\n", " ") for _, r in table.iterrows()]
    for ax in (abs_ax, share_ax):
        ax.set_xticks(x, labels, fontsize=7, rotation=35, ha="right")
    abs_ax.set_ylabel("median CPU time (s)")
    abs_ax.set_title("CPU time by program (label: coverage)")
    share_ax.set_ylabel("share of the build's CPU time (%)")
    share_ax.set_ylim(0, 100)
    share_ax.set_title("Share by program")
    handles, names = abs_ax.get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="outside right upper", title="program")
    fig.suptitle(f"Where the build's CPU time goes ({_subtitle(table)})", fontweight="bold")
    return fig
