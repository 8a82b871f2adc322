"""`archbench export`: the tidy table of stored runs, or a CI benchmark file."""

from __future__ import annotations

import argparse
import sys

from bench.cli.common import _TEXT, EXIT_OK, Subcommands, _path, _runs, _say, _Warnings
from bench.engine.results import DEFAULT_RESULTS
from bench.errors import UsageError
from bench.report import CI_FORMATS, EXPORT_FORMATS


def add_parser(sub: Subcommands) -> None:
    """Add the `export` subcommand and its flags to `sub`."""
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


def run(args: argparse.Namespace) -> int:
    """Run `archbench export` with the parsed `args`; return its exit code."""
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
