"""binfmt_misc registrations read, written and journaled; the per-architecture lock."""

import threading
import time

import pytest

from bench.tools import binfmt
from tests.conftest import DATA

EMU = DATA / "emulators"


def test_a_proc_entry_becomes_the_line_that_registers_it():
    reg = binfmt.parse_proc_entry("qemu-aarch64", (EMU / "proc-qemu-aarch64").read_text())
    assert reg.enabled and reg.flags == "PF" and reg.offset == 0
    assert reg.magic.hex() == "7f454c460201010000000000000000000200b700"
    assert reg.mask.hex() == "ffffffffffffff00fffffffffffffffffeffffff"
    line = reg.line()
    assert line.startswith(":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46\\x02")
    assert line.endswith(":/usr/libexec/qemu-binfmt/aarch64-binfmt-P:PF")
    assert binfmt.parse_line(line) == reg


def test_a_swap_keeps_magic_mask_and_flags_and_adds_f():
    reg = binfmt.parse_proc_entry("qemu-aarch64", (EMU / "proc-qemu-aarch64").read_text())
    new = reg.swapped(binfmt.Path("/cache/qemu-user_1%3a10.0/tree/usr/bin/qemu-aarch64"))
    assert (new.magic, new.mask, new.flags, new.name) == (reg.magic, reg.mask, "PF", reg.name)
    p_only = binfmt.Registration("qemu-x", 0, b"\x7f", b"\xff", "/a", "P", enabled=False)
    swapped = p_only.swapped(binfmt.Path("/b"))
    assert swapped.flags == "PF" and swapped.enabled


def test_debian_defaults_give_the_magic_of_an_unregistered_architecture():
    reg = binfmt.parse_binfmts_default("qemu-s390x", (EMU / "binfmts-qemu-s390x").read_text())
    assert reg.magic.hex() == "7f454c46020201000000000000000000000" + "20016"
    assert reg.mask.hex() == "fffffffffffffffcfffffffffffffffffffeffff"
    assert reg.flags == "PF"
    assert reg.interpreter == "/usr/libexec/qemu-binfmt/s390x-binfmt-P"


def test_an_interpreter_with_a_colon_is_refused():
    reg = binfmt.Registration("qemu-x", 0, b"\x7f", b"\xff", "/cache/q_1:10/qemu-x", "F")
    with pytest.raises(ValueError):
        reg.line()


def test_extension_entries_are_not_taken_for_magic_ones():
    text = "enabled\ninterpreter /usr/bin/python3\nflags: \nextension .pyc\n"
    with pytest.raises(ValueError, match="extension"):
        binfmt.parse_proc_entry("python3.11", text)


def test_disabled_entries_parse_as_disabled():
    text = (EMU / "proc-qemu-aarch64").read_text().replace("enabled", "disabled")
    assert not binfmt.parse_proc_entry("qemu-aarch64", text).enabled


def test_the_journal_round_trips():
    reg = binfmt.parse_proc_entry("qemu-aarch64", (EMU / "proc-qemu-aarch64").read_text())
    text = (EMU / "proc-qemu-aarch64").read_text()
    journal = binfmt.Journal("qemu-aarch64", reg, text, "/cache/qemu-aarch64", 42, 1.5)
    assert binfmt.Journal.from_json(journal.to_json()) == journal
    none = binfmt.Journal("qemu-s390x", None, None, "/cache/qemu-s390x", 42, 1.5)
    assert binfmt.Journal.from_json(none.to_json()) == none


def test_a_shared_holder_waits_for_an_exclusive_one_and_says_so(tmp_path):
    said: list[str] = []
    held = threading.Event()
    release = threading.Event()

    def swapper() -> None:
        with binfmt.arch_lock("s390x", exclusive=True, say=said.append, run_dir=tmp_path):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=swapper)
    thread.start()
    assert held.wait(10)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with binfmt.arch_lock("s390x", exclusive=False, say=said.append, run_dir=tmp_path):
        waited = time.monotonic() - started
    thread.join()
    assert waited >= 0.25
    assert said[0].startswith("waiting: another archbench run holds qemu-s390x")
    assert "swapped its emulator" in said[0]


def test_shared_holders_do_not_wait_for_each_other(tmp_path):
    said: list[str] = []
    with binfmt.arch_lock("s390x", exclusive=False, say=said.append, run_dir=tmp_path):
        with binfmt.arch_lock("s390x", exclusive=False, say=said.append, run_dir=tmp_path):
            pass
        # another architecture's lock is independent
        with binfmt.arch_lock("ppc64le", exclusive=True, say=said.append, run_dir=tmp_path):
            pass
    assert said == []


def test_repair_leaves_a_live_swap_alone(tmp_path):
    said: list[str] = []
    journal = tmp_path / "binfmt-qemu-s390x.journal"
    with binfmt.arch_lock("s390x", exclusive=True, say=said.append, run_dir=tmp_path):
        journal.write_text("{}")
        assert binfmt.repair(say=said.append, run_dir=tmp_path, root=tmp_path / "none") == []
        assert journal.exists()
        journal.unlink()


def test_the_machines_own_architecture_is_never_swapped(tmp_path):
    own = binfmt.host_platform().qemu_name
    swap = binfmt.swapped(own, binfmt.Path("/x"), say=print, root=tmp_path, run_dir=tmp_path)
    with pytest.raises(binfmt.BinfmtSwapFailed, match="this machine's own"), swap:
        pass
    assert list(tmp_path.iterdir()) == []
