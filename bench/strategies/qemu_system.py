"""qemu-system: a whole guest OS for the target architecture under qemu-system.

The build runs inside a Debian guest booted per platform (`bench.strategies.guest`); its artifacts
are then packed into the platform's runtime image by a Dockerfile that only copies
files, so the image is made the same way as every other strategy's final stage.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.engine import resources
from bench.engine.matrix import Cell
from bench.errors import ArchbenchError, CommandTimeout
from bench.host.facts import Host
from bench.platforms import Platform
from bench.scenarios.loader import Scenario
from bench.strategies.base import (
    LOG_TAIL_CHARS,
    LOG_TAIL_LINES,
    Availability,
    BuildOutcome,
    BuildSettings,
    Strategy,
    compiler_version,
    join_index,
)
from bench.strategies.dockerfile import (
    build_env,
    check_dockerfile_values,
    compiler_echo,
    shell_json,
)
from bench.strategies.guest.build import run_in_guest
from bench.strategies.guest.cpu import DEFAULT_CPU
from bench.strategies.guest.image import GUEST_PLATFORMS, SUITE, prepare_guest
from bench.tools import docker, qemu_system
from bench.tools.emulators import EmulatorUnavailable
from bench.tools.system_emulators import SystemEmulator, parse_system_version


def pinned_system(settings: BuildSettings, platform: Platform) -> SystemEmulator | None:
    """Return the pinned QEMU version's system emulator that builds for `platform` run
    under, or None for the host's qemu-system. Raises EmulatorUnavailable when the cell
    is on a pinned emulator and no system emulator of it serves the platform: the guest
    must never fall back to the host's QEMU unsaid."""
    emulator = settings.emulator
    if emulator is None or emulator.is_host:
        return None
    for system in settings.system_emulators:
        if system.qemu_name == platform.qemu_name and system.axis == emulator.axis:
            return system
    raise EmulatorUnavailable(
        f"emulator {emulator.tag} ({emulator.spec}) has no system emulator for "
        f"{platform.name} here (qemu-system-{platform.qemu_name})"
    )


def pack_dockerfile(scenario: Scenario, settings: BuildSettings) -> str:
    """Return the Dockerfile that puts the guest's artifacts (in `art/`) into the base
    image: COPY only, no RUN, so packing never runs target code.

    Raises UsageError when a value it would hold could end a Dockerfile line.
    """
    check_dockerfile_values(scenario, settings)
    lines = [f"FROM {settings.base_image.replace('{suite}', SUITE)}"]
    for art in scenario.artifacts:
        lines.append(f"COPY art/{Path(art.built).name} {art.path}")
    lines.append(f"CMD {shell_json(scenario.smoke_command)}")
    return "\n".join(lines) + "\n"


