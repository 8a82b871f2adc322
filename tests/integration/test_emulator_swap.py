"""Other QEMU versions from Debian's archive, swapped into binfmt_misc for a while, and the
host's handler put back however the swapping process ends.

The swaps here use s390x, an architecture no shipped scenario builds for, so that they
never change the emulator of someone else's build on a shared host. The proof that the
swapped emulator is the one the kernel runs is a hand-made static s390x ELF (read one byte
from stdin, then exit with argc): while it blocks on stdin, /proc/PID/exe names the
interpreter the kernel started, and its exit code shows the emulator ran it.
"""

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.tools import apt, binfmt, emulators
from tests.conftest import ROOT, need

NAME = "qemu-s390x"
HOST_INTERPRETER = Path("/usr/libexec/qemu-binfmt/s390x-binfmt-P")


def _say(message: str) -> None:
    print(message)


def s390x_program(path: Path) -> Path:
    """Write a static s390x ELF: read(0, sp-8, 1); exit(argc)."""
    base = 0x1000000
    code = bytes.fromhex("a7290000e330fff8ff71a74900010a03e320f00000040a01")
    size = 64 + 56 + len(code)
    ident = b"\x7fELF" + bytes([2, 2, 1, 0]) + bytes(8)
    header = struct.pack(
        ">16sHHIQQQIHHHHHH", ident, 2, 22, 1, base + 120, 64, 0, 0, 64, 56, 1, 0, 0, 0
    )
    segment = struct.pack(">IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    path.write_bytes(header + segment + code)
    path.chmod(0o755)
    return path


def run_through_binfmt(program: Path) -> tuple[str, int]:
    """Exec `program a b` (the kernel picks its interpreter); return the executable the
    kernel started for it and the exit code."""
    child = subprocess.Popen([str(program), "a", "b"], stdin=subprocess.PIPE)
    try:
        exe = ""
        for _ in range(100):
            exe = os.readlink(f"/proc/{child.pid}/exe")
            if exe != str(program):
                break
            time.sleep(0.02)
    finally:
        assert child.stdin is not None
        child.stdin.close()
    return exe, child.wait(timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _hosts_own_s390x_put_aside():
    """These tests set up the s390x handler themselves. A host that registered one (Debian's
    binfmt-support registers every qemu-user-static format when binfmt_misc is mounted at
    install time) has it put aside for this module, and put back exactly afterwards."""
    text = binfmt.read_entry_text(NAME)
    if text is None:
        yield
        return
    original = binfmt.parse_proc_entry(NAME, text)
    binfmt.unregister(NAME)
    try:
        yield
    finally:
        binfmt.unregister(NAME)
        binfmt.register(original)
        assert binfmt.read_entry_text(NAME) == text


@pytest.fixture(scope="module")
def trixie() -> emulators.Emulator:
    need(binfmt.BINFMT_DIR.joinpath("register").exists(), "binfmt_misc mounted")
    need(os.geteuid() == 0, "root, to register binfmt_misc handlers")
    return emulators.resolve("trixie", say=_say)


@pytest.fixture
def host_s390x():
    """Stand in for a host that registered qemu-user-static's s390x handler, as Debian's
    binfmt-support does; none of this host's builds use it. Removed afterwards."""
    need(HOST_INTERPRETER.exists(), "bookworm's qemu-user-static (s390x)")
    assert binfmt.read_entry_text(NAME) is None, "someone registered qemu-s390x here"
    default = binfmt.parse_binfmts_default(NAME, (binfmt.DEFAULTS_DIR / NAME).read_text())
    binfmt.register(default)
    try:
        yield binfmt.read_entry_text(NAME)
    finally:
        binfmt.unregister(NAME)


def test_trixie_is_fetched_checked_and_runs_here(trixie):
    record = apt.package_record(trixie.package, trixie.version)
    assert trixie.sha256 == record["SHA256"]
    assert (trixie.package, trixie.suite, trixie.tag) == ("qemu-user", "trixie", "qemu10.0")
    assert trixie.root is not None and trixie.root.is_relative_to(emulators.CACHE_DIR)
    for target in ("aarch64", "arm", "riscv64", "s390x"):
        binary = trixie.binary(target)
        assert not binary.is_symlink()
        assert emulators.static_binaries(trixie.root)[target] == str(binary)
        version = emulators.measure_version(binary)
        assert version.program == f"qemu-{target}"
        assert version.build == f"Debian {trixie.version}"
        assert trixie.version.split(":")[1].startswith(version.upstream)
    assert trixie.reported == str(emulators.measure_version(trixie.binary("aarch64")))


def test_a_swap_without_a_host_handler_leaves_none(trixie, tmp_path):
    assert binfmt.read_entry_text(NAME) is None
    program = s390x_program(tmp_path / "s390x-argc")
    with binfmt.swapped("s390x", trixie.binary("s390x"), say=_say) as reg:
        entry = binfmt.parse_proc_entry(NAME, binfmt.read_entry_text(NAME) or "")
        assert entry.interpreter == str(trixie.binary("s390x")) == reg.interpreter
        assert entry.flags == "PF"
        exe, code = run_through_binfmt(program)
        assert exe == str(trixie.binary("s390x"))
        assert code == 3  # argv[0], a, b: the P flag keeps argv as given
    assert binfmt.read_entry_text(NAME) is None
    assert not (binfmt.RUN_DIR / f"binfmt-{NAME}.journal").exists()


def test_a_swap_puts_the_host_handler_back_exactly(trixie, host_s390x, tmp_path):
    program = s390x_program(tmp_path / "s390x-argc")
    exe, code = run_through_binfmt(program)
    assert (exe, code) == ("/usr/bin/qemu-s390x-static", 3)
    swap = binfmt.swapped("s390x", trixie.binary("s390x"), say=_say)
    with pytest.raises(RuntimeError, match="build failed"), swap:
        assert run_through_binfmt(program) == (str(trixie.binary("s390x")), 3)
        raise RuntimeError("build failed")
    assert binfmt.read_entry_text(NAME) == host_s390x
    assert run_through_binfmt(program) == ("/usr/bin/qemu-s390x-static", 3)


CHILD = """
import sys, time
from pathlib import Path
from bench.cli import _interrupt
import signal
signal.signal(signal.SIGTERM, _interrupt)
from bench.tools import binfmt
with binfmt.swapped("s390x", Path(sys.argv[1]), say=print):
    print("swapped", flush=True)
    time.sleep(600)
"""


def start_swapping_child(trixie: emulators.Emulator) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(trixie.binary("s390x"))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "swapped"
    entry = binfmt.parse_proc_entry(NAME, binfmt.read_entry_text(NAME) or "")
    assert entry.interpreter == str(trixie.binary("s390x"))
    return child


def test_sigterm_in_a_swapped_cell_restores_the_host_handler(trixie, host_s390x):
    child = start_swapping_child(trixie)
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    assert binfmt.read_entry_text(NAME) == host_s390x
    assert not (binfmt.RUN_DIR / f"binfmt-{NAME}.journal").exists()


def test_sigkill_in_a_swapped_cell_is_repaired_by_the_next_command(
    archbench_cmd, trixie, host_s390x, tmp_path
):
    child = start_swapping_child(trixie)
    child.kill()
    child.wait(timeout=30)
    # Killed: nothing put the host's handler back yet.
    assert binfmt.read_entry_text(NAME) != host_s390x
    assert (binfmt.RUN_DIR / f"binfmt-{NAME}.journal").exists()
    done = subprocess.run(
        [*archbench_cmd, "show", "--results", str(tmp_path / "results")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"restored the host's binfmt_misc handler {NAME}" in done.stderr
    assert f"run {child.pid} ended without putting it back" in done.stderr
    assert binfmt.read_entry_text(NAME) == host_s390x
    assert not (binfmt.RUN_DIR / f"binfmt-{NAME}.journal").exists()


def test_a_waiting_swap_says_so_and_goes_after_the_first(trixie, host_s390x, tmp_path):
    first = start_swapping_child(trixie)
    said: list[str] = []
    try:
        os.kill(first.pid, 0)
        # The first swap holds the lock: a second one waits; end the first after a while.
        killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -TERM {first.pid}"])
        with binfmt.swapped("s390x", Path("/usr/bin/qemu-s390x-static"), say=said.append):
            program = s390x_program(tmp_path / "s390x-argc")
            assert run_through_binfmt(program) == ("/usr/bin/qemu-s390x-static", 3)
        killer.wait(timeout=30)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert said[0].startswith(f"waiting: another archbench run holds {NAME}")
    assert binfmt.read_entry_text(NAME) == host_s390x


def test_the_qemu_user_strategy_swaps_for_the_build_and_puts_back(trixie, host_s390x, tmp_path):
    from bench.platforms import parse_platform
    from bench.strategies.base import BuildSettings
    from bench.strategies.qemu_user import emulation

    s390x, amd64 = parse_platform("linux/s390x"), parse_platform("linux/amd64")
    settings = BuildSettings("127.0.0.1:5000", 1, "debian", 60.0, host=amd64, emulator=trixie)
    program = s390x_program(tmp_path / "s390x-argc")
    with emulation([amd64, s390x], settings):
        assert run_through_binfmt(program) == (str(trixie.binary("s390x")), 3)
    assert binfmt.read_entry_text(NAME) == host_s390x
    host_settings = BuildSettings("127.0.0.1:5000", 1, "debian", 60.0, host=amd64)
    with emulation([s390x], host_settings):
        assert run_through_binfmt(program) == ("/usr/bin/qemu-s390x-static", 3)


@pytest.mark.parametrize(
    ("strategy", "value", "expected"),
    [
        ("qemu-user", "7.2", "matches 2 versions"),
        ("qemu-user", "sid", "not a suite this host's apt reaches"),
        ("qemu-user", "8.1", "no reachable QEMU version matches"),
        ("cross", "host,trixie", "only qemu-user and qemu-system cells take an emulator"),
        ("qemu-user", "../x", "bad --emulator"),
    ],
)
def test_run_refuses_an_emulator_it_cannot_name(archbench_cmd, tmp_path, strategy, value, expected):
    done = subprocess.run(
        [
            *archbench_cmd,
            "run",
            "--strategy",
            strategy,
            "--emulator",
            value,
            "--results",
            str(tmp_path / "results"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
