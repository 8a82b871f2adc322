"""The build strategies, in one plain ordered registry."""

from __future__ import annotations

from bench.errors import UsageError
from bench.strategies.base import Availability, BuildxStrategy
from bench.strategies.cross import Cross
from bench.strategies.hybrid import Hybrid
from bench.strategies.native import Native
from bench.strategies.qemu_system import QemuSystem
from bench.strategies.qemu_user import QemuUser

Strategy = BuildxStrategy | QemuSystem

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


__all__ = ["REGISTRY", "Availability", "BuildxStrategy", "Strategy", "get_strategy"]
