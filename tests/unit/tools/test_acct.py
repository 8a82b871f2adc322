"""Process accounting: acct_v3 records parsed from synthetic bytes, and the context
manager's lock and its promise to turn accounting off however the block ends."""

import errno
import sys
from pathlib import Path

import pytest

from bench.tools import acct


def comp_t(value: int) -> int:
    """Encode like the kernel's encode_comp_t (13-bit mantissa, base-8 exponent)."""
    exp = 0
    while value > 0x1FFF:
        value, rest = divmod(value, 8)
        value += rest >= 4
        exp += 1
    return (exp << 13) | value


def raw(comm: str, pid: int, ppid: int, btime: int = 1_800_000_000, **kw: float) -> bytes:
    """Return one acct_v3 record as the kernel writes it (times in 1/100 s ticks)."""
    version = 3 | (0x80 if sys.byteorder == "big" else 0)
    return acct.ACCT_V3.pack(
        int(kw.get("flag", 0)),
        int(kw.get("version", version)),
        0,
        int(kw.get("exitcode", 0)),
        0,
        0,
        pid,
        ppid,
        btime,
        float(kw.get("etime", 10)),
        comp_t(int(kw.get("utime", 0))),
        comp_t(int(kw.get("stime", 0))),
        0,
        0,
        0,
        0,
        0,
        0,
        comm.encode(),
    )


def test_a_record_is_64_bytes():
    assert acct.RECORD_BYTES == 64


@pytest.mark.parametrize("ticks", [0, 1, 8191, 8192, 70000, 1_000_000])
def test_comp_t_decodes_what_the_kernel_encodes(ticks):
    decoded = acct.comp_t(comp_t(ticks))
    # 13 bits of mantissa: exact up to 8191, within 1/8192 beyond.
    assert abs(decoded - ticks) <= max(1, ticks / 4096)


def test_records_parse_with_names_times_and_parents():
    data = raw("cc1", 20, 10, utime=150, stime=25, etime=300, flag=acct.AXSIG) + raw(
        "aarch64-linux-g", 10, 5, exitcode=256
    )
    first, second = acct.parse_records(data)
    assert (first.comm, first.pid, first.ppid) == ("cc1", 20, 10)
    assert first.user_s == pytest.approx(1.5) and first.system_s == pytest.approx(0.25)
    assert first.cpu_s == pytest.approx(1.75) and first.elapsed_s == pytest.approx(3.0)
    assert first.end_s == pytest.approx(1_800_000_003) and first.flags == acct.AXSIG
    assert second.comm == "aarch64-linux-g" and second.exitcode == 256


def test_a_truncated_file_or_another_version_is_refused():
    data = raw("sh", 2, 1)
    with pytest.raises(acct.AccountingFormatError, match="63 bytes is not a whole number"):
        acct.parse_records(data[:-1])
    with pytest.raises(acct.AccountingFormatError, match="record 1 has version byte 0x2"):
        acct.parse_records(data + raw("sh", 3, 1, version=2))


class FakeKernel:
    """acct(2) as the kernel answers it: on with a path, off with None."""

    def __init__(self, refuse: int = 0) -> None:
        self.calls: list[bytes | None] = []
        self.refuse = refuse

    def __call__(self, path: bytes | None) -> int:
        self.calls.append(path)
        if path is not None and self.refuse:
            return self.refuse
        if path is not None:
            # What the kernel appends while a build runs.
            Path(path.decode()).write_bytes(raw("cc1", 7, 6, utime=3))
        return 0


def test_accounting_is_turned_off_and_its_file_read_and_removed(tmp_path):
    kernel = FakeKernel()
    with acct.accounting(tmp_path / "acct", tmp_path / "lock", syscall=kernel) as session:
        assert session.file.exists() and kernel.calls == [str(session.file).encode()]
    assert kernel.calls[-1] is None
    assert [r.comm for r in session.records] == ["cc1"] and session.notes == []
    assert not session.file.exists()


def test_accounting_is_turned_off_when_the_block_raises(tmp_path):
    kernel = FakeKernel()
    with (
        pytest.raises(KeyboardInterrupt),
        acct.accounting(tmp_path / "acct", tmp_path / "lock", syscall=kernel),
    ):
        raise KeyboardInterrupt
    assert kernel.calls[-1] is None and list((tmp_path / "acct").iterdir()) == []


def test_a_refusing_kernel_is_named_and_nothing_is_left(tmp_path):
    kernel = FakeKernel(refuse=errno.EPERM)
    with (
        pytest.raises(acct.AccountingUnavailable, match="CAP_SYS_PACCT"),
        acct.accounting(tmp_path / "acct", tmp_path / "lock", syscall=kernel),
    ):
        pytest.fail("the block must not run")
    assert kernel.calls == [kernel.calls[0]] and list((tmp_path / "acct").iterdir()) == []


def test_a_second_holder_is_told_accounting_is_busy(tmp_path):
    kernel = FakeKernel()
    lock = tmp_path / "lock"
    with (
        acct.accounting(tmp_path / "acct", lock, syscall=kernel),
        pytest.raises(acct.AccountingUnavailable, match="another archbench process"),
        acct.accounting(tmp_path / "acct", lock, syscall=FakeKernel()),
    ):
        pytest.fail("the block must not run")
    # Released: the next one runs.
    with acct.accounting(tmp_path / "acct", lock, syscall=kernel) as session:
        pass
    assert [r.comm for r in session.records] == ["cc1"]


def test_an_unwritable_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(acct.AccountingUnavailable, match="cannot create an accounting file"),
        acct.accounting(tmp_path / "file" / "acct", tmp_path / "lock", syscall=FakeKernel()),
    ):
        pytest.fail("the block must not run")


def test_accounting_a_killed_run_left_on_is_turned_off_by_the_next_command(tmp_path):
    directory, lock = tmp_path / "acct", tmp_path / "lock"
    directory.mkdir()
    left = directory / "killed.pacct"
    left.write_bytes(raw("cc1", 7, 6))
    # What a SIGKILLed holder leaves: its pid and file in the lock, the lock released.
    lock.write_text(f"4242\n{left}\n")
    kernel, said = FakeKernel(), []
    assert acct.repair(say=said.append, directory=directory, lock_file=lock, syscall=kernel)
    assert kernel.calls == [None] and not left.exists() and lock.read_text() == ""
    assert "pid 4242" in said[0]
    # Nothing left: nothing to do, and accounting archbench did not start is left alone.
    assert not acct.repair(say=said.append, directory=directory, lock_file=lock, syscall=kernel)
    lock.write_text("4242\n/var/account/pacct\n")
    assert not acct.repair(say=said.append, directory=directory, lock_file=lock, syscall=kernel)
    assert kernel.calls == [None]


def test_a_live_holder_is_not_repaired(tmp_path):
    kernel = FakeKernel()
    lock = tmp_path / "lock"
    with acct.accounting(tmp_path / "acct", lock, syscall=kernel):
        assert not acct.repair(
            say=print, directory=tmp_path / "acct", lock_file=lock, syscall=FakeKernel()
        )
