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
        (
            "ERROR: failed to solve: failed to push 127.0.0.1:5000/archbench/t:cross-arm64: failed"
            ' commit on ref "index-sha256:2068": unexpected status from PUT request to'
            " http://127.0.0.1:5000/v2/archbench/t/manifests/cross-arm64: 400 Bad Request",
            "push-failed",
        ),
        # A registry that is gone is not a refused push (the runner names it `registry`).
        ("failed to push 127.0.0.1:5000/x: dial tcp: connection refused", "network"),
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


def test_a_refused_push_is_retried_once_even_without_retries_and_compile_errors_never():
    from bench.engine.runner import retry_limit

    assert retry_limit("push-failed", 0) == 1
    assert retry_limit("push-failed", 3) == 3
    assert retry_limit("emulator-crash", 0) == 0
    assert retry_limit("emulator-crash", 2) == 2
    assert retry_limit("compile-error", 5) == 0
