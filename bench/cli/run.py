"""`archbench run`: build, time, validate and store a matrix of cells, then report it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from bench import inputs
from bench.cli.common import (
    _LIST,
    _TEXT,
    EXIT_FAILED,
    EXIT_OK,
    SIZE_MAX,
    Subcommands,
    _path,
    _platforms,
    _say,
    _size,
    _sizes,
    _Warnings,
    out,
)
from bench.engine.attribution import ATTRIBUTE_MODES
from bench.engine.matrix import NO_HOST_CLASS, ORDERS, split_values
from bench.engine.results import DEFAULT_RESULTS
from bench.errors import UsageError
from bench.platforms import Platform
from bench.scenarios.loader import DEFAULT_SCENARIO, Scenario, resolve_scenario
from bench.strategies import REGISTRY, get_strategy
from bench.strategies.guest.cpu import CPU_MODELS
from bench.tools.emulators import Emulator
from bench.tools.registry import registry_address

if TYPE_CHECKING:
    from bench.host.nodes import Node
    from bench.report.frame import ReportData

# --cache: the cache modes each value measures.
CACHES: dict[str, tuple[str, ...]] = {
    "cold": ("cold",),
    "warm": ("warm",),
    "both": ("cold", "warm"),
}

REPS_MAX = 1000
WARMUP_MAX = 100
RETRIES_MAX = 20
TIMEOUT_MAX_S = 7 * 24 * 3600.0


def add_parser(sub: Subcommands) -> None:
    """Add the `run` subcommand and its flags to `sub`."""
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
        help="an axis of qemu-user and qemu-system cells: host (default: the one registered "
        "here), a Debian suite apt reaches (bookworm, trixie), or a QEMU version; repeatable "
        "or comma list; each cell runs once per emulator (qemu-user swapped into binfmt_misc "
        "for its builds, qemu-system started with its suite's libraries)",
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
        "--attribute",
        type=_TEXT,
        default="auto",
        choices=ATTRIBUTE_MODES,
        help="account each build's CPU time to programs (taskstats, else process "
        "accounting): auto "
        "(the default: qemu-user and hybrid cells), all (every BuildKit build) or none",
    )
    r.add_argument(
        "--nodes",
        action="append",
        default=[],
        type=_LIST,
        help="build nodes (archbench nodes add) that native cells move to, each platform "
        "on the nodes declared for it; repeatable or comma list",
    )
    r.add_argument(
        "--no-combined",
        action="store_true",
        help="skip the one-command multi-platform build per strategy",
    )


def run(args: argparse.Namespace) -> int:
    """Run `archbench run` with the parsed `args`; return its exit code."""
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
    emulators = _emulators(args.emulator, strategies)
    scenarios = _run_scenarios(args, platforms)
    build_nodes = tuple(_nodes(args.nodes))
    if build_nodes and args.builder:
        raise UsageError("--nodes and --builder both say where builds run; give one")
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
        emulators=emulators,
        attribute=args.attribute,
        nodes=build_nodes,
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
        # Cells on nodes of other hardware: each ratio is within its host class.
        several = len(data.host_classes) > 1
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
            *(["host class"] if several else []),
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
                *([escape(str(row["host_class"]) or NO_HOST_CLASS)] if several else []),
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


def _nodes(values: Sequence[str]) -> list[Node]:
    """Return the kept nodes `--nodes` names, checked. Raises UsageError naming a bad or
    unknown one."""
    from bench.host import nodes

    names = split_values(values)
    for name in names:
        nodes.check_name(name)
    return nodes.resolve(names)


def _emulators(values: Sequence[str], strategies: Sequence[str]) -> tuple[Emulator, ...]:
    """Return the emulator axis `--emulator` names (each fetched when not the host's), or
    () when it names the host's alone (the run is then as before the axis). Raises
    UsageError for a bad or ambiguous value, or an axis no requested strategy takes."""
    from bench.engine.matrix import EMULATOR_STRATEGIES
    from bench.tools import emulators

    specs = emulators.parse_specs(values)
    if specs == (emulators.HOST,):
        return ()
    if not EMULATOR_STRATEGIES & set(strategies):
        raise UsageError(
            f"--emulator {','.join(specs)}: only qemu-user and qemu-system cells take an "
            f"emulator, and the run asks for {', '.join(strategies)}"
        )
    found = emulators.distinct([emulators.resolve(spec, say=_say) for spec in specs], _say)
    for e in found:
        if e.is_host:
            _say(f"emulator host: the registered qemu-user, {e.reported or 'version unknown'}")
        else:
            _say(
                f"emulator {e.tag}: {e.package} {e.version} ({e.suite}, sha256 "
                f"{e.sha256[:12]}...): {e.reported}"
            )
    return found


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
