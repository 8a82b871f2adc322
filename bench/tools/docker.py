"""Typed wrapper over the docker CLI and its buildx plugin (build, imagetools, run)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import CommandFailed, CommandTimeout, EngineUnavailable
from bench.tools import buildtrace, proc, registry
from bench.tools.buildtrace import BuildTrace

DOCKER = "docker"


@dataclass(frozen=True)
class EngineInfo:
    """What `docker info` says of the engine."""

    server_version: str
    containerd_store: bool
    registry_mirrors: tuple[str, ...]
    insecure_registries: tuple[str, ...]


@dataclass(frozen=True)
class BuildResult:
    """A finished `docker buildx build`."""

    completed: proc.Completed
    metadata: dict[str, Any]
    trace: BuildTrace

    @property
    def digest(self) -> str:
        """The pushed image digest (an index or a manifest), or '' when unknown."""
        return str(self.metadata.get("containerimage.digest", ""))

    @property
    def built_on(self) -> str:
        """The builder and node that ran the build, `builder/node`, as buildx's own
        metadata names them (`buildx.build.ref` is builder/node/ref), or ''."""
        return built_on(self.metadata)


def built_on(metadata: Mapping[str, Any]) -> str:
    """Return `builder/node` of buildx's `buildx.build.ref` in a build's metadata
    (builder/node/ref), or '' when the metadata does not say."""
    parts = str(metadata.get("buildx.build.ref", "")).split("/")
    return "/".join(parts[:2]) if len(parts) == 3 and all(parts) else ""


def engine_info(timeout: float = 20) -> EngineInfo:
    """Return the engine's info. Raises EngineUnavailable when it does not answer."""
    try:
        done = proc.run([DOCKER, "info", "--format", "{{json .}}"], timeout=timeout)
    except CommandTimeout as exc:
        raise EngineUnavailable("the Docker engine did not answer `docker info`") from exc
    if not done.ok:
        raise EngineUnavailable(f"the Docker engine does not answer: {done.tail(2)}")
    data = json.loads(done.stdout)
    if data.get("ServerErrors"):
        raise EngineUnavailable(f"the Docker engine does not answer: {data['ServerErrors'][0]}")
    driver_status = {str(k): str(v) for k, v in (data.get("DriverStatus") or [])}
    registry = data.get("RegistryConfig") or {}
    mirrors = tuple(registry.get("Mirrors") or ())
    insecure = tuple(registry.get("InsecureRegistryCIDRs") or ()) + tuple(
        name
        for name, cfg in (registry.get("IndexConfigs") or {}).items()
        if not cfg.get("Secure", True)
    )
    return EngineInfo(
        server_version=str(data.get("ServerVersion", "")),
        containerd_store=driver_status.get("driver-type") == "io.containerd.snapshotter.v1",
        registry_mirrors=mirrors,
        insecure_registries=insecure,
    )


def buildx_version(timeout: float = 20) -> str:
    """Return `docker buildx version`'s line, or '' when buildx is missing."""
    done = proc.run([DOCKER, "buildx", "version"], timeout=timeout)
    return done.stdout.strip() if done.ok else ""


