"""Typed wrapper over `docker context` and over `docker info` asked of one context."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import CommandTimeout, EngineUnavailable
from bench.tools import proc
from bench.tools.docker import DOCKER


@dataclass(frozen=True)
class Context:
    """One docker context: its name, the engine endpoint it names, its description."""

    name: str
    endpoint: str
    description: str = ""


@dataclass(frozen=True)
class NodeEngine:
    """What a context's engine says of itself (`docker info`): the machine it runs on."""

    engine_id: str
    name: str
    architecture: str  # the kernel's, as `uname -m` prints it: x86_64, aarch64
    cpus: int
    memory_bytes: int
    kernel: str
    server_version: str


def create(name: str, endpoint: str, description: str, tls_dir: Path | None = None) -> None:
    """Create the docker context `name` for the engine at `endpoint`; with `tls_dir`, its
    ca.pem, cert.pem and key.pem authenticate a tcp:// endpoint.

    Raises CommandFailed when docker refuses (a context of that name exists, say).
    """
    spec = f"host={endpoint}"
    if tls_dir is not None:
        spec += f",ca={tls_dir / 'ca.pem'},cert={tls_dir / 'cert.pem'},key={tls_dir / 'key.pem'}"
    proc.run(
        [DOCKER, "context", "create", name, "--description", description, "--docker", spec],
        timeout=30,
        check=True,
    )


def remove(name: str) -> None:
    """Remove the docker context `name`. Raises CommandFailed when docker refuses."""
    proc.run([DOCKER, "context", "rm", "--force", name], timeout=30, check=True)


def inspect(name: str) -> Context | None:
    """Return the docker context `name`, or None when there is none. Needs no engine."""
    done = proc.run([DOCKER, "context", "inspect", name], timeout=30)
    if not done.ok:
        return None
    try:
        found = json.loads(done.stdout)
    except ValueError:
        return None
    if not isinstance(found, list) or not found or not isinstance(found[0], dict):
        return None
    return context_of(found[0])


def context_of(doc: dict[str, Any]) -> Context:
    """Return the Context that one object of `docker context inspect`'s list describes."""
    meta = doc.get("Metadata") or {}
    docker_endpoint = (doc.get("Endpoints") or {}).get("docker") or {}
    return Context(
        name=str(doc.get("Name", "")),
        endpoint=str(docker_endpoint.get("Host", "")),
        description=str(meta.get("Description", "")) if isinstance(meta, dict) else "",
    )


def engine(name: str, timeout: float = 20) -> NodeEngine:
    """Return what the engine of context `name` says of itself.

    Raises EngineUnavailable when it does not answer within `timeout` seconds.
    """
    try:
        done = proc.run(
            [DOCKER, "--context", name, "info", "--format", "{{json .}}"], timeout=timeout
        )
    except CommandTimeout as exc:
        raise EngineUnavailable(
            f"node {name}: no answer to `docker info` in {timeout:g} s"
        ) from exc
    if not done.ok:
        raise EngineUnavailable(f"node {name}: {done.tail(1) or 'docker info failed'}")
    return engine_of(name, done.stdout)


def engine_of(name: str, info_json: str) -> NodeEngine:
    """Return the NodeEngine of `docker info --format '{{json .}}'` output.

    Raises EngineUnavailable when the output is not an answering engine's (the client
    prints ServerErrors and no Architecture when the daemon is down).
    """
    try:
        data = json.loads(info_json)
    except ValueError as exc:
        raise EngineUnavailable(f"node {name}: `docker info` printed no JSON") from exc
    if not isinstance(data, dict):
        raise EngineUnavailable(f"node {name}: `docker info` printed no object")
    if data.get("ServerErrors") or not data.get("Architecture"):
        errors = data.get("ServerErrors") or ["no engine answered"]
        raise EngineUnavailable(f"node {name}: {errors[0]}")
    return NodeEngine(
        engine_id=str(data.get("ID", "")),
        name=str(data.get("Name", "")),
        architecture=str(data["Architecture"]),
        cpus=int(data.get("NCPU") or 0),
        memory_bytes=int(data.get("MemTotal") or 0),
        kernel=str(data.get("KernelVersion", "")),
        server_version=str(data.get("ServerVersion", "")),
    )
