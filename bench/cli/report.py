"""`archbench report`: charts, summary.md and report.html of stored runs."""

from __future__ import annotations

import argparse

from bench.cli.common import _TEXT, EXIT_OK, Subcommands, _path, _runs, _say, _Warnings
from bench.engine.results import DEFAULT_RESULTS
from bench.errors import ArchbenchError


def add_parser(sub: Subcommands) -> None:
    """Add the `report` subcommand and its flags to `sub`."""
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


def run(args: argparse.Namespace) -> int:
    """Run `archbench report` with the parsed `args`; return its exit code."""
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
