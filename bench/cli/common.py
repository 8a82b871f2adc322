"""What every command shares: consoles, parser class, exit codes, flag types, run reader."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeAlias

from rich.console import Console

from bench import inputs
from bench.engine.matrix import split_values
from bench.engine.results import LoadWarning, StoredRun
from bench.errors import UsageError
from bench.platforms import Platform, parse_platform

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
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


# What each command module's `add_parser` adds its subcommand to.
Subcommands: TypeAlias = "argparse._SubParsersAction[_Parser]"


SIZE_MAX = 1024


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
