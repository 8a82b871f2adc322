"""The Dockerfile text every buildx strategy shares: base stages, the cached build stage,
the build environment and the image's last lines."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import inputs
from bench.errors import UsageError
from bench.platforms import KNOWN, Platform, base_image_for
from bench.scenarios.loader import Scenario

if TYPE_CHECKING:
    from bench.strategies.base import BuildSettings

CC_VERSION_MARK = "archbench-cc:"


def check_dockerfile_values(scenario: Scenario, settings: BuildSettings) -> None:
    """Raise UsageError when a value a Dockerfile would hold has a control character (a
    newline would start an instruction of its own). The loader refuses them already;
    this holds for a Scenario made any other way too."""
    values: list[tuple[str, str]] = [
        ("base_image", settings.base_image),
        ("build.command", scenario.build_command),
        ("cross.run", scenario.cross_run),
        ("image.run", scenario.image.run),
    ]
    values += [(f"artifacts.{a.built}", a.built + a.path) for a in scenario.artifacts]
    values += [("smoke.command", v) for v in scenario.smoke_command]
    values += [("toolchain.packages", p) for p in scenario.packages]
    values += [("cross.packages", p) for p in scenario.cross_packages or ()]
    values += [("image.packages", p) for p in scenario.image.packages]
    values += [(f"image.add.{s}", s + d) for s, d in scenario.image.add]
    pairs = scenario.build_env + scenario.cross_env + scenario.image.env
    values += [(f"env.{k}", k + v) for k, v in pairs]
    for key, value in values:
        if inputs.has_control(value):
            raise UsageError(f"{scenario.file}: key {key} holds a control character: {value!r}")


def shell_words(values: tuple[str, ...] | list[str]) -> str:
    """Return `values` as shell words, each quoted."""
    return " ".join(shlex.quote(v) for v in values)


def cache_mount_id(
    scenario: str, strategy: str, cpu: str, size: int, target: str, emulator: str = ""
) -> str:
    """Return the id of a cell's warm-build cache mount (`target` is TARGETARCH and
    TARGETVARIANT run together, or those build arguments themselves; `emulator` the
    cell's emulator axis value, '' for the host's)."""
    variant = "".join(f"-{v}" for v in (cpu, emulator) if v)
    return f"archbench-{scenario}-{strategy}{variant}-s{size}-{target}"


def build_stage(
    scenario: Scenario,
    settings: BuildSettings,
    strategy: str,
    cross: bool,
    *,
    mounts: tuple[str, ...] = (),
    before: tuple[str, ...] = (),
) -> str:
    """Return the build stage: the scenario's build in a per-cell cache mount.

    The build folder (and XDG_CACHE_HOME, where Go and other tools keep their caches)
    lives in a cache mount keyed by scenario, strategy, size, CPU variant and target, so
    a warm build finds the last build's objects; a cold build empties it first.
    Artifacts are copied to /out, which the final stage reads. `mounts` are more
    `--mount=` values of the build step (a strategy's tools from another stage);
    `before` are shell commands run after the environment is set, before the build.
    """
    mount_id = cache_mount_id(
        scenario.name,
        strategy,
        settings.cpu or "",
        settings.size,
        "$TARGETARCH$TARGETVARIANT",
        # Each emulator's warm builds keep their own objects, as each CPU variant's do.
        settings.emulator.axis if settings.emulator is not None else "",
    )
    copies = " && ".join(
        f'mkdir -p "$(dirname {shlex.quote("/out/" + a.built)})"'
        f" && cp -a -- {shlex.quote(a.built)} {shlex.quote('/out/' + a.built)}"
        for a in scenario.artifacts
    )
    qemu_cpu = "ARG QEMU_CPU\n" if settings.cpu else ""
    env = " \\\n && ".join(build_env(scenario, cross=cross) + list(before))
    extra_mounts = "".join(f"    --mount={m} \\\n" for m in mounts)
    return (
        "FROM toolchain AS build\n"
        "ARG SIZE=1\n"
        "ARG ARCHBENCH_CACHE=cold\n"
        "ARG TARGETARCH\n"
        "ARG TARGETVARIANT\n"
        f"{qemu_cpu}"
        "COPY src/ /src/\n"
        f"RUN --mount=type=cache,id={mount_id},target=/cache,sharing=locked \\\n"
        f"{extra_mounts}"
        '    if [ "$ARCHBENCH_CACHE" != warm ]; then rm -rf /cache/tree /cache/xdg; fi \\\n'
        " && mkdir -p /cache/tree /cache/xdg && cp -a -u /src/. /cache/tree/ && cd /cache/tree \\\n"
        f" && {env} \\\n"
        f" && {compiler_echo(scenario)} \\\n"
        f" && {scenario.build_command} \\\n"
        f" && {copies}\n"
    )


def target_triplet_case(variable: str = "HOST_TRIPLET") -> str:
    """Return shell that sets `variable` to the GNU triplet of $TARGETARCH/$TARGETVARIANT
    (and DEBIAN_ARCH to its Debian name), failing for a platform archbench does not know."""
    cases = " ".join(
        f"{p.architecture}/{p.variant}) {variable}={p.gnu_triplet} DEBIAN_ARCH={p.debian_arch} ;;"
        for p in KNOWN.values()
    )
    return (
        f'case "$TARGETARCH/$TARGETVARIANT" in {cases} '
        '*) echo "archbench knows no triplet for $TARGETARCH/$TARGETVARIANT" >&2; exit 1 ;; esac'
    )


def build_env(scenario: Scenario, *, cross: bool, platform: Platform | None = None) -> list[str]:
    """Return the shell commands that set the environment every build gets.

    HOST_TRIPLET is the target's GNU triplet (for `./configure --host`), CROSS_TRIPLET
    the same for a cross build and empty otherwise; CC, CXX, AR, RANLIB and STRIP are the
    target's tools (prefixed with CROSS_TRIPLET); TARGETARCH and TARGETVARIANT name the
    target as buildx does; SIZE and JOBS are the work knob and the CPUs. Then the
    scenario's build.env, and for a cross build its cross.env, each value expanded by
    the shell. In a guest (`platform` given) the target is spelled out instead of read
    from buildx's ARGs.
    """
    lines = []
    if platform is not None:
        lines.append(
            f"export TARGETARCH={platform.architecture} TARGETVARIANT={platform.variant!s}"
            f" HOST_TRIPLET={platform.gnu_triplet} DEBIAN_ARCH={platform.debian_arch}"
        )
    else:
        lines.append(target_triplet_case())
    lines.append(
        "export TARGETARCH TARGETVARIANT HOST_TRIPLET DEBIAN_ARCH "
        + ("CROSS_TRIPLET=$HOST_TRIPLET" if cross else "CROSS_TRIPLET=")
    )
    lines.append('P="${CROSS_TRIPLET:+$CROSS_TRIPLET-}"')
    lines.append(
        'export CC="${P}gcc" CXX="${P}g++" AR="${P}ar" RANLIB="${P}ranlib" STRIP="${P}strip"'
    )
    lines.append(
        'export JOBS="$(nproc)" SIZE="${SIZE:-1}" XDG_CACHE_HOME="${XDG_CACHE_HOME:-/cache/xdg}"'
    )
    pairs = scenario.build_env + (scenario.cross_env if cross else ())
    if pairs:
        lines.append("export " + " ".join(f'{k}="{v}"' for k, v in pairs))
    return lines


def compiler_echo(scenario: Scenario) -> str:
    """Return shell that prints the compiler's version after CC_VERSION_MARK, when the
    scenario's toolchain has a C compiler (`$CC --version`) or Go (`go version`)."""
    return (
        f'{{ if command -v "$CC" >/dev/null; '
        f'then echo "{CC_VERSION_MARK} $($CC --version | head -n 1)"; '
        f'elif command -v go >/dev/null; then echo "{CC_VERSION_MARK} $(go version)"; fi; }}'
    )


def image_finish(scenario: Scenario) -> str:
    """Return the image scenario's last lines: its ADDs, ENVs and CMD."""
    lines = ["ARG TARGETARCH", "ARG TARGETVARIANT"]
    lines += [f"ADD src/{src} {dest}" for src, dest in scenario.image.add]
    lines += [f'ENV {k}="{v}"' for k, v in scenario.image.env]
    lines.append(f"CMD {shell_json(scenario.smoke_command)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BaseStages:
    """Where a Dockerfile's stages start. With a `{suite}` template each platform gets
    its own Debian release (riscv64 is trixie's): alias stages name one base per
    platform, and `FROM base-$TARGETARCH$TARGETVARIANT` picks it; BuildKit builds only
    the aliases a build reaches."""

    prelude: str
    target: str  # the target platform's base
    build: str  # the build platform's base, in the release the target uses

    @staticmethod
    def of(template: str) -> BaseStages:
        if "{suite}" not in template:
            return BaseStages("", template, f"--platform=$BUILDPLATFORM {template}")
        lines = []
        for p in KNOWN.values():
            ref = base_image_for(template, p)
            slug = p.architecture + p.variant
            lines.append(f"FROM {ref} AS base-{slug}")
            lines.append(f"FROM --platform=$BUILDPLATFORM {ref} AS buildbase-{slug}")
        return BaseStages(
            "\n".join(lines) + "\n\n",
            "base-${TARGETARCH}${TARGETVARIANT}",
            "buildbase-${TARGETARCH}${TARGETVARIANT}",
        )


def shell_json(argv: tuple[str, ...] | list[str]) -> str:
    """Return `argv` as a Dockerfile exec-form JSON array."""
    return json.dumps(list(argv))


def toolchain_install(packages: str) -> str:
    """Return the shell that installs Debian `packages` (a shell word list) in a stage."""
    return (
        "apt-get update && apt-get install -y --no-install-recommends "
        f"{packages} && rm -rf /var/lib/apt/lists/*"
    )
