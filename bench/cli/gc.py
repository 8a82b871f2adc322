"""`archbench gc`: remove registry images and build caches no stored run refers to."""

from __future__ import annotations

import argparse

from bench import inputs
from bench.cli.common import EXIT_OK, Subcommands, _path, _say
from bench.engine.results import DEFAULT_RESULTS
from bench.tools.registry import registry_address


def add_parser(sub: Subcommands) -> None:
    """Add the `gc` subcommand and its flags to `sub`."""
    g = sub.add_parser(
        "gc", help="remove registry images and build caches that no stored run refers to"
    )
    g.add_argument(
        "--results", type=_path, default=DEFAULT_RESULTS, help="results folder (default results/)"
    )
    g.add_argument("--registry", type=inputs.text_flag(inputs.registry))
    g.add_argument("--dry-run", action="store_true", help="say what would be removed, only")


def run(args: argparse.Namespace) -> int:
    """Run `archbench gc` with the parsed `args`; return its exit code."""
    from bench.host import gc

    gc.gc(args.results, registry_address(args.registry), args.dry_run, lambda m: _say(f"gc: {m}"))
    return EXIT_OK
