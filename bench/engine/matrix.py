"""The run matrix: which cells a run asks for. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bench.engine.results import CacheMode

if TYPE_CHECKING:
    from bench.engine.results import Record


@dataclass(frozen=True, order=True)
class Cell:
    """One (scenario, size, strategy, platform), with its cache mode and CPU variant:
    built and timed alone.

    `emulator` (a pinned emulator version), `node` (the builder node), `host_class` (the
    kind of host measured on) and `input` (a Dockerfile input) are axes that later
    measurements add; empty, they leave the key as it was, so stored runs keep theirs.
    """

    scenario: str
    size: int
    strategy: str
    platform: str
    cache: CacheMode = "cold"
    cpu: str = ""
    emulator: str = ""
    node: str = ""
    host_class: str = ""
    input: str = ""

    @property
    def key(self) -> str:
        """The one file-safe id of a cell: cbench-s1-qemu-user-linux-arm64, plus -<cpu>
        after the strategy and -warm at the end, then -e<emulator>, -n<node>,
        -h<host class> and -i<input> for each of those that is set."""
        cpu = f"-{self.cpu}" if self.cpu else ""
        cache = "" if self.cache == "cold" else f"-{self.cache}"
        plat = self.platform.replace("/", "-")
        more = "".join(
            f"-{tag}{value}"
            for tag, value in (
                ("e", self.emulator),
                ("n", self.node),
                ("h", self.host_class),
                ("i", self.input),
            )
            if value
        )
        return f"{self.scenario}-s{self.size}-{self.strategy}{cpu}-{plat}{cache}{more}"

    @property
    def variant(self) -> str:
        """The strategy with its CPU variant and pinned emulator, as tags and reports name
        it: qemu-user-max, qemu-user-qemu10.0, qemu-user-max-qemu10.0 (the host's emulator
        adds nothing, so its tags stay as they were)."""
        return variant_name(self.strategy, self.cpu, self.emulator)


def variant_name(strategy: str, cpu: str = "", emulator: str = "") -> str:
    """Return the name of a strategy's variant: strategy[-cpu][-emulator]."""
    return "-".join(part for part in (strategy, cpu, emulator) if part)


AXES = ("scenario", "size", "strategy", "platform", "cache", "cpu", "emulator")
"""The axes runs vary today (and `--pair` compares): scenario, size, strategy, platform,
cache, cpu, emulator. The other fields of Cell join when records carry them."""

HOST_EMULATOR = "host"
"""How the emulator axis names the host's own registered emulator (the empty value)."""


def emulator_axis(record: Record) -> str:
    """Return the emulator axis value of a record: the pinned emulator's tag-safe name
    (qemu10.0), or '' for the host's emulator and for records that name none."""
    facts = record.emulator
    if facts is None or facts.spec == HOST_EMULATOR or facts.tag in ("", HOST_EMULATOR):
        return ""
    return facts.tag


def cell_of(record: Record) -> Cell:
    """Return the cell a record measured: the one key the runner, the store, show,
    compare, history and the charts group by, so that nothing the run kept apart (a size,
    a CPU variant, a cache mode, an emulator, a build node) is ever pooled. A strategy-wide record's
    platform is ''.
    """
    return Cell(
        record.scenario,
        record.size,
        record.strategy,
        record.platform,
        record.cache,
        record.cpu,
        emulator_axis(record),
        node=record.node,
    )


NO_HOST_CLASS = "host class not recorded"
"""How reports and history name the class of records that name none, where they cannot
join one (a cell measured on several classes)."""


def host_classes(records: Iterable[Record]) -> dict[Cell, str]:
    """Return, per cell of `records` (`cell_of`) that names exactly one hardware class
    (`Record.host_class`), that class.

    Records older than the field name none; `host_class_of` counts them as the one
    class the cell's other records name, as `compare` does, so that stored history
    stays one series. A cell measured on several classes is absent: its records without
    a class cannot be placed.
    """
    named: dict[Cell, set[str]] = {}
    for r in records:
        if r.host_class:
            named.setdefault(cell_of(r), set()).add(r.host_class)
    return {cell: next(iter(found)) for cell, found in named.items() if len(found) == 1}


def run_classes(records: Iterable[Record]) -> dict[str, str]:
    """Return, per run of `records` whose records name exactly one hardware class, that
    class: the host that decided the run's unavailable cells and joined its indexes,
    records that measure nothing and so name no class of their own."""
    named: dict[str, set[str]] = {}
    for r in records:
        if r.host_class:
            named.setdefault(r.run_id, set()).add(r.host_class)
    return {run: next(iter(found)) for run, found in named.items() if len(found) == 1}


def host_class_of(
    record: Record, classes: dict[Cell, str], runs: dict[str, str] | None = None
) -> str:
    """Return the hardware class `record` was measured on: its own, else its cell's one
    class in `classes` (`host_classes` of the records it is read with), else its run's
    one class in `runs` (`run_classes`), else ''."""
    return (
        record.host_class or classes.get(cell_of(record), "") or (runs or {}).get(record.run_id, "")
    )


