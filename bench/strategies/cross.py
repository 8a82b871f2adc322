"""cross: the build stage runs on $BUILDPLATFORM and a cross compiler emits code for
$TARGETARCH/$TARGETVARIANT; the target's image only receives the artifacts."""

from __future__ import annotations

from bench.platforms import KNOWN, Platform
from bench.scenario import Scenario
from bench.strategies.base import (
    Availability,
    BuildSettings,
    BuildxStrategy,
    build_stage,
    toolchain_install,
)


def cross_packages(scenario: Scenario, target: Platform, build: Platform) -> list[str]:
    """Return the Debian packages (for `build`) that compile the scenario for `target`.

    On the build platform's own architecture the scenario's packages serve; for another
    target Debian's cross compiler and the target's libc headers replace gcc and
    libc6-dev.
    """
    if target.debian_arch == build.debian_arch:
        return list(scenario.packages)
    swapped = {
        "gcc": f"gcc-{target.gnu_triplet.replace('_', '-')}",
        "g++": f"g++-{target.gnu_triplet.replace('_', '-')}",
        "libc6-dev": f"libc6-dev-{target.debian_arch}-cross",
    }
    return [swapped.get(p, p) for p in scenario.packages]


class Cross(BuildxStrategy):
    """A host-architecture compiler emitting target code."""

    name = "cross"
    description = "a build-platform cross compiler emits target code"

    def probe(self, platform: Platform, host: Platform) -> Availability:
        if platform.name in KNOWN:
            return Availability(True, f"{platform.gnu_triplet}-gcc from Debian's archive")
        return Availability(False, f"no cross compiler known for {platform.name}")

    def build_stages(self, scenario: Scenario, settings: BuildSettings) -> str:
        assert settings.host is not None
        cases = []
        for p in KNOWN.values():
            key = f"{p.architecture}/{p.variant}"
            pkgs = " ".join(cross_packages(scenario, p, settings.host))
            cases.append(f"      {key}) T={p.gnu_triplet}; P='{pkgs}' ;; \\")
        return (
            f"FROM --platform=$BUILDPLATFORM {settings.base_image} AS toolchain\n"
            "ARG TARGETARCH\n"
            "ARG TARGETVARIANT\n"
            'RUN case "$TARGETARCH/$TARGETVARIANT" in \\\n' + "\n".join(cases) + "\n"
            '      *) echo "no cross compiler for $TARGETARCH/$TARGETVARIANT" >&2; exit 1 ;; \\\n'
            "    esac \\\n"
            ' && echo "$T" > /etc/cross-triplet \\\n'
            f" && {toolchain_install('$P')}\n"
            "\n"
            + build_stage(
                scenario,
                settings,
                self.name,
                'export CROSS_TRIPLET="$(cat /etc/cross-triplet)" '
                '&& export CC="$CROSS_TRIPLET-gcc"',
            )
        )
