"""The run matrix: which cells a run asks for. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Cell:
    """One (scenario, size, strategy, platform): built and timed alone."""

    scenario: str
    size: int
    strategy: str
    platform: str

    @property
    def key(self) -> str:
        """A file-safe id: cbench-s1-qemu-user-linux-arm64."""
        return f"{self.scenario}-s{self.size}-{self.strategy}-{self.platform.replace('/', '-')}"


def split_values(values: Iterable[str]) -> list[str]:
    """Flatten repeatable, comma-listed flag values, dropping blanks and repeats in order."""
    seen: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part and part not in seen:
                seen.append(part)
    return seen


def expand(
    scenarios: Sequence[tuple[str, Sequence[str]]],
    strategies: Sequence[str],
    sizes: Sequence[int],
    platforms: Sequence[str] | None = None,
) -> list[Cell]:
    """Return every cell, in order scenario, size, strategy, platform.

    `scenarios` pairs each scenario's name with its own platforms, used when
    `platforms` is None or empty; `strategies` and `platforms` keep the caller's order.
    """
    cells: list[Cell] = []
    for name, own_platforms in scenarios:
        chosen = list(platforms) if platforms else list(own_platforms)
        for size in sizes:
            for strategy in strategies:
                for platform in chosen:
                    cell = Cell(name, size, strategy, platform)
                    if cell not in cells:
                        cells.append(cell)
    return cells


def interleave(cells: Sequence[Cell], reps: int) -> list[tuple[int, Cell]]:
    """Return (repetition, cell) pairs round-robin: every cell's first repetition, then
    every cell's second, so that slow drift of a shared machine spreads over all cells."""
    return [(rep, cell) for rep in range(1, reps + 1) for cell in cells]
