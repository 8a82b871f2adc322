"""`archbench show`: print a stored run's samples, statistics, steps and provenance."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from bench.cli.common import _TEXT, EXIT_OK, Subcommands, _path, _runs, _Warnings, out
from bench.engine.results import DEFAULT_RESULTS


def add_parser(sub: Subcommands) -> None:
    """Add the `show` subcommand and its flags to `sub`."""
    sh = sub.add_parser(
        "show", help="print a stored run: samples, statistics, steps, resources, provenance"
    )
    sh.add_argument(
        "run", nargs="?", type=_TEXT, help="run id or run folder (default: the latest run)"
    )
    sh.add_argument("--results", type=_path, default=DEFAULT_RESULTS)
    sh.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    """Run `archbench show` with the parsed `args`; return its exit code."""
    from bench.analysis import show

    run = _runs([args.run] if args.run else [], args.results, _Warnings())[0]
    manifest, records = run.manifest, list(run.records)
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
        title=escape(f"run {manifest.get('run_id')} ({manifest.get('status')})"),
    )
    for row in rows:
        st = row["stats"]
        table.add_row(
            escape(str(row["cell"])),
            escape(str(row["status"])),
            str(row["n"]),
            " ".join(f"{x:.1f}" for x in row["samples"]),
            f"{st['median']:.2f}" if st else "-",
            f"{st['minimum']:.1f}-{st['maximum']:.1f}" if st else "-",
            f"{st['cv']:.1%}" if st else "-",
            f"[{st['ci_low']:.1f}, {st['ci_high']:.1f}] ({st['ci_coverage']:.0%})" if st else "-",
            escape(" ".join(f"{k} {v:.1f}" for k, v in row["steps"].items() if v >= 0.05)),
            f"{row['cpu_s']:.1f}" if row["cpu_s"] is not None else "-",
            f"{row['peak_mib']:.0f}" if row["peak_mib"] is not None else "-",
        )
    out.print(table)
    for row in rows:
        if row["emulator"]:
            crashes = row["emulator_crashes"]
            out.print(
                f"{row['cell']}: emulator {row['emulator']}"
                + (f"; {crashes} emulator crash(es)" if crashes else ""),
                markup=False,
            )
        for fault in row["emulator_faults"]:
            out.print(f"{row['cell']}: emulator-crash under {fault}", markup=False)
    for row in rows:
        for warning in (row["stats"] or {}).get("warnings", []):
            out.print(f"warning: {row['cell']}: {warning}", markup=False)
        attributed = row["attribution"]
        if attributed:
            coverage = attributed["coverage"]
            out.print(
                f"{row['cell']}: CPU s by program "
                + ", ".join(f"{g} {s:.1f}" for g, s in attributed["cpu_by_group"].items() if s)
                + ("" if coverage is None else f" (coverage {coverage:.0%})"),
                markup=False,
            )
        if row["stats"] and row["stats"]["reps_for_gate"]:
            out.print(
                f"{row['cell']}: `archbench compare` (one cell, threshold 10 %, alpha "
                f"0.05) finds a 20 % slowdown 90 % of the time with about "
                f"{row['stats']['reps_for_gate']} repetitions per side at this spread",
                markup=False,
            )
    prov = manifest.get("provenance", {})
    out.print(
        f"host {prov.get('hostname')} ({prov.get('cpu_model')}, {prov.get('cpu_count')} cores, "
        f"kernel {prov.get('kernel')}); docker {prov.get('docker_server')}, "
        f"{prov.get('buildx')}; {prov.get('qemu_user')}; commit {prov.get('harness_commit')}",
        markup=False,
    )
    return EXIT_OK
