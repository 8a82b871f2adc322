"""The `archbench` command line.

Exit codes, for every command: 0 success; 1 a requested cell failed or timed out (an
unavailable cell is reported, not a failure); 2 bad arguments or a host that is not set
up; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.table import Table

from bench import __version__
from bench.errors import ArchbenchError, HostNotReady, UsageError
from bench.guest import CPU_MODELS
from bench.matrix import ORDERS, split_values
from bench.platforms import Platform, parse_platform
from bench.results import DEFAULT_RESULTS
from bench.scenario import DEFAULT_SCENARIO, resolve_scenario
from bench.strategies import REGISTRY, get_strategy
from bench.tools.registry import registry_address

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

err = Console(stderr=True, highlight=False, soft_wrap=True)
# Tables piped to a file or a CI log keep every column at full width.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        err.print(f"archbench: error: {message} (see `{self.prog} --help`)", markup=False)
        raise SystemExit(EXIT_USAGE)


def _say(message: str) -> None:
    err.print(message, markup=False)


def _sizes(values: Sequence[str]) -> tuple[int, ...]:
    sizes = []
    for v in split_values(values):
        if not v.isdigit() or int(v) < 1:
            raise UsageError(f"bad --size {v!r}; expected a whole number of at least 1")
        sizes.append(int(v))
    return tuple(sizes) or (1,)


def _platforms(values: Sequence[str]) -> tuple[Platform, ...]:
    return tuple(dict.fromkeys(parse_platform(v) for v in split_values(values)))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    p = _Parser(
        prog="archbench",
        description="Build one project for several CPU "
        "architectures with native, qemu-system, qemu-user, cross and hybrid strategies; "
        "time, validate and report each.",
    )
    p.add_argument("--version", action="version", version=f"archbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("setup", help="provision this host idempotently")
    s.add_argument(
        "--registry", help="HOST:PORT on loopback (default $ARCHBENCH_REGISTRY or 127.0.0.1:5000)"
    )
    s.add_argument(
        "--platform",
        action="append",
        default=[],
        help="platforms to provision base images for (default linux/amd64,linux/arm64)",
    )
    s.add_argument(
        "--builder-image",
        help="a reachable moby/buildkit image: creates the "
        "docker-container builder `archbench-container`",
    )

    td = sub.add_parser("teardown", help="undo what setup did on this host, and only that")
    td.add_argument(
        "--purge", action="store_true", help="also purge the packages setup installed"
    )
    td.add_argument("--dry-run", action="store_true", help="say what would be removed, only")

    g = sub.add_parser(
        "gc", help="remove registry images and build caches that no stored run refers to"
    )
    g.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default results/)"
    )
    g.add_argument("--registry")
    g.add_argument("--dry-run", action="store_true", help="say what would be removed, only")

    d = sub.add_parser("doctor", help="what this host can do, and what fixes the rest")
    d.add_argument("--json", action="store_true", help="print JSON instead of tables")
    d.add_argument("--registry")
    d.add_argument("--platform", action="append", default=[])

    r = sub.add_parser("run", help="build, time, validate and store a matrix of cells")
    r.add_argument(
        "scenario", nargs="*", help=f"scenario names or files (default {DEFAULT_SCENARIO})"
    )
    r.add_argument(
        "--strategy",
        action="append",
        default=[],
        help=f"repeatable or comma list; one of {', '.join(REGISTRY)} (default all)",
    )
    r.add_argument(
        "--platform",
        action="append",
        default=[],
        help="repeatable or comma list (default: the scenario's platforms)",
    )
    r.add_argument(
        "--size",
        action="append",
        default=[],
        help="work size N (N times the work of size 1); a comma list scans sizes",
    )
    r.add_argument("--reps", type=int, default=3, help="repetitions per cell (default 3)")
    r.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default results/)"
    )
    r.add_argument(
        "--reports", type=Path, default=None, help="report folder (default reports/<run-id>/)"
    )
    r.add_argument("--registry")
    r.add_argument("--base-image", help="base image for every stage instead of the scenario's own")
    r.add_argument("--builder", help="buildx builder name (default: the engine's own)")
    r.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds one build may take (default 3600)"
    )
    r.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="unmeasured repetitions per cell before the measured ones (default 0)",
    )
    r.add_argument(
        "--order",
        default="interleaved",
        help="interleaved (round-robin over cells, the default) or sequential",
    )
    r.add_argument(
        "--cache",
        default="cold",
        help="cold (empty build folder, the default), warm (incremental: one "
        "source file edited) or both",
    )
    r.add_argument(
        "--cpu",
        action="append",
        default=[],
        help="emulated CPU variant for qemu-user and qemu-system; repeatable; "
        "one of default, " + ", ".join(CPU_MODELS),
    )
    r.add_argument(
        "--retries",
        type=int,
        default=0,
        help="rebuilds of a repetition that failed in a known flaky way "
        "(emulator crash); flakes are counted per cell",
    )
    r.add_argument(
        "--no-combined",
        action="store_true",
        help="skip the one-command multi-platform build per strategy",
    )
    sh = sub.add_parser(
        "show", help="print a stored run: samples, statistics, steps, resources, provenance"
    )
    sh.add_argument("run", nargs="?", help="run id or run folder (default: the latest run)")
    sh.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    sh.add_argument("--json", action="store_true", help="print JSON instead of tables")

    ex = sub.add_parser(
        "export", help="write the tidy table of stored runs (one row per repetition)"
    )
    ex.add_argument("run", nargs="*", help="run ids or run folders (default: the latest run)")
    ex.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    ex.add_argument("--format", default="csv", help="csv (default), parquet or json")
    ex.add_argument("--out", type=Path, help="file to write (default: standard output)")

    rp = sub.add_parser(
        "report", help="charts, summary.md and a self-contained report.html of stored runs"
    )
    rp.add_argument("run", nargs="*", help="run ids or run folders (default: the latest run)")
    rp.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    rp.add_argument(
        "--out", type=Path, help="report folder (default reports/<run-id>/ of the last run)"
    )

    cp = sub.add_parser(
        "compare", help="is NEW slower than BASE? per cell: ratio, CI, Mann-Whitney test"
    )
    cp.add_argument("base", help="run id or run folder")
    cp.add_argument("new", help="run id or run folder")
    cp.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    cp.add_argument("--threshold", default="10%", help="smallest change that counts (default 10%%)")
    cp.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    cp.add_argument("--json", action="store_true", help="print JSON instead of tables")

    hi = sub.add_parser("history", help="change points in each cell's time across stored runs")
    hi.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    hi.add_argument("--cell", action="append", default=[], help="cell key; repeatable")
    hi.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    hi.add_argument("--json", action="store_true", help="print JSON instead of tables")

    v = sub.add_parser(
        "validate",
        help="check multi-arch images: index, platforms, config, "
        "artifacts' ELF headers, a smoke run per platform",
    )
    v.add_argument(
        "image",
        nargs="+",
        help="image references (several: artifacts are also compared across them)",
    )
    v.add_argument(
        "--platform",
        action="append",
        default=[],
        required=True,
        help="expected platform; repeatable or comma list",
    )
    v.add_argument(
        "--artifact",
        action="append",
        default=[],
        help="absolute path of a binary in the image to check; repeatable",
    )
    v.add_argument(
        "--expect-output",
        help="text the smoke run must print; {arch} is the "
        "platform's uname -m (without it, exit 0 passes)",
    )
    v.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def cmd_validate(args: argparse.Namespace) -> int:
    from bench.platforms import host_platform
    from bench.validate import compare_artifacts, validate_image

    platforms = list(_platforms(args.platform))
    for path in args.artifact:
        if not path.startswith("/"):
            raise UsageError(f"bad --artifact {path!r}; expected an absolute path in the image")
    host = host_platform()
    reports = {
        ref: validate_image(
            ref, platforms, host=host, artifacts=args.artifact, expect_output=args.expect_output
        )
        for ref in args.image
    }
    comparison = compare_artifacts(reports) if len(reports) > 1 else []
    passed = all(r.passed for r in reports.values())
    if args.json:
        print(
            json.dumps(
                {
                    "passed": passed,
                    "images": [r.as_dict() for r in reports.values()],
                    "comparison": [c.as_dict() for c in comparison],
                },
                indent=2,
            )
        )
    else:
        for ref, report in reports.items():
            table = Table("check", "platform", "result", "detail", title=ref)
            for c in report.checks:
                result = (
                    "[yellow]skipped[/]"
                    if c.skipped
                    else ("[green]pass[/]" if c.passed else "[red]FAIL[/]")
                )
                table.add_row(c.name, c.platform or "-", result, c.detail)
            out.print(table)
        for c in comparison:
            out.print(f"compare {c.platform}: {c.detail}", markup=False)
    for ref, report in reports.items():
        for c in report.failures():
            _say(f"FAIL {ref} {c.name} {c.platform or '(image)'}: {c.detail}")
    return EXIT_OK if passed else EXIT_FAILED


def cmd_show(args: argparse.Namespace) -> int:
    from bench import results, show

    try:
        run_dir = results.resolve_run(args.run, args.results)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    manifest, records = results.load_run(run_dir)
    rows = show.cell_rows(records)
    if args.json:
        print(
            json.dumps(
                {
                    "run": manifest.get("run_id"),
                    "status": manifest.get("status"),
                    "cells": rows,
                    "provenance": manifest.get("provenance", {}),
                },
                indent=2,
                default=str,
            )
        )
        return EXIT_OK
    table = Table(
        "cell",
        "status",
        "n",
        "samples s",
        "median",
        "min-max",
        "CV",
        "median CI (coverage)",
        "steps (median s)",
        "CPU s",
        "peak MiB",
        title=f"run {manifest.get('run_id')} ({manifest.get('status')})",
    )
    for row in rows:
        st = row["stats"]
        table.add_row(
            row["cell"], row["status"], str(row["n"]),
            " ".join(f"{x:.1f}" for x in row["samples"]),
            f"{st['median']:.2f}" if st else "-",
            f"{st['minimum']:.1f}-{st['maximum']:.1f}" if st else "-",
            f"{st['cv']:.1%}" if st else "-",
            f"[{st['ci_low']:.1f}, {st['ci_high']:.1f}] ({st['ci_coverage']:.0%})" if st else "-",
            " ".join(f"{k} {v:.1f}" for k, v in row["steps"].items() if v >= 0.05),
            f"{row['cpu_s']:.1f}" if row["cpu_s"] is not None else "-",
            f"{row['peak_mib']:.0f}" if row["peak_mib"] is not None else "-",
        )  # fmt: skip
    out.print(table)
    for row in rows:
        for warning in (row["stats"] or {}).get("warnings", []):
            out.print(f"warning: {row['cell']}: {warning}", markup=False)
        if row["stats"] and row["stats"]["reps_for_5pct"]:
            out.print(f"{row['cell']}: a 5 % difference needs about "
                      f"{row['stats']['reps_for_5pct']} repetitions per side at this spread",
                      markup=False)  # fmt: skip
    prov = manifest.get("provenance", {})
    out.print(
        f"host {prov.get('hostname')} ({prov.get('cpu_model')}, {prov.get('cpu_count')} cores, "
        f"kernel {prov.get('kernel')}); docker {prov.get('docker_server')}, "
        f"{prov.get('buildx')}; {prov.get('qemu_user')}; commit {prov.get('harness_commit')}",
        markup=False,
    )
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    from bench import provision

    address = registry_address(args.registry)
    platforms = _platforms(args.platform) or (
        parse_platform("linux/amd64"),
        parse_platform("linux/arm64"),
    )
    options = provision.SetupOptions(address, platforms, args.builder_image)
    outcomes = provision.setup(options, lambda m: _say(f"setup: {m}"))
    table = Table("step", "state", "detail", title="archbench setup")
    for o in outcomes:
        table.add_row(o.name, "changed" if o.changed else "ok", o.detail)
    out.print(table)
    changed = [o.name for o in outcomes if o.changed]
    _say("setup: changed " + ", ".join(changed) if changed else "setup: nothing to change")
    return EXIT_OK


def cmd_teardown(args: argparse.Namespace) -> int:
    from bench import teardown

    actions = teardown.teardown(args.purge, args.dry_run, lambda m: _say(f"teardown: {m}"))
    if actions and not args.dry_run:
        _say(f"teardown: removed {len(actions)} item(s); `archbench setup` provisions again")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from bench import gc

    gc.gc(args.results, registry_address(args.registry), args.dry_run, lambda m: _say(f"gc: {m}"))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench import doctor

    address = registry_address(args.registry)
    platforms = list(_platforms(args.platform)) or list(
        resolve_scenario(DEFAULT_SCENARIO).platforms
    )
    rows = doctor.collect(address, platforms)
    grid = doctor.strategy_grid(platforms)
    ready = doctor.ready(rows)
    if args.json:
        print(json.dumps(doctor.as_json(rows, grid, ready), indent=2))
    else:
        table = Table("capability", "state", "detail", "fix", title="archbench doctor")
        for row in rows:
            state = (
                "[green]ok[/]"
                if row.ok
                else ("[red]MISSING[/]" if row.required else "[yellow]no[/]")
            )
            table.add_row(row.name, state, row.detail, "" if row.ok else row.fix)
        out.print(table)
        g = Table("strategy", *[p.name for p in platforms], title="strategy x platform")
        for name in REGISTRY:
            cells = []
            for p in platforms:
                entry = next(x for x in grid if x["strategy"] == name and x["platform"] == p.name)
                cells.append(
                    "[green]available[/]"
                    if entry["available"]
                    else f"[yellow]{entry['reason']}[/]"
                    + (f" (fix: {entry['fix']})" if entry["fix"] else "")
                )
            g.add_row(name, *cells)
        out.print(g)
        out.print(
            "ready: the default matrix can run"
            if ready
            else "[red]not ready[/]: run `archbench setup`"
        )
    return EXIT_OK if ready else EXIT_USAGE


def cmd_run(args: argparse.Namespace) -> int:
    from bench import report, runner

    if args.reps < 1:
        raise UsageError(f"bad --reps {args.reps}; expected at least 1")
    if args.warmup < 0 or args.retries < 0:
        raise UsageError("bad --warmup or --retries; expected 0 or more")
    if args.order not in ORDERS:
        raise UsageError(f"bad --order {args.order!r}; valid: {', '.join(ORDERS)}")
    caches = {"cold": ("cold",), "warm": ("warm",), "both": ("cold", "warm")}
    if args.cache not in caches:
        raise UsageError(f"bad --cache {args.cache!r}; valid: cold, warm, both")
    cpus = tuple("" if c == "default" else c for c in split_values(args.cpu))
    for cpu in cpus:
        if cpu and cpu not in CPU_MODELS:
            raise UsageError(f"unknown --cpu {cpu!r}; valid: default, {', '.join(CPU_MODELS)}")
    strategies = tuple(get_strategy(s).name for s in split_values(args.strategy)) or tuple(REGISTRY)
    platforms = _platforms(args.platform)
    scenarios = tuple(resolve_scenario(s) for s in (args.scenario or [DEFAULT_SCENARIO]))
    req = runner.RunRequest(
        scenarios=scenarios,
        strategies=strategies,
        platforms=platforms,
        sizes=_sizes(args.size),
        reps=args.reps,
        results_root=args.results,
        registry=registry_address(args.registry),
        base_image=args.base_image,
        builder=args.builder,
        timeout=args.timeout,
        combined=not args.no_combined,
        warmup=args.warmup,
        order=args.order,
        caches=caches[args.cache],
        cpus=cpus,
        retries=args.retries,
    )
    summary = runner.execute(req, _say)
    reports_dir = args.reports or (report.DEFAULT_REPORTS / summary.store.run_id)
    written = report.write_basic_report(summary.store.path, reports_dir)
    from bench import htmlreport

    try:
        # The full report (charts, recommendation, report.html) beside the first CSVs; a
        # chart that fails must not cost the run its stored results or its exit code.
        htmlreport.write_report([summary.store.path], reports_dir)
        written.append(reports_dir / "report.html")
    except Exception as exc:  # noqa: BLE001
        _say(
            f"archbench: the full report could not be written ({exc}); "
            f"`archbench report {summary.store.run_id}` retries it"
        )
    df = report.wall_summary(report.frame(summary.records))
    table = Table("scenario", "size", "kind", "strategy", "cache", "platform", "median s", "n",
                  "vs native", title=f"run {summary.store.run_id}")  # fmt: skip
    for _, row in df.iterrows():
        ratio = row["vs_native"]
        table.add_row(
            str(row["scenario"]), str(row["size"]), str(row["kind"]), str(row["variant"]),
            str(row["cache"]), str(row["platform"]), f"{row['median_s']:.1f}", str(row["n"]),
            "" if ratio != ratio else f"{ratio:.2f}",
        )  # fmt: skip
    out.print(table)
    for r in summary.records:
        if r.status in ("failed", "timeout"):
            _say(
                f"{r.kind} {r.strategy} {r.platform or 'all'} rep {r.rep}: {r.status} "
                f"({r.failure_class}); log {r.log_file or '-'}"
            )
    _say(f"results: {summary.store.path}")
    _say("report: " + ", ".join(str(p) for p in written))
    return EXIT_FAILED if summary.failed else EXIT_OK


def _runs(refs: Sequence[str], root: Path) -> list[Path]:
    from bench import results

    try:
        return [results.resolve_run(r, root) for r in refs] or [results.resolve_run(None, root)]
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc


def cmd_export(args: argparse.Namespace) -> int:
    from bench import report

    if args.format not in report.EXPORT_FORMATS:
        raise UsageError(f"bad --format {args.format!r}; valid: {', '.join(report.EXPORT_FORMATS)}")
    _, df = report.load_runs(_runs(args.run, args.results))
    try:
        text = report.export_frame(df, args.format, args.out)
    except (ValueError, report.ExportUnavailable) as exc:
        raise UsageError(str(exc)) from exc
    if text is not None:
        sys.stdout.write(text)
    else:
        _say(f"export: {len(df)} rows to {args.out}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from bench import htmlreport, report

    runs = _runs(args.run, args.results)
    out_dir = args.out or (report.DEFAULT_REPORTS / runs[-1].name)
    written = htmlreport.write_report(runs, out_dir)
    _say(f"report: {len(written)} files in {out_dir}")
    print(out_dir / "report.html")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from bench import compare

    base, new = _runs([args.base], args.results)[0], _runs([args.new], args.results)[0]
    try:
        threshold = compare.parse_threshold(args.threshold)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not 0 < args.alpha < 1:
        raise UsageError(f"bad --alpha {args.alpha}; expected a value between 0 and 1")
    result = compare.compare_runs(base, new, threshold, args.alpha)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        table = Table("cell", "n base/new", "median base s", "median new s", "ratio new/base",
                      "95% CI (bootstrap)", "p slower", "p faster", "verdict",
                      title=f"compare {result.base_run} -> {result.new_run} "
                      f"(threshold {threshold:.0%}, alpha {args.alpha:g})")  # fmt: skip
        for c in result.cells:
            verdict = c.verdict + (" (threshold only)" if c.threshold_only else "")
            table.add_row(
                c.cell, f"{c.base_n}/{c.new_n}", f"{c.base_median_s:.3f}",
                f"{c.new_median_s:.3f}", f"{c.ratio:.3f}", f"[{c.ci_low:.3f}, {c.ci_high:.3f}]",
                "-" if c.p_slower is None else f"{c.p_slower:.3g}",
                "-" if c.p_faster is None else f"{c.p_faster:.3g}", verdict,
            )  # fmt: skip
        out.print(table)
        out.print(f"CI: {compare.CI_METHOD}; test: one-sided exact Mann-Whitney U", markup=False)
        for c in result.cells:
            for note in c.notes:
                out.print(f"note: {c.cell}: {note}", markup=False)
        for name in result.only_base:
            out.print(f"only in base: {name}", markup=False)
        for name in result.only_new:
            out.print(f"only in new: {name}", markup=False)
    for warning in result.warnings:
        _say(f"warning: {warning}")
    if not result.cells:
        _say("compare: no cell ran ok in both runs")
    return EXIT_FAILED if result.regressed else EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from bench import history, results

    runs = results.list_runs(args.results)
    if not runs:
        raise UsageError(f"no runs under {args.results}")
    series, steps = history.analyse(runs, args.cell, alpha=args.alpha)
    missing = [c for c in args.cell if c not in series]
    if missing:
        raise UsageError(f"no stored run measured cell {missing[0]!r}")
    if args.json:
        print(json.dumps({
            "method": "binary segmentation, two-sided exact Mann-Whitney U per split, "
                      "Bonferroni-corrected over the splits tried",
            "alpha": args.alpha,
            "cells": {
                k: {"runs": [{"run_id": p.run_id, "started_at": p.started_at,
                              "commit": p.commit, "n": len(p.samples),
                              "median_s": p.median_s} for p in v],
                    "steps": [s.as_dict() for s in steps[k]]}
                for k, v in series.items()
            },
        }, indent=2))  # fmt: skip
        return EXIT_OK
    table = Table("cell", "runs", "first median s", "last median s", "change points",
                  title=f"history of {len(runs)} runs under {args.results}")  # fmt: skip
    for key, points in series.items():
        found = "; ".join(
            f"{s.ratio:.2f}x at {s.run_id} ({s.started_at}, {s.commit[:10] or '-'}), "
            f"p {s.p_value:.2g}"
            for s in steps[key]
        ) or "none"  # fmt: skip
        table.add_row(key, str(len(points)), f"{points[0].median_s:.3f}",
                      f"{points[-1].median_s:.3f}", found)  # fmt: skip
    out.print(table)
    out.print("method: binary segmentation on the runs' repetitions, two-sided exact "
              "Mann-Whitney U per split, Bonferroni-corrected", markup=False)  # fmt: skip
    return EXIT_OK


COMMANDS = {
    "setup": cmd_setup,
    "teardown": cmd_teardown,
    "gc": cmd_gc,
    "doctor": cmd_doctor,
    "run": cmd_run,
    "show": cmd_show,
    "validate": cmd_validate,
    "export": cmd_export,
    "report": cmd_report,
    "compare": cmd_compare,
    "history": cmd_history,
}


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    # A shell that starts archbench in the background leaves SIGINT ignored; a Ctrl-C
    # or a `kill -INT` must still end the run cleanly, and so must a SIGTERM.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _say("archbench: interrupted; finished results are kept")
        return EXIT_INTERRUPTED
    except (UsageError, HostNotReady) as exc:
        _say(f"archbench: error: {exc}")
        return EXIT_USAGE
    except ArchbenchError as exc:
        _say(f"archbench: error: {exc}")
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
