"""What every strategy offers the runner, and the buildx machinery three of them share."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import buildtrace
from bench.errors import CommandTimeout, classify_failure
from bench.platforms import KNOWN, Platform, base_image_for
from bench.resources import BuildkitMeter
from bench.scenario import Scenario
from bench.tools import docker

Status = Literal["ok", "failed", "unavailable", "timeout", "no-op"]
CacheMode = Literal["cold", "warm"]
CACHE_MODES: tuple[CacheMode, ...] = ("cold", "warm")

CC_VERSION_MARK = "archbench-cc:"


def compiler_version(log: str) -> str:
    """Return the compiler version a build printed after CC_VERSION_MARK, or ''."""
    for line in log.splitlines():
        at = line.rfind(CC_VERSION_MARK)
        rest = line[at + len(CC_VERSION_MARK) :].strip() if at >= 0 else ""
        if rest and "$(" not in rest:
            return rest
    return ""


@dataclass(frozen=True)
class Availability:
    """Whether a strategy can build a platform here, and if not why and what fixes it."""

    available: bool
    reason: str = ""
    fix: str = ""


@dataclass(frozen=True)
class BuildSettings:
    """Everything a strategy needs besides the scenario and the platform."""

    registry: str
    size: int
    base_image: str
    timeout: float
    builder: str | None = None
    host: Platform | None = None
    cpu: str | None = None  # emulated CPU variant (bench.guest.CPU_MODELS); None: default
    cache: CacheMode = "cold"
    nonce: str = ""  # makes a warm build's touched source differ from the last one


@dataclass(frozen=True)
class BuildOutcome:
    """One timed build: its status, wall time, what it pushed and the tail of its log."""

    status: Status
    wall_s: float
    tag: str = ""
    digest: str = ""
    failure_class: str = ""
    log_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def image_repo(settings: BuildSettings, scenario: Scenario) -> str:
    """Return `<registry>/archbench/<scenario>`."""
    return f"{settings.registry}/archbench/{scenario.name}"


class BuildxStrategy:
    """A strategy whose build is one `docker buildx build` of a generated Dockerfile.

    Subclasses say which platforms they serve (`probe`) and write the Dockerfile's
    toolchain and build stages (`dockerfile`); the final stage is shared: the target's
    base image with the artifacts copied in, no RUN, and the smoke program as CMD.
    """

    name = ""
    description = ""

    def probe(self, platform: Platform, host: Platform) -> Availability:
        raise NotImplementedError

    def suits(self, scenario: Scenario) -> Availability:
        """Return whether this strategy applies to `scenario` at all (whatever the
        platform): the runner asks it after `probe`, so an unfit pairing is a cell
        reported unavailable with the reason, never a failed build."""
        return Availability(True)

    def build_facts(self, log: str) -> dict[str, Any]:
        """Return what a successful build's log tells about it beyond the compiler's
        version (stored in the record's extra); none by default."""
        return {}

    def approximation(self, scenario: Scenario) -> str:
        """Return how this strategy's image of `scenario` differs from one built on the
        target itself ('' when it does not): stored with every result, so reports weigh
        speed against fidelity."""
        return ""

    def build_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        raise NotImplementedError

    def dockerfile(self, scenario: Scenario, settings: BuildSettings) -> str:
        """Return the whole Dockerfile for `scenario` under this strategy."""
        bases = BaseStages.of(settings.base_image)
        if scenario.kind == "image":
            return bases.prelude + self.image_stages(scenario, settings, bases)
        final = [f"FROM {bases.target}"]
        for art in scenario.artifacts:
            final.append(f"COPY --from=build /out/{art.built} {art.path}")
        final.append(f"CMD {shell_json(scenario.smoke_command)}")
        return (
            bases.prelude
            + self.build_stages(scenario, settings, bases)
            + "\n"
            + "\n".join(final)
            + "\n"
        )

    def image_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        """Return the Dockerfile of an image scenario (no compile step): by default its
        packages are installed and its `run` runs in the target's own image (natively,
        or emulated under qemu-user for a foreign platform)."""
        steps = scenario.image
        run = toolchain_install(" ".join(steps.packages)) if steps.packages else "true"
        if steps.run:
            run += f" \\\n && {steps.run}"
        return (
            f"FROM {bases.target} AS toolchain\n"
            "FROM toolchain AS build\n"
            "ARG TARGETARCH\n"
            "ARG TARGETVARIANT\n"
            f"RUN {run}\n" + image_finish(scenario)
        )

    def _context(self, scenario: Scenario, settings: BuildSettings) -> Path:
        ctx = Path(tempfile.mkdtemp(prefix=f"archbench-{self.name}-"))
        shutil.copytree(
            scenario.tree(), ctx / "src", ignore=shutil.ignore_patterns("build", ".git")
        )
        if settings.cache == "warm" and scenario.touch:
            # A real edit, not only a new mtime: the COPY's content changes, so the build
            # step runs, and make rebuilds only what depends on the touched file.
            touched = ctx / "src" / scenario.touch
            with touched.open("a") as f:
                f.write(f"\n{scenario.touch_comment.format(nonce=settings.nonce)}\n")
        (ctx / "Dockerfile").write_text(self.dockerfile(scenario, settings))
        return ctx

    def build_args(self, settings: BuildSettings, platforms: list[Platform]) -> dict[str, str]:
        """Return the --build-arg values of a build (subclasses add their own)."""
        return {"SIZE": str(settings.size), "ARCHBENCH_CACHE": settings.cache}

    def provision(
        self, scenario: Scenario, platforms: list[Platform], settings: BuildSettings, log_path: Path
    ) -> BuildOutcome:
        """Build (and cache) the toolchain stage for `platforms`: timed apart from builds."""
        return self._buildx(
            scenario, platforms, settings, log_path, tag="", target="toolchain", push=False
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
        """Build `scenario` for `platforms` from a cold build stage and push it as `tag`."""
        return self._buildx(
            scenario,
            platforms,
            settings,
            log_path,
            tag=tag,
            target=None,
            push=True,
            on_line=on_line,
        )

    def _buildx(
        self,
        scenario: Scenario,
        platforms: list[Platform],
        settings: BuildSettings,
        log_path: Path,
        *,
        tag: str,
        target: str | None,
        push: bool,
        on_line: Callable[[str], None] | None = None,
    ) -> BuildOutcome:
        ctx = self._context(scenario, settings)
        meter = BuildkitMeter()
        try:
            with meter.span() as usage:
                try:
                    result = docker.build(
                        ctx,
                        platforms=[p.name for p in platforms],
                        tag=tag,
                        timeout=settings.timeout,
                        build_args=self.build_args(settings, platforms),
                        target=target,
                        push=push,
                        # Cold: the toolchain stage stays cached (provisioned apart) and
                        # the build stage always runs from an empty build folder. Warm: the
                        # edited source alone makes the build stage run again.
                        no_cache_filter=("build",)
                        if target is None and settings.cache == "cold"
                        else (),
                        builder=settings.builder,
                        log_path=log_path,
                        on_line=on_line,
                    )
                except CommandTimeout as exc:
                    trace = buildtrace.parse(exc.output)
                    return BuildOutcome(
                        "timeout", exc.seconds, tag, failure_class="timeout",
                        log_tail=_tail(trace.text or exc.output),
                    )  # fmt: skip
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
        done = result.completed
        trace = result.trace
        extra: dict[str, Any] = {
            "steps": [s.as_dict() for s in trace.steps],
            "step_seconds": trace.seconds_by_category(),
            "resources": usage.as_dict(),
            "cache": settings.cache,
        }
        if not done.ok:
            failure = classify_failure(trace.text + "\n" + done.stdout)
            return BuildOutcome(
                "failed", done.seconds, tag, failure_class=failure.failure_class,
                log_tail=_tail(trace.text + "\n" + done.stdout), extra=extra,
            )  # fmt: skip
        extra["compiler"] = compiler_version(trace.text)
        extra.update(self.build_facts(trace.text))
        if approximate := self.approximation(scenario):
            extra["approximate"] = approximate
        if result.metadata.get("archbench.push-repaired"):
            extra["push_repaired"] = "the docker push step hit the registry's tag race"
        compile_steps = [s for s in trace.steps if s.category == "compile"]
        if target is None and compile_steps and all(s.cached for s in compile_steps):
            # Nothing was compiled: a fully cached rebuild is not a build.
            return BuildOutcome("no-op", done.seconds, tag, digest=result.digest, extra=extra)
        return BuildOutcome("ok", done.seconds, tag, digest=result.digest, extra=extra)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def cache_mount_id(scenario: str, strategy: str, cpu: str, size: int, target: str) -> str:
    """Return the id of a cell's warm-build cache mount (`target` is TARGETARCH and
    TARGETVARIANT run together, or those build arguments themselves)."""
    variant = f"-{cpu}" if cpu else ""
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
        scenario.name, strategy, settings.cpu or "", settings.size, "$TARGETARCH$TARGETVARIANT"
    )
    copies = " && ".join(
        f'mkdir -p "$(dirname /out/{a.built})" && cp -a {a.built} /out/{a.built}'
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
    import json

    return json.dumps(list(argv))


def toolchain_install(packages: str) -> str:
    """Return the shell that installs Debian `packages` (a shell word list) in a stage."""
    return (
        "apt-get update && apt-get install -y --no-install-recommends "
        f"{packages} && rm -rf /var/lib/apt/lists/*"
    )
