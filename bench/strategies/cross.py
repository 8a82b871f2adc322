"""cross: the build stage runs on $BUILDPLATFORM and a cross compiler emits code for
$TARGETARCH/$TARGETVARIANT; the target's image only receives the artifacts.

For an image scenario (no compile step) the same idea holds without a compiler: the
target's packages are downloaded and unpacked on the build platform (`apt-get download`,
`dpkg -x`) and the scenario's cross.run prepares the rest there, so no target code runs.
"""

from __future__ import annotations

from bench.engine.matrix import Cell
from bench.host.facts import Host
from bench.platforms import KNOWN, Platform, parse_platform
from bench.scenarios.loader import Scenario
from bench.strategies.base import Availability, BuildSettings, BuildxStrategy
from bench.strategies.dockerfile import (
    BaseStages,
    build_stage,
    image_finish,
    shell_words,
    target_triplet_case,
    toolchain_install,
)

# The build platform's packages that compile for another target: Debian's cross compiler
# and the target's libc in place of gcc, g++ and libc6-dev.
CROSS_SWAPS = {
    "gcc": "gcc-{triplet}",
    "g++": "g++-{triplet}",
    "libc6-dev": "libc6-dev-{debian_arch}-cross",
}


def cross_packages(scenario: Scenario, target: Platform, build: Platform) -> list[str]:
    """Return the Debian packages (for `build`) that build the scenario for `target`.

    A scenario's own cross.packages serve every target (a Go toolchain cross-compiles by
    itself). Otherwise, on the build platform's own architecture the scenario's packages
    serve, and for another target the cross compiler and libc replace gcc and libc6-dev.
    """
    if scenario.cross_packages is not None:
        return list(scenario.cross_packages)
    if target.debian_arch == build.debian_arch:
        return list(scenario.packages)
    names = {"triplet": target.gnu_triplet.replace("_", "-"), "debian_arch": target.debian_arch}
    return [CROSS_SWAPS[p].format(**names) if p in CROSS_SWAPS else p for p in scenario.packages]


# The target's packages and what they need beyond the base image, as apt's own resolver
# picks them (first alternatives, no recommends): a simulated install on the build
# platform with the target's architecture added. Architecture-specific packages are
# asked for as name:arch, `Architecture: all` ones by name; what apt would install
# comes back the same way, less what the base image has (the build platform's base
# image has the target's package set).
RESOLVE_TARGET_PACKAGES = (
    "W=; for p in {packages}; do "
    "if apt-cache show --no-all-versions \"$p\" | grep -qx 'Architecture: all'; "
    'then W="$W $p"; else W="$W $p:$DEBIAN_ARCH"; fi; done'
    " && apt-get install --simulate --no-install-recommends $W"
    " | sed -n 's/^Inst \\([^ ]*\\) .*/\\1/p'"
    ' | while read -r t; do grep -qx "${{t%%:*}}" /tmp/installed || echo "$t"; done'
    " > /tmp/wanted"
)
# Bookworm's packages still ship files under /bin, /lib...; the base images have merged
# /usr (those are symlinks), so the unpacked tree is merged the same way before COPY.
MERGE_USR = (
    "for d in bin sbin lib lib32 lib64 libx32; do "
    'if [ -d "/rootfs/$d" ] && [ ! -L "/rootfs/$d" ]; then '
    'mkdir -p "/rootfs/usr/$d" && cp -a "/rootfs/$d/." "/rootfs/usr/$d/" && rm -rf "/rootfs/$d"; '
    "fi; done"
)


class Cross(BuildxStrategy):
    """A host-architecture compiler emitting target code."""

    name = "cross"
    description = "a build-platform cross compiler emits target code"

    def probe_platform(self, platform: Platform, host: Host) -> Availability:
        if platform.name in KNOWN:
            return Availability(True, f"{platform.gnu_triplet}-gcc from Debian's archive")
        return Availability(False, f"no cross compiler known for {platform.name}")

    def probe(self, scenario: Scenario, cell: Cell, host: Host) -> Availability:
        found = super().probe(scenario, cell, host)
        foreign = parse_platform(cell.platform) != host.platform
        if found.available and scenario.needs_target_code and foreign:
            return Availability(
                False,
                f"scenario {scenario.name} declares build.needs_target_code: its build "
                "runs code built for the target, which a build on the build platform "
                "cannot run",
            )
        return found

    def approximation(self, scenario: Scenario) -> str:
        if scenario.kind == "image" and scenario.image.packages:
            return (
                "packages unpacked with dpkg -x: no maintainer script ran and dpkg's "
                "database does not list them"
            )
        return ""

    def build_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        assert settings.host is not None
        cases = []
        for p in KNOWN.values():
            key = f"{p.architecture}/{p.variant}"
            pkgs = " ".join(cross_packages(scenario, p, settings.host))
            cases.append(f"      {key}) P='{pkgs}' ;; \\")
        return (
            f"FROM {bases.build} AS toolchain\n"
            "ARG TARGETARCH\n"
            "ARG TARGETVARIANT\n"
            'RUN case "$TARGETARCH/$TARGETVARIANT" in \\\n' + "\n".join(cases) + "\n"
            '      *) echo "no cross compiler for $TARGETARCH/$TARGETVARIANT" >&2; exit 1 ;; \\\n'
            "    esac \\\n"
            f" && {toolchain_install('$P')}\n"
            "\n" + build_stage(scenario, settings, self.name, cross=True)
        )

    def image_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        """Unpack the target's packages on the build platform, run cross.run there with
        ROOT set to the unpacked tree, then copy the tree into the target's base image.

        dpkg -x runs no maintainer script and records nothing in dpkg's database: the
        files are in place, the packages are not registered as installed.
        """
        steps = scenario.image
        tools = shell_words(scenario.cross_packages or ())
        install = toolchain_install(tools) if tools else "true"
        unpack = "true"
        if steps.packages:
            resolve = RESOLVE_TARGET_PACKAGES.format(packages=shell_words(steps.packages))
            unpack = (
                'dpkg --add-architecture "$DEBIAN_ARCH" && apt-get update'
                " && dpkg-query -W -f '${Package}\\n' > /tmp/installed"
                f" && {resolve} && mkdir -p /debs && cd /debs"
                # An empty list (everything already in the base image) downloads nothing;
                # a failed resolution shows up as missing files in validation.
                " && if [ -s /tmp/wanted ]; then apt-get download $(cat /tmp/wanted); fi"
                ' && for d in /debs/*.deb; do [ ! -e "$d" ] || dpkg -x "$d" /rootfs; done'
                f" && {MERGE_USR}"
                " && ls /debs | xargs echo unpacked:"
                " && rm -rf /debs /var/lib/apt/lists/*"
            )
        run = f" \\\n && export ROOT=/rootfs && {scenario.cross_run}" if scenario.cross_run else ""
        return (
            f"FROM {bases.build} AS toolchain\n"
            f"RUN {install}\n"
            "\n"
            "FROM toolchain AS build\n"
            "ARG TARGETARCH\n"
            "ARG TARGETVARIANT\n"
            f"RUN {target_triplet_case()} \\\n"
            " && mkdir -p /rootfs \\\n"
            f" && {unpack}{run}\n"
            "\n"
            f"FROM {bases.target}\n"
            "COPY --from=build /rootfs/ /\n" + image_finish(scenario)
        )
