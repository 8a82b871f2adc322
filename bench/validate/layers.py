"""Read a file out of an image's layers in the registry, without running anything.

Layers apply bottom to top; a whiteout (`.wh.NAME`) deletes NAME from the layers below
and an opaque marker (`.wh..wh..opq`) empties its folder below. Reading top-down, the
first layer that either holds the path or hides it decides.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from typing import Any

from bench.tools import registry

_MAX_LINKS = 8


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name.removeprefix("./").lstrip("/"))


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _layer_lookup(tar: tarfile.TarFile, path: str) -> tuple[str, bytes | str | None]:
    """Return ('file', bytes), ('link', target), ('hidden', None) or ('absent', None)."""
    hidden = False
    member_for_path: tarfile.TarInfo | None = None
    by_name: dict[str, tarfile.TarInfo] = {}
    parent, base = posixpath.split(path)
    ancestors = set(_ancestors(path))
    for member in tar:
        name = _norm(member.name)
        by_name[name] = member
        folder, leaf = posixpath.split(name)
        if leaf == ".wh..wh..opq" and folder in ancestors | {parent}:
            hidden = True
        elif leaf.startswith(".wh."):
            target = posixpath.join(folder, leaf[4:])
            if target == path or target in ancestors:
                hidden = True
        elif name == path:
            member_for_path = member
    if member_for_path is not None:
        m = member_for_path
        if m.issym():
            target = m.linkname
            if not target.startswith("/"):
                target = posixpath.normpath(posixpath.join(parent, target))
            return "link", target
        if m.islnk():
            m = by_name.get(_norm(m.linkname), m)
        if m.isfile():
            f = tar.extractfile(m)
            return "file", f.read() if f is not None else b""
        return "hidden", None  # a folder or device where a file was expected
    return ("hidden", None) if hidden else ("absent", None)


def read_image_file(host: str, repo: str, manifest: dict[str, Any], path: str) -> bytes | None:
    """Return the bytes of `path` in the image `manifest` of `host/repo`, or None.

    Follows symbolic links inside the image. Raises RegistryUnavailable or LookupError
    from the registry, ValueError for a layer that is not a (gzip) tarball.
    """
    layers = [layer["digest"] for layer in manifest.get("layers", [])]
    cache: dict[str, bytes] = {}
    want = _norm(path)
    for _ in range(_MAX_LINKS):
        for digest in reversed(layers):
            if digest not in cache:
                cache[digest] = registry.get_blob(host, repo, digest)
            try:
                with tarfile.open(fileobj=io.BytesIO(cache[digest]), mode="r:*") as tar:
                    kind, value = _layer_lookup(tar, want)
            except tarfile.TarError as exc:
                raise ValueError(f"layer {digest} is not a readable tarball: {exc}") from exc
            if kind == "file":
                assert isinstance(value, bytes)
                return value
            if kind == "link":
                assert isinstance(value, str)
                want = _norm(value)
                break
            if kind == "hidden":
                return None
        else:
            return None
    return None
