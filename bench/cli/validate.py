"""`archbench validate`: check multi-arch images, their artifacts and a smoke run each."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from bench.cli.common import _LIST, _TEXT, EXIT_FAILED, EXIT_OK, Subcommands, _platforms, _say, out
from bench.errors import UsageError


def add_parser(sub: Subcommands) -> None:
    """Add the `validate` subcommand and its flags to `sub`."""
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


def run(args: argparse.Namespace) -> int:
    """Run `archbench validate` with the parsed `args`; return its exit code."""
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
