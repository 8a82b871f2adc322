"""What every strategy offers the runner, and the buildx machinery three of them share."""

from __future__ import annotations

import abc
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bench import inputs
from bench.engine import attribution
from bench.engine.matrix import Cell
from bench.engine.resources import BuildkitMeter
from bench.errors import ArchbenchError, CommandTimeout, UsageError, classify_failure
from bench.host.facts import Host
from bench.platforms import Platform, parse_platform
from bench.scenarios import sources
from bench.scenarios.loader import Scenario
from bench.strategies.dockerfile import (
    CC_VERSION_MARK,
    BaseStages,
    check_dockerfile_values,
    image_finish,
    shell_json,
    shell_words,
    toolchain_install,
)
from bench.strategies.guest.cpu import CPU_MODELS
from bench.tools import acct, buildtrace, docker, ociarchive, taskstats
from bench.tools.emulators import Emulator
from bench.tools.system_emulators import SystemEmulator

Status = Literal["ok", "failed", "unavailable", "timeout", "no-op"]
CacheMode = Literal["cold", "warm"]
CACHE_MODES: tuple[CacheMode, ...] = ("cold", "warm")
# How much of a failed build's output its outcome keeps: the last lines, or characters.
LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 4000


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
    cpu: str | None = None  # emulated CPU variant (guest CPU_MODELS); None: default
    cache: CacheMode = "cold"
    nonce: str = ""  # makes a warm build's touched source differ from the last one
    emulator: Emulator | None = None  # qemu-user/-system cells: None is the host's registered one
    # qemu-system cells on a pinned emulator: its system emulator for each guest target.
    system_emulators: tuple[SystemEmulator, ...] = ()
    attribute: bool = False  # account the build's CPU time to programs (process accounting)
    node: str = ""  # the build node (docker context) building it; '' for this host's engine
    push_archive: bool = False  # the node exports an OCI archive, pushed from this host


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
    built_on: str = ""  # builder/node, from the build's own metadata ('' when unknown)


def image_repo(settings: BuildSettings, scenario: Scenario) -> str:
    """Return `<registry>/archbench/<scenario>`."""
    return f"{settings.registry}/archbench/{scenario.name}"


class Strategy(abc.ABC):
    """One way of building a multi-platform image, as the runner and `doctor` see it.

    `probe` says whether a cell can run here; `dockerfile` is the recipe a result's
    digest covers; `provision` prepares what builds reuse (timed apart); `build` times
    one build and pushes its image.
    """

    name = ""
    description = ""

    def probe(self, scenario: Scenario, cell: Cell, host: Host) -> Availability:
        """Return whether `cell` of `scenario` can run on `host`, and if not why and what
        fixes it. The one question `run` and `doctor` both ask: first the platform
        (`probe_platform`), then what the cell asks beyond it (`cell_limit`)."""
        platform = parse_platform(cell.platform)
        found = self.probe_platform(platform, host)
        if not found.available:
            return found
        limit = self.cell_limit(scenario, cell)
        if not limit and cell.cpu and cell.cpu != "default":
            model = CPU_MODELS.get(cell.cpu, {}).get(platform.qemu_name)
            if model is None and self.emulates(platform, host):
                limit = f"CPU variant {cell.cpu!r} has no model for {cell.platform}"
        return Availability(False, limit) if limit else found

    @abc.abstractmethod
    def probe_platform(self, platform: Platform, host: Host) -> Availability:
        """Return whether this strategy can build for `platform` on `host` at all."""

    def cell_limit(self, scenario: Scenario, cell: Cell) -> str:
        """Return why this strategy cannot run `cell` of `scenario` although it serves
        its platform, or '' when nothing stands in the way."""
        if cell.cache == "warm" and not scenario.touch:
            return "the scenario names no build.touch file to edit for a warm build"
        return ""

    def emulates(self, platform: Platform, host: Host) -> bool:
        """Return whether building for `platform` here runs an emulated CPU (so a CPU
        variant must name a model for it)."""
        return platform != host.platform

    def build_facts(self, log: str) -> dict[str, Any]:
        """Return what a successful build's log tells about it beyond the compiler's
        version (stored in the record's extra); none by default."""
        return {}

    def approximation(self, scenario: Scenario) -> str:
        """Return how this strategy's image of `scenario` differs from one built on the
        target itself ('' when it does not): stored with every result, so reports weigh
        speed against fidelity."""
        return ""

    @abc.abstractmethod
    def dockerfile(self, scenario: Scenario, settings: BuildSettings) -> str:
        """Return the Dockerfile this strategy builds `scenario` with.

        Raises UsageError when a value it would hold could end a Dockerfile line.
        """

    @abc.abstractmethod
    def provision(
        self, scenario: Scenario, platforms: list[Platform], settings: BuildSettings, log_path: Path
    ) -> BuildOutcome:
        """Prepare what builds of `platforms` reuse; return the timed outcome."""

    @abc.abstractmethod
    def build(
        self,
        scenario: Scenario,
        platforms: list[Platform],
        settings: BuildSettings,
        tag: str,
        log_path: Path,
        on_line: Callable[[str], None] | None = None,
    ) -> BuildOutcome:
        """Build `scenario` for `platforms` and push it as `tag`; return the outcome."""


