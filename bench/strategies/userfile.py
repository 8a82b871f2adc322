"""How a strategy builds a team's own Dockerfile: which strategy a build of it for a
platform is (the file decides where its RUN steps run), the buildx options that build
it as written, and each traced step's instruction, line and place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError
from bench.host.facts import Host
from bench.platforms import Platform
from bench.scenarios.dockerfile import (
    Dockerfile,
    DockerfileSpec,
    expand,
    hub_repository,
    instruction_for,
    platform_args,
    vertex_ref,
)
from bench.scenarios.loader import Scenario
from bench.strategies.base import Availability
from bench.tools import registry
from bench.tools.buildtrace import Step

CROSS_HOWTO = (
    "move the compiling stage to `FROM --platform=$BUILDPLATFORM` and build for "
    "$TARGETARCH there (https://docs.docker.com/build/building/multi-platform/#cross-compilation)"
)
REWRITE_REASON = (
    "{name} would mean rewriting the Dockerfile (its stages placed by archbench), and a "
    "Dockerfile scenario is built as it is written"
)


@dataclass(frozen=True)
class Placement:
    """Where the RUN steps of a build's stages run: stage labels on $BUILDPLATFORM and
    on the target platform (only stages that have a RUN)."""

    build: tuple[str, ...]
    target: tuple[str, ...]

    @property
    def strategy(self) -> str:
        """`cross` when some stage runs its RUNs on $BUILDPLATFORM (the xx pattern:
        the artifacts are made there), else `qemu-user` (every RUN on the target)."""
        return "cross" if self.build else "qemu-user"


def spec_of(scenario: Scenario) -> DockerfileSpec:
    """Return the scenario's Dockerfile spec (it must be a dockerfile scenario)."""
    assert scenario.dockerfile is not None, "not a dockerfile scenario"
    return scenario.dockerfile


def placement(parsed: Dockerfile, target: str | None = None) -> Placement:
    """Return where the RUN steps of the stages a build of `target` runs are placed."""
    build: list[str] = []
    on_target: list[str] = []
    for stage in parsed.chain(target):
        if stage.runs:
            (build if parsed.on_build_platform(stage) else on_target).append(stage.label)
    return Placement(tuple(build), tuple(on_target))


def probe(
    strategy: str, scenario: Scenario, platform: Platform, host: Host, base: Availability
) -> Availability:
    """Return whether `strategy` names what a build of the scenario's Dockerfile for
    `platform` is here, given the strategy's own answer `base`.

    The host's platform is native. A foreign one is cross when the file's RUN stages
    include $BUILDPLATFORM ones, else qemu-user. hybrid and qemu-system would need the
    file rewritten, so they are unavailable."""
    spec = spec_of(scenario)
    place = placement(spec.parsed(), spec.target or None)
    if strategy not in ("native", "cross", "qemu-user"):
        return Availability(False, REWRITE_REASON.format(name=strategy))
    if strategy == "native":
        return base
    if platform == host.platform:
        return Availability(
            False, f"{platform.name} is the host's platform: this Dockerfile builds natively there"
        )
    if strategy == "cross" and place.strategy != "cross":
        return Availability(
            False, "this Dockerfile runs every RUN on the target platform", CROSS_HOWTO
        )
    if strategy == "qemu-user" and place.strategy == "cross":
        return Availability(
            False,
            "this Dockerfile makes its artifacts on $BUILDPLATFORM (stages "
            f"{', '.join(place.build)}): its {platform.name} build is cross",
        )
    if not base.available:
        return base
    if strategy == "cross" and place.target:
        # The build-platform stages cross-build; these stages' RUNs still run under
        # qemu-user, so the cell needs an emulator too.
        from bench.strategies.qemu_user import QemuUser

        emulator = QemuUser().probe_platform(platform, host)
        if not emulator.available:
            return emulator
        return Availability(
            True, f"cross (RUN under emulation in stages {', '.join(place.target)})"
        )
    return base


def missing_bases(
    scenario: Scenario, platforms: list[Platform], host: Platform, address: str
) -> list[str]:
    """Return one line per FROM image (and `# syntax=` frontend) of the build that the
    local registry at `address` (Docker Hub's mirror here) does not hold for a platform.
    Images of another registry than Docker Hub are not checked."""
    spec = spec_of(scenario)
    parsed = spec.parsed()
    wanted: dict[str, set[str]] = {}
    values = parsed.arg_defaults()
    for p in platforms:
        for stage in parsed.chain(spec.target or None):
            if stage.parent is not None or stage.base.lower() == "scratch":
                continue
            image = expand(stage.base, {**platform_args(p, host), **values})
            # A stage on $BUILDPLATFORM pulls the host's platform of its base.
            pulled = host.name if parsed.on_build_platform(stage) else p.name
            wanted.setdefault(image, set()).add(pulled)
    if parsed.syntax:
        wanted.setdefault(parsed.syntax, set()).add(host.name)
    out = []
    for image, names in wanted.items():
        repo = hub_repository(image)
        if repo is None:
            continue
        try:
            manifest = registry.get_manifest(f"{address}/{repo}")
        except LookupError:
            out.append(f"{image} (looked up as {address}/{repo})")
            continue
        held = {
            f"{m['platform']['os']}/{m['platform']['architecture']}"
            + (f"/{m['platform']['variant']}" if m["platform"].get("variant") else "")
            for m in manifest.body.get("manifests", [])
            if isinstance(m.get("platform"), dict)
        }
        lacking = sorted(n for n in names if held and n not in held)
        if lacking:
            holds = ", ".join(sorted(held))
            out.append(f"{image} for {', '.join(lacking)} (the mirror holds {holds})")
    return out


def check_bases(
    scenario: Scenario, platforms: list[Platform], host: Platform, address: str
) -> None:
    """Raise UsageError naming each base image the local mirror lacks and how to
    provide it (no registry beyond it can be reached)."""
    missing = missing_bases(scenario, platforms, host, address)
    if missing:
        raise UsageError(
            f"{spec_of(scenario).path}: the local mirror {address} does not hold "
            + "; ".join(missing)
            + ". Provide it with `archbench setup --import ARCHIVE` (an archive from "
            "`docker save IMAGE` or an OCI layout tar, for every platform)"
        )


def buildx_options(scenario: Scenario, cache: str) -> dict[str, Any]:
    """Return the keyword arguments of `docker.build` that build the user's file as it
    is: its own path, target, build args, secrets and ssh; a cold build uses no cache
    at all (every instruction runs, so each is timed)."""
    spec = spec_of(scenario)
    return {
        "file": spec.path,
        "target": spec.target or None,
        "build_args": dict(spec.build_args),
        "no_cache": cache == "cold",
        "secrets": spec.secrets,
        "ssh": spec.ssh,
    }


def instruction_steps(scenario: Scenario, steps: tuple[Step, ...]) -> list[dict[str, Any]]:
    """Return each traced step that stands for a Dockerfile instruction, with the
    instruction's stage, line, text and where it ran (`build` or `target`)."""
    parsed = spec_of(scenario).parsed()
    out = []
    for s in steps:
        ref = vertex_ref(s.name)
        found = instruction_for(parsed, ref) if ref else None
        if found is None:
            continue
        stage, ins = found
        out.append(
            {
                "stage": stage.label,
                "line": ins.line,
                "instruction": ins.keyword + " " + ins.args.split("\n", 1)[0],
                "keyword": ins.keyword,
                "runs_on": "build" if parsed.on_build_platform(stage) else "target",
                "seconds": s.seconds,
                "cached": s.cached,
            }
        )
    return out