def split_values(values: Iterable[str]) -> list[str]:
    """Flatten repeatable, comma-listed flag values, dropping blanks and repeats in order."""
    seen: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part and part not in seen:
                seen.append(part)
    return seen


CPU_STRATEGIES = frozenset({"qemu-user", "qemu-system"})
"""Strategies that emulate a CPU, and so take the --cpu axis."""

EMULATOR_STRATEGIES = frozenset({"qemu-user", "qemu-system"})
"""Strategies whose builds run under QEMU, and so take the --emulator axis."""


def expand(
    scenarios: Sequence[tuple[str, Sequence[str]]],
    strategies: Sequence[str],
    sizes: Sequence[int],
    platforms: Sequence[str] | None = None,
    caches: Sequence[CacheMode] = ("cold",),
    cpus: Sequence[str] = (),
    emulators: Sequence[str] = (),
) -> list[Cell]:
    """Return every cell, in order scenario, size, strategy, CPU variant, emulator,
    platform, cache.

    `scenarios` pairs each scenario's name with its own platforms, used when
    `platforms` is None or empty; `strategies` and `platforms` keep the caller's order.
    `cpus` (variant names) apply only to CPU_STRATEGIES; empty means the default CPU.
    `emulators` (axis values: '' is the host's) apply only to EMULATOR_STRATEGIES;
    empty means the host's alone.
    """
    cells: list[Cell] = []
    for name, own_platforms in scenarios:
        chosen = list(platforms) if platforms else list(own_platforms)
        for size in sizes:
            for strategy in strategies:
                variants = list(cpus) if cpus and strategy in CPU_STRATEGIES else [""]
                pinned = list(emulators) if emulators and strategy in EMULATOR_STRATEGIES else [""]
                for cpu in variants:
                    for emulator in pinned:
                        for platform in chosen:
                            for cache in caches:
                                cell = Cell(name, size, strategy, platform, cache, cpu, emulator)
                                if cell not in cells:
                                    cells.append(cell)
    return cells


@dataclass(frozen=True)
class NodeSpec:
    """A build node as the matrix sees it: its name, its real platform read from the
    node ('' when it did not answer) and the platforms declared for it."""

    name: str
    real: str
    declared: tuple[str, ...]


NODE_STRATEGIES = frozenset({"native"})
"""The strategies whose cells move to nodes: a node is where native builds happen."""


def place_on_nodes(cells: Sequence[Cell], nodes: Sequence[NodeSpec]) -> list[Cell]:
    """Return `cells` with each native cell moved to the nodes that declare its platform.

    A node whose real platform is the cell's gets the native cell. A node that would
    emulate it gets the native cell too (its probe reports it unavailable: emulation,
    never native) and a qemu-user cell on that node, which measures what it would do.
    A node that did not answer (`real` '') keeps the native cell, which then fails as
    node-unreachable. A native cell that no node declares stays on this host. Other
    strategies' cells stay as they are. Order is kept; no cell appears twice.
    """
    placed: list[Cell] = []

    def put(cell: Cell) -> None:
        if cell not in placed:
            placed.append(cell)

    for cell in cells:
        hosts = [n for n in nodes if cell.platform in n.declared]
        if cell.strategy not in NODE_STRATEGIES or not hosts:
            put(cell)
            continue
        for node in hosts:
            put(replace(cell, node=node.name))
            if node.real and node.real != cell.platform:
                put(replace(cell, strategy="qemu-user", cpu="", node=node.name))
    return placed


Order = str  # "interleaved" | "sequential"
ORDERS = ("interleaved", "sequential")


def schedule(
    cells: Sequence[Cell], reps: int, warmup: int = 0, order: Order = "interleaved"
) -> list[tuple[int, bool, Cell]]:
    """Return (repetition, is_warmup, cell) in the order they run.

    Interleaved (the default) goes round-robin: every cell's first repetition, then
    every cell's second, so slow drift of a shared machine spreads over all cells. Cells
    that differ only in scenario, CPU variant or emulator (the sides of a paired compare) sit
    next to each other, and every other round runs backwards, so each pair of variants
    is adjacent in time and its order alternates (A B, B A, A B, ...): neither variant
    always goes first, and a linear drift cancels over two rounds. Sequential runs each
    cell's repetitions back to back. Warm-up repetitions come first and are numbered
    apart from the measured ones.
    """
    plan = [(w, True) for w in range(1, warmup + 1)] + [(r, False) for r in range(1, reps + 1)]
    if order == "sequential":
        return [(rep, warm, cell) for cell in cells for rep, warm in plan]
    ordered = pair_adjacent(cells)
    return [
        (rep, warm, cell)
        for rep, warm in plan
        for cell in (ordered if rep % 2 == 1 else ordered[::-1])
    ]


def pair_adjacent(cells: Sequence[Cell]) -> list[Cell]:
    """Return `cells` regrouped so that cells differing only in scenario, CPU variant or
    emulator are adjacent, groups in first-seen order, each group in the caller's order."""
    groups: dict[tuple[int, str, str, str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.size, c.strategy, c.platform, c.cache, c.node), []).append(c)
    return [c for group in groups.values() for c in group]
