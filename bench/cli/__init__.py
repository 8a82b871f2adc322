"""The `archbench` command line.

Exit codes, for every command: 0 success; 1 a requested cell failed or timed out (an
unavailable cell is reported, not a failure); 2 bad arguments or a host that is not set
up; 130 Ctrl-C (SIGINT); 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench import __version__, inputs
from bench.engine.matrix import ORDERS, split_values
from bench.engine.results import DEFAULT_RESULTS, LoadWarning, StoredRun
from bench.errors import ArchbenchError, HostNotReady, Interrupted, UsageError
from bench.platforms import Platform, parse_platform
from bench.report import CI_FORMATS, EXPORT_FORMATS
from bench.scenarios.loader import DEFAULT_SCENARIO, Scenario, resolve_scenario
from bench.strategies import REGISTRY, get_strategy
from bench.strategies.guest.cpu import CPU_MODELS
from bench.tools import binfmt
from bench.tools.emulators import Emulator
from bench.tools.registry import registry_address

if TYPE_CHECKING:
    from bench.report.frame import ReportData

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# --cache: the cache modes each value measures.
CACHES: dict[str, tuple[str, ...]] = {
    "cold": ("cold",),
    "warm": ("warm",),
    "both": ("cold", "warm"),
}

err = Console(stderr=True, highlight=False, soft_wrap=True)
# Tables piped to a file or a CI log keep every column at full width.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        err.print(f"archbench: error: {message} (see `{self.prog} --help`)", markup=False)
        raise SystemExit(EXIT_USAGE)


def _say(message: str) -> None:
    err.print(message, markup=False)


class _Warnings:
    """Prints each warning about a damaged stored result once, and keeps them."""

    def __init__(self) -> None:
        self.given: list[LoadWarning] = []

    def __call__(self, warning: LoadWarning) -> None:
        if warning not in self.given:
            self.given.append(warning)
            _say(f"warning: {warning}")


SIZE_MAX = 1024
REPS_MAX = 1000
WARMUP_MAX = 100
RETRIES_MAX = 20
TIMEOUT_MAX_S = 7 * 24 * 3600.0


def _size(text: str) -> str:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= SIZE_MAX:
        raise ValueError(f"bad --size {text!r}; expected a whole number from 1 to {SIZE_MAX}")
    return text


def _sizes(values: Sequence[str]) -> tuple[int, ...]:
    sizes = []
    for v in split_values(values):
        try:
            sizes.append(int(_size(v)))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return tuple(sizes) or (1,)


def _threshold(text: str) -> str:
    from bench.analysis.compare import parse_threshold

    value = parse_threshold(text)
    if not math.isfinite(value) or value > 100:
        raise ValueError(f"bad threshold {text!r}; expected a finite value from 0 to 10000%")
    return text


def _path(text: str) -> Path:
    return Path(inputs.text_flag()(text))


_TEXT = inputs.text_flag()
_LIST = inputs.list_flag()


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
        "--registry",
        type=inputs.text_flag(inputs.registry),
        help="HOST:PORT on loopback (default $ARCHBENCH_REGISTRY or 127.0.0.1:5000)",
    )
    s.add_argument(
        "--platform",
        action="append",
        default=[],
        type=_LIST,
        help="platforms to provision base images for (default linux/amd64,linux/arm64)",
    )
    s.add_argument(
        "--builder-image",
        type=inputs.text_flag(inputs.image_ref),
        help="a reachable moby/buildkit image: creates the "
        "docker-container builder `archbench-container`",
    )
    s.add_argument(
        "--import",
        dest="import_archive",
        type=_path,
        metavar="ARCHIVE",
        help="only copy the images of a `docker save` or OCI archive into the local "
        "registry (Docker Hub's mirror), every platform it holds",
    )
    s.add_argument(
        "--import-name",
        type=inputs.text_flag(inputs.image_ref),
        metavar="NAME:TAG",
        help="name of the imported image when its archive names none",
    )

    td = sub.add_parser("teardown", help="undo what setup did on this host, and only that")
    td.add_argument("--purge", action="store_true", help="also purge the packages setup installed")
    td.add_argument("--dry-run", action="store_true", help="say what would be removed, only")

    g = sub.add_parser(
        "gc", help="remove registry images and build caches that no stored run refers to"
    )
    g.add_argument(
        "--results", type=_path, default=DEFAULT_RESULTS, help="results folder (default results/)"
    )
    g.add_argument("--registry", type=inputs.text_flag(inputs.registry))
    g.add_argument("--dry-run", action="store_true", help="say what would be removed, only")

    d = sub.add_parser("doctor", help="what this host can do, and what fixes the rest")
    d.add_argument("--json", action="store_true", help="print JSON instead of tables")
    d.add_argument("--registry", type=inputs.text_flag(inputs.registry))
    d.add_argument("--platform", action="append", default=[], type=_LIST)

    r = sub.add_parser("run", help="build, time, validate and store a matrix of cells")
    r.add_argument(
        "scenario",
        nargs="*",
        type=_TEXT,
        help=f"scenario names or files (default {DEFAULT_SCENARIO})",
    )
    r.add_argument(
        "--strategy",
        action="append",
        default=[],
        type=_LIST,
        help=f"repeatable or comma list; one of {', '.join(REGISTRY)} (default all)",
    )
    r.add_argument(
        "--platform",
        action="append",
        default=[],
        type=_LIST,
        help="repeatable or comma list (default: the scenario's platforms)",
    )
    r.add_argument(
        "--size",
        action="append",
        default=[],
        type=inputs.list_flag(_size),
        help=f"work size N from 1 to {SIZE_MAX} (N times the work of size 1); "
        "a comma list scans sizes",
    )
    r.add_argument(
        "--reps",
        type=inputs.int_flag(1, REPS_MAX),
        default=3,
        help="repetitions per cell (default 3)",
    )
    r.add_argument(
        "--results", type=_path, default=DEFAULT_RESULTS, help="results folder (default results/)"
    )
    r.add_argument(
        "--reports", type=_path, default=None, help="report folder (default reports/<run-id>/)"
    )
    r.add_argument("--registry", type=inputs.text_flag(inputs.registry))
    r.add_argument(
        "--base-image",
        type=inputs.text_flag(inputs.image_ref),
        help="base image for every stage instead of the scenario's own",
    )
    r.add_argument(
        "--builder",
        type=inputs.text_flag(inputs.name),
        help="buildx builder name (default: the engine's own)",
    )
    r.add_argument(
        "--timeout",
        type=inputs.float_flag(0, TIMEOUT_MAX_S, open_low=True),
        default=3600.0,
        help="seconds one build may take (default 3600)",
    )
    r.add_argument(
        "--warmup",
        type=inputs.int_flag(0, WARMUP_MAX),
        default=0,
        help="unmeasured repetitions per cell before the measured ones (default 0)",
    )
    r.add_argument(
        "--order",
        type=_TEXT,
        default="interleaved",
        choices=ORDERS,
        help="interleaved (round-robin over cells, the default) or sequential",
    )
    r.add_argument(
        "--cache",
        type=_TEXT,
        default="cold",
        choices=CACHES,
        help="cold (empty build folder, the default), warm (incremental: one "
        "source file edited) or both",
    )
    r.add_argument(
        "--cpu",
        action="append",
        default=[],
        type=_LIST,
        help="emulated CPU variant for qemu-user and qemu-system; repeatable; "
        "one of default, " + ", ".join(CPU_MODELS),
    )
    r.add_argument(
        "--emulator",
        action="append",
        default=[],
        type=_LIST,
        help="qemu-user cells' emulator: host (default: the one registered here), a Debian "
        "suite apt reaches (bookworm, trixie), or a QEMU version; swapped into binfmt_misc "
        "for each cell; one per run",
    )
    r.add_argument(
        "--retries",
        type=inputs.int_flag(0, RETRIES_MAX),
        default=0,
        help="rebuilds of a repetition that failed in a known flaky way "
        "(emulator crash); flakes are counted per cell",
    )
    r.add_argument(
        "--dockerfile",
        type=_path,
        help="benchmark this Dockerfile as it is written (no scenario file needed)",
    )
    r.add_argument(
        "--bake",
        type=_path,
        help="benchmark each target of this bake file (docker buildx bake --print); "
        "--target picks targets",
    )
    r.add_argument(
        "--context", type=_path, help="build context of --dockerfile (default: its folder)"
    )
    r.add_argument(
        "--target",
        action="append",
        default=[],
        type=inputs.text_flag(inputs.name),
        help="stage of --dockerfile to build, or (repeatable) target of --bake",
    )
    r.add_argument(
        "--build-arg",
        action="append",
        default=[],
        type=_TEXT,
        metavar="K=V",
        help="build argument of --dockerfile; repeatable",
    )
    r.add_argument(
        "--secret",
        action="append",
        default=[],
        type=_TEXT,
        help="buildx --secret value passed through (e.g. id=npmrc,src=.npmrc); repeatable",
    )
    r.add_argument(
        "--ssh",
        action="append",
        default=[],
        type=_TEXT,
        help="buildx --ssh value passed through (e.g. default); repeatable",
    )
    r.add_argument(
        "--no-combined",
        action="store_true",
        help="skip the one-command multi-platform build per strategy",
    )
    sh = sub.add_parser(
        "show", help="print a stored run: samples, statistics, steps, resources, provenance"
    )
    sh.add_argument(
        "run", nargs="?", type=_TEXT, help="run id or run folder (default: the latest run)"
    )
    sh.add_argument("--results", type=_path, default=DEFAULT_RESULTS)
    sh.add_argument("--json", action="store_true", help="print JSON instead of tables")

    ex = sub.add_parser(
        "export", help="write the tidy table of stored runs (one row per repetition)"
    )
    ex.add_argument(
        "run", nargs="*", type=_TEXT, help="run ids or run folders (default: the latest run)"
    )
    ex.add_argument("--results", type=_path, default=DEFAULT_RESULTS)
    ex.add_argument(
        "--format",
        type=_TEXT,
        default="csv",
        choices=EXPORT_FORMATS,
        help="csv (default), parquet, json (one row per repetition), or one benchmark per "
        "cell for CI dashboards: github-action-benchmark (customSmallerIsBetter) or bencher "
        "(Bencher Metric Format)",
    )
    ex.add_argument("--out", type=_path, help="file to write (default: standard output)")

    rp = sub.add_parser(
        "report", help="charts, summary.md and a self-contained report.html of stored runs"
    )
    rp.add_argument(
        "run", nargs="*", type=_TEXT, help="run ids or run folders (default: the latest run)"
    )
    rp.add_argument("--results", type=_path, default=DEFAULT_RESULTS)
    rp.add_argument(
        "--out", type=_path, help="report folder (default reports/<run-id>/ of the last run)"
    )

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
    cp.add_argument("--json", action="store_true", help="print JSON instead of tables")

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

    v = sub.add_parser(
        "validate",
        help="check multi-arch images: index, platforms, config, "
        "artifacts' ELF headers, a smoke run per platform",
    )
    v.add_argument(
        "image",
        nargs="+",
        type=_TEXT,
        help="image references (several: artifacts are also compared across them)",
    )
    v.add_argument(
        "--platform",
        action="append",
        default=[],
        required=True,
        type=_LIST,
        help="expected platform; repeatable or comma list",
    )
    v.add_argument(
        "--artifact",
        action="append",
        default=[],
        type=_TEXT,
        help="absolute path of a binary in the image to check; repeatable",
    )
    v.add_argument(
        "--expect-output",
        type=_TEXT,
        help="text the smoke run must print; {arch} is the "
        "platform's uname -m (without it, exit 0 passes)",
    )
    v.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def cmd_validate(args: argparse.Namespace) -> int:
    from bench.platforms import host_platform
    from bench.validate.image import compare_artifacts, validate_image

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
            table = Table("check", "platform", "result", "detail", title=escape(ref))
            for c in report.checks:
                result = (
                    "[yellow]skipped[/]"
                    if c.skipped
                    else ("[green]pass[/]" if c.passed else "[red]FAIL[/]")
                )
                table.add_row(escape(c.name), escape(c.platform or "-"), result, escape(c.detail))
            out.print(table)
        for c in comparison:
            out.print(f"compare {c.platform}: {c.detail}", markup=False)
    for ref, report in reports.items():
        for c in report.failures():
            _say(f"FAIL {ref} {c.name} {c.platform or '(image)'}: {c.detail}")
    return EXIT_OK if passed else EXIT_FAILED


def cmd_show(args: argparse.Namespace) -> int:
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
        for warning in (row["stats"] or {}).get("warnings", []):
            out.print(f"warning: {row['cell']}: {warning}", markup=False)
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


def cmd_setup(args: argparse.Namespace) -> int:
    from bench.host import setup as provision

    address = registry_address(args.registry)
    if args.import_archive is not None:
        from bench.host import imports

        done = imports.import_archive(
            args.import_archive, address, args.import_name or "", lambda m: _say(f"setup: {m}")
        )
        for image in done:
            _say(f"setup: {image.name}: {image.reference} ({', '.join(image.platforms)})")
        return EXIT_OK
    platforms = _platforms(args.platform) or (
        parse_platform("linux/amd64"),
        parse_platform("linux/arm64"),
    )
    options = provision.SetupOptions(address, platforms, args.builder_image)
    outcomes = provision.setup(options, lambda m: _say(f"setup: {m}"))
    table = Table("step", "state", "detail", title="archbench setup")
    for o in outcomes:
        table.add_row(escape(o.name), "changed" if o.changed else "ok", escape(o.detail))
    out.print(table)
    changed = [o.name for o in outcomes if o.changed]
    _say("setup: changed " + ", ".join(changed) if changed else "setup: nothing to change")
    return EXIT_OK


def cmd_teardown(args: argparse.Namespace) -> int:
    from bench.host import teardown

    actions = teardown.teardown(args.purge, args.dry_run, lambda m: _say(f"teardown: {m}"))
    if actions and not args.dry_run:
        _say(f"teardown: removed {len(actions)} item(s); `archbench setup` provisions again")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from bench.host import gc

    gc.gc(args.results, registry_address(args.registry), args.dry_run, lambda m: _say(f"gc: {m}"))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.host import doctor, facts

    address = registry_address(args.registry)
    scenario = resolve_scenario(DEFAULT_SCENARIO)
    platforms = list(_platforms(args.platform)) or list(scenario.platforms)
    host = facts.gather()
    rows = doctor.collect(address, platforms, host)
    grid = doctor.strategy_grid(scenario, platforms, host)
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
            table.add_row(
                escape(row.name), state, escape(row.detail), "" if row.ok else escape(row.fix)
            )
        out.print(table)
        g = Table("strategy", *[p.name for p in platforms], title="strategy x platform")
        for name in REGISTRY:
            cells = []
            for p in platforms:
                entry = next(x for x in grid if x["strategy"] == name and x["platform"] == p.name)
                cells.append(
                    "[green]available[/]"
                    if entry["available"]
                    else f"[yellow]{escape(entry['reason'])}[/]"
                    + (f" (fix: {escape(entry['fix'])})" if entry["fix"] else "")
                )
            g.add_row(name, *cells)
        out.print(g)
        out.print(
            "ready: the default matrix can run"
            if ready
            else "[red]not ready[/]: run `archbench setup`"
        )
    return EXIT_OK if ready else EXIT_USAGE


def _emulator(values: Sequence[str]) -> Emulator | None:
    """Return the qemu-user emulator `--emulator` names (fetched when not the host's), or
    None for the host's. Raises UsageError for more than one: not yet an axis of the matrix."""
    from bench.tools import emulators

    specs = emulators.parse_specs(values)
    if len(specs) > 1:
        raise UsageError(
            f"--emulator takes one value per run for now, not {', '.join(specs)}: run once "
            "per emulator"
        )
    if specs[0] == emulators.HOST:
        return None
    emulator = emulators.resolve(specs[0], say=_say)
    _say(
        f"qemu-user cells run under {emulator.package} {emulator.version} ({emulator.suite}, "
        f"sha256 {emulator.sha256[:12]}...): {emulator.reported}"
    )
    return emulator


def cmd_run(args: argparse.Namespace) -> int:
    from bench.engine import runner
    from bench.report import frame as report
    from bench.report import writer

    if args.reps < 1:
        raise UsageError(f"bad --reps {args.reps}; expected at least 1")
    if args.warmup < 0 or args.retries < 0:
        raise UsageError("bad --warmup or --retries; expected 0 or more")
    cpus = tuple("" if c == "default" else c for c in split_values(args.cpu))
    for cpu in cpus:
        if cpu and cpu not in CPU_MODELS:
            raise UsageError(f"unknown --cpu {cpu!r}; valid: default, {', '.join(CPU_MODELS)}")
    strategies = tuple(get_strategy(s).name for s in split_values(args.strategy)) or tuple(REGISTRY)
    platforms = _platforms(args.platform)
    emulator = _emulator(args.emulator) if "qemu-user" in strategies else None
    scenarios = _run_scenarios(args, platforms)
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
        caches=CACHES[args.cache],
        cpus=cpus,
        retries=args.retries,
        emulator=emulator,
    )
    if args.reports is not None:
        writer.check_report_folder(args.reports)  # before the run, not after it
    summary = runner.execute(req, _say)
    reports_dir = args.reports or (writer.DEFAULT_REPORTS / summary.store.run_id)
    written: list[Path] = []
    try:
        # The report reads the run back from the store, once, like `archbench report`.
        data = report.load_report_data([summary.store.path])
    except Exception as exc:  # noqa: BLE001
        _say(f"archbench: the stored run could not be read back ({exc}); no report written")
    else:
        warn = _Warnings()
        for warning in data.skipped:
            warn(warning)
        written = _write_run_report(data, reports_dir, summary.store.run_id)
        table = Table(
            "scenario",
            "size",
            "kind",
            "strategy",
            "cache",
            "platform",
            "median s",
            "n",
            "vs native",
            title=f"run {summary.store.run_id}",
        )
        for _, row in data.wall.iterrows():
            ratio = row["vs_native"]
            table.add_row(
                *(
                    escape(str(row[k]))
                    for k in ("scenario", "size", "kind", "variant", "cache", "platform")
                ),
                f"{row['median_s']:.1f}",
                str(row["n"]),
                "" if ratio != ratio else f"{ratio:.2f}",
            )
        out.print(table)
    for r in summary.records:
        if r.status in ("failed", "timeout"):
            _say(
                f"{r.kind} {r.strategy} {r.platform or 'all'} rep {r.rep}: {r.status} "
                f"({r.failure_class}); log {r.log_file or '-'}"
            )
    _say(f"results: {summary.store.path}")
    if written:
        _say("report: " + ", ".join(str(p) for p in written))
    return EXIT_FAILED if summary.failed else EXIT_OK


