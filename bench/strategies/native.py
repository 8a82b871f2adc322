"""native: build on hardware of the target architecture (here, the host's own)."""

from __future__ import annotations

from bench.host.facts import Host
from bench.platforms import Platform
from bench.scenarios.loader import Scenario
from bench.strategies.base import Availability, BuildSettings, BuildxStrategy
from bench.strategies.dockerfile import BaseStages, build_stage, shell_words, toolchain_install


def emulatable_stages(
    scenario: Scenario, settings: BuildSettings, strategy: str, bases: BaseStages
) -> str:
    """Return toolchain and build stages that run on the *target* platform: natively
    on a node of that architecture, or under qemu-user for a foreign one."""
    return (
        f"FROM {bases.target} AS toolchain\n"
        f"RUN {toolchain_install(shell_words(scenario.packages))}\n"
        "\n" + build_stage(scenario, settings, strategy, cross=False)
    )


class Native(BuildxStrategy):
    """Builds on a node of the target architecture; never emulates."""

    name = "native"
    description = "on hardware of the target architecture (the host's own, or a build node's)"

    def probe_platform(self, platform: Platform, host: Host) -> Availability:
        if platform == host.platform:
            return Availability(True)
        return Availability(
            False,
            f"no native {platform.name} node here",
            f"archbench nodes add NAME ENDPOINT --platform {platform.name} on a machine of "
            "that architecture, then run --nodes NAME",
        )

    def build_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        return emulatable_stages(scenario, settings, self.name, bases)
