"""The one report writer, for `run` and `report` alike: from one `ReportData`, the CSV
tables, PNG and SVG charts, `summary.md`, and one self-contained `report.html` (charts
embedded as PNG data URIs, no external files), staged and moved into place whole.

The page is described once as a list of blocks and rendered twice, to Markdown and to
HTML, so both always say the same thing.
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bench.analysis import history
from bench.analysis.recommend import Recommendation, recommend
from bench.engine.attribution import GROUP_LABELS, GROUPS
from bench.engine.matrix import HOST_EMULATOR, NO_HOST_CLASS
from bench.engine.results import LoadWarning, Record, StoredRun
from bench.errors import UsageError
from bench.report import charts
from bench.report.frame import (
    ReportData,
    amdahl_table,
    attribution_table,
    class_names,
    load_report_data,
)

# In the working folder, beside ./results.
DEFAULT_REPORTS = Path("reports")


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    png: Path
    svg: Path
    caption: str = ""


Block = Heading | Para | Bullets | Table | Chart


@dataclass
class ReportPlan:
    """What a report holds: its blocks and the charts left out, with why."""

    blocks: list[Block] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    # Appended to chart and table file names: '-class1' in a section of one hardware
    # class, so that two sections never write one file.
    tag: str = ""


def _save(fig: Figure, out_dir: Path, name: str, png_from: Path | None = None) -> tuple[Path, Path]:
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    if png_from is None:
        fig.savefig(png, dpi=150, bbox_inches="tight")
    else:
        shutil.copyfile(png_from, png)  # the same chart, already rendered
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)
    return png, svg


def _fmt_s(x: Any) -> str:
    return "-" if x is None or x != x else f"{float(x):.3g}"


def _chart(
    plan: ReportPlan,
    out_dir: Path,
    name: str,
    title: str,
    make: Callable[[], Figure],
    caption: str = "",
    png_from: Path | None = None,
) -> None:
    try:
        fig = make()
    except ValueError as exc:
        plan.left_out.append((title, str(exc)))
        plan.blocks.append(Para(f"Chart left out: {exc}."))
        return
    png, svg = _save(fig, out_dir, name + plan.tag, png_from)
    plan.written += [png, svg]
    plan.blocks.append(Chart(name, title, png, svg, caption))


def _vs_pick(ratio: float) -> str:
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


def _recommendation_blocks(recs: list[Recommendation]) -> list[Block]:
    blocks: list[Block] = [Heading("Recommendation")]
    if not recs:
        return [*blocks, Para("No cell built successfully: nothing to recommend.")]
    for rec in recs:
        blocks.append(Heading(f"{rec.platform} ({rec.scenario}, size {rec.size})", 3))
        blocks.append(Para(rec.sentence()))
        if rec.pick is not None:
            rows = [
                (
                    o.variant,
                    _fmt_s(o.median_s),
                    f"[{_fmt_s(o.ci_low_s)}, {_fmt_s(o.ci_high_s)}]",
                    str(o.n),
                    "-" if o.vs_native is None else f"{o.vs_native:.2f}x",
                    "pick" if o is rec.pick else _vs_pick(o.vs_pick),
                )
                for o in (rec.pick, *rec.alternatives)
            ]
            headers = ("strategy", "median s", "median CI s", "n", "vs native", "vs pick")
            blocks.append(Table(headers, tuple(rows)))
        if rec.caveats:
            blocks.append(Bullets(tuple(f"caveat: {c}" for c in rec.caveats)))
    emulated = [r for r in recs if r.emulation is not None and r.pick is not None]
    if emulated:
        # Why the picks differ between workloads: what emulation costs each of them.
        blocks.append(Heading("Emulation cost by workload", 3))
        blocks.append(
            Para(
                "qemu-user's ratio to native is what emulating each workload costs: high for "
                "compiling (every compiler instruction is translated), low where the work is "
                "mostly I/O, downloads and unpacking. A cheap emulation makes the faithful "
                "emulated build the pick; an expensive one makes a cross build worth its setup."
            )
        )
        emu_rows: list[tuple[str, ...]] = []
        for r in emulated:
            emu, pick = r.emulation, r.pick
            assert emu is not None and pick is not None
            emu_rows.append(
                (
                    r.scenario,
                    r.platform,
                    f"{emu.vs_native:.1f}x",
                    pick.variant,
                    "-" if pick.vs_native is None else f"{pick.vs_native:.2f}x",
                )
            )
        blocks.append(
            Table(
                ("scenario", "platform", "qemu-user vs native", "pick", "pick vs native"),
                tuple(emu_rows),
            )
        )
    return blocks


def plan_report(data: ReportData, out_dir: Path, wall: Figure | str) -> ReportPlan:
    """Write every chart `data` allows into `out_dir` (PNG and SVG) and return the plan of
    the summary: blocks, charts left out and why, and files written. `wall` is the
    wall-time chart already drawn (`charts.wall_chart`), or why it was left out.

    Raises what a chart raises other than ValueError (a chart the data does not allow).
    """
    manifests = data.manifests
    plan = ReportPlan()
    latest = manifests[-1]
    prov = latest.get("provenance", {})
    ids = ", ".join(str(m.get("run_id")) for m in manifests)
    plan.blocks.append(Heading(f"archbench report: {latest.get('run_id')}", 1))
    plan.blocks.append(
        Para(
            f"Runs: {ids}. Status: {latest.get('status', '?')}. Host {prov.get('hostname', '?')}"
            f" ({prov.get('cpu_model', '?')}, {prov.get('cpu_count', '?')} cores, kernel "
            f"{prov.get('kernel', '?')}); docker {prov.get('docker_server', '?')}; "
            f"{prov.get('qemu_user', 'qemu-user ?')}; harness commit "
            f"{str(prov.get('harness_commit', '?'))[:12]}."
        )
    )
    classes = data.host_classes
    if len(classes) <= 1:
        _measured_blocks(plan, out_dir, data, wall)
        _history_blocks(plan, out_dir, data)
        _validation_blocks(plan, out_dir, data)
    else:
        plan.blocks.append(Heading("Host classes"))
        plan.blocks.append(
            Para(
                f"These runs were measured on {len(classes)} hardware classes (CPU model, "
                "cores, memory, kernel series). Timings of different hardware are not "
                "comparable: every statistic, ratio, chart and recommendation below is "
                "computed within one class, in a section of its own."
            )
        )
        names = class_names(classes)
        plan.blocks.append(Bullets(tuple(f"{names[c]}: {c or NO_HOST_CLASS}" for c in classes)))
        for number, host_class in enumerate(classes, start=1):
            title = f"{names[host_class]}: {host_class or NO_HOST_CLASS}"
            plan.blocks.append(Heading(title[0].upper() + title[1:]))
            section = ReportPlan(tag=f"-class{number}")
            part = data.of_class(host_class)
            _measured_blocks(section, out_dir, part, _wall_figure(part))
            _validation_blocks(section, out_dir, part)
            plan.blocks += [
                Heading(b.text, b.level + 1) if isinstance(b, Heading) else b
                for b in section.blocks
            ]
            plan.written += section.written
            plan.left_out += [(f"{t} ({names[host_class]})", why) for t, why in section.left_out]
        _history_blocks(plan, out_dir, data)
    _closing_blocks(plan, data)
    return plan


def _wall_figure(data: ReportData) -> Figure | str:
    try:
        return charts.wall_chart(data.wall)
    except ValueError as exc:
        return str(exc)


def _measured_blocks(plan: ReportPlan, out_dir: Path, data: ReportData, wall: Figure | str) -> None:
    """Add the sections that compare cells: the recommendation, wall time, slowdown,
    emulator versions, where the time goes, instructions, cache and work size."""
    manifests, df, stats = data.manifests, data.frame, data.stats
    recs = recommend(stats, df, manifests)
    plan.blocks.extend(_recommendation_blocks(recs))

    plan.blocks.append(Heading("Wall time per cell"))
    if stats.empty:
        plan.blocks.append(Para("No cell built successfully."))
    else:
        rows = [
            (
                str(r["scenario"]),
                str(r["size"]),
                str(r["variant"]),
                str(r["platform"]),
                str(r["cache"]),
                str(r["n"]),
                _fmt_s(r["median_s"]),
                f"[{_fmt_s(r['ci_low_s'])}, {_fmt_s(r['ci_high_s'])}] ({r['ci_coverage']:.0%})",
                f"{r['cv']:.1%}",
                {True: "pass", False: "FAIL"}.get(r["validated"], "-"),
                "; ".join(r["warnings"]) or "-",
            )
            for _, r in charts._ordered(stats).iterrows()
        ]
        plan.blocks.append(
            Table(
                (
                    "scenario",
                    "size",
                    "strategy",
                    "platform",
                    "cache",
                    "n",
                    "median s",
                    "median CI s (coverage)",
                    "CV",
                    "validated",
                    "warnings",
                ),
                tuple(rows),
            )
        )
    _chart(
        plan,
        out_dir,
        "walltime-ci",
        "Wall time with confidence intervals",
        lambda: _drawn(wall),
        "Bars: median wall time, with its ratio to the native reference; whiskers: the "
        "order-statistic confidence interval of the median (its real coverage is in the "
        "table above); dotted: combined builds.",
        out_dir / "walltime.png" if not plan.tag else None,
    )

    plan.blocks.append(Heading("Slowdown against native"))
    slow = data.slowdown
    if slow.empty:
        plan.blocks.append(Para("Left out: no native cell ran, so there is no reference."))
        plan.left_out.append(("Slowdown against native", "no native cell ran"))
    else:
        matrix = charts.slowdown_matrix(slow)
        plan.blocks.append(
            Para("Reference (native cell): " + ", ".join(sorted(set(slow["reference"]))) + ".")
        )
        plan.blocks.append(
            Table(
                ("strategy", *[str(c) for c in matrix.columns]),
                tuple(
                    (str(i), *["-" if v != v else f"{v:.2f}x" for v in matrix.loc[i]])
                    for i in matrix.index
                ),
            )
        )
        _chart(plan, out_dir, "slowdown", "Slowdown heatmap", lambda: charts.slowdown_heatmap(slow))

    _emulator_blocks(plan, out_dir, df)

    plan.blocks.append(Heading("Where the time goes"))
    _chart(
        plan,
        out_dir,
        "steps",
        "Per-step breakdown",
        lambda: charts.step_breakdown_chart(charts.step_table(df)),
        "Median seconds per build step (buildx trace) or VM phase; the hatched rest is "
        "wall time no step accounts for (client start, push, waiting).",
    )

    _attribution_blocks(plan, out_dir, data)

    _instruction_blocks(plan, out_dir, data.records)

    plan.blocks.append(Heading("Cold against warm cache"))
    _chart(
        plan,
        out_dir,
        "cache",
        "Cold against warm",
        lambda: charts.cache_chart(charts.cache_pairs(stats)),
    )

    plan.blocks.append(Heading("Cost against work size"))
    fits = charts.growth_exponents(stats)
    if not fits.empty:
        plan.blocks.append(
            Table(
                ("strategy", "platform", "cache", "sizes", "growth exponent b"),
                tuple(
                    (
                        str(f["variant"]),
                        str(f["platform"]),
                        str(f["cache"]),
                        ", ".join(str(s) for s in f["sizes"]),
                        f"{f['exponent']:.2f}",
                    )
                    for _, f in fits.iterrows()
                ),
            )
        )
    _chart(plan, out_dir, "scaling", "Cost against work size", lambda: charts.scaling_chart(stats))


def _history_blocks(plan: ReportPlan, out_dir: Path, data: ReportData) -> None:
    """Add the history section: change points per cell and hardware class over the runs
    stored beside the report's, and their chart."""
    plan.blocks.append(Heading("History"))
    hist_runs = list(data.history)
    series, steps = history.analyse(hist_runs)
    all_steps = [s for v in steps.values() for s in v]
    several = len({p.host_class for v in series.values() for p in v}) > 1
    if several:
        plan.blocks.append(
            Para(
                "The stored runs were measured on several hardware classes: each cell's "
                "history is one series per class, so that a change of hardware is never "
                "taken for a change point."
            )
        )
    if all_steps:
        headers = (
            "cell",
            "first run after",
            "started",
            "commit",
            "before s",
            "after s",
            "ratio",
            "p",
        )
        plan.blocks.append(
            Table(
                (*headers, "host class") if several else headers,
                tuple(
                    (
                        s.cell,
                        s.run_id,
                        s.started_at,
                        s.commit[:12],
                        _fmt_s(s.before_s),
                        _fmt_s(s.after_s),
                        f"{s.ratio:.2f}x",
                        f"{s.p_value:.3g}",
                        *((s.host_class or NO_HOST_CLASS,) if several else ()),
                    )
                    for s in all_steps
                ),
            )
        )
    elif len(hist_runs) > 1:
        plan.blocks.append(
            Para(
                f"No change point over {len(hist_runs)} runs (binary segmentation, "
                "Mann-Whitney test per split, Bonferroni-corrected, alpha 0.05)."
            )
        )
    _chart(
        plan,
        out_dir,
        "history",
        "Build time history",
        lambda: charts.history_chart(history.series_frame(series), history.steps_frame(all_steps)),
    )