def _run_scenarios(
    args: argparse.Namespace, platforms: tuple[Platform, ...]
) -> tuple[Scenario, ...]:
    """Return the scenarios `run` builds: --dockerfile's own (with the scenarios named
    too, if any), or the named scenarios (default cbench). Raises UsageError naming a
    bad value."""
    from bench.scenarios import userfile

    own = ("--context", args.context), ("--target", args.target), ("--build-arg", args.build_arg)
    if args.bake is not None:
        if args.dockerfile is not None or args.context or args.build_arg:
            raise UsageError("--bake takes its context, Dockerfile and args from the bake file")
        baked = userfile.bake_scenarios(
            args.bake,
            tuple(args.target),
            platforms,
            secrets=tuple(userfile.pass_through("--secret", v) for v in args.secret),
            ssh=tuple(userfile.pass_through("--ssh", v) for v in args.ssh),
        )
        return (*baked, *(resolve_scenario(s) for s in args.scenario))
    if args.dockerfile is None:
        for flag, value in own:
            if value:
                raise UsageError(f"{flag} needs --dockerfile")
        if args.secret or args.ssh:
            raise UsageError("--secret and --ssh need --dockerfile")
        return tuple(resolve_scenario(s) for s in (args.scenario or [DEFAULT_SCENARIO]))
    if len(args.target) > 1:
        raise UsageError("--dockerfile builds one --target; several are for --bake")
    scenario = userfile.dockerfile_scenario(
        args.dockerfile,
        context=args.context,
        target=args.target[0] if args.target else "",
        build_args=tuple(userfile.build_arg(a) for a in args.build_arg),
        platforms=platforms,
        secrets=tuple(userfile.pass_through("--secret", v) for v in args.secret),
        ssh=tuple(userfile.pass_through("--ssh", v) for v in args.ssh),
    )
    return (scenario, *(resolve_scenario(s) for s in args.scenario))


