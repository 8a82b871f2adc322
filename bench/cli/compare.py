"""`archbench compare`: the regression gate, NEW against BASE or variant B against A."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from bench import inputs
from bench.cli.common import (
    _TEXT,
    EXIT_FAILED,
    EXIT_OK,
    Subcommands,
    _path,
    _runs,
    _say,
    _threshold,
    _Warnings,
    out,
)
from bench.engine.results import DEFAULT_RESULTS
from bench.errors import UsageError


def add_parser(sub: Subcommands) -> None:
    """Add the `compare` subcommand and its flags to `sub`."""
    cp = sub.add_parser(
        "compare",
        help="the regression gate: is NEW slower than BASE, or broken? (or, with --pair, "
        "variant B against A within one run)",
    )
    cp.add_argument("base", type=_TEXT, help="run id or run folder (with --pair: the run)")
    cp.add_argument("new", nargs="?", type=_TEXT, help="run id or run folder (not with --pair)")
    cp.add_argument("--results", type=_path, default=DEFAULT_RESULTS)
    cp.add_argument(
        "--threshold",
        type=inputs.text_flag(_threshold),
        default="10%",
        help="smallest change that counts (default 10%%)",
    )
    cp.add_argument(
        "--alpha",
        type=inputs.float_flag(0, 1, open_low=True, open_high=True),
        default=0.05,
        help="family-wise significance level (0.05)",
    )
    cp.add_argument(
        "--pair",
        metavar="AXIS=A,B",
        type=_TEXT,
        help="paired compare within one run: cells with AXIS=B against the same cells with "
        "AXIS=A, repetition by repetition (AXIS: scenario, cpu, strategy, platform, cache, size)",
    )
    cp.add_argument(
        "--strict",
        action="store_true",
        help="fail on 'possible regression' verdicts too (too few repetitions to tell)",
    )
    cp.add_argument(
        "--allow-recipe-change",
        action="store_true",
        help="do not fail when the harness recipe (Dockerfile, base image, emulator) changed",
    )
    cp.add_argument(
        "--across-hosts",
        action="store_true",
        help="compare cells measured on different host classes (CPU model, cores, memory, "
        "kernel series); refused otherwise",
    )
    cp.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    """Run `archbench compare` with the parsed `args`; return its exit code."""
    from bench.analysis import compare

    threshold = _gate_args(args)
    if args.pair:
        if args.new:
            raise UsageError("--pair compares within one run: give one run, not two")
        return _compare_pairs(args, threshold)
    if not args.new:
        raise UsageError("compare needs BASE and NEW runs (or one run and --pair AXIS=A,B)")
    warn = _Warnings()
    base, new = _runs([args.base], args.results, warn)[0], _runs([args.new], args.results, warn)[0]
    across = compare.host_class_differences(base.records, new.records)
    if across and not args.across_hosts:
        more = f" (and {len(across) - 1} more)" if len(across) > 1 else ""
        raise UsageError(
            f"BASE and NEW measured cells on different host classes: {across[0]}{more}; "
            "timings of different hardware are not comparable; --across-hosts compares "
            "them anyway"
        )
    for line in across:
        _say(f"comparing across host classes (--across-hosts): {line}")
    result = compare.compare_runs(base, new, threshold, args.alpha, args.allow_recipe_change)
    failed = result.failed(args.strict)
    if args.json:
        data = result.as_dict()
        data["failed"] = failed
        data["across_hosts"] = across
        print(json.dumps(data, indent=2))
    else:
        table = Table(
            "cell",
            "n base/new",
            "median base s",
            "median new s",
            "ratio new/base",
            "interval (coverage)",
            "p slower",
            "p faster",
            "verdict",
            title=escape(
                f"compare {result.base_run} -> {result.new_run} (threshold "
                f"{threshold:.0%}, alpha {args.alpha:g} family-wise)"
            ),
        )
        for c in result.cells:
            table.add_row(
                escape(c.cell),
                f"{c.base_n}/{c.new_n}",
                _fmt(c.base_median_s),
                _fmt(c.new_median_s),
                _fmt(c.ratio),
                f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}] ({c.ci_coverage:.0%})",
                _fmt(c.p_slower, ".3g"),
                _fmt(c.p_faster, ".3g"),
                escape(c.verdict),
            )
        out.print(table)
        out.print(f"test: {compare.TEST_METHOD}; interval: {compare.CI_METHOD}", markup=False)
        out.print(
            f"{len(result.cells)} cell(s) compared: a verdict needs at least "
            f"{result.min_reps} repetitions per side (C(2n, n) >= cells / alpha)",
            markup=False,
        )
        for c in result.cells:
            for note in c.notes:
                out.print(f"note: {c.cell}: {note}", markup=False)
        for b in result.broken:
            out.print(f"BROKEN: {b.cell}: {b.status}: {b.detail}", markup=False)
        for line in result.recipe_changes:
            allowed = " (allowed)" if args.allow_recipe_change else ""
            out.print(f"RECIPE CHANGED{allowed}: {line}", markup=False)
        for line in result.source_changes:
            out.print(f"measured change: {line}", markup=False)
        for name in result.only_base:
            out.print(f"only in base (not requested by new): {name}", markup=False)
        for name in result.only_new:
            out.print(f"only in new: {name}", markup=False)
    for warning in result.warnings:
        _say(f"warning: {warning}")
    if not result.cells and not result.broken:
        _say("compare: no cell ran ok in both runs")
    if result.advisory and not args.strict:
        _say("compare: possible regression: too few repetitions to tell (exit 0; --strict fails)")
    return EXIT_FAILED if failed else EXIT_OK


def _gate_args(args: argparse.Namespace) -> float:
    from bench.analysis import compare

    try:
        threshold = compare.parse_threshold(args.threshold)
        compare.check_gate(threshold, args.alpha)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return threshold


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None or x != x else format(x, spec)


def _compare_pairs(args: argparse.Namespace, threshold: float) -> int:
    from bench.analysis import paired

    try:
        axis, a, b = paired.parse_pair(args.pair)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    run = _runs([args.base], args.results, _Warnings())[0]
    try:
        result = paired.compare_pairs(run, axis, a, b, threshold, args.alpha)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    failed = result.failed(args.strict)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        table = Table(
            "A",
            "B",
            "pairs",
            "ratio B/A",
            "95% interval",
            "p slower",
            "p faster",
            "verdict",
            title=escape(
                f"paired compare in run {result.run_id}: {axis} "
                f"{b} against {a} (threshold {threshold:.0%}, alpha {args.alpha:g} "
                "family-wise)"
            ),
        )
        for p in result.pairs:
            table.add_row(
                escape(p.cell_a),
                escape(p.cell_b),
                str(p.pairs),
                _fmt(p.ratio),
                f"[{_fmt(p.ci_low)}, {_fmt(p.ci_high)}]",
                _fmt(p.p_slower, ".3g"),
                _fmt(p.p_faster, ".3g"),
                escape(p.verdict),
            )
        out.print(table)
        out.print(f"test: {paired.TEST_METHOD}", markup=False)
        for p in result.pairs:
            for note in p.notes:
                out.print(f"note: {p.cell_b}: {note}", markup=False)
        for x in result.broken:
            out.print(f"BROKEN: {x.cell}: {x.status}: {x.detail}", markup=False)
    for warning in result.warnings:
        _say(f"warning: {warning}")
    return EXIT_FAILED if failed else EXIT_OK