class BuildxStrategy(Strategy):
    """A strategy whose build is one `docker buildx build` of a generated Dockerfile.

    Subclasses say which platforms they serve (`probe_platform`) and write the
    Dockerfile's toolchain and build stages (`build_stages`); the final stage is shared:
    the target's base image with the artifacts copied in, no RUN, and the smoke program
    as CMD.
    """

    @abc.abstractmethod
    def build_stages(self, scenario: Scenario, settings: BuildSettings, bases: BaseStages) -> str:
        """Return the Dockerfile's toolchain and build stages of a compile scenario."""

    def dockerfile(self, scenario: Scenario, settings: BuildSettings) -> str:
        """Return the whole Dockerfile for `scenario` under this strategy.

        Raises UsageError when a value it would hold could end a Dockerfile line.
        """
        if scenario.kind == "dockerfile":
            # The user's own file, as it is written.
            return user_dockerfile(scenario)
        check_dockerfile_values(scenario, settings)
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
        run = toolchain_install(shell_words(steps.packages)) if steps.packages else "true"
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
        # A user's Dockerfile reads its own context as it is (copied, so that a warm
        # build's edit never reaches the user's files); ours reads the sources at src/.
        own = scenario.kind == "dockerfile"
        src = ctx if own else ctx / "src"
        try:
            sources.copy_tree(
                scenario.tree(),
                src,
                ignore=shutil.ignore_patterns(".git")
                if own
                else shutil.ignore_patterns("build", ".git"),
            )
            if settings.cache == "warm" and scenario.touch:
                # A real edit, not only a new mtime: the COPY's content changes, so the
                # build step runs, and make rebuilds only what depends on the touched file.
                touched = touched_file(scenario, src)
                with touched.open("a") as f:
                    f.write(f"\n{scenario.touch_comment.replace('{nonce}', settings.nonce)}\n")
            if not own:
                (ctx / "Dockerfile").write_text(self.dockerfile(scenario, settings))
        except BaseException:
            shutil.rmtree(ctx, ignore_errors=True)
            raise
        return ctx

    def build_args(self, settings: BuildSettings, platforms: list[Platform]) -> dict[str, str]:
        """Return the --build-arg values of a build (subclasses add their own)."""
        return {"SIZE": str(settings.size), "ARCHBENCH_CACHE": settings.cache}

    def provision(
        self, scenario: Scenario, platforms: list[Platform], settings: BuildSettings, log_path: Path
    ) -> BuildOutcome:
        """Build (and cache) the toolchain stage for `platforms`: timed apart from builds.
        A user's Dockerfile has no toolchain stage of ours: its base images are checked
        in the local mirror instead (UsageError naming those it lacks)."""
        if scenario.kind == "dockerfile":
            from bench.strategies import userfile

            assert settings.host is not None
            started = time.monotonic()
            userfile.check_bases(scenario, platforms, settings.host, settings.registry)
            return BuildOutcome("ok", max(time.monotonic() - started, 1e-6))
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
        options: dict[str, Any] = {
            "build_args": self.build_args(settings, platforms),
            "target": target,
            # Cold: the toolchain stage stays cached (provisioned apart) and the build
            # stage always runs from an empty build folder. Warm: the edited source
            # alone makes the build stage run again.
            "no_cache_filter": ("build",) if target is None and settings.cache == "cold" else (),
        }
        if scenario.kind == "dockerfile":
            from bench.strategies import userfile

            options = userfile.buildx_options(scenario, settings.cache)
        # Ended processes are recorded for the measured build alone, never for a
        # provisioning step (target set) whose programs are not the cell's, nor for a
        # build on a node (its processes are not this host's).
        attribute = settings.attribute and target is None and not settings.node
        accounted: list[acct.Session | taskstats.Session] = []
        unaccounted: list[str] = []
        engine = docker.engine_pids() if attribute else []
        # A step running before this build starts is another build's.
        shared = bool(engine and docker.engine_steps(engine))
        # A node's BuildKit runs in its own engine's cgroups, which this host cannot tell
        # apart (a local node shares the cgroup parent): its resources are not measured.
        span = contextlib.nullcontext(None) if settings.node else BuildkitMeter().span()
        archive_dir = Path(tempfile.mkdtemp(prefix="archbench-oci-")) if push else None
        archive = archive_dir / "image.tar" if archive_dir and settings.push_archive else None
        try:
            with span as usage, contextlib.ExitStack() as stack:
                if attribute:
                    listened, why = _record_exits(stack)
                    accounted.extend(listened)
                    unaccounted.extend(why)
                try:
                    result = docker.build(
                        ctx,
                        platforms=[p.name for p in platforms],
                        tag=tag,
                        timeout=settings.timeout,
                        push=push,
                        builder=None if settings.node else settings.builder,
                        context_name=settings.node or None,
                        log_path=log_path,
                        on_line=on_line,
                        oci_archive=archive,
                        **options,
                    )
                except CommandTimeout as exc:
                    trace = buildtrace.parse(exc.output)
                    return BuildOutcome(
                        "timeout",
                        exc.seconds,
                        tag,
                        failure_class="timeout",
                        log_tail=_tail(trace.text or exc.output),
                    )
            pushed_s = 0.0
            if archive is not None and result.completed.ok:
                # The node cannot reach the registry: its build came back as an OCI
                # archive, and this host pushes it; the push counts in the build's time,
                # as BuildKit's own push does on the other path.
                t0 = time.monotonic()
                try:
                    pushed = ociarchive.push(archive, tag)
                except ArchbenchError as exc:
                    return BuildOutcome(
                        "failed",
                        result.completed.seconds + time.monotonic() - t0,
                        tag,
                        failure_class="push",
                        log_tail=f"pushing the node's OCI archive from this host: {exc}",
                        built_on=result.built_on,
                    )
                pushed_s = time.monotonic() - t0
                result.metadata["containerimage.digest"] = pushed
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
            if archive_dir is not None:
                shutil.rmtree(archive_dir, ignore_errors=True)
        done = result.completed
        if pushed_s:
            done = replace(done, seconds=done.seconds + pushed_s)
        trace = result.trace
        extra: dict[str, Any] = {
            "steps": [s.as_dict() for s in trace.steps],
            "step_seconds": trace.seconds_by_category(),
            "cache": settings.cache,
        }
        if usage is not None:
            extra["resources"] = usage.as_dict()
        if attribute and usage is not None:
            if engine and docker.engine_steps(engine):
                shared = True  # a step still running after this build is another build's
            if shared:
                unaccounted.append(attribution.SHARED_ENGINE)
            session = accounted[0] if accounted else None
            extra["attribution"] = asdict(
                attribution.of_build(
                    session.records if session else [],
                    [*unaccounted, *(session.notes if session else [])],
                    usage.cpu_user_s + usage.cpu_system_s,
                    usage.source,
                    engine,
                    source=session.source if session else "",
                )
            )
        if not done.ok:
            failure = classify_failure(trace.text + "\n" + done.stdout)
            crash = buildtrace.emulator_crash(trace.text + "\n" + done.stdout)
            if failure == "emulator-crash" and crash is not None:
                extra["emulator_fault"] = f"signal {crash[0]} in step {crash[1] or '?'}"
            return BuildOutcome(
                "failed",
                done.seconds,
                tag,
                failure_class=failure,
                log_tail=_tail(trace.text + "\n" + done.stdout),
                extra=extra,
                built_on=result.built_on,
            )
        extra["compiler"] = compiler_version(trace.text)
        extra.update(self.build_facts(trace.text))
        if approximate := self.approximation(scenario):
            extra["approximate"] = approximate
        if result.metadata.get("archbench.push-repaired"):
            extra["push_repaired"] = "the docker push step hit the registry's tag race"
        if scenario.kind == "dockerfile":
            from bench.strategies import userfile

            # Which instruction each traced step was, its line and where it ran.
            extra["instructions"] = userfile.instruction_steps(scenario, trace.steps)
            return BuildOutcome(
                "ok", done.seconds, tag, digest=result.digest, extra=extra, built_on=result.built_on
            )
        compile_steps = [s for s in trace.steps if s.category == "compile"]
        if target is None and compile_steps and all(s.cached for s in compile_steps):
            # Nothing was compiled: a fully cached rebuild is not a build.
            return BuildOutcome(
                "no-op",
                done.seconds,
                tag,
                digest=result.digest,
                extra=extra,
                built_on=result.built_on,
            )
        return BuildOutcome(
            "ok", done.seconds, tag, digest=result.digest, extra=extra, built_on=result.built_on
        )


