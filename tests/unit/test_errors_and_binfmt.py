import pytest

from bench.errors import classify_failure
from bench.tools.qemu import parse_binfmt


@pytest.mark.parametrize(
    "text,name",
    [
        ("#9 0.2 exec /bin/sh: exec format error", "exec-format-error"),
        ("qemu: uncaught target signal 11 (Segmentation fault) - core dumped", "emulator-crash"),
        ("ERROR: no match for platform in manifest sha256:abc: not found", "platform-mismatch"),
        ("x.c:3:1: error: expected ';' before '}' token", "compile-error"),
        ("something nobody has seen", "unknown"),
    ],
)
def test_known_failure_texts_map_to_named_classes(text, name):
    assert classify_failure(text) == name


def test_parse_binfmt_entry():
    text = (
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n"
        "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
    )
    entry = parse_binfmt("qemu-aarch64", text)
    assert entry.enabled and entry.fix_binary
    assert entry.interpreter.endswith("aarch64-binfmt-P") and entry.flags == "PF"
    disabled = parse_binfmt("qemu-aarch64", "disabled\ninterpreter /x\nflags: P\n")
    assert not disabled.enabled and not disabled.fix_binary
