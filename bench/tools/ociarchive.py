"""Push an OCI image archive (an OCI layout as a tar, BuildKit's `type=oci` output) to a
registry from this host: how a remote node's build reaches a registry it cannot."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import ArchbenchError
from bench.tools import registry

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)


class ArchiveInvalid(ArchbenchError):
    """An OCI archive that is not a whole OCI layout (a blob missing, or not matching
    its digest, or an index.json that names no image)."""


def _blob_reader(archive: tarfile.TarFile) -> Callable[[str], bytes]:
    names = {m.name.lstrip("./"): m for m in archive.getmembers() if m.isfile()}

    def read(digest: str) -> bytes:
        algo, _, hexpart = digest.partition(":")
        member = names.get(f"blobs/{algo}/{hexpart}")
        if member is None:
            raise ArchiveInvalid(f"the archive lacks blob {digest}")
        handle = archive.extractfile(member)
        assert handle is not None
        data = handle.read()
        if algo != "sha256" or hashlib.sha256(data).hexdigest() != hexpart:
            raise ArchiveInvalid(f"blob {digest} in the archive does not match its digest")
        return data

    return read


def top_descriptor(index_json: bytes) -> dict[str, Any]:
    """Return the one image descriptor an archive's index.json names (BuildKit writes
    exactly one: the image's index or manifest). Raises ArchiveInvalid otherwise."""
    try:
        doc = json.loads(index_json)
        (top,) = doc["manifests"]
        if not isinstance(top, dict) or "digest" not in top or "mediaType" not in top:
            raise ValueError
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveInvalid("index.json does not name exactly one image") from exc
    return top


def push(archive_path: Path, tag: str, timeout: float = 600) -> str:
    """Push the image in the OCI archive at `archive_path` as `tag` (HOST:PORT/REPO:TAG,
    plain HTTP, as archbench's registry serves): each blob the registry lacks, each
    child manifest by digest, then the image itself under the tag.

    Returns the digest pushed (the archive's own: nothing is rewritten). Raises
    ArchiveInvalid for a damaged archive, RegistryUnavailable when the registry refuses.
    """
    host, repo, _ = registry.split_ref(tag)
    with tarfile.open(archive_path) as archive:
        read = _blob_reader(archive)
        member = archive.extractfile("index.json")
        if member is None:
            raise ArchiveInvalid(f"{archive_path} has no index.json")
        top = top_descriptor(member.read())

        def send(descriptor: dict[str, Any], reference: str) -> None:
            digest, media = str(descriptor["digest"]), str(descriptor["mediaType"])
            raw = read(digest)
            if media in INDEX_TYPES:
                for child in json.loads(raw).get("manifests", []):
                    send(child, str(child["digest"]))
            elif media in MANIFEST_TYPES:
                body = json.loads(raw)
                for blob in [body["config"], *body.get("layers", [])]:
                    d = str(blob["digest"])
                    if not registry.has_blob(host, repo, d):
                        registry.put_blob(host, repo, d, read(d), timeout=timeout)
            else:
                raise ArchiveInvalid(f"{digest}: not an image manifest or index ({media})")
            sep = "@" if reference.startswith("sha256:") else ":"
            registry.put_manifest(f"{host}/{repo}{sep}{reference}", raw, media)

        send(top, tag.rsplit(":", 1)[1])
        return str(top["digest"])
