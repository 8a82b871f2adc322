"""Fetched sources: upstream tarballs and per-architecture files, downloaded once,
verified by sha256 and cached; each scenario's source tree is assembled from them.

A download that fails or does not match its checksum is a SourceUnavailable naming the
URL, raised before any cell is built, so no half-built cell results from it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bench import inputs, paths
from bench.errors import SourceUnavailable

CACHE_DIR = Path(os.environ.get("ARCHBENCH_SOURCE_CACHE", paths.CACHE_DIR / "sources"))
DOWNLOAD_TIMEOUT_S = 120.0
# Limits on what a scenario may make archbench download and unpack: a source archive far
# beyond them is a mistake or an attack (a decompression bomb), and fails with its URL.
MAX_DOWNLOAD_BYTES = 1 << 30
MAX_UNPACKED_BYTES = 4 << 30
MAX_MEMBERS = 200_000
Say = Callable[[str], None]


@dataclass(frozen=True)
class Fetch:
    """One file fetched from `url`, verified against `sha256`.

    As the scenario's main source (`dest` empty) it is a tarball unpacked as the tree,
    with `strip` leading path components removed. As an extra file it is written to
    `dest` in the tree; with `deb_data` it must be a Debian package, and what is written
    is its data tarball (the files the package installs, as a .tar.* a Dockerfile ADD
    unpacks).
    """

    url: str
    sha256: str
    dest: str = ""
    strip: int = 0
    deb_data: bool = False


def _say_nothing(_: str) -> None:
    pass


def fetch(item: Fetch, cache: Path = CACHE_DIR, say: Say = _say_nothing) -> Path:
    """Return the cached, verified download of `item`, downloading it when missing.

    Raises SourceUnavailable naming the URL when it cannot be downloaded or its sha256
    differs.
    """
    path = cache / item.sha256 / cache_name(item.url)
    if path.is_file() and _sha256(path) == item.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    say(f"downloading {item.url}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(item.url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                    _copy_limited(resp, out, item.url)
            except urllib.error.HTTPError as exc:
                raise SourceUnavailable(
                    f"cannot download {item.url}: HTTP {exc.code} {exc.reason}"
                ) from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise SourceUnavailable(f"cannot download {item.url}: {reason}") from exc
        got = _sha256(Path(tmp))
        if got != item.sha256:
            raise SourceUnavailable(
                f"{item.url}: sha256 is {got}, the scenario expects {item.sha256}"
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def cache_name(url: str) -> str:
    """Return the file name a download of `url` is cached under: its last part, made
    safe (never `..`, a hidden name or a path)."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", url.rstrip("/").rsplit("/", 1)[-1])
    return name.lstrip(".") or "download"


def _copy_limited(resp: Any, out: BinaryIO, url: str) -> None:
    """Copy a download to `out`, refusing one over MAX_DOWNLOAD_BYTES (by its announced
    length, and by what arrives)."""
    too_big = SourceUnavailable(
        f"cannot download {url}: larger than the {MAX_DOWNLOAD_BYTES} bytes a download may be"
    )
    length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
    if length and length.isdigit() and int(length) > MAX_DOWNLOAD_BYTES:
        raise too_big
    total = 0
    while block := resp.read(1 << 20):
        total += len(block)
        if total > MAX_DOWNLOAD_BYTES:
            raise too_big
        out.write(block)


def copy_tree(src: Path, dst: Path, ignore: Any = None) -> None:
    """Copy the folder `src` to `dst` (merged into an existing one). Symlinks that stay
    inside `src` are followed as before; one that leads out of it is refused.

    Raises SourceUnavailable naming the link.
    """
    if outside := inputs.links_out(src):
        link, target = outside[0]
        raise SourceUnavailable(f"{link} is a symlink leading out of {src} (to {target})")
    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack_tarball(archive: Path, target: Path, strip: int) -> None:
    """Unpack `archive` into `target`, dropping `strip` leading path components.

    Members that would land outside `target` (absolute, `..`, links out) are refused by
    tarfile's `data` filter; hard links are stripped like the names they point to.
    Raises tarfile.TarError for an archive over MAX_MEMBERS members or
    MAX_UNPACKED_BYTES unpacked, and for a hard link whose target is stripped away.
    """
    with tarfile.open(archive) as tar:
        members = []
        for m in check_members(tar):
            parts = Path(m.name).parts[strip:]
            if not parts:
                continue
            m.name = str(Path(*parts))
            if m.islnk():
                link = Path(m.linkname).parts[strip:]
                if not link:
                    raise tarfile.TarError(
                        f"{archive}: hard link {m.name} points into a stripped folder"
                    )
                m.linkname = str(Path(*link))
            members.append(m)
        tar.extractall(target, members=members, filter="data")