def _write_run_report(data: ReportData, reports_dir: Path, run_id: str) -> list[Path]:
    """Write the report at the end of `run` from the run's `data`, with the one writer
    `archbench report` uses, staged and moved into place whole; if the full report fails,
    its first part alone (`cells.csv`, `walltime.csv`, `walltime.png`). A chart that fails
    must not cost the run its stored results or its exit code, nor leave a half-written
    folder."""
    from bench.report import writer

    try:
        writer.write_report(data, reports_dir)
        names = ("cells.csv", "walltime.csv", "walltime.png", "report.html")
        return [reports_dir / n for n in names if (reports_dir / n).exists()]
    except Exception as exc:  # noqa: BLE001
        _say(
            f"archbench: the full report could not be written ({exc}); "
            f"`archbench report {run_id}` retries it"
        )
    try:
        return writer.write_report(data, reports_dir, full=False)
    except Exception as exc:  # noqa: BLE001
        _say(f"archbench: no report could be written ({exc}); the results are kept")
        return []


def _runs(refs: Sequence[str], root: Path, warn: Callable[[LoadWarning], None]) -> list[StoredRun]:
    """Return the runs named by `refs` (run ids or folders), read through the one
    tolerant loader, or with no `refs` the latest run that can be read. Each damaged
    file is passed to `warn`; a run whose manifest cannot be used is skipped.

    Raises UsageError when a run named does not exist, or no run is left to use.
    """
    from bench.engine import results

    try:
        paths = [results.resolve_run(r, root) for r in refs]
        if not paths:
            paths = list(reversed(results.list_runs(root)))
            if not paths:
                raise FileNotFoundError(f"no runs under {root}")
            paths_to_try = [[p] for p in paths]  # the newest run that reads
        else:
            paths_to_try = [paths]
        for group in paths_to_try:
            runs, warnings = results.read_runs(group)
            for warning in warnings:
                warn(warning)
            if runs:
                return runs
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    where = ", ".join(refs) if refs else f"under {root}"
    raise UsageError(f"no run that can be read ({where}); see the warnings above")


