"""BSD process accounting (acct(2)): the kernel appends one record to a file for every
process that ends while accounting is on, however short-lived it was (one `cc1` per
unit, configure's probes), with its command name, parent, start time and CPU time.

Accounting is host-wide and exclusive: the kernel writes to one file at a time, and
switching it on again moves it to the new file. So it is only turned on through
`accounting`, which holds a host-wide lock (a concurrent archbench process waits for
nothing: it is told the accounting is busy) and always turns accounting off when its
block ends, also on an exception, Ctrl-C or SIGTERM. A SIGKILLed holder leaves
accounting on into its file until the next `accounting` block takes it over, which
then removes that file.

Records are `struct acct_v3` of linux/acct.h (CONFIG_BSD_PROCESS_ACCT_V3), 64 bytes in
the host's byte order; pid and ppid are in the pid namespace of the caller that turned
accounting on. CPU times are in AHZ (100) ticks, rounded down per process: a process
loses up to 10 ms, so archbench listens to taskstats (bench/tools/taskstats.py) where
it can, and uses accounting only where taskstats is unavailable.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import ArchbenchError
from bench.tools.process_record import ProcessRecord

ACCT_V3 = struct.Struct("=BBHIIIIIIf8H16s")
"""struct acct_v3: flag, version, tty, exitcode, uid, gid, pid, ppid, btime, etime
(float), utime, stime, mem, io, rw, minflt, majflt, swaps (comp_t), comm[16]."""
RECORD_BYTES = ACCT_V3.size
ACCT_VERSION = 3
BIG_ENDIAN_FLAG = 0x80  # ACCT_BYTEORDER, or-ed into ac_version on a big-endian host
AHZ = 100  # the v3 record's clock: linux/acct.h sets AHZ to 100 for ACCT_VERSION 3
SOURCE = "BSD process accounting (acct v3)"
"""What an attribution made from these records names as its source."""
TRUNCATED = "process accounting truncates each process's CPU time to 10 ms (AHZ ticks)"
"""The note an attribution made from these records carries: short processes lose up to
10 ms each, and a build of many short processes shows less coverage."""
AFORK = 0x01  # forked but did not exec: its name is its parent's
AXSIG = 0x10  # killed by a signal

RUN_DIR = Path("/run/archbench")
LOCK_FILE = RUN_DIR / "acct.lock"
"""Held (flock) while archbench has accounting on; holds the pid and the file in use."""
ACCT_DIR = Path("/var/cache/archbench/acct")
"""Where accounting files are written while a build runs (removed after reading)."""

Syscall = Callable[[bytes | None], int]


class AccountingUnavailable(ArchbenchError):
    """Process accounting cannot be turned on here (no privilege, no kernel support,
    or another archbench process is using it)."""


class AccountingFormatError(ArchbenchError):
    """An accounting file is not a sequence of acct_v3 records."""


def comp_t(value: int) -> int:
    """Return the integer a comp_t stands for: a 13-bit mantissa times 8 to the power
    of its 3-bit exponent."""
    return (value & 0x1FFF) << (3 * ((value >> 13) & 0x7))


def parse_records(data: bytes) -> list[ProcessRecord]:
    """Return the records of an accounting file's bytes, in the order they were written.

    Raises AccountingFormatError when the length is not a whole number of records, or a
    record is not version 3 in this host's byte order.
    """
    if len(data) % RECORD_BYTES:
        raise AccountingFormatError(
            f"{len(data)} bytes is not a whole number of {RECORD_BYTES}-byte acct_v3 records"
        )
    order = BIG_ENDIAN_FLAG if sys.byteorder == "big" else 0
    out = []
    for i, fields in enumerate(ACCT_V3.iter_unpack(data)):
        flag, version, _tty, exitcode, _uid, _gid, pid, ppid, btime, etime = fields[:10]
        utime, stime = fields[10], fields[11]
        comm = fields[18]
        if version != ACCT_VERSION | order:
            raise AccountingFormatError(
                f"record {i} has version byte {version:#x}, not {ACCT_VERSION | order:#x} "
                "(acct_v3 in this host's byte order)"
            )
        out.append(
            ProcessRecord(
                comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
                pid=pid,
                ppid=ppid,
                btime=btime,
                elapsed_s=float(etime) / AHZ,
                user_s=comp_t(utime) / AHZ,
                system_s=comp_t(stime) / AHZ,
                exitcode=exitcode,
                flags=flag,
            )
        )
    return out


def _libc_acct() -> Syscall:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    call = libc.acct
    call.argtypes = [ctypes.c_char_p]
    call.restype = ctypes.c_int

    def acct(path: bytes | None) -> int:
        if call(path) == 0:
            return 0
        return ctypes.get_errno() or errno.EIO

    return acct


@dataclass
class Session:
    """What one `accounting` block saw: filled in when the block ends. `records` are the
    processes that ended while it was on; `notes` say what went wrong reading them;
    `source` names where the records come from."""

    file: Path
    records: list[ProcessRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = SOURCE


def _take_lock(lock_file: Path) -> int:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AccountingUnavailable(
            f"another archbench process holds process accounting ({lock_file})"
        ) from None
    # A holder that was SIGKILLed left accounting on into its file: this block takes
    # accounting over, so that file is only garbage now.
    stale = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
    if len(stale) > 1 and stale[1].startswith(str(ACCT_DIR) + "/"):
        Path(stale[1]).unlink(missing_ok=True)
    return fd


@contextlib.contextmanager
def accounting(
    directory: Path = ACCT_DIR, lock_file: Path = LOCK_FILE, syscall: Syscall | None = None
) -> Iterator[Session]:
    """Turn process accounting on into a new file in `directory` and yield a Session;
    when the block ends, however it ends, turn accounting off, read the file into the
    Session's records and remove it.

    Raises AccountingUnavailable (before the block runs) when another archbench process
    holds accounting, its lock or file cannot be created, or the kernel refuses (no
    CAP_SYS_PACCT, no CONFIG_BSD_PROCESS_ACCT).
    """
    acct = syscall or _libc_acct()
    try:
        fd = _take_lock(lock_file)
    except OSError as exc:
        raise AccountingUnavailable(f"cannot take {lock_file}: {exc.strerror or exc}") from None
    try:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # acct(2) needs an existing regular file; it appends to it.
            handle, name = tempfile.mkstemp(dir=directory, suffix=".pacct")
        except OSError as exc:
            raise AccountingUnavailable(
                f"cannot create an accounting file in {directory}: {exc.strerror or exc}"
            ) from None
        os.close(handle)
        session = Session(Path(name))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{session.file}\n".encode(), 0)
        try:
            failed = acct(os.fsencode(session.file))
            if failed:
                raise AccountingUnavailable(
                    f"process accounting cannot be turned on: acct(2) says "
                    f"{os.strerror(failed)}"
                    + (
                        " (it needs root, CAP_SYS_PACCT)"
                        if failed == errno.EPERM
                        else " (the kernel has no CONFIG_BSD_PROCESS_ACCT)"
                        if failed == errno.ENOSYS
                        else ""
                    )
                )
            try:
                yield session
            finally:
                off = acct(None)
                if off:
                    session.notes.append(f"turning accounting off said {os.strerror(off)}")
                try:
                    session.records = parse_records(session.file.read_bytes())
                except (OSError, AccountingFormatError) as exc:
                    session.notes.append(f"accounting file unreadable: {exc}")
        finally:
            session.file.unlink(missing_ok=True)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def repair(
    *,
    say: Callable[[str], None],
    directory: Path = ACCT_DIR,
    lock_file: Path = LOCK_FILE,
    syscall: Syscall | None = None,
) -> bool:
    """Turn off the process accounting an archbench process that was killed (SIGKILL)
    left on, so that the kernel stops appending to its file; remove that file. Returns
    whether there was such a leftover. A live holder of the lock is left alone; so is
    accounting that archbench did not turn on (no file of its own in the lock)."""
    if not lock_file.exists():
        return False
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live archbench process holds accounting
        stale = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
        if len(stale) < 2 or not stale[1].startswith(str(directory) + "/"):
            return False
        off = (syscall or _libc_acct())(None)
        Path(stale[1]).unlink(missing_ok=True)
        os.ftruncate(fd, 0)
        say(
            f"archbench: turned off the process accounting a killed run (pid {stale[0]}) "
            "left on" + (f" (acct(2) said {os.strerror(off)})" if off else "")
        )
        return True
    finally:
        os.close(fd)
