import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from bench.errors import SourceUnavailable
from bench.scenarios import sources
from bench.scenarios.sources import Fetch


def tarball(path: Path, files: dict[str, bytes], top: str = "proj-1.0") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def deb(path: Path, data_tar: bytes) -> Path:
    def member(name: str, body: bytes) -> bytes:
        head = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        return head + body + (b"\n" if len(body) % 2 else b"")

    path.write_bytes(
        b"!<arch>\n"
        + member("debian-binary", b"2.0\n")
        + member("control.tar.xz", b"x")
        + member("data.tar.xz", data_tar)
    )
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_verifies_and_caches(tmp_path):
    src = tarball(tmp_path / "p.tar.gz", {"a.c": b"int a;"})
    item = Fetch(src.as_uri(), sha(src))
    cache = tmp_path / "cache"
    first = sources.fetch(item, cache)
    assert first.read_bytes() == src.read_bytes()
    src.unlink()  # a second fetch is served from the cache
    assert sources.fetch(item, cache) == first


def test_checksum_mismatch_names_the_url_and_keeps_nothing(tmp_path):
    src = tarball(tmp_path / "p.tar.gz", {"a.c": b"int a;"})
    item = Fetch(src.as_uri(), "0" * 64)
    with pytest.raises(SourceUnavailable) as exc:
        sources.fetch(item, tmp_path / "cache")
    assert src.as_uri() in str(exc.value) and "0" * 64 in str(exc.value)
    assert not list((tmp_path / "cache").rglob("p.tar.gz"))


def test_failed_download_names_the_url(tmp_path):
    url = "http://127.0.0.1:9/nothing-listens-here.tar.gz"
    with pytest.raises(SourceUnavailable) as exc:
        sources.fetch(Fetch(url, "0" * 64), tmp_path / "cache")
    assert str(exc.value).startswith(f"cannot download {url}: ")
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))


def test_materialize_strips_overlays_and_unpacks_debs(tmp_path):
    main = tarball(tmp_path / "p.tar.gz", {"src/a.c": b"int a;", "Makefile": b"all:\n"})
    payload = tmp_path / "payload.tar.xz"
    with tarfile.open(payload, "w:xz") as tar:
        info = tarfile.TarInfo("./bin/tool")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"tool"))
    package = deb(tmp_path / "tool_1_arm64.deb", payload.read_bytes())
    local = tmp_path / "local"
    local.mkdir()
    (local / "Makefile").write_text("all: patched\n")
    tree = sources.materialize(
        Fetch(main.as_uri(), sha(main), strip=1),
        local,
        (Fetch(package.as_uri(), sha(package), dest="payload/tool-arm64.tar.xz", deb_data=True),),
        cache=tmp_path / "cache",
    )
    assert (tree / "src" / "a.c").read_bytes() == b"int a;"
    assert (tree / "Makefile").read_text() == "all: patched\n"
    assert (tree / "payload" / "tool-arm64.tar.xz").read_bytes() == payload.read_bytes()
    again = sources.materialize(
        Fetch(main.as_uri(), sha(main), strip=1),
        local,
        (Fetch(package.as_uri(), sha(package), dest="payload/tool-arm64.tar.xz", deb_data=True),),
        cache=tmp_path / "cache",
    )
    assert again == tree


def test_tarball_members_cannot_escape(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("top/../../outside")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(SourceUnavailable):
        sources.materialize(Fetch(evil.as_uri(), sha(evil), strip=1), None, (), tmp_path / "c")
    assert not (tmp_path / "outside").exists()


def test_not_a_deb_is_a_clear_error():
    with pytest.raises(ValueError, match="not a Debian package"):
        sources.deb_data_member(b"PK\x03\x04")