def _validation_blocks(plan: ReportPlan, out_dir: Path, data: ReportData) -> None:
    """Add the validation matrix and the resources chart."""
    plan.blocks.append(Heading("Validation and resources"))
    _chart(
        plan,
        out_dir,
        "validation",
        "Validation matrix",
        lambda: charts.validation_chart(charts.validation_table(data.records)),
    )
    _chart(
        plan,
        out_dir,
        "resources",
        "Resources",
        lambda: charts.resources_chart(charts.resource_table(data.frame)),
    )


def _closing_blocks(plan: ReportPlan, data: ReportData) -> None:
    """Add the cells that were unavailable, the stored results skipped and the charts
    left out."""
    manifests = data.manifests
    unavailable = [c for m in manifests for c in m.get("cells", []) if not c.get("available", 1)]
    if unavailable:
        plan.blocks.append(Heading("Unavailable cells"))
        plan.blocks.append(
            Bullets(
                tuple(dict.fromkeys(f"{c.get('cell')}: {c.get('reason', '')}" for c in unavailable))
            )
        )
    if data.skipped:
        plan.blocks.append(Heading("Stored results skipped"))
        plan.blocks.append(Bullets(tuple(str(w) for w in data.skipped)))
    plan.blocks.append(Heading("Charts left out"))
    plan.blocks.append(
        Bullets(tuple(f"{t}: {why}" for t, why in plan.left_out))
        if plan.left_out
        else Para("None: the data allowed every chart.")
    )