class QemuSystem(Strategy):
    """Builds in a full-system guest of the target architecture (KVM when it works for
    the host's own architecture, else TCG), then packs the artifacts with buildx."""

    name = "qemu-system"
    description = "a whole guest OS for the target architecture under qemu-system"

    def probe_platform(self, platform: Platform, host: Host) -> Availability:
        if platform.name not in GUEST_PLATFORMS:
            return Availability(
                False,
                f"no guest recipe for {platform.name} (guests: {', '.join(GUEST_PLATFORMS)})",
                "",
            )
        if platform.qemu_name not in host.qemu_system:
            return Availability(
                False,
                f"{qemu_system.binary(platform.qemu_name)} is not installed",
                "apt-get install qemu-system-arm qemu-system-x86 qemu-utils",
            )
        return Availability(True)

    def cell_limit(self, scenario: Scenario, cell: Cell) -> str:
        """Return why a guest cannot run `cell`: warm builds and image scenarios."""
        if cell.cache == "warm":
            return (
                "warm builds need a build folder kept between guest "
                "boots; each guest starts from its pristine image"
            )
        if scenario.kind == "image":
            return (
                "an image scenario installs packages into the target's image; the guest "
                "builds files, and has no container engine to build an image in"
            )
        return ""

    def emulates(self, platform: Platform, host: Host) -> bool:
        """A guest always runs on an emulated CPU model, even under KVM."""
        return True

    def dockerfile(self, scenario: Scenario, settings: BuildSettings) -> str:
        """Return the packing Dockerfile (the build itself happens in the guest)."""
        return pack_dockerfile(scenario, settings)

    def provision(
        self, scenario: Scenario, platforms: list[Platform], settings: BuildSettings, log_path: Path
    ) -> BuildOutcome:
        """Prepare (or find cached) the guests of `platforms`; the wall time is the time
        spent preparing in this call."""
        total = 0.0
        kernels: list[str] = []
        for platform in platforms:
            try:
                image = prepare_guest(
                    platform, scenario.packages, say=_logger(log_path), log_path=log_path
                )
            except CommandTimeout as exc:
                return BuildOutcome(
                    "timeout", total + exc.seconds, failure_class="timeout", log_tail=str(exc)
                )
            except ArchbenchError as exc:
                return BuildOutcome(
                    "failed", total, failure_class="provision", log_tail=str(exc)[-LOG_TAIL_CHARS:]
                )
            total += image.prepare_s
            kernels.append(image.kernel_version)
        return BuildOutcome("ok", total, extra={"kernel": ",".join(kernels)})

    def build(
        self,
        scenario: Scenario,
        platforms: list[Platform],
        settings: BuildSettings,
        tag: str,
        log_path: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> BuildOutcome:
        """Build `scenario` in a guest of each platform and push the image as `tag`.

        One platform: its image is pushed as `tag`. Several: one after another (one
        guest at a time owns the host's CPUs), each pushed as `<tag>-<arch>`, then joined
        into the index `tag`; the wall time is the sum of all of it.
        """
        if len(platforms) == 1:
            return self._build_one(scenario, platforms[0], settings, tag, log_path)
        outcomes: list[BuildOutcome] = []
        for platform in platforms:
            outcome = self._build_one(
                scenario, platform, settings, f"{tag}-{platform.slug}", log_path
            )
            outcomes.append(outcome)
            if outcome.status != "ok":
                wall = sum(o.wall_s for o in outcomes)
                return BuildOutcome(
                    outcome.status,
                    wall,
                    tag,
                    failure_class=outcome.failure_class,
                    log_tail=outcome.log_tail,
                    extra={"failed_platform": platform.name, **outcome.extra},
                )
        repo = tag.rsplit(":", 1)[0]
        sources = [f"{repo}@{o.digest}" if o.digest else o.tag for o in outcomes]
        joined = join_index(tag, sources)
        if joined.status != "ok":
            return replace(joined, wall_s=sum(o.wall_s for o in outcomes) + joined.wall_s)
        join_s = joined.wall_s
        # By the digest buildx pushed: another run may move the tag in the meantime.
        digest = joined.digest or docker.imagetools_digest(tag)
        extra: dict[str, Any] = {
            "join_s": join_s,
            "per_platform": {p.name: o.extra for p, o in zip(platforms, outcomes, strict=True)},
        }
        return BuildOutcome(
            "ok", sum(o.wall_s for o in outcomes) + join_s, tag, digest=digest, extra=extra
        )

    def _build_one(
        self,
        scenario: Scenario,
        platform: Platform,
        settings: BuildSettings,
        tag: str,
        log_path: Path,
    ) -> BuildOutcome:
        say = _logger(log_path)
        try:
            system = pinned_system(settings, platform)
        except EmulatorUnavailable as exc:
            return BuildOutcome(
                "unavailable", 0.0, tag, failure_class="emulator", log_tail=str(exc)
            )
        launcher = system.launcher if system is not None else None
        if system is not None:
            say(
                f"qemu-system {system.reported} ({system.package} {system.version} from "
                f"{system.suite}, sha256 {system.sha256}): {' '.join(system.launcher.command())}"
            )
        try:
            image = prepare_guest(platform, scenario.packages, say=say, log_path=log_path)
        except ArchbenchError as exc:
            return BuildOutcome("failed", 0.0, tag, failure_class="provision", log_tail=str(exc))
        ctx = Path(tempfile.mkdtemp(prefix="archbench-qemu-system-"))
        try:
            artifacts = [(a.built, Path(a.built).name) for a in scenario.artifacts]
            # The guest is this process's child: its CPU time arrives in RUSAGE_CHILDREN.
            with resources.children_span() as usage:
                run = run_in_guest(
                    image,
                    scenario.tree(),
                    f"{compiler_echo(scenario)} && {scenario.build_command}",
                    settings.size,
                    artifacts,
                    ctx / "art",
                    cpu_variant=settings.cpu,
                    timeout=settings.timeout,
                    log_path=log_path,
                    env=build_env(scenario, cross=False, platform=platform),
                    launcher=launcher,
                )
            extra: dict[str, Any] = {
                "resources": usage.as_dict(),
                "step_seconds": {
                    "boot": run.boot_s,
                    "compile": run.build_s,
                    "shutdown": run.shutdown_s,
                },
                "boot_s": run.boot_s,
                "build_s": run.build_s,
                "shutdown_s": run.shutdown_s,
                "guest_total_s": run.total_s,
                "prepare_s": image.prepare_s,
                "accel": run.accel,
                "cpu": run.cpu,
                "cpu_variant": settings.cpu or DEFAULT_CPU.get(platform.qemu_name, "max"),
                "vcpus": run.vcpus,
                "memory_mb": run.memory_mb,
                "kernel": image.kernel_version,
                "exit_code": run.exit_code,
                "compiler": compiler_version(run.console_tail + "\n" + _read(log_path)),
                # The system emulator the guest ran under, as its --version answered.
                "qemu_system": {
                    "binary": str(launcher.binary)
                    if launcher
                    else qemu_system.binary(platform.qemu_name),
                    "reported": system.reported
                    if system is not None
                    else _host_version(platform.qemu_name),
                },
            }
            if run.status != "ok":
                return BuildOutcome(
                    run.status,
                    run.total_s,
                    tag,
                    failure_class=run.failure_class,
                    log_tail=run.console_tail[-LOG_TAIL_CHARS:],
                    extra=extra,
                )
            (ctx / "Dockerfile").write_text(pack_dockerfile(scenario, settings))
            t0 = time.monotonic()
            try:
                packed = docker.build(
                    ctx,
                    platforms=[platform.name],
                    tag=tag,
                    timeout=settings.timeout,
                    push=True,
                    builder=settings.builder,
                    log_path=log_path,
                )
            except CommandTimeout as exc:
                return BuildOutcome(
                    "timeout",
                    run.total_s + exc.seconds,
                    tag,
                    failure_class="timeout",
                    log_tail=exc.output[-LOG_TAIL_CHARS:],
                    extra=extra,
                )
            extra["pack_s"] = time.monotonic() - t0
            done = packed.completed
            if not done.ok:
                return BuildOutcome(
                    "failed",
                    run.total_s + extra["pack_s"],
                    tag,
                    failure_class="pack",
                    log_tail=done.tail(LOG_TAIL_LINES),
                    extra=extra,
                )
            return BuildOutcome(
                "ok",
                run.total_s + extra["pack_s"],
                tag,
                digest=packed.digest,
                extra=extra,
            )
        finally:
            shutil.rmtree(ctx, ignore_errors=True)


def _host_version(qemu_name: str) -> str:
    """Return what the host's qemu-system-<qemu_name> reports, written as a pinned one's
    is (`7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`), or its raw line if it is not one."""
    line = qemu_system.version(qemu_name)
    try:
        return str(parse_system_version(line))
    except ValueError:
        return line


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _logger(log_path: Path) -> Callable[[str], None]:
    """Return a `say` that appends progress lines to the build's log."""

    def say(message: str) -> None:
        # A progress line that cannot be written (a full results disk) is not worth a
        # failed build: the record that follows reports the disk.
        with contextlib.suppress(OSError):
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"# {message}\n")

    return say
