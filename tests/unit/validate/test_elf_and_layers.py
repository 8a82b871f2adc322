import io
import shutil
import tarfile
from pathlib import Path

import pytest

from bench.platforms import KNOWN
from bench.validate import layers as imagefs
from bench.validate.elf import ElfFacts, mismatches, read_elf

AMD64, ARM64, ARMV7 = KNOWN["linux/amd64"], KNOWN["linux/arm64"], KNOWN["linux/arm/v7"]


def test_elf_of_this_python_is_x86_64_dynamic():
    facts = read_elf(Path(shutil.which("ls") or "/bin/ls").read_bytes())
    assert facts.machine == "EM_X86_64" and facts.elf_class == 64
    assert facts.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert mismatches(facts, AMD64) == []
    assert "machine is x86-64, expected AArch64" in mismatches(facts, ARM64)


def test_not_elf_is_a_value_error():
    with pytest.raises(ValueError):
        read_elf(b"#!/bin/sh\necho hi\n")


def test_arm_soft_float_and_wrong_interpreter_are_caught():
    soft = ElfFacts(32, True, "EM_ARM", 0x05000200, "/lib/ld-linux.so.3")
    found = mismatches(soft, ARMV7)
    assert any("hard-float" in m for m in found) and any("interpreter" in m for m in found)
    hard = ElfFacts(32, True, "EM_ARM", 0x05000400, "/lib/ld-linux-armhf.so.3")
    assert mismatches(hard, ARMV7) == []


def _layer(files: dict[str, bytes | None], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data or b""))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def blobs(monkeypatch):
    store: dict[str, bytes] = {}
    monkeypatch.setattr(imagefs.registry, "get_blob", lambda _h, _r, d: store[d])
    return store


def _manifest(store, *layers):
    for i, data in enumerate(layers):
        store[f"sha256:{i}"] = data
    return {"layers": [{"digest": f"sha256:{i}"} for i in range(len(layers))]}


def test_top_layer_wins_and_whiteouts_hide(blobs):
    m = _manifest(
        blobs,
        _layer({"usr/bin/x": b"old", "etc/a": b"a"}),
        _layer({"usr/bin/x": b"new", "etc/.wh.a": None}),
    )
    assert imagefs.read_image_file("h", "r", m, "/usr/bin/x") == b"new"
    assert imagefs.read_image_file("h", "r", m, "/etc/a") is None
    assert imagefs.read_image_file("h", "r", m, "/nope") is None


def test_opaque_folder_hides_lower_layers_but_not_its_own(blobs):
    m = _manifest(
        blobs,
        _layer({"opt/d/x": b"1", "opt/d/y": b"1"}),
        _layer({"opt/d/.wh..wh..opq": None, "./opt/d/y": b"2"}),
    )
    assert imagefs.read_image_file("h", "r", m, "/opt/d/x") is None
    assert imagefs.read_image_file("h", "r", m, "/opt/d/y") == b"2"


def test_symlinks_are_followed_across_layers(blobs):
    m = _manifest(
        blobs,
        _layer({"usr/lib/real": b"elf"}),
        _layer({}, {"usr/local/bin/tool": "../../lib/real"}),
    )
    assert imagefs.read_image_file("h", "r", m, "/usr/local/bin/tool") == b"elf"