def _ratio_text(row: Any) -> str:
    if row["emulator"] == row["reference"]:
        return "1 (reference)"
    if row["ratio"] != row["ratio"]:
        return f"- ({row['pairs']} pair(s): too few)"
    return (
        f"{row['ratio']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        f" ({_vs_pick(float(row['ratio']))})"
    )


def _emulator_blocks(plan: ReportPlan, out_dir: Path, df: Any) -> None:
    """Add the "Emulator versions" section (when a cell ran under a pinned emulator): per
    cell, each version's paired ratio to the reference emulator with its interval, and
    its crash and flake counts; its chart; and emulators.csv."""
    from bench.report.frame import emulator_versions

    table = emulator_versions(df)
    if table.empty:
        return
    plan.blocks.append(Heading("Emulator versions"))
    plan.blocks.append(
        Para(
            "Each cell's build time under each QEMU version against the reference emulator "
            "(the host's, where the cell ran under it, else the lowest version measured), "
            "paired repetition by repetition within each run (interleaved, so drift "
            "cancels): geometric-mean ratio and 95 % t interval of log(version/reference). "
            "Crashes: repetitions failed with emulator-crash; flakes: emulator crashes "
            "retried by --retries."
        )
    )
    plan.blocks.append(
        Table(
            (
                "scenario",
                "platform",
                "strategy",
                "emulator",
                "QEMU version",
                "pairs",
                "ratio to reference [95 % CI]",
                "median s",
                "failed",
                "crashes",
                "flakes",
            ),
            tuple(
                (
                    f"{r['scenario']} s{r['size']}"
                    + (f" ({r['cache']})" if r["cache"] != "cold" else ""),
                    str(r["platform"]),
                    str(r["strategy"]) + (f"-{r['cpu']}" if r["cpu"] != "default" else ""),
                    str(r["emulator"]),
                    str(r["version"]) or "-",
                    str(r["pairs"]),
                    _ratio_text(r),
                    _fmt_s(r["median_s"]),
                    str(r["failed"]),
                    str(r["crashes"]),
                    str(r["flakes"]),
                )
                for _, r in table.iterrows()
            ),
        )
    )
    faults = [
        f"{r['scenario']} {r['platform']} {r['emulator']}: {f}"
        for _, r in table.iterrows()
        for f in str(r["faults"]).split("; ")
        if f
    ]
    if faults:
        plan.blocks.append(Para("Emulator crashes seen:"))
        plan.blocks.append(Bullets(tuple(dict.fromkeys(faults))))
    _chart(
        plan,
        out_dir,
        "emulators",
        "Emulator versions",
        lambda: charts.emulator_chart(table),
        "Points: each version's paired ratio to the reference emulator; whiskers: its 95 % "
        "interval; dashed: the reference.",
    )
    csv = out_dir / f"emulators{plan.tag}.csv"
    table.to_csv(csv, index=False, float_format="%.4f")
    plan.written.append(csv)


