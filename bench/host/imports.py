"""`archbench setup --import ARCHIVE`: a base image from an archive (`docker save`, or an
OCI image layout in a tar) copied into the local registry, Docker Hub's mirror here, for
every platform it holds, so that an unmodified `FROM name:tag` resolves."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.scenarios.dockerfile import hub_repository
from bench.tools import registry

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# The annotation `docker save` and OCI layouts put the image's name in.
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass(frozen=True)
class Imported:
    """One image copied into the mirror: its name, where it went, its platforms."""

    name: str
    reference: str
    digest: str
    platforms: tuple[str, ...]


class _Layout:
    """An OCI image layout read from a tar: index.json and blobs/<algo>/<hex>."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        try:
            # Open for the layout's life: blobs are read one by one as they are pushed.
            self.tar = tarfile.open(archive)  # noqa: SIM115
        except (OSError, tarfile.TarError) as exc:
            raise UsageError(f"{archive}: not a readable tar archive ({exc})") from exc
        self.names = set(self.tar.getnames())

    def read(self, name: str) -> bytes:
        member = self.tar.extractfile(name.removeprefix("./"))
        if member is None:
            raise UsageError(f"{self.archive}: {name} is not a file")
        return member.read()

    def blob(self, digest: str) -> bytes:
        algo, _, hexdigest = digest.partition(":")
        name = f"blobs/{algo}/{hexdigest}"
        if name not in self.names:
            raise UsageError(
                f"{self.archive}: blob {digest} is missing (an archive of part of the image?)"
            )
        return self.read(name)

    def index(self) -> dict[str, Any]:
        if "index.json" not in self.names:
            raise UsageError(
                f"{self.archive}: no index.json: not an OCI layout; make the archive with "
                "`docker save IMAGE -o FILE.tar` (Docker 25 or later) or an OCI exporter "
                "(`docker buildx build --output type=oci,dest=FILE.tar`)"
            )
        data: dict[str, Any] = json.loads(self.read("index.json"))
        return data


def _platform(desc: dict[str, Any]) -> str:
    p = desc.get("platform") or {}
    tail = f"/{p['variant']}" if p.get("variant") else ""
    return f"{p.get('os', '?')}/{p.get('architecture', '?')}{tail}"


def import_archive(
    archive: Path, address: str, name: str = "", say: Callable[[str], None] = lambda _m: None
) -> list[Imported]:
    """Copy every image of the archive into the registry at `address` under Docker Hub's
    path (`debian:bookworm` -> `library/debian:bookworm`), every platform it holds, and
    return what was imported. `name` names an image whose archive does not.

    Raises UsageError naming the archive and what is wrong with it.
    """
    layout = _Layout(archive)
    try:
        return _import(layout, address, name, say)
    finally:
        layout.tar.close()


def _import(layout: _Layout, address: str, name: str, say: Callable[[str], None]) -> list[Imported]:
    archive = layout.archive
    out = []
    for desc in layout.index().get("manifests", []):
        annotations = desc.get("annotations") or {}
        ref = name or next((annotations[a] for a in NAME_ANNOTATIONS if a in annotations), "")
        if not ref or ":" not in ref.rsplit("/", 1)[-1]:
            raise UsageError(
                f"{archive}: an image has no name:tag in the archive; give it with "
                "--import-name NAME:TAG"
            )
        repo_ref = hub_repository(ref.removeprefix("docker.io/"))
        if repo_ref is None:
            raise UsageError(f"{archive}: {ref} is not a Docker Hub name the mirror serves")
        repo, _, tag = repo_ref.rpartition(":")
        platforms, raw = _push(layout, desc, address, repo, say)
        digest = registry.put_manifest(
            f"{address}/{repo}:{tag}", raw, str(desc.get("mediaType", INDEX_TYPES[0]))
        )
        say(f"imported {ref} as {address}/{repo}:{tag} ({', '.join(platforms)})")
        out.append(Imported(ref, f"{address}/{repo}:{tag}", digest, tuple(platforms)))
    if not out:
        raise UsageError(f"{archive}: the archive's index.json lists no image")
    return out


def _push(
    layout: _Layout, desc: dict[str, Any], address: str, repo: str, say: Callable[[str], None]
) -> tuple[list[str], bytes]:
    """Push the blobs and manifests under `desc` (an index or a manifest) into `repo`,
    children first; return the platforms of its image manifests and the manifest bytes
    to tag. An index entry whose manifest the archive lacks (`docker save` keeps only
    the platforms the engine had) is left out of the index pushed."""
    raw = layout.blob(str(desc["digest"]))
    body = json.loads(raw)
    media = str(desc.get("mediaType") or body.get("mediaType", ""))
    if media in INDEX_TYPES or "manifests" in body:
        platforms: list[str] = []
        kept = []
        for child in body.get("manifests", []):
            algo, _, hexdigest = str(child["digest"]).partition(":")
            if f"blobs/{algo}/{hexdigest}" not in layout.names:
                say(f"  {_platform(child)}: not in the archive, left out")
                continue
            kind = (child.get("annotations") or {}).get("vnd.docker.reference.type", "")
            found, _ = _push(layout, child, address, repo, say)
            kept.append(child)
            if not kind and found:
                platforms.append(_platform(child) if child.get("platform") else found[0])
        if len(kept) != len(body.get("manifests", [])):
            raw = json.dumps({**body, "manifests": kept}).encode()
        return platforms, raw
    for blob in [body["config"], *body.get("layers", [])]:
        digest = str(blob["digest"])
        if not registry.has_blob(address, repo, digest):
            registry.put_blob(address, repo, digest, layout.blob(digest))
    registry.put_manifest(f"{address}/{repo}@{desc['digest']}", raw, media)
    config = json.loads(layout.blob(str(body["config"]["digest"])))
    variant = f"/{config['variant']}" if config.get("variant") else ""
    return [f"{config.get('os', '?')}/{config.get('architecture', '?')}{variant}"], raw
