"""qemu-user: `docker buildx build --platform P`; foreign RUN steps run under a
user-mode emulator that the kernel calls through binfmt_misc."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from bench.engine.matrix import Cell
from bench.host.facts import Host
from bench.platforms import Platform, host_platform, parse_platform
from bench.scenarios.loader import Scenario
from bench.strategies.base import Availability, BuildOutcome, BuildSettings, BuildxStrategy
from bench.strategies.dockerfile import BaseStages
from bench.strategies.guest.cpu import CPU_MODELS
from bench.strategies.native import emulatable_stages
from bench.tools import binfmt
from bench.tools import qemu as qemu_tool
from bench.tools.emulators import Emulator, EmulatorUnavailable


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

    def provision(
        self, scenario: Scenario, platforms: list[Platform], settings: BuildSettings, log_path: Path
    ) -> BuildOutcome:
        """Build the toolchain stage under the cell's emulator (see `emulation`)."""
        return self._emulated(
            platforms,
            settings,
            lambda: super(QemuUser, self).provision(scenario, platforms, settings, log_path),
        )

    def build(
        self,
        scenario: Scenario,
        platforms: list[Platform],
        settings: BuildSettings,
        tag: str,
        log_path: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> BuildOutcome:
        """Build under the cell's emulator (see `emulation`); the record names it."""
        return self._emulated(
            platforms,
            settings,
            lambda: super(QemuUser, self).build(
                scenario, platforms, settings, tag, log_path, on_line
            ),
        )

    def _emulated(
        self, platforms: list[Platform], settings: BuildSettings, build: Callable[[], BuildOutcome]
    ) -> BuildOutcome:
        try:
            with emulation(platforms, settings):
                outcome = build()
        except EmulatorUnavailable as exc:
            return BuildOutcome("unavailable", 0.0, failure_class="emulator", log_tail=str(exc))
        emulator = settings.emulator
        if emulator is not None and not emulator.is_host:
            outcome.extra["emulator"] = {
                "spec": emulator.spec,
                "package": emulator.package,
                "version": emulator.version,
                "suite": emulator.suite,
                "sha256": emulator.sha256,
                "reported": emulator.reported,
                "tag": emulator.tag,
            }
        if outcome.failure_class == "emulator-crash":
            fault = f"QEMU {_version_of(emulator)}: " + str(
                outcome.extra.get("emulator_fault") or "crashed (step not named in the log)"
            )
            outcome.extra["emulator_fault"] = fault
            return replace(outcome, log_tail=f"emulator-crash under {fault}\n{outcome.log_tail}")
        return outcome


def emulator_limit(cell: Cell, emulator: Emulator | None, host: Platform) -> str:
    """Return why `cell` cannot run under its pinned emulator here, or ''."""
    if not cell.emulator or emulator is None:
        return ""
    if cell.strategy == "qemu-system":
        # A guest is emulated even on the host's own platform; whether the version's
        # system emulator runs here is judged when it is fetched (system_emulators).
        return ""
    platform = parse_platform(cell.platform)
    if platform == host:
        return (
            f"{cell.platform} is the host's platform: it builds without an emulator, so "
            f"there is no {emulator.tag} variant of it"
        )
    if not any(name == platform.qemu_name for name, _ in emulator.binaries):
        return (
            f"emulator {emulator.tag} ({emulator.package} {emulator.version}) has no "
            f"qemu-{platform.qemu_name}"
        )
    return ""


def _version_of(emulator: Emulator | None) -> str:
    """Return the QEMU version a build ran under, as fault messages name it: the pinned
    or named emulator's, else what the host's qemu-user-static reports."""
    if emulator is not None and (emulator.reported or emulator.version):
        return emulator.reported or emulator.version
    line = qemu_tool.user_version()  # qemu-aarch64 version 7.2.22 (Debian ...)
    return (
        line.split(" version ", 1)[1]
        if " version " in line
        else (line or "(host, version unknown)")
    )


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def emulation(platforms: list[Platform], settings: BuildSettings) -> Iterator[None]:
    """Hold every emulated platform's binfmt_misc lock for a build: shared under the host's
    emulator, exclusive with `settings.emulator` swapped in otherwise (the host's handler
    comes back when the block ends). Raises EmulatorUnavailable when the emulator has no
    binary for a platform, BinfmtSwapFailed when the kernel refuses the swap."""
    emulator = settings.emulator
    # Never the machine's own architecture: a handler for it would send every native
    # binary on the host through the emulator.
    host = settings.host or host_platform()
    emulated = sorted({p.qemu_name for p in platforms if p.qemu_name != host.qemu_name})
    with contextlib.ExitStack() as stack:
        # Always in the same (sorted) order, so two runs never each hold one lock and
        # wait for the other's.
        for name in emulated:
            if emulator is None or emulator.is_host:
                stack.enter_context(binfmt.arch_lock(name, exclusive=False, say=_say))
            else:
                interpreter = emulator.binary(name)
                stack.enter_context(binfmt.swapped(name, interpreter, say=_say))
        yield