def _attribution_blocks(plan: ReportPlan, out_dir: Path, data: ReportData) -> None:
    """Add the section on where emulated time goes (when any cell was attributed): the
    attribution per cell as a table, `attribution.csv` and a chart, then Amdahl's limit
    for hybrid beside what hybrid reached (`amdahl.csv`)."""
    table = attribution_table(data.records)
    if table.empty:
        return
    plan.blocks.append(Heading("Where emulated time goes"))
    denominators = sorted(
        {r.attribution.denominator for r in data.records if r.attribution is not None} - {""}
    )
    sources = sorted(
        {r.attribution.source for r in data.records if r.attribution is not None} - {""}
    )
    plan.blocks.append(
        Para(
            "Every process a build ran, however short-lived, recorded by the kernel as it "
            "ended (" + ("; ".join(sources) or "no source") + ") and grouped by program; "
            "coverage is the accounted CPU time over the build's whole CPU time ("
            + ("; ".join(denominators) or "no total measured")
            + "). Medians over the measured repetitions."
            + (
                " Process accounting counts CPU time in 1/100 s per process, rounded down."
                if any("process accounting" in s for s in sources)
                else ""
            )
        )
    )
    plan.blocks.append(
        Table(
            (
                "scenario",
                "strategy",
                "platform",
                "cache",
                "n",
                "wall s",
                "CPU s",
                "accounted s",
                "coverage",
                "processes",
                *[GROUP_LABELS[g] for g in GROUPS],
            ),
            tuple(
                (
                    f"{r['scenario']} s{r['size']}",
                    str(r["variant"]) + (" (engine shared)" if r["shared"] else ""),
                    str(r["platform"]),
                    str(r["cache"]),
                    str(r["n"]),
                    _fmt_s(r["wall_s"]),
                    _fmt_s(r["total_cpu_s"]),
                    _fmt_s(r["accounted_cpu_s"]),
                    "-" if r["coverage"] != r["coverage"] else f"{r['coverage']:.1%}",
                    f"{r['processes']:.0f}",
                    *[
                        f"{r[f'cpu_{g}_s']:.3g} ({r[f'cpu_{g}_s'] / r['accounted_cpu_s']:.0%})"
                        if r["accounted_cpu_s"]
                        else "-"
                        for g in GROUPS
                    ],
                )
                for _, r in charts._ordered(table).iterrows()
            ),
        )
    )
    csv = out_dir / f"attribution{plan.tag}.csv"
    table.to_csv(csv, index=False, float_format="%.4g")
    plan.written.append(csv)
    _chart(
        plan,
        out_dir,
        "attribution",
        "CPU time by program",
        lambda: charts.attribution_chart(table),
        "Stacked: median CPU seconds per program group; hatched: the build's CPU time "
        "no accounted process covers; above each bar: the coverage.",
    )
    amdahl = amdahl_table(table, data.stats)
    if amdahl.empty:
        plan.blocks.append(
            Para(
                "Amdahl's limit for hybrid needs an attributed qemu-user cell of an emulated "
                "platform: none ran."
            )
        )
        return
    csv = out_dir / f"amdahl{plan.tag}.csv"
    amdahl.to_csv(csv, index=False, float_format="%.4g")
    plan.written.append(csv)
    plan.blocks.append(
        Para(
            "Amdahl's limit for hybrid: hybrid runs the compiler, assembler and linker "
            "natively, so with a share f of the qemu-user build's CPU time in them, the "
            "best hybrid can reach is the qemu-user median x (1 - f), were they to take no "
            "time at all. This assumes wall time follows CPU time (the same parallelism): "
            "an estimate, not a bound. 'Saving reached' is (qemu-user - hybrid) / "
            "(qemu-user - limit). 'Engine shared': another build ran on the engine during "
            "the cell, and its processes and CPU time are counted with the cell's."
        )
    )
    plan.blocks.append(
        Table(
            (
                "scenario",
                "platform",
                "cache",
                "qemu-user s",
                "toolchain share f",
                "limit s",
                "hybrid s",
                "limit vs native",
                "hybrid vs native",
                "saving reached",
            ),
            tuple(
                (
                    f"{a['scenario']} s{a['size']}"
                    + ("" if a["cpu"] == "default" else f" ({a['cpu']})")
                    + ("" if a["emulator"] == HOST_EMULATOR else f" ({a['emulator']})")
                    + (" (engine shared)" if a["shared"] else ""),
                    str(a["platform"]),
                    str(a["cache"]),
                    _fmt_s(a["qemu_user_s"]),
                    f"{a['toolchain_share']:.1%}",
                    _fmt_s(a["limit_s"]),
                    _fmt_s(a["hybrid_s"]),
                    _ratio(a["limit_vs_native"]),
                    _ratio(a["hybrid_vs_native"]),
                    "-"
                    if a["saving_reached"] != a["saving_reached"]
                    else f"{a['saving_reached']:.0%}",
                )
                for _, a in amdahl.iterrows()
            ),
        )
    )


