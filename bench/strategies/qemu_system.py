"""qemu-system: a whole guest OS for the target architecture under qemu-system."""

from __future__ import annotations

from bench.platforms import Platform
from bench.strategies.base import Availability


class QemuSystem:
    """The full-system VM strategy. Not built yet: every cell reports why."""

    name = "qemu-system"
    description = "a whole guest OS for the target architecture under qemu-system"

    def probe(self, platform: Platform, host: Platform) -> Availability:
        return Availability(
            False, "the full-system VM strategy is not implemented in this version of archbench", ""
        )