def check_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Return the members of `tar`, refusing (tarfile.TarError) more than MAX_MEMBERS of
    them or more than MAX_UNPACKED_BYTES in all, before anything is unpacked."""
    members = []
    total = 0
    for m in tar:
        members.append(m)
        total += max(m.size, 0)
        if len(members) > MAX_MEMBERS:
            raise tarfile.TarError(f"more than {MAX_MEMBERS} members")
        if total > MAX_UNPACKED_BYTES:
            raise tarfile.TarError(
                f"unpacks to more than the {MAX_UNPACKED_BYTES} bytes a source tree may hold"
            )
    return members


def check_image_tarball(data: bytes) -> None:
    """Check a tarball a Dockerfile ADD will unpack into an image (a .deb's data): its
    size limits as for a source tarball, and every member's name and hard link staying
    inside the image (symlinks, absolute ones included, point into the image itself).

    Raises ValueError naming the first bad member.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in check_members(tar):
                hard = m.linkname if m.islnk() else ""
                for what, path in (("member", m.name), ("hard link", hard)):
                    if ".." in Path(path.lstrip("/")).parts:
                        raise ValueError(f"{what} {path!r} leads out of the image root")
                if m.isdev():
                    raise ValueError(f"member {m.name!r} is a device file")
    except tarfile.TarError as exc:
        raise ValueError(f"data tarball: {exc}") from exc


def deb_data_member(deb: bytes) -> tuple[str, bytes]:
    """Return (name, bytes) of the data.tar.* member of a Debian package (an ar archive).

    Raises ValueError when `deb` is not one.
    """
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar header)")
    at = 8
    while at + 60 <= len(deb):
        header = deb[at : at + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        field = header[48:58].decode("ascii", "replace").strip()
        # A size that is not a plain number, or runs past the end, is a damaged package:
        # refused, so that the walk always moves forward and ends.
        if not field.isascii() or not field.isdigit() or at + 60 + int(field) > len(deb):
            raise ValueError(f"damaged Debian package: bad size {field!r} of member {name!r}")
        size = int(field)
        body = deb[at + 60 : at + 60 + size]
        if name.startswith("data.tar"):
            return name, body
        at += 60 + size + (size % 2)
    raise ValueError("Debian package has no data.tar member")


def materialize(
    main: Fetch | None,
    local: Path | None,
    extras: tuple[Fetch, ...],
    cache: Path = CACHE_DIR,
    say: Say = _say_nothing,
) -> Path:
    """Return a folder holding the scenario's source tree, assembling it once.

    The tree is the unpacked `main` tarball (if any), then the `local` folder copied over
    it (if any), then each extra file at its `dest`. It is cached under a key made of
    all of those, so a changed local file makes a new tree.
    """
    h = hashlib.sha256()
    if main is not None:
        h.update(f"main|{main.sha256}|{main.strip}\n".encode())
    if local is not None:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            h.update(f"local|{path.relative_to(local)}\n".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    for e in extras:
        h.update(f"extra|{e.sha256}|{e.dest}|{e.deb_data}\n".encode())
    tree = cache / "trees" / h.hexdigest()[:20]
    if tree.is_dir():
        return tree
    main_file = fetch(main, cache, say) if main is not None else None
    extra_files = [(e, fetch(e, cache, say)) for e in extras]
    tree.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=tree.parent, prefix=".partial-"))
    try:
        if main is not None and main_file is not None:
            try:
                unpack_tarball(main_file, work, main.strip)
            except tarfile.TarError as exc:
                raise SourceUnavailable(f"{main.url}: cannot unpack: {exc}") from exc
        if local is not None:
            copy_tree(local, work)
        for item, path in extra_files:
            try:
                # A symlink of the unpacked tarball must not carry the file elsewhere.
                dest = inputs.inside(work, item.dest)
            except ValueError as exc:
                raise SourceUnavailable(f"{item.url}: dest {exc}") from exc
            dest.parent.mkdir(parents=True, exist_ok=True)
            if item.deb_data:
                try:
                    _, data = deb_data_member(path.read_bytes())
                    check_image_tarball(data)
                except ValueError as exc:
                    raise SourceUnavailable(f"{item.url}: {exc}") from exc
                dest.write_bytes(data)
            else:
                shutil.copyfile(path, dest)
        os.replace(work, tree)
    except (tarfile.TarError, OSError) as exc:
        raise SourceUnavailable(f"cannot unpack the sources into {tree}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tree
