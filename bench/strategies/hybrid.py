"""hybrid: every build step runs on the target platform (under qemu-user for a foreign
one), but the compiler, assembler and linker are the build platform's cross tools,
mounted into the emulated build and run natively.

The kernel hands binfmt_misc only the binaries it cannot run itself, so an x86-64
program started inside an arm64 container runs natively, given its loader and
libraries; Debian's multiarch paths of the two architectures do not collide. Make, the
shell, configure and its probes, the project's tests and apt stay target code: configure
sees the target as it is, and the compiler reads the target root's own headers and
libraries (its libc6-dev, installed emulated) through the cross gcc's default sysroot `/`.

The Dockerfile serves every target platform at once (a combined build), so nothing in
it may name one triplet: the cross toolchain is copied into one relocated prefix,
/opt/archbench/xtool (bin/<triplet>-*, lib/gcc-cross, libexec/gcc-cross, <triplet>/bin),
which gcc finds relative to its own location, and the target root gets symlinks to it:
the prefixed programs, and gcc, cc, cpp, as, ld, ar... unprefixed, for build systems that
ignore CC.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from bench.engine.matrix import Cell
from bench.host.facts import Host
from bench.platforms import Platform
from bench.scenarios.loader import Scenario
from bench.strategies.base import Availability, BuildOutcome, BuildSettings, BuildxStrategy
from bench.strategies.dockerfile import (
    BaseStages,
    build_stage,
    shell_words,
    target_triplet_case,
    toolchain_install,
)
from bench.strategies.qemu_user import QemuUser, emulation
from bench.tools import apt

XTOOL = "/opt/archbench/xtool"  # the relocated cross toolchain, mounted from the xtool stage
LINKS = "/opt/archbench/links"  # what the xtool stage adds to the target's root (COPY)
CROSS_FACT = "/opt/archbench/cross-compiler"  # "<package> <version>" of the cross gcc
TARGET_FACT = "/opt/archbench/target-compiler"  # the same for the target's own gcc
CROSS_MARK = "archbench-cross-cc:"
TARGET_MARK = "archbench-target-cc:"

# Toolchain packages replaced by the build platform's cross ones ({triplet} is Debian's
# spelling, x86-64-linux-gnu). The rest of [toolchain] is installed on the target.
COMPILER_SWAPS = {
    "gcc": "gcc-{triplet}",
    "cpp": "cpp-{triplet}",
    "binutils": "binutils-{triplet}",
}

# Where the build platform's loader and shared libraries live, as (path in the xtool
# stage, path in the target's root): the cross tools need them to run at all. Only
# checked on a linux/amd64 build platform.
BUILD_RUNTIME: dict[str, tuple[tuple[str, str], ...]] = {
    "linux/amd64": (
        ("/usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"),
        ("/usr/lib64", "/lib64"),
    ),
}


@cache
def _cross_compiler_offered(package: str) -> str:
    return apt.candidate_version(package)


def cross_compiler_package(target: Platform) -> str:
    """Return Debian's package of the GCC cross compiler for `target` (gcc-<triplet>)."""
    return f"gcc-{target.gnu_triplet.replace('_', '-')}"


def split_packages(scenario: Scenario) -> tuple[list[str], list[str]]:
    """Return (build-platform packages as templates with $PT for the target's Debian
    triplet, target packages) for the scenario's [toolchain].

    The compiler's packages become the build platform's cross ones; everything else is
    installed on the target, with libc6-dev added when missing (a native gcc gets it as
    a Recommends; the cross gcc must find the target's own).
    """
    xtool = [
        COMPILER_SWAPS[p].format(triplet="$PT") for p in scenario.packages if p in COMPILER_SWAPS
    ]
    target = [p for p in scenario.packages if p not in COMPILER_SWAPS]
    if "libc6-dev" not in target:
        target.append("libc6-dev")
    return xtool, target


def marked(log: str, mark: str) -> str:
    """Return the text a build printed after `mark` (not the echo command itself), or ''."""
    for line in log.splitlines():
        at = line.rfind(mark)
        rest = line[at + len(mark) :].strip() if at >= 0 else ""
        if rest and "$(" not in rest:
            return rest
    return ""


def compiler_facts(cross: str, target: str) -> dict[str, Any]:
    """Return the record's compiler facts from the two "<package> <version>" lines.

    The cross compiler is built from the same GCC source as the target's own; Debian
    marks the build with a `crossN` suffix on the version, which is ignored when the two
    are compared.
    """
    facts: dict[str, Any] = {"cross_compiler": cross, "target_compiler": target}
    if cross and target:
        cross_version = re.sub(r"cross\d+$", "", cross.split()[-1])
        target_version = target.split()[-1]
        same = cross_version == target_version
        facts["compiler_matches_target"] = same
        if not same:
            facts["compiler_note"] = (
                f"the cross compiler ({cross}) is not the target's own ({target})"
            )
    return facts