def _ratio(x: Any) -> str:
    return "-" if x is None or x != x else f"{float(x):.2f}x"


def _instruction_blocks(plan: ReportPlan, out_dir: Path, records: list[Record]) -> None:
    """Add the Dockerfile instructions section (when a run stored instructions) with its
    chart, and write instructions.csv."""
    from bench.report.instruction_blocks import costs_frame, instruction_section

    parts = instruction_section(records)
    if parts is None:
        return
    for kind, value in parts:
        if kind == "heading":
            plan.blocks.append(Heading(str(value)))
        elif kind == "para":
            plan.blocks.append(Para(str(value)))
        elif kind == "bullets":
            plan.blocks.append(Bullets(tuple(value)))
        elif kind == "table":
            plan.blocks.append(Table(tuple(value[0]), tuple(value[1])))
        else:
            _chart(
                plan,
                out_dir,
                "instructions",
                "Cost of each Dockerfile instruction",
                value,
                "Each instruction's median time over the native build's; hatched: run on "
                "$BUILDPLATFORM.",
            )
    csv = out_dir / f"instructions{plan.tag}.csv"
    costs_frame(records).to_csv(csv, index=False)
    plan.written.append(csv)


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _md_line(text: str) -> str:
    # A value shown in a heading, paragraph or list item stays on its line: a newline
    # in it could otherwise start a heading, a list or a table of its own.
    return _CONTROLS.sub(" ", text)


