"""What every strategy offers the runner, and the buildx machinery three of them share."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.errors import CommandTimeout, classify_failure
from bench.platforms import Platform
from bench.scenario import Scenario
from bench.tools import docker

Status = Literal["ok", "failed", "unavailable", "timeout"]

CC_VERSION_MARK = "archbench-cc:"
# Printed by every build stage so that each result records the compiler that really ran.
CC_VERSION_ECHO = f'echo "{CC_VERSION_MARK} $($CC --version | head -n 1)"'


def compiler_version(log: str) -> str:
    """Return the compiler version a build printed after CC_VERSION_MARK, or ''."""
    for line in log.splitlines():
        at = line.find(CC_VERSION_MARK)
        if at >= 0 and "$(" not in line:
            return line[at + len(CC_VERSION_MARK) :].strip()
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


@dataclass(frozen=True)
class BuildOutcome:
    """One timed build: its status, wall time, what it pushed and the tail of its log."""

    status: Status
    wall_s: float
    tag: str = ""
    digest: str = ""
    failure_class: str = ""
    log_tail: str = ""
    extra: dict[str, str] = field(default_factory=dict)


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

    def build_stages(self, scenario: Scenario, settings: BuildSettings) -> str:
        raise NotImplementedError

    def dockerfile(self, scenario: Scenario, settings: BuildSettings) -> str:
        """Return the whole Dockerfile for `scenario` under this strategy."""
        final = [f"FROM {settings.base_image}"]
        for art in scenario.artifacts:
            final.append(f"COPY --from=build /src/{art.built} {art.path}")
        final.append(f"CMD {shell_json(scenario.smoke_command)}")
        return self.build_stages(scenario, settings) + "\n" + "\n".join(final) + "\n"

    def _context(self, scenario: Scenario, settings: BuildSettings) -> Path:
        ctx = Path(tempfile.mkdtemp(prefix=f"archbench-{self.name}-"))
        shutil.copytree(
            scenario.source_dir, ctx / "src", ignore=shutil.ignore_patterns("build", ".git")
        )
        (ctx / "Dockerfile").write_text(self.dockerfile(scenario, settings))
        return ctx

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
        try:
            try:
                result = docker.build(
                    ctx,
                    platforms=[p.name for p in platforms],
                    tag=tag,
                    timeout=settings.timeout,
                    build_args={"SIZE": str(settings.size)},
                    target=target,
                    push=push,
                    # The toolchain stage stays cached (provisioned apart); the build
                    # stage always runs, so every timed build compiles from scratch.
                    no_cache_filter=() if target else ("build",),
                    builder=settings.builder,
                    log_path=log_path,
                    on_line=on_line,
                )
            except CommandTimeout as exc:
                return BuildOutcome(
                    "timeout",
                    exc.seconds,
                    tag,
                    failure_class="timeout",
                    log_tail=exc.output[-4000:],
                )
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
        done = result.completed
        if not done.ok:
            failure = classify_failure(done.stdout + done.stderr)
            return BuildOutcome(
                "failed",
                done.seconds,
                tag,
                failure_class=failure.failure_class,
                log_tail=done.tail(40),
            )
        extra = {"compiler": compiler_version(done.stdout + done.stderr)}
        if result.metadata.get("archbench.push-repaired"):
            extra["push_repaired"] = "the docker push step hit the registry's tag race"
        return BuildOutcome("ok", done.seconds, tag, digest=result.digest, extra=extra)


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