class Hybrid(BuildxStrategy):
    """The target's own root and build, with the build platform's cross compiler."""

    name = "hybrid"
    description = "emulated build steps; the build platform's cross compiler runs natively"

    def probe_platform(self, platform: Platform, host_facts: Host) -> Availability:
        host = host_facts.platform
        if platform == host:
            return Availability(
                False,
                f"{host.name} is the build platform itself: nothing is emulated, so hybrid "
                "would be the native build (see native)",
            )
        if host.name not in BUILD_RUNTIME:
            return Availability(
                False,
                f"the build platform's loader and libraries are known for "
                f"{', '.join(BUILD_RUNTIME)} only, not {host.name}",
            )
        own = host_facts.binfmt_entry(host.qemu_name)
        if own is not None and own.enabled:
            # binfmt_misc is asked before the kernel's own ELF loader: this handler
            # would run the build platform's tools emulated too.
            return Availability(
                False,
                f"binfmt_misc handler qemu-{host.qemu_name} is enabled: the kernel would "
                f"not run the build platform's own tools natively",
                f"echo 0 > /proc/sys/fs/binfmt_misc/qemu-{host.qemu_name}",
            )
        emulated = QemuUser().probe_platform(platform, host_facts)
        if not emulated.available:
            return emulated
        package = cross_compiler_package(platform)
        version = _cross_compiler_offered(package)
        if not version:
            return Availability(
                False,
                f"Debian's archive offers no {package} for {host.name} (apt-cache policy)",
                "apt-get update",
            )
        return Availability(
            True, f"{package} {version} runs natively in the emulated build; {emulated.reason}"
        )

    def cell_limit(self, scenario: Scenario, cell: Cell) -> str:
        if scenario.kind == "image":
            return (
                "nothing to compile: an image scenario installs packages, and hybrid only "
                "swaps the compiler of an emulated build"
            )
        if scenario.kind != "compile":
            return (
                f"hybrid writes its own Dockerfile; a {scenario.kind} scenario would have "
                "to be rewritten"
            )
        if scenario.cross_packages is not None or "gcc" not in scenario.packages:
            return "hybrid mounts a GCC cross compiler; this scenario's toolchain has no gcc"
        if "g++" in scenario.packages:
            return (
                "C++ is not wired: Debian's cross g++ reads libstdc++'s headers under "
                "/usr/<triplet>, not from the target's root"
            )
        return super().cell_limit(scenario, cell)

    def provision(
        self, scenario: Scenario, platforms: list[Platform], settings: BuildSettings, log_path: Path
    ) -> BuildOutcome:
        """Build the toolchain stage, its target half emulated: under the binfmt_misc lock
        of each emulated platform, shared, as a qemu-user build holds it, so that no
        emulator swap of another run lands in the middle of it."""
        with emulation(platforms, settings):
            return super().provision(scenario, platforms, settings, log_path)

    def build(
        self,
        scenario: Scenario,
        platforms: list[Platform],
        settings: BuildSettings,
        tag: str,
        log_path: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> BuildOutcome:
        """Build with every RUN on the target (emulated), under the same locks as
        `provision`."""
        with emulation(platforms, settings):
            return super().build(scenario, platforms, settings, tag, log_path, on_line)

    def build_facts(self, log: str) -> dict[str, Any]:
        return compiler_facts(marked(log, CROSS_MARK), marked(log, TARGET_MARK))

    def build_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        assert settings.host is not None
        runtime = BUILD_RUNTIME.get(settings.host.name, ())
        xtool_packages, target_packages = split_packages(scenario)
        mounts = tuple(
            f"type=bind,from=xtool,source={source},target={target}"
            for source, target in (*runtime, (XTOOL, XTOOL))
        )
        before = (
            f'echo "{CROSS_MARK} $(cat {CROSS_FACT})"',
            f'echo "{TARGET_MARK} $(cat {TARGET_FACT})"',
        )
        return (
            f"FROM {bases.build} AS xtool\n"
            "ARG TARGETARCH\n"
            "ARG TARGETVARIANT\n"
            f"RUN {target_triplet_case()} \\\n"
            ' && T="$HOST_TRIPLET" && PT="$(echo "$T" | tr _ -)" \\\n'
            f" && {toolchain_install(' '.join(xtool_packages))} \\\n"
            f' && X={XTOOL} L={LINKS} && mkdir -p "$X/bin" "$X/lib" "$X/$T" "$L/usr/bin" \\\n'
            ' && cp -a /usr/bin/"$T"-* "$X/bin/" && cp -a /usr/lib/gcc-cross "$X/lib/" \\\n'
            # From gcc 13 on (trixie), cc1 and collect2 live under libexec, not lib.
            ' && if [ -d /usr/libexec/gcc-cross ]; then mkdir -p "$X/libexec"'
            ' && cp -a /usr/libexec/gcc-cross "$X/libexec/"; fi \\\n'
            ' && cp -a "/usr/$T/bin" "$X/$T/" \\\n'
            # Absolute links: gcc resolves its own path and finds cc1, as and ld next to it.
            ' && for f in "$X/bin/$T"-*; do b="${f##*/}"; ln -s "$f" "$L/usr/bin/$b"'
            ' && ln -s "$b" "$L/usr/bin/${b#"$T"-}"; done \\\n'
            ' && ln -s gcc "$L/usr/bin/cc" && mkdir -p "$L/opt/archbench" \\\n'
            f" && dpkg-query -W -f '${{Package}} ${{Version}}\\n' \"gcc-[0-9]*-$PT\""
            f' > "$L{CROSS_FACT}"\n'
            "\n"
            f"FROM {bases.target} AS toolchain\n"
            "RUN apt-get update \\\n"
            " && apt-get install -y --no-install-recommends "
            f"{shell_words(target_packages)} \\\n"
            # The compiler the target's own gcc package would bring, for comparison.
            " && G=\"$(apt-cache depends gcc | sed -n 's/^ *Depends: \\(gcc-[0-9][0-9]*\\)$/\\1/p'"
            ' | head -n 1)" \\\n'
            ' && mkdir -p /opt/archbench && echo "$G $(apt-cache show --no-all-versions "$G"'
            f" | sed -n 's/^Version: //p')\" > {TARGET_FACT} \\\n"
            " && rm -rf /var/lib/apt/lists/*\n"
            f"COPY --from=xtool {LINKS}/ /\n"
            "\n"
            + build_stage(scenario, settings, self.name, cross=False, mounts=mounts, before=before)
        )