def user_dockerfile(scenario: Scenario) -> str:
    """Return the text of a dockerfile scenario's own Dockerfile (it is built from its
    own path; the text makes the recipe digest). Raises UsageError when unreadable."""
    assert scenario.dockerfile is not None
    try:
        return scenario.dockerfile.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{scenario.dockerfile.path}: cannot read the Dockerfile: {exc}") from exc


def touched_file(scenario: Scenario, src: Path) -> Path:
    """Return the file of the copied source folder `src` that a warm build edits.

    Raises UsageError when build.touch leads out of `src` (absolute, `..` or through a
    symlink) or names no regular file: the edit must never reach a file elsewhere.
    """
    try:
        inputs.relative_path(scenario.touch)
        touched = inputs.inside(src, scenario.touch)
    except ValueError as exc:
        raise UsageError(f"{scenario.file}: key build.touch {exc}") from exc
    if (src / scenario.touch).is_symlink() or not touched.is_file():
        raise UsageError(
            f"{scenario.file}: key build.touch names {scenario.touch!r}, not a file of the "
            f"source tree"
        )
    return touched


def join_index(target: str, sources: list[str]) -> BuildOutcome:
    """Join the pushed images `sources` into the index `target` with `imagetools create`.

    Returns the timed outcome: ok with the digest of the index pushed ('' when buildx
    did not print it), or failed with failure class `merge` and the error's tail.
    """
    t0 = time.monotonic()
    try:
        digest = docker.imagetools_create(target, sources)
    except ArchbenchError as exc:
        return BuildOutcome(
            "failed",
            time.monotonic() - t0,
            target,
            failure_class="merge",
            log_tail=str(exc)[-LOG_TAIL_CHARS:],
        )
    # The digest buildx pushed, not the tag's: another run may move the tag meanwhile.
    return BuildOutcome("ok", time.monotonic() - t0, target, digest=digest)


def _record_exits(
    stack: contextlib.ExitStack,
) -> tuple[list[acct.Session | taskstats.Session], list[str]]:
    """Start recording the processes that end, on `stack`: taskstats where it works,
    else process accounting. Return the session (none when neither can run) and the
    notes an attribution of its records carries (why taskstats was not used, and
    accounting's 10 ms truncation)."""
    try:
        return [stack.enter_context(taskstats.listening())], []
    except taskstats.TaskstatsUnavailable as exc:
        why = [f"taskstats unavailable: {exc}"]
    try:
        return [stack.enter_context(acct.accounting())], [*why, acct.TRUNCATED]
    except acct.AccountingUnavailable as exc:
        return [], [*why, str(exc)]


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
