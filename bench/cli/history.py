"""`archbench history`: change points in each cell's time across stored runs."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from bench import inputs
from bench.cli.common import _TEXT, EXIT_OK, Subcommands, _path, _Warnings, out
from bench.engine.results import DEFAULT_RESULTS
from bench.errors import UsageError


def add_parser(sub: Subcommands) -> None:
    """Add the `history` subcommand and its flags to `sub`."""
    hi = sub.add_parser("history", help="change points in each cell's time across stored runs")
    hi.add_argument("--results", type=_path, default=DEFAULT_RESULTS)
    hi.add_argument("--cell", action="append", default=[], type=_TEXT, help="cell key; repeatable")
    hi.add_argument(
        "--alpha",
        type=inputs.float_flag(0, 1, open_low=True, open_high=True),
        default=0.05,
        help="significance level (0.05)",
    )
    hi.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    """Run `archbench history` with the parsed `args`; return its exit code."""
    from bench.analysis import history
    from bench.engine import results
    from bench.engine.matrix import NO_HOST_CLASS

    stored = results.list_runs(args.results)
    if not stored:
        raise UsageError(f"no runs under {args.results}")
    runs, warnings = results.read_runs(stored)
    warn = _Warnings()
    for warning in warnings:
        warn(warning)
    if not runs:
        raise UsageError(f"no run that can be read under {args.results}; see the warnings above")
    series, steps = history.analyse(runs, args.cell, alpha=args.alpha)
    measured = {points[0].cell for points in series.values()}
    missing = [c for c in args.cell if c not in measured]
    if missing:
        raise UsageError(f"no stored run measured cell {missing[0]!r}")
    if args.json:
        print(
            json.dumps(
                {
                    "method": history.METHOD,
                    "alpha": args.alpha,
                    "cells": {
                        k: {
                            "cell": v[0].cell,
                            "host_class": v[0].host_class,
                            "runs": [
                                {
                                    "run_id": p.run_id,
                                    "started_at": p.started_at,
                                    "commit": p.commit,
                                    "n": len(p.samples),
                                    "median_s": p.median_s,
                                }
                                for p in v
                            ],
                            "run_noise": history.run_noise([p.median_s for p in v]),
                            "min_step": history.minimum_step([p.median_s for p in v]),
                            "steps": [s.as_dict() for s in steps[k]],
                        }
                        for k, v in series.items()
                    },
                },
                indent=2,
            )
        )
        return EXIT_OK
    # A cell measured on two hardware classes is two series: say which is which.
    several = len({points[0].host_class for points in series.values()}) > 1
    table = Table(
        "cell",
        *(["host class"] if several else []),
        "runs",
        "first median s",
        "last median s",
        "run noise",
        "min step",
        "change points",
        title=escape(f"history of {len(runs)} runs under {args.results}"),
    )
    for key, points in series.items():
        medians = [p.median_s for p in points]
        found = (
            "; ".join(
                f"{s.ratio:.2f}x [{s.ci_low:.2f}, {s.ci_high:.2f}] ({s.ci_coverage:.0%}) at "
                f"{s.run_id} ({s.started_at}, {s.commit[:10] or '-'}), "
                f"{s.n_before}/{s.n_after} runs, p {s.p_value:.2g}"
                for s in steps[key]
            )
            or "none"
        )
        table.add_row(
            escape(points[0].cell),
            *([escape(points[0].host_class or NO_HOST_CLASS)] if several else []),
            str(len(points)),
            f"{points[0].median_s:.3f}",
            f"{points[-1].median_s:.3f}",
            f"{history.run_noise(medians):.1%}",
            f"{history.minimum_step(medians):.1%}",
            escape(found),
        )
    out.print(table)
    if several:
        out.print(
            "each cell's history is one series per host class (CPU model, cores, memory, "
            "kernel series): a change of hardware is not a change point",
            markup=False,
        )
    out.print(f"method: {history.METHOD}", markup=False)
    return EXIT_OK
