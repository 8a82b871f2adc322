"""`archbench teardown`: undo what setup did on this host, and only that."""

from __future__ import annotations

import argparse

from bench.cli.common import EXIT_OK, Subcommands, _say


def add_parser(sub: Subcommands) -> None:
    """Add the `teardown` subcommand and its flags to `sub`."""
    td = sub.add_parser("teardown", help="undo what setup did on this host, and only that")
    td.add_argument("--purge", action="store_true", help="also purge the packages setup installed")
    td.add_argument("--dry-run", action="store_true", help="say what would be removed, only")


def run(args: argparse.Namespace) -> int:
    """Run `archbench teardown` with the parsed `args`; return its exit code."""
    from bench.host import teardown

    actions = teardown.teardown(args.purge, args.dry_run, lambda m: _say(f"teardown: {m}"))
    if actions and not args.dry_run:
        _say(f"teardown: removed {len(actions)} item(s); `archbench setup` provisions again")
    return EXIT_OK
