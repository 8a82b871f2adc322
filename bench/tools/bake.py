"""Typed wrapper over `docker buildx bake --print`: a bake file's targets resolved."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.tools import proc
from bench.tools.docker import DOCKER


@dataclass(frozen=True)
class BakeTarget:
    """One resolved bake target: what `docker buildx build` would be given."""

    name: str
    context: str
    dockerfile: str
    target: str
    args: tuple[tuple[str, str], ...]
    platforms: tuple[str, ...]


def resolve(file: Path, targets: Sequence[str] = (), timeout: float = 60) -> list[BakeTarget]:
    """Return the targets of the bake `file` (default: its default group) as
    `docker buildx bake --print` resolves them, run from the file's folder so that its
    relative contexts are the file's own.

    Raises UsageError naming the file and buildx's complaint when it does not resolve.
    """
    argv = [DOCKER, "buildx", "bake", "--file", str(file), "--print", *targets]
    done = proc.run(argv, timeout=timeout, cwd=file.parent)
    if not done.ok:
        raise UsageError(f"{file}: docker buildx bake --print failed: {done.tail(3)}")
    try:
        data: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{file}: bake --print gave no JSON ({exc})") from exc
    out = []
    for name, t in sorted((data.get("target") or {}).items()):
        args = t.get("args") or {}
        out.append(
            BakeTarget(
                name=str(name),
                context=str(t.get("context") or "."),
                dockerfile=str(t.get("dockerfile") or "Dockerfile"),
                target=str(t.get("target") or ""),
                args=tuple((str(k), str(v)) for k, v in args.items() if v is not None),
                platforms=tuple(str(p) for p in t.get("platforms") or ()),
            )
        )
    return out