def cmd_export(args: argparse.Namespace) -> int:
    from bench.report import frame as report

    runs = _runs(args.run, args.results, _Warnings())
    df = report.frame([r for run in runs for r in run.records])
    try:
        if args.format in CI_FORMATS:
            from bench.engine.results import replace_file
            from bench.report import ci_export

            ci_text = ci_export.export_text(df, args.format)
            if args.out is None:
                sys.stdout.write(ci_text)
                return EXIT_OK
            if args.out.is_dir():
                raise ValueError(f"--out {args.out} is a folder; give a file name")
            replaced = replace_file(args.out, lambda tmp: tmp.write_text(ci_text, encoding="utf-8"))
            _say(f"export: {args.format} to {args.out}" + ("; replaced" if replaced else ""))
            return EXIT_OK
        text = report.export_frame(df, args.format, args.out)
    except (ValueError, report.ExportUnavailable) as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    if isinstance(text, str):
        sys.stdout.write(text)
    else:
        _say(f"export: {len(df)} rows to {args.out}" + (f"; replaced {args.out}" if text else ""))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import writer

    warn = _Warnings()
    runs = _runs(args.run, args.results, warn)
    out_dir = args.out or (writer.DEFAULT_REPORTS / runs[-1].path.name)
    replaced = out_dir.exists()
    try:
        written = writer.write_report(runs, out_dir, warn, skipped=warn.given)
    except ArchbenchError:
        raise
    except Exception as exc:
        # write_report stages the report: whatever failed, `out_dir` is as it was.
        raise ArchbenchError(
            f"the report could not be written ({type(exc).__name__}: {exc}); "
            f"{out_dir} is left as it was"
        ) from exc
    _say(
        f"report: {len(written)} files in {out_dir}" + (f"; replaced {out_dir}" if replaced else "")
    )
    print(out_dir / "report.html")
    return EXIT_OK


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


def cmd_compare(args: argparse.Namespace) -> int:
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
    result = compare.compare_runs(base, new, threshold, args.alpha, args.allow_recipe_change)
    failed = result.failed(args.strict)
    if args.json:
        data = result.as_dict()
        data["failed"] = failed
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


def cmd_history(args: argparse.Namespace) -> int:
    from bench.analysis import history
    from bench.engine import results

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
    missing = [c for c in args.cell if c not in series]
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
    table = Table(
        "cell",
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
            escape(key),
            str(len(points)),
            f"{points[0].median_s:.3f}",
            f"{points[-1].median_s:.3f}",
            f"{history.run_noise(medians):.1%}",
            f"{history.minimum_step(medians):.1%}",
            escape(found),
        )
    out.print(table)
    out.print(f"method: {history.METHOD}", markup=False)
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
    raise Interrupted(signum)


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
        # A run killed while it had another emulator registered left the host's handler
        # swapped: put it back before anything builds.
        binfmt.repair(say=_say)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:
        # The shell's convention, 128 + the signal: 130 for SIGINT, 143 for SIGTERM.
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        _say(f"archbench: interrupted ({name}); finished results are kept")
        return EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
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
