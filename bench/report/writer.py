"""The full report of one or more stored runs: PNG and SVG charts, `summary.md`, and one
self-contained `report.html` (charts embedded as PNG data URIs, no external files).

The page is described once as a list of blocks and rendered twice, to Markdown and to
HTML, so both always say the same thing.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bench.analysis import history
from bench.analysis.recommend import Recommendation, recommend
from bench.engine.results import DamagedRun, LoadWarning, Record, StoredRun, list_runs, read_runs
from bench.report import charts
from bench.report.frame import cell_statistics, load_runs, staged_folder, write_basic_files


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
    skipped: list[LoadWarning] = field(default_factory=list)
    frame: Any = None  # the tidy frame of every usable record (report.frame)


def _save(fig: Figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=150, bbox_inches="tight")
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
) -> None:
    try:
        fig = make()
    except ValueError as exc:
        plan.left_out.append((title, str(exc)))
        plan.blocks.append(Para(f"Chart left out: {exc}."))
        return
    png, svg = _save(fig, out_dir, name)
    plan.written += [png, svg]
    plan.blocks.append(Chart(name, title, png, svg, caption))


def history_runs(run_dirs: Sequence[Path]) -> list[Path]:
    """Return the runs a history chart covers: the given runs when there are several,
    else every run stored beside the one given (its results folder)."""
    if len(run_dirs) > 1:
        return list(run_dirs)
    return list_runs(run_dirs[0].parent) if run_dirs else []


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
                (o.variant, _fmt_s(o.median_s), f"[{_fmt_s(o.ci_low_s)}, {_fmt_s(o.ci_high_s)}]",
                 str(o.n), "-" if o.vs_native is None else f"{o.vs_native:.2f}x",
                 "pick" if o is rec.pick else _vs_pick(o.vs_pick))
                for o in (rec.pick, *rec.alternatives)
            ]  # fmt: skip
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
                (r.scenario, r.platform, f"{emu.vs_native:.1f}x", pick.variant,
                 "-" if pick.vs_native is None else f"{pick.vs_native:.2f}x")
            )  # fmt: skip
        blocks.append(
            Table(
                ("scenario", "platform", "qemu-user vs native", "pick", "pick vs native"),
                tuple(emu_rows),
            )
        )
    return blocks


def plan_report(
    run_dirs: Sequence[Path | StoredRun], out_dir: Path, skipped: Sequence[LoadWarning] = ()
) -> ReportPlan:
    """Write every chart the data of `run_dirs` (folders, or runs already read) allows
    into `out_dir` (PNG and SVG) and return the plan of the summary: blocks, charts left
    out and why, files written, and the stored results skipped as damaged (a run whose
    manifest cannot be used is left out; the others are reported), after those the
    caller already skipped (`skipped`).

    Raises FileNotFoundError when a folder is not a run, ValueError when none is given,
    DamagedRun when no run given can be used.
    """
    if not run_dirs:
        raise ValueError("no run to report on")
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, damaged = read_runs(run_dirs)
    if not runs:
        raise DamagedRun(damaged[0])
    manifests, df = load_runs(runs)
    records: list[Record] = [r for run in runs for r in run.records]
    stats = cell_statistics(df)
    plan = ReportPlan(skipped=list(dict.fromkeys([*skipped, *damaged])), frame=df)
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
    recs = recommend(stats, df, manifests)
    plan.blocks.extend(_recommendation_blocks(recs))

    plan.blocks.append(Heading("Wall time per cell"))
    if stats.empty:
        plan.blocks.append(Para("No cell built successfully."))
    else:
        rows = [
            (str(r["scenario"]), str(r["size"]), str(r["variant"]), str(r["platform"]),
             str(r["cache"]), str(r["n"]), _fmt_s(r["median_s"]),
             f"[{_fmt_s(r['ci_low_s'])}, {_fmt_s(r['ci_high_s'])}] ({r['ci_coverage']:.0%})",
             f"{r['cv']:.1%}", {True: "pass", False: "FAIL"}.get(r["validated"], "-"),
             "; ".join(r["warnings"]) or "-")
            for _, r in charts._ordered(stats).iterrows()
        ]  # fmt: skip
        plan.blocks.append(
            Table(("scenario", "size", "strategy", "platform", "cache", "n", "median s",
                   "median CI s (coverage)", "CV", "validated", "warnings"), tuple(rows))
        )  # fmt: skip
    _chart(plan, out_dir, "walltime-ci", "Wall time with confidence intervals",
           lambda: charts.wall_ci_chart(stats),
           "Bars: median wall time; whiskers: the order-statistic confidence interval of the "
           "median (its real coverage is in the table above).")  # fmt: skip

    plan.blocks.append(Heading("Slowdown against native"))
    slow = charts.slowdown_table(stats)
    if slow.empty:
        plan.blocks.append(Para("Left out: no native cell ran, so there is no reference."))
        plan.left_out.append(("Slowdown against native", "no native cell ran"))
    else:
        matrix = charts.slowdown_matrix(slow)
        plan.blocks.append(
            Para("Reference (native cell): " + ", ".join(sorted(set(slow["reference"]))) + ".")
        )
        plan.blocks.append(Table(
            ("strategy", *[str(c) for c in matrix.columns]),
            tuple((str(i), *["-" if v != v else f"{v:.2f}x" for v in matrix.loc[i]])
                  for i in matrix.index),
        ))  # fmt: skip
        _chart(plan, out_dir, "slowdown", "Slowdown heatmap",
               lambda: charts.slowdown_heatmap(slow))  # fmt: skip

    plan.blocks.append(Heading("Where the time goes"))
    _chart(plan, out_dir, "steps", "Per-step breakdown",
           lambda: charts.step_breakdown_chart(charts.step_table(df)),
           "Median seconds per build step (buildx trace) or VM phase; the hatched rest is "
           "wall time no step accounts for (client start, push, waiting).")  # fmt: skip

    _instruction_blocks(plan, out_dir, records)

    plan.blocks.append(Heading("Cold against warm cache"))
    _chart(plan, out_dir, "cache", "Cold against warm",
           lambda: charts.cache_chart(charts.cache_pairs(stats)))  # fmt: skip

    plan.blocks.append(Heading("Cost against work size"))
    fits = charts.growth_exponents(stats)
    if not fits.empty:
        plan.blocks.append(Table(
            ("strategy", "platform", "cache", "sizes", "growth exponent b"),
            tuple((str(f["variant"]), str(f["platform"]), str(f["cache"]),
                   ", ".join(str(s) for s in f["sizes"]), f"{f['exponent']:.2f}")
                  for _, f in fits.iterrows()),
        ))  # fmt: skip
    _chart(plan, out_dir, "scaling", "Cost against work size",
           lambda: charts.scaling_chart(stats))  # fmt: skip

    plan.blocks.append(Heading("History"))
    # Runs already read are not read again; the others' damaged files are named too.
    given = {run.path: run for run in runs}
    hist_runs, hist_skipped = read_runs([given.get(p, p) for p in history_runs(
        [run.path for run in runs])])  # fmt: skip
    plan.skipped = list(dict.fromkeys([*plan.skipped, *hist_skipped]))
    series, steps = history.analyse(hist_runs)
    all_steps = [s for v in steps.values() for s in v]
    if all_steps:
        plan.blocks.append(Table(
            ("cell", "first run after", "started", "commit", "before s", "after s", "ratio", "p"),
            tuple((s.cell, s.run_id, s.started_at, s.commit[:12], _fmt_s(s.before_s),
                   _fmt_s(s.after_s), f"{s.ratio:.2f}x", f"{s.p_value:.3g}") for s in all_steps),
        ))  # fmt: skip
    elif len(hist_runs) > 1:
        plan.blocks.append(
            Para(
                f"No change point over {len(hist_runs)} runs (binary segmentation, "
                "Mann-Whitney test per split, Bonferroni-corrected, alpha 0.05)."
            )
        )
    _chart(plan, out_dir, "history", "Build time history",
           lambda: charts.history_chart(history.series_frame(series),
                                        history.steps_frame(all_steps)))  # fmt: skip

    plan.blocks.append(Heading("Validation and resources"))
    _chart(plan, out_dir, "validation", "Validation matrix",
           lambda: charts.validation_chart(charts.validation_table(records)))  # fmt: skip
    _chart(plan, out_dir, "resources", "Resources",
           lambda: charts.resources_chart(charts.resource_table(df)))  # fmt: skip

    unavailable = [c for m in manifests for c in m.get("cells", []) if not c.get("available", 1)]
    if unavailable:
        plan.blocks.append(Heading("Unavailable cells"))
        plan.blocks.append(Bullets(tuple(dict.fromkeys(
            f"{c.get('cell')}: {c.get('reason', '')}" for c in unavailable))))  # fmt: skip
    if plan.skipped:
        plan.blocks.append(Heading("Stored results skipped"))
        plan.blocks.append(Bullets(tuple(str(w) for w in plan.skipped)))
    plan.blocks.append(Heading("Charts left out"))
    plan.blocks.append(
        Bullets(tuple(f"{t}: {why}" for t, why in plan.left_out))
        if plan.left_out
        else Para("None: the data allowed every chart.")
    )
    return plan


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
            _chart(plan, out_dir, "instructions", "Cost of each Dockerfile instruction", value,
                   "Each instruction's median time over the native build's; hatched: run on "
                   "$BUILDPLATFORM.")  # fmt: skip
    csv = out_dir / "instructions.csv"
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


def write_report(
    run_dirs: Sequence[Path | StoredRun],
    out_dir: Path,
    warn: Callable[[LoadWarning], None] | None = None,
    skipped: Sequence[LoadWarning] = (),
) -> list[Path]:
    """Write the charts, `cells.csv`, `walltime.csv`, `summary.md` and `report.html` of the runs
    `run_dirs` (folders, or runs already read) into a temp folder beside `out_dir`, and
    move it to `out_dir` once complete (replacing an earlier report there), so that a
    report that fails leaves no half-written folder. `warn` is called with each stored
    result skipped as damaged; the report lists them, after `skipped` (those the caller
    already left out).

    Returns the written paths. Raises FileNotFoundError when a folder is not a run,
    ValueError when none is given, DamagedRun when none can be used, UsageError when
    `out_dir` is a folder other than a report.
    """
    with staged_folder(out_dir) as stage:
        written = write_report_files(run_dirs, stage, warn, skipped)
    return [out_dir / p.relative_to(stage) for p in written]


def write_report_files(
    run_dirs: Sequence[Path | StoredRun],
    out_dir: Path,
    warn: Callable[[LoadWarning], None] | None = None,
    skipped: Sequence[LoadWarning] = (),
) -> list[Path]:
    """Write the report of `run_dirs` into the folder `out_dir` as it is (see
    `write_report`, which stages it).

    Returns the written paths. Raises like `write_report`.
    """
    plan = plan_report(run_dirs, out_dir, skipped)
    for warning in plan.skipped:
        if warn is not None:
            warn(warning)
    basic = write_basic_files(plan.frame, out_dir)
    summary = out_dir / "summary.md"
    summary.write_text(render_markdown(plan.blocks, out_dir), encoding="utf-8")
    page = out_dir / "report.html"
    title = next((b.text for b in plan.blocks if isinstance(b, Heading)), "archbench report")
    page.write_text(render_html(plan.blocks, title), encoding="utf-8")
    return [*plan.written, *basic, summary, page]
