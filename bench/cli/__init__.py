"""The `archbench` command line.

Exit codes, for every command: 0 success; 1 a requested cell failed or timed out (an
unavailable cell is reported, not a failure); 2 bad arguments or a host that is not set
up; 130 Ctrl-C (SIGINT); 143 SIGTERM.

Each command is one module of this package, with its flags (`add_parser`) and its work
(`run`), registered in `COMMANDS`; `common` holds what they share.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Sequence
from typing import Protocol

from bench import __version__
from bench.cli import (
    compare,
    doctor,
    export,
    gc,
    history,
    nodes,
    report,
    run,
    setup,
    show,
    teardown,
    validate,
)
from bench.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Subcommands,
    _Parser,
    _say,
)
from bench.errors import ArchbenchError, HostNotReady, Interrupted, UsageError
from bench.tools import acct, binfmt


class Command(Protocol):
    """A command module: it adds its subcommand to the parser, and runs it."""

    def add_parser(self, sub: Subcommands) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# Every command, in the order `archbench --help` lists them.
COMMANDS: dict[str, Command] = {
    "setup": setup,
    "teardown": teardown,
    "gc": gc,
    "doctor": doctor,
    "nodes": nodes,
    "run": run,
    "show": show,
    "export": export,
    "report": report,
    "compare": compare,
    "history": history,
    "validate": validate,
}


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
    for command in COMMANDS.values():
        command.add_parser(sub)
    return p


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
        # Likewise process accounting a killed run left on (the kernel would go on
        # appending to its file).
        acct.repair(say=_say)
        return COMMANDS[args.command].run(args)
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
