"""A team's own Dockerfile as a scenario (`kind = "dockerfile"`, or `run --dockerfile`):
built as it is written, from its own context, never rewritten."""

from __future__ import annotations

import re
from pathlib import Path

from bench import inputs
from bench.errors import UsageError
from bench.platforms import Platform, parse_platform
from bench.scenarios import dockerfile as dfparse
from bench.scenarios.loader import Artifact, Scenario

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# buildx's --secret and --ssh values: comma-separated key=value pairs or an id alone.
_SECRET = re.compile(r"^[A-Za-z0-9_.=,/:~+-]+$")


def build_arg(text: str) -> tuple[str, str]:
    """Return (KEY, VALUE) of a `K=V` build argument. Raises UsageError naming it."""
    key, eq, value = text.partition("=")
    if not eq or not _ARG_NAME.match(key):
        raise UsageError(f"bad --build-arg {text!r}; expected NAME=VALUE with NAME of A-Z, 0-9, _")
    if inputs.has_control(value):
        raise UsageError(f"bad --build-arg {text!r}; the value holds a control character")
    return key, value


def pass_through(flag: str, text: str) -> str:
    """Return a --secret or --ssh value (`id=x,src=path`, `default`) when it is one word
    of the characters buildx takes. Raises UsageError naming it."""
    if not _SECRET.match(text):
        raise UsageError(
            f"bad {flag} {text!r}; expected buildx's form, e.g. id=npmrc,src=$HOME/.npmrc "
            "or default (letters, digits, . _ = , / : ~ + -)"
        )
    return text


def scenario_name(path: Path, target: str) -> str:
    """Return a slug naming a Dockerfile scenario: its context folder's name and the
    target, e.g. `df-myapp-runtime`."""
    raw = f"df-{path.resolve().parent.name}" + (f"-{target}" if target else "")
    cleaned = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")[:60].strip("-")
    return inputs.slug(cleaned or "df")


def dockerfile_scenario(
    path: Path,
    *,
    context: Path | None = None,
    target: str = "",
    build_args: tuple[tuple[str, str], ...] = (),
    platforms: tuple[Platform, ...] = (),
    name: str = "",
    description: str = "",
    artifacts: tuple[str, ...] = (),
    smoke_command: tuple[str, ...] = (),
    smoke_expect: str = "",
    touch: str = "",
    secrets: tuple[str, ...] = (),
    ssh: tuple[str, ...] = (),
) -> Scenario:
    """Return the scenario that builds the Dockerfile at `path` as it is.

    Raises UsageError naming the value when the file or context is missing, the target
    names no stage, or an artifact or touch path is not one an image or context holds.
    """
    path = path.resolve()
    if not path.is_file():
        raise UsageError(f"no Dockerfile at {str(path)!r}")
    ctx = (context or path.parent).resolve()
    if not ctx.is_dir():
        raise UsageError(f"bad --context {str(ctx)!r}: not a folder")
    spec = dfparse.DockerfileSpec(path, ctx, target, build_args, secrets, ssh)
    parsed = spec.parsed()
    if target:
        parsed.stage(target)  # raises naming the valid stages
    for art in artifacts:
        try:
            inputs.image_path(art)
        except ValueError as exc:
            raise UsageError(f"{path}: artifact {exc}") from None
    if touch:
        try:
            inputs.relative_path(touch)
            touched = inputs.inside(ctx, touch)
        except ValueError as exc:
            raise UsageError(f"{path}: touch {exc}") from None
        if not touched.is_file():
            raise UsageError(f"{path}: touch names {touch!r}, not a file of the context {ctx}")
    return Scenario(
        name=name or scenario_name(path, target),
        description=description or f"the Dockerfile {path}",
        file=path,
        source_dir=ctx,
        platforms=platforms or tuple(parse_platform(p) for p in DEFAULT_PLATFORMS),
        base_image="",
        packages=(),
        build_command="",
        artifacts=tuple(Artifact("", a) for a in artifacts),
        smoke_command=smoke_command,
        smoke_expect=smoke_expect,
        touch=touch,
        touch_comment="# archbench warm build {nonce}",
        kind="dockerfile",
        dockerfile=spec,
    )


def bake_scenarios(
    file: Path,
    targets: tuple[str, ...] = (),
    platforms: tuple[Platform, ...] = (),
    secrets: tuple[str, ...] = (),
    ssh: tuple[str, ...] = (),
) -> list[Scenario]:
    """Return one dockerfile scenario per target of the bake `file` (resolved by
    `docker buildx bake --print`): its context, Dockerfile, target stage, args and
    platforms (`platforms`, when given, over the target's own). Raises UsageError naming
    a bad file, target or value."""
    from bench.tools import bake

    if not file.is_file():
        raise UsageError(f"no bake file at {str(file)!r}")
    found = []
    for t in bake.resolve(file.resolve(), targets):
        if "://" in t.context or t.context.startswith("git@"):
            raise UsageError(
                f"{file}: target {t.name}: a remote context ({t.context}) "
                "cannot be benchmarked; give a local folder"
            )
        context = (file.resolve().parent / t.context).resolve()
        own = tuple(parse_platform(p) for p in t.platforms)
        found.append(
            dockerfile_scenario(
                context / t.dockerfile,
                context=context,
                target=t.target,
                build_args=tuple(build_arg(f"{k}={v}") for k, v in t.args),
                platforms=platforms or own,
                name=scenario_name(context / t.dockerfile, t.name).replace("df-", "bake-", 1),
                description=f"bake target {t.name} of {file}",
                secrets=secrets,
                ssh=ssh,
            )
        )
    if not found:
        raise UsageError(f"{file}: no bake target to build")
    return found
