"""`archbench doctor`: what this host can do, and what fixes the rest."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from bench import inputs
from bench.cli.common import _LIST, EXIT_OK, EXIT_USAGE, Subcommands, _platforms, out
from bench.scenarios.loader import DEFAULT_SCENARIO, resolve_scenario
from bench.tools.registry import registry_address


def add_parser(sub: Subcommands) -> None:
    """Add the `doctor` subcommand and its flags to `sub`."""
    d = sub.add_parser("doctor", help="what this host can do, and what fixes the rest")
    d.add_argument("--json", action="store_true", help="print JSON instead of tables")
    d.add_argument("--registry", type=inputs.text_flag(inputs.registry))
    d.add_argument("--platform", action="append", default=[], type=_LIST)


def run(args: argparse.Namespace) -> int:
    """Run `archbench doctor` with the parsed `args`; return its exit code."""
    from bench.host import doctor, facts
    from bench.tools import emulators

    address = registry_address(args.registry)
    scenario = resolve_scenario(DEFAULT_SCENARIO)
    platforms = list(_platforms(args.platform)) or list(scenario.platforms)
    host = facts.gather()
    rows = doctor.collect(address, platforms, host)
    grid = doctor.strategy_grid(scenario, platforms, host, emulators.cached())
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
        # qemu-user and qemu-system once under the host's emulator, then once per
        # emulator in the cache.
        variants = {str(x["variant"]): str(x["emulator_version"]) for x in grid}
        for name, version in variants.items():
            cells = []
            for p in platforms:
                entry = next(x for x in grid if x["variant"] == name and x["platform"] == p.name)
                note = f" ({escape(entry['note'])})" if entry.get("note") else ""
                cells.append(
                    f"[green]available[/]{note}"
                    if entry["available"]
                    else f"[yellow]{escape(entry['reason'])}[/]"
                    + (f" (fix: {escape(entry['fix'])})" if entry["fix"] else "")
                )
            g.add_row(escape(name + (f" ({version})" if version else "")), *cells)
        out.print(g)
        out.print(
            "ready: the default matrix can run"
            if ready
            else "[red]not ready[/]: run `archbench setup`"
        )
    return EXIT_OK if ready else EXIT_USAGE
