"""qemu-user: `docker buildx build --platform P`; foreign RUN steps run under a
user-mode emulator that the kernel calls through binfmt_misc."""

from __future__ import annotations

from bench.host.facts import Host
from bench.platforms import Platform
from bench.scenarios.loader import Scenario
from bench.strategies.base import Availability, BuildSettings, BuildxStrategy
from bench.strategies.dockerfile import BaseStages
from bench.strategies.guest.cpu import CPU_MODELS
from bench.strategies.native import emulatable_stages


class QemuUser(BuildxStrategy):
    """The target's own toolchain, emulated instruction by instruction."""

    name = "qemu-user"
    description = "foreign binaries run by qemu-user through binfmt_misc"

    def probe_platform(self, platform: Platform, host: Host) -> Availability:
        if platform == host.platform:
            return Availability(True, "host platform: runs without emulation")
        entry = host.binfmt_entry(platform.qemu_name)
        fix = "archbench setup"
        if entry is None:
            return Availability(False, f"no binfmt_misc handler qemu-{platform.qemu_name}", fix)
        if not entry.enabled:
            return Availability(
                False,
                f"binfmt_misc handler qemu-{platform.qemu_name} is disabled",
                f"echo 1 > /proc/sys/fs/binfmt_misc/qemu-{platform.qemu_name}",
            )
        if not entry.fix_binary:
            return Availability(
                False,
                f"qemu-{platform.qemu_name} lacks the F flag "
                f"(flags {entry.flags!r}): containers cannot reach it",
                fix,
            )
        return Availability(True, f"{entry.interpreter} flags {entry.flags}")

    def build_args(self, settings: BuildSettings, platforms: list[Platform]) -> dict[str, str]:
        """Add QEMU_CPU (read by qemu-user from the build step's environment) for the CPU
        variant, when the variant names a model for an emulated platform's architecture."""
        args = super().build_args(settings, platforms)
        if settings.cpu and settings.cpu != "default":
            for p in platforms:
                model = CPU_MODELS.get(settings.cpu, {}).get(p.qemu_name)
                if model and settings.host is not None and p != settings.host:
                    args["QEMU_CPU"] = model
                    break
        return args

    def build_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        return emulatable_stages(scenario, settings, self.name, bases)