def buildkit_version(builder: str | None = None, timeout: float = 30) -> str:
    """Return the BuildKit version of `builder` (default: the current one), or ''."""
    argv = [DOCKER, "buildx", "inspect"] + ([builder] if builder else [])
    done = proc.run(argv, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.strip().lower().startswith("buildkit version:"):
            return line.split(":", 1)[1].strip()
    return ""


def containerd_version(timeout: float = 20) -> str:
    """Return `containerd --version`'s line, or '' when it is not on PATH."""
    if shutil.which("containerd") is None:
        return ""
    return proc.run(["containerd", "--version"], timeout=timeout).stdout.strip()


def client_version(timeout: float = 20) -> str:
    """Return the docker client's version string."""
    done = proc.run([DOCKER, "version", "--format", "{{.Client.Version}}"], timeout=timeout)
    return done.stdout.strip()


def build(
    context: Path,
    *,
    platforms: Sequence[str],
    tag: str,
    timeout: float,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    push: bool = True,
    no_cache_filter: Sequence[str] = (),
    builder: str | None = None,
    log_path: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    file: Path | None = None,
    no_cache: bool = False,
    secrets: Sequence[str] = (),
    ssh: Sequence[str] = (),
    oci_archive: Path | None = None,
    context_name: str | None = None,
) -> BuildResult:
    """Run `docker buildx build` on `context` and return its result.

    `context_name` builds on that docker context's engine (a build node: buildx 0.13
    refuses a context's name as `--builder` and wants `docker --context NAME buildx`);
    `file` is the Dockerfile when it is not `context/Dockerfile`; `no_cache` runs every
    step; `secrets` and `ssh` are buildx's --secret and --ssh values, passed as given.

    With `push`, the image is pushed as `tag`, or with `oci_archive` written there as an
    OCI archive for the caller to push (a node that cannot reach the registry); without,
    the build result stays in the build cache only (used to provision a toolchain stage).
    Raises CommandTimeout on timeout; a non-zero exit is returned, not raised, so the
    caller can classify it.
    """
    meta = context / f".metadata-{os.getpid()}.json"
    argv: list[str] = [
        DOCKER,
        *(["--context", context_name] if context_name else []),
        "buildx",
        "build",
        "--progress=rawjson",
        "--platform",
        ",".join(platforms),
        "--metadata-file",
        str(meta),
    ]
    if builder:
        argv += ["--builder", builder]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    if target:
        argv += ["--target", target]
    for stage in no_cache_filter:
        argv += ["--no-cache-filter", stage]
    if file is not None:
        argv += ["--file", str(file)]
    if no_cache:
        argv.append("--no-cache")
    for value in secrets:
        argv += ["--secret", value]
    for value in ssh:
        argv += ["--ssh", value]
    if push and oci_archive is not None:
        argv += ["--output", f"type=oci,dest={oci_archive},name={tag}"]
    elif push:
        argv += ["--output", f"type=image,name={tag},push=true"]
    argv.append(str(context))
    done = proc.run(argv, timeout=timeout, log_path=log_path, on_line=on_line)
    metadata: dict[str, Any] = {}
    if meta.exists():
        try:
            metadata = json.loads(meta.read_text())
        finally:
            meta.unlink()
    trace = buildtrace.parse(done.stderr)
    if push and done.ok and oci_archive is None:
        own = _buildkit_pushed(trace.text, tag)
        if own and own != metadata.get("containerimage.digest"):
            # buildx's docker driver then pushes the engine's local image of the same
            # name "with docker", and reports that digest; a concurrent build of the same
            # tag may have replaced the local image in between. What this build made is
            # what BuildKit pushed.
            metadata["archbench.docker-push-digest"] = metadata.get("containerimage.digest", "")
            metadata["containerimage.digest"] = own
    if push and not done.ok and oci_archive is None:
        repaired = _repair_moby_push(trace.text, tag)
        if repaired:
            metadata.setdefault("containerimage.digest", repaired)
            metadata["archbench.push-repaired"] = True
            done = proc.Completed(done.argv, 0, done.stdout, done.stderr, done.seconds)
    return BuildResult(done, metadata, trace)


_PUSHED = re.compile(r"pushing manifest for (\S+)@(sha256:[0-9a-f]{64})(?: [0-9.]+s)? done")


def _buildkit_pushed(text: str, tag: str) -> str:
    """Return the digest BuildKit itself pushed as `tag` (its first push line), or ''."""
    for m in _PUSHED.finditer(text):
        if m.group(1) == tag:
            return m.group(2)
    return ""


def _repair_moby_push(text: str, tag: str) -> str:
    """Repair the one known push race of buildx's docker driver; return the digest or ''.

    With the containerd image store, buildx 0.13 pushes twice: BuildKit pushes the index,
    then "pushing ... with docker" pushes it again, PUTting several manifests under the
    same tag at once. distribution 2.8's filesystem store does not write tag links
    atomically, so a concurrent HEAD can read a half-written link and answer 500, which
    fails the build after BuildKit's push had completed, leaving the tag on whichever
    manifest came last. When that is the only failure, the tag is pointed back at the
    index BuildKit pushed.
    """
    if "with docker" not in text or "500 Internal Server Error" not in text:
        return ""
    pushed = [m for m in _PUSHED.finditer(text) if m.group(1) == tag]
    if not pushed:
        return ""
    digest = pushed[-1].group(2)
    repo = tag.rsplit(":", 1)[0]
    registry.retag(repo, digest, tag.rsplit(":", 1)[1])
    return digest


_JOINED = re.compile(r"pushing (sha256:[0-9a-f]{64}) to (\S+)")


def imagetools_create(target: str, sources: Sequence[str], timeout: float = 120) -> str:
    """Join `sources` (tags or digests) into one index pushed as `target`.

    Returns the digest of the index pushed, read from buildx's progress (not from the
    tag afterwards: another run may move the tag in between), or '' when buildx did not
    print it. Raises CommandFailed when buildx refuses.
    """
    done = proc.run(
        [DOCKER, "buildx", "imagetools", "create", "--progress", "plain", "-t", target, *sources],
        timeout=timeout,
        check=True,
    )
    text = done.stderr + done.stdout
    pushed = [m.group(1) for m in _JOINED.finditer(text) if m.group(2) == target]
    return pushed[-1] if pushed else ""


def imagetools_inspect_raw(ref: str, timeout: float = 60) -> dict[str, Any]:
    """Return the raw manifest or index of `ref` as JSON. Raises CommandFailed."""
    done = proc.run(
        [DOCKER, "buildx", "imagetools", "inspect", "--raw", ref], timeout=timeout, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_image(
    ref: str,
    platform: str,
    *,
    timeout: float = 120,
    args: Sequence[str] = (),
    pull: str = "missing",
) -> proc.Completed:
    """Run `ref` once for `platform` with its own entrypoint and CMD; remove the container."""
    return proc.run(
        [DOCKER, "run", "--rm", "--pull", pull, "--platform", platform, ref, *args], timeout=timeout
    )


def image_import(tarball: Path, platform: str, tag: str, timeout: float = 600) -> None:
    """`docker import` a root file system tarball as `tag` for `platform`."""
    proc.run(
        [DOCKER, "import", "--platform", platform, str(tarball), tag], timeout=timeout, check=True
    )


def push(tag: str, timeout: float = 600) -> None:
    """Push `tag`. Raises CommandFailed."""
    proc.run([DOCKER, "push", tag], timeout=timeout, check=True)


def image_exists(ref: str, timeout: float = 30) -> bool:
    """Return whether the engine's image store holds `ref`."""
    return proc.run([DOCKER, "image", "inspect", ref], timeout=timeout).ok


def containers_with_label(label: str, timeout: float = 30) -> list[str]:
    """Return ids of all containers (running or not) that carry `label`."""
    done = proc.run([DOCKER, "ps", "-aq", "--filter", f"label={label}"], timeout=timeout)
    return done.stdout.split() if done.ok else []


def remove_containers(ids: Sequence[str], timeout: float = 60) -> None:
    """Force-remove the containers `ids` (nothing when empty)."""
    if ids:
        with contextlib.suppress(CommandFailed):
            proc.run([DOCKER, "rm", "-f", *ids], timeout=timeout, check=True)


def imagetools_digest(ref: str, timeout: float = 60) -> str:
    """Return the digest of the manifest or index `ref` names in its registry.

    Raises CommandFailed when the registry does not know `ref`.
    """
    done = proc.run(
        [DOCKER, "buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}"],
        timeout=timeout,
        check=True,
    )
    return str(json.loads(done.stdout).get("digest", ""))


_MOUNT_ID = re.compile(r'^Description:\s+cached mount .* with id "/?(?P<id>[^"]+)"$')


def cache_mounts(prefix: str, timeout: float = 120) -> dict[str, list[str]]:
    """Return {cache mount id: BuildKit record ids} of the default builder's cache
    mounts whose id starts with `prefix` (read from `docker buildx du --verbose`)."""
    done = proc.run([DOCKER, "buildx", "du", "--verbose"], timeout=timeout)
    found: dict[str, list[str]] = {}
    record = ""
    for line in done.stdout.splitlines():
        if line.startswith("ID:"):
            record = line.split(":", 1)[1].strip()
            continue
        match = _MOUNT_ID.match(line.strip())
        if match and record and match["id"].startswith(prefix):
            found.setdefault(match["id"], []).append(record)
    return found


def prune_cache_records(record_ids: Sequence[str], timeout: float = 300) -> None:
    """Remove the BuildKit cache records `record_ids`. Raises CommandFailed."""
    for record in record_ids:
        proc.run(
            [DOCKER, "buildx", "prune", "--force", "--filter", f"id={record}"],
            timeout=timeout,
            check=True,
        )


def engine_steps(engine: Sequence[int]) -> list[int]:
    """Return the pids of the runc processes running now as children of the `engine`
    pids: build steps in progress (BuildKit runs each RUN step through runc)."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "name", "ppid"]):
        if process.info["name"] == "runc" and process.info["ppid"] in engine:
            found.append(int(process.info["pid"]))
    return found


def engine_pids() -> list[int]:
    """Return the pids of the running dockerd processes (the engine whose BuildKit starts
    each RUN step's runc), read from the process table; [] when none runs."""
    import psutil

    pids = []
    for process in psutil.process_iter(["pid", "name"]):
        if process.info["name"] == "dockerd":
            pids.append(int(process.info["pid"]))
    return pids
