"""The build strategies, in one plain ordered registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.engine.matrix import Cell
from bench.errors import UsageError
from bench.host.facts import Host
from bench.platforms import parse_platform
from bench.scenarios.loader import Scenario
from bench.strategies import userfile
from bench.strategies.base import Availability, BuildxStrategy, Strategy
from bench.strategies.cross import Cross
from bench.strategies.hybrid import Hybrid
from bench.strategies.native import Native
from bench.strategies.qemu_system import QemuSystem
from bench.strategies.qemu_user import QemuUser

REGISTRY: dict[str, Strategy] = {
    "native": Native(),
    "qemu-system": QemuSystem(),
    "qemu-user": QemuUser(),
    "cross": Cross(),
    "hybrid": Hybrid(),
}


def get_strategy(name: str) -> Strategy:
    """Return the strategy called `name`. Raises UsageError naming the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown strategy {name!r}; valid: {', '.join(REGISTRY)}") from None


def probe_cells(
    cells: Sequence[Cell], scenarios: Mapping[str, Scenario], host: Host
) -> dict[Cell, Availability]:
    """Return each cell's availability on `host`, as its strategy's `probe` judges it.

    `run` and `doctor` both ask through here. Raises KeyError for a cell whose strategy
    or scenario is not known.
    """
    found = {}
    for c in cells:
        scenario = scenarios[c.scenario]
        available = REGISTRY[c.strategy].probe(scenario, c, host)
        if scenario.kind == "dockerfile":
            # A user's Dockerfile decides where its RUN steps run: the strategy is what
            # that makes of a build for this platform.
            platform = parse_platform(c.platform)
            available = userfile.probe(c.strategy, scenario, platform, host, available)
        found[c] = available
    return found


__all__ = [
    "REGISTRY",
    "Availability",
    "BuildxStrategy",
    "Strategy",
    "get_strategy",
    "probe_cells",
]