def _md_cell(text: str) -> str:
    # One table row per line, and a pipe escaped so that it cannot open a cell.
    return _md_line(text).replace("|", "\\|")


def render_markdown(blocks: Sequence[Block], out_dir: Path) -> str:
    """Return `blocks` as Markdown; charts link their PNG relative to `out_dir`."""
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + _md_line(b.text), ""]
        elif isinstance(b, Para):
            lines += [_md_line(b.text), ""]
        elif isinstance(b, Bullets):
            lines += [f"- {_md_line(item)}" for item in b.items] + [""]
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            lines.append("|" + "|".join(" --- " for _ in b.headers) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            lines.append("")
        else:
            rel = b.png.relative_to(out_dir) if b.png.is_relative_to(out_dir) else b.png
            svg = b.svg.relative_to(out_dir) if b.svg.is_relative_to(out_dir) else b.svg
            lines += [f"![{b.title}]({rel})", ""]
            if b.caption:
                lines += [f"*{b.caption}* (vector: [{svg}]({svg}))", ""]
            else:
                lines += [f"(vector: [{svg}]({svg}))", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left;vertical-align:top}
th{background:#f2f2f2} figure{margin:1.2em 0} img{max-width:100%;height:auto}
figcaption{font-size:0.85em;color:#555} li{margin:0.2em 0}
"""


def _inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Sequence[Block], title: str) -> str:
    """Return `blocks` as one self-contained HTML page: charts are PNG data URIs."""
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in b.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode(b.png.read_bytes()).decode("ascii")
            caption = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
            body.append(
                f'<figure id="chart-{b.name}"><img alt="{html.escape(b.title)}" '
                f'src="data:image/png;base64,{data}">{caption}</figure>'
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


_REPORT_SUFFIXES = {".png", ".svg", ".csv", ".md", ".html"}


def check_report_folder(out_dir: Path) -> None:
    """Check that `out_dir` may be written as a report folder: it is absent, empty, or
    an earlier report (only charts, CSV, Markdown and HTML files, with `cells.csv` or
    `report.html` among them), which a new report replaces.

    Raises UsageError otherwise, so that no other folder is ever replaced.
    """
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder; choose another report folder")
    try:
        entries = list(out_dir.iterdir())
    except OSError as exc:
        raise UsageError(f"{out_dir} cannot be listed: {exc.strerror or exc}") from None
    names = {e.name for e in entries}
    looks_like_report = all(
        e.is_file() and not e.is_symlink() and e.suffix in _REPORT_SUFFIXES for e in entries
    ) and bool(names & {"cells.csv", "report.html"})
    if entries and not looks_like_report:
        raise UsageError(
            f"{out_dir} exists and is not an archbench report; choose another report folder"
        )


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a new temp folder beside `out_dir` to write a report into; when the block
    ends without error, move it to `out_dir` (an earlier report there is renamed away
    first and removed last), else remove it and leave `out_dir` as it was. A report that
    fails half-way leaves no half-written folder behind.

    Raises UsageError (before anything is written) when `out_dir` is not a folder a
    report may replace (see `check_report_folder`).
    """
    check_report_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".new"))
    try:
        yield stage
        stage.chmod(0o755)  # mkdtemp makes it private; a report is for reading
        old = None
        if out_dir.exists():
            old = Path(
                tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".old")
            )
            os.replace(out_dir, old / out_dir.name)
        try:
            os.replace(stage, out_dir)
        except BaseException:
            if old is not None:
                os.replace(old / out_dir.name, out_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _drawn(wall: Figure | str) -> Figure:
    if isinstance(wall, str):
        raise ValueError(wall)
    return wall


def write_tables(data: ReportData, out_dir: Path) -> list[Path]:
    """Write `cells.csv` (the tidy frame, one row per record) and `walltime.csv` (the
    wall-time summary: median, n and ratio to native per cell and combined build, then
    the median's confidence interval and the native reference) into `out_dir`.

    Returns the written paths.
    """
    cells_csv = out_dir / "cells.csv"
    data.frame.to_csv(cells_csv, index=False)
    summary_csv = out_dir / "walltime.csv"
    data.wall.to_csv(summary_csv, index=False, float_format="%.3f")
    return [cells_csv, summary_csv]


def write_report_files(data: ReportData, out_dir: Path, full: bool = True) -> list[Path]:
    """Write the report of `data` into the folder `out_dir` as it is (see `write_report`,
    which stages it): `cells.csv`, `walltime.csv` and, when any cell ran ok, the wall-time
    chart `walltime.png`; with `full`, every other chart, `summary.md` and `report.html`
    too (the wall-time chart again as `walltime-ci.png` and `.svg`, the name the page
    gives it).

    Returns the written paths. Raises what a chart or a write raises.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_tables(data, out_dir)
    wall: Figure | str
    try:
        wall = charts.wall_chart(data.wall)
    except ValueError as exc:
        wall = str(exc)
    if isinstance(wall, Figure):
        png = out_dir / "walltime.png"
        wall.savefig(png, dpi=150, bbox_inches="tight")
        written.append(png)
        if not full:
            plt.close(wall)
    if not full:
        return written
    try:
        plan = plan_report(data, out_dir, wall)
    finally:
        if isinstance(wall, Figure):
            plt.close(wall)  # saved by then, or the plan failed before it was
    summary = out_dir / "summary.md"
    summary.write_text(render_markdown(plan.blocks, out_dir), encoding="utf-8")
    page = out_dir / "report.html"
    title = next((b.text for b in plan.blocks if isinstance(b, Heading)), "archbench report")
    page.write_text(render_html(plan.blocks, title), encoding="utf-8")
    return [*written, *plan.written, summary, page]


def write_report(
    source: ReportData | Sequence[Path | StoredRun],
    out_dir: Path,
    warn: Callable[[LoadWarning], None] | None = None,
    skipped: Sequence[LoadWarning] = (),
    full: bool = True,
) -> list[Path]:
    """Write the report of `source` (its data, or runs: folders or runs already read, then
    loaded once with `load_report_data`) into a temp folder beside `out_dir`, and move it
    to `out_dir` once complete (replacing an earlier report there), so that a report that
    fails leaves no half-written folder. When runs are given, `warn` is called with each
    stored result skipped as damaged; the report lists them, after `skipped` (those the
    caller already left out). `full` as for `write_report_files`.

    Returns the written paths. Raises FileNotFoundError when a folder is not a run,
    ValueError when none is given, DamagedRun when none can be used, UsageError when
    `out_dir` is a folder other than a report, and what `write_report_files` raises.
    """
    if isinstance(source, ReportData):
        data = source
    else:
        data = load_report_data(source, skipped)
        for warning in data.skipped:
            if warn is not None:
                warn(warning)
    with staged_folder(out_dir) as stage:
        written = write_report_files(data, stage, full)
    return [out_dir / p.relative_to(stage) for p in written]
