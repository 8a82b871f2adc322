"""The kernel's per-task exit statistics (taskstats over generic netlink): a listener
registered for every CPU is sent one `struct taskstats` for every task (thread) that
exits on the host, however short-lived, with its command name, pid, parent, start,
elapsed time and user and system CPU time in microseconds.

This is the precise source of a build's per-program CPU time. BSD process accounting
(bench/tools/acct.py), the fallback where taskstats is unavailable, truncates each
process's CPU time to 10 ms, which loses several ms per process: most of a build of
many short native processes. Taskstats keeps the kernel's own per-task CPU times: with
tick-based CPU accounting (CONFIG_TICK_CPU_ACCOUNTING) they are samples taken at the
scheduler tick, so the scheduler's exact run time (the struct's cpu_run_virtual_total,
filled where CONFIG_TASK_DELAY_ACCT is built in, even with kernel.task_delayacct off)
scales them, as getrusage(2) does; without it they are kept as they are. The record is
taken as a task begins to exit, before its address space is torn down: that last
0.5 to 2.5 ms of system time per process (measured here) is in no record.

A listener changes no host-wide state: the registration belongs to its netlink
socket, and once the socket is closed (also when its process is SIGKILLed) the kernel
drops it at the next exit it would have sent, so there is nothing to repair afterwards.
Other listeners (atop, getdelays) are not disturbed. Registering needs root
(CAP_NET_ADMIN) in the initial pid and user namespaces; pids in the records are in the
initial pid namespace.

Messages: each exiting thread's message holds TASKSTATS_TYPE_AGGR_PID (its pid and
its stats); the one sent when the last thread of a multi-threaded process exits also
holds TASKSTATS_TYPE_AGGR_TGID, the process's aggregate. The per-thread records are
summed per process (by ac_tgid) and the aggregate is ignored, since counting both would
count the threads twice: every thread's record arrives, where an aggregate is sent only
for a process that had several threads when it ended, and carries no pid, parent or
name (ac_pid is 0 in it, as seen here). The struct's layout is linux/include/uapi/linux/taskstats.h
(version 13 here; later versions only append fields), in the host's byte order.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import ArchbenchError
from bench.tools.process_record import ProcessRecord

SOURCE = "taskstats (per-task exit statistics over netlink)"
"""What an attribution made from these records names as its source."""

FAMILY_NAME = b"TASKSTATS"
NETLINK_GENERIC = 16  # linux/netlink.h (Python's socket module lacks it on some builds)
SO_RCVBUFFORCE = 33  # asm-generic/socket.h: SO_RCVBUF beyond rmem_max, for CAP_NET_ADMIN
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
TASKSTATS_CMD_GET = 1
TASKSTATS_CMD_NEW = 2
TASKSTATS_TYPE_PID = 1
TASKSTATS_TYPE_STATS = 3
TASKSTATS_TYPE_AGGR_PID = 4
TASKSTATS_TYPE_AGGR_TGID = 5
TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 3
TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK = 4
AGROUP = 0x20
"""ac_flag of the exit that ends a thread group (linux/acct.h): its process is done."""
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

NLMSGHDR = struct.Struct("=IHHII")
"""struct nlmsghdr: length, type, flags, sequence, port id."""
GENLMSGHDR = struct.Struct("=BBH")
"""struct genlmsghdr: command, version, reserved."""
NLATTR = struct.Struct("=HH")
"""struct nlattr: length (header included), type."""

# Offsets in struct taskstats (checked against the compiled header: offsetof).
_VERSION = struct.Struct("=H")  # version, at 0
_EXIT = struct.Struct("=IB")  # ac_exitcode at 4, ac_flag at 8
_EXIT_AT = 4
_RUN_VIRTUAL = struct.Struct("=Q")  # cpu_run_virtual_total (ns), at 72
_RUN_VIRTUAL_AT = 72
COMM_AT, COMM_LEN = 80, 32  # ac_comm[TS_COMM_LEN]
_BASIC = struct.Struct("=IIIIQQQ")  # ac_pid, ac_ppid, ac_btime, (pad), ac_etime, utime, stime
_BASIC_AT = 128
_BTIME64 = struct.Struct("=Q")  # ac_btime64, version 10 on, at 344
_BTIME64_AT = 344
_TGID = struct.Struct("=I")  # ac_tgid, version 12 on, at 368
_TGID_AT = 368
MIN_STATS_BYTES = _BASIC_AT + _BASIC.size
"""The bytes up to ac_stime: every version since 2 (which added them) has these."""

RCVBUF_BYTES = 32 * 2**20
"""The listener's receive buffer: every exit on the host arrives here, and a burst of
exits (make -j, a test suite) must not overflow it while the reader is descheduled."""
POLL_S = 0.2
STOP_WAIT_S = 10.0


class TaskstatsUnavailable(ArchbenchError):
    """Taskstats cannot be listened to here (no CONFIG_TASKSTATS, no privilege, not in
    the initial namespaces)."""


class TaskstatsFormatError(ArchbenchError):
    """A netlink message or taskstats struct is shorter than its header says."""


@dataclass(frozen=True)
class TaskExit:
    """One exited task (a thread) as taskstats reports it: its pid (thread id), its
    thread group's id (`tgid`, the process's pid; the thread's own pid when the struct
    is older than version 12), the parent process's pid, its name, start (whole seconds
    since the epoch), elapsed, user and system CPU seconds, exit code and ac_flag."""

    pid: int
    tgid: int
    ppid: int
    comm: str
    btime: int
    elapsed_s: float
    user_s: float
    system_s: float
    exitcode: int = 0
    flags: int = 0


def parse_stats(data: bytes) -> TaskExit:
    """Return the task that `data`, a `struct taskstats` in the host's byte order, is
    about. CPU times are the kernel's per-task ones; where the struct holds the
    scheduler's exact run time (cpu_run_virtual_total), they are scaled to add up to it
    (getrusage's way).

    Raises TaskstatsFormatError when `data` is older than version 2 or shorter than its
    basic accounting fields.
    """
    if len(data) < MIN_STATS_BYTES:
        raise TaskstatsFormatError(
            f"a taskstats struct of {len(data)} bytes is shorter than {MIN_STATS_BYTES}"
        )
    (version,) = _VERSION.unpack_from(data, 0)
    if version < 2:
        raise TaskstatsFormatError(f"taskstats version {version} has no pid, name or CPU time")
    exitcode, flag = _EXIT.unpack_from(data, _EXIT_AT)
    (run_ns,) = _RUN_VIRTUAL.unpack_from(data, _RUN_VIRTUAL_AT)
    comm = data[COMM_AT : COMM_AT + COMM_LEN].split(b"\0", 1)[0].decode("utf-8", "replace")
    pid, ppid, btime, _pad, etime, utime, stime = _BASIC.unpack_from(data, _BASIC_AT)
    if version >= 10 and len(data) >= _BTIME64_AT + _BTIME64.size:
        (btime,) = _BTIME64.unpack_from(data, _BTIME64_AT)
    tgid = pid
    if version >= 12 and len(data) >= _TGID_AT + _TGID.size:
        (tgid,) = _TGID.unpack_from(data, _TGID_AT)
    user_s, system_s = utime / 1e6, stime / 1e6
    if run_ns:
        # Tick-based utime and stime are samples; the run time is exact. Keep their
        # split, as the kernel's cputime_adjust does for getrusage(2).
        run_s = run_ns / 1e9
        total = user_s + system_s
        user_s = run_s * user_s / total if total else 0.0
        system_s = run_s - user_s if total else run_s
    return TaskExit(
        pid=pid,
        tgid=tgid or pid,
        ppid=ppid,
        comm=comm,
        btime=int(btime),
        elapsed_s=etime / 1e6,
        user_s=user_s,
        system_s=system_s,
        exitcode=exitcode,
        flags=flag,
    )


def attributes(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """Yield (type, payload) of each netlink attribute in `data` from `offset`, the
    type without its flag bits; attributes are 4-byte aligned.

    Raises TaskstatsFormatError when an attribute's length runs past the data.
    """
    while offset + NLATTR.size <= len(data):
        length, kind = NLATTR.unpack_from(data, offset)
        if length < NLATTR.size or offset + length > len(data):
            raise TaskstatsFormatError(
                f"a netlink attribute of length {length} at {offset} runs past {len(data)}"
            )
        yield kind & NLA_TYPE_MASK, data[offset + NLATTR.size : offset + length]
        offset += (length + 3) & ~3


@dataclass(frozen=True)
class Message:
    """One netlink message: its type, sequence number, and either its generic netlink
    command and attribute bytes, or (an NLMSG_ERROR) the errno it carries, 0 for an
    acknowledgement."""

    kind: int
    seq: int
    command: int = 0
    payload: bytes = b""
    error: int | None = None


def messages(datagram: bytes) -> Iterator[Message]:
    """Yield the netlink messages of one received datagram.

    Raises TaskstatsFormatError when a message's length runs past the datagram.
    """
    offset = 0
    while offset < len(datagram):
        length = len(datagram) - offset
        if length >= NLMSGHDR.size:
            length, kind, _flags, seq, _port = NLMSGHDR.unpack_from(datagram, offset)
        if length < NLMSGHDR.size or offset + length > len(datagram):
            raise TaskstatsFormatError(
                f"a netlink message of length {length} at {offset} runs past {len(datagram)}"
            )
        body = datagram[offset + NLMSGHDR.size : offset + length]
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", body, 0)
            yield Message(kind, seq, error=-code)
        elif len(body) >= GENLMSGHDR.size:
            (command, _version, _reserved) = GENLMSGHDR.unpack_from(body, 0)
            yield Message(kind, seq, command, body[GENLMSGHDR.size :])
        offset += (length + 3) & ~3


def task_exits(payload: bytes) -> list[TaskExit]:
    """Return the tasks a TASKSTATS_CMD_NEW message's attributes (`payload`) report:
    each TASKSTATS_TYPE_AGGR_PID's stats. TASKSTATS_TYPE_AGGR_TGID is left out (see the
    module's docstring: it sums the threads whose own records are counted already).

    Raises TaskstatsFormatError on a malformed attribute or struct.
    """
    out = []
    for kind, nested in attributes(payload):
        if kind != TASKSTATS_TYPE_AGGR_PID:
            continue
        for inner, value in attributes(nested):
            if inner == TASKSTATS_TYPE_STATS:
                out.append(parse_stats(value))
    return out


def processes(exits: Sequence[TaskExit]) -> list[ProcessRecord]:
    """Return one record per process of the thread exits `exits` (in the order they
    arrived): a process's threads' CPU times summed once each, named and dated by its
    leader (the thread whose pid is the tgid) or, without it, its first thread.

    A process is complete at the exit flagged AGROUP (its last thread); a later exit of
    the same tgid belongs to a process that reused the pid. Processes still open at the
    end (the listener stopped before their last thread exited) are returned too."""
    open_: dict[int, list[TaskExit]] = {}
    done: list[list[TaskExit]] = []
    for e in exits:
        threads = open_.setdefault(e.tgid, [])
        threads.append(e)
        if e.flags & AGROUP:
            done.append(open_.pop(e.tgid))
    done.extend(open_.values())
    out = []
    for threads in done:
        leader = next((t for t in threads if t.pid == t.tgid), threads[0])
        start = min(t.btime for t in threads)
        end = max(t.btime + t.elapsed_s for t in threads)
        flags = 0
        for t in threads:
            flags |= t.flags
        out.append(
            ProcessRecord(
                comm=leader.comm,
                pid=leader.tgid,
                ppid=leader.ppid,
                btime=start,
                elapsed_s=max(end - start, leader.elapsed_s),
                user_s=sum(t.user_s for t in threads),
                system_s=sum(t.system_s for t in threads),
                exitcode=leader.exitcode,
                flags=flags,
            )
        )
    return out


def _request(family: int, command: int, seq: int, attrs: Sequence[tuple[int, bytes]]) -> bytes:
    body = GENLMSGHDR.pack(command, 1, 0)
    for kind, value in attrs:
        length = NLATTR.size + len(value)
        body += NLATTR.pack(length, kind) + value + b"\0" * (-length % 4)
    return (
        NLMSGHDR.pack(NLMSGHDR.size + len(body), family, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
    )


def possible_cpus() -> str:
    """Return the kernel's list of possible CPUs ("0-1"): the mask a listener of every
    CPU registers with (the kernel refuses CPUs outside it)."""
    try:
        return Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return f"0-{(os.cpu_count() or 1) - 1}"


def _why(code: int) -> str:
    hint = {
        errno.EPERM: " (it needs root, CAP_NET_ADMIN)",
        errno.EINVAL: " (it needs the initial pid and user namespaces)",
    }.get(code, "")
    return os.strerror(code) + hint


@dataclass
class Session:
    """What one `listening` block saw: filled in when the block ends. `records` are the
    processes whose last thread exited while it listened (and those still open when it
    stopped, with the threads that had exited); `notes` say what was lost or went
    wrong; `source` names where the records come from."""

    records: list[ProcessRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = SOURCE
    exits: list[TaskExit] = field(default_factory=list)
    """Every thread's exit, in arrival order (what `records` are made from)."""
    overflows: int = 0
    """How many times the kernel said the receive buffer had overflowed (ENOBUFS)."""


def lost_note(overflows: int) -> str | None:
    """Return the note an attribution carries when the kernel dropped records
    (`overflows` times its receive buffer overflowed), else None."""
    if not overflows:
        return None
    return (
        f"taskstats records were lost: the listener's receive buffer overflowed "
        f"{overflows} time(s), so some processes' CPU time is missing"
    )


class _Listener:
    """A netlink socket registered for every CPU's task exits; `run` reads it until
    the acknowledgement of the deregistration with sequence `stop_seq` arrives."""

    def __init__(self, sock: socket.socket, family: int, cpus: str) -> None:
        self.sock, self.family, self.cpus = sock, family, cpus
        self.payloads: list[bytes] = []
        """The attributes of each exit message, parsed once listening ends: while the
        build runs, the reader does as little as it can on the build's CPUs."""
        self.overflows = 0
        self.errors: list[str] = []
        self.stop_seq: int | None = None
        self.asked = False
        self.idle = False
        self.stopped = threading.Event()

    def take(self, datagram: bytes, wait_seq: int | None) -> int | None:
        """Keep the exit messages of `datagram`; return the error code of the
        acknowledgement of `wait_seq` when it is among its messages."""
        answer = None
        for m in messages(datagram):
            if m.error is not None:
                if m.seq == wait_seq:
                    answer = m.error
            elif m.kind == self.family and m.command == TASKSTATS_CMD_NEW:
                self.payloads.append(m.payload)
        return answer

    def deregister(self, seq: int) -> None:
        """Ask the kernel to stop sending exits, with sequence number `seq`: the
        acknowledgement the reader stops at.

        Raises OSError when the request cannot be sent.
        """
        self.stop_seq = seq
        self.sock.send(
            _request(
                self.family,
                TASKSTATS_CMD_GET,
                seq,
                [(TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK, self.cpus.encode() + b"\0")],
            )
        )
        self.asked = True

    def receive(self) -> bytes | None:
        """Return the next datagram, or None after a timeout (nothing queued: `idle`
        is set) or a counted overflow."""
        self.idle = False
        try:
            return self.sock.recv(1 << 16)
        except TimeoutError:
            self.idle = True
            return None
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self.overflows += 1
            return None

    def ask(self, seq: int, attr: int) -> int:
        """Send TASKSTATS_CMD_GET with the cpumask attribute `attr`, read up to its
        acknowledgement (keeping exits that come first), and return its error code."""
        self.sock.send(
            _request(self.family, TASKSTATS_CMD_GET, seq, [(attr, self.cpus.encode() + b"\0")])
        )
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            datagram = self.receive()
            if datagram is not None:
                answer = self.take(datagram, seq)
                if answer is not None:
                    return answer
        return errno.ETIMEDOUT

    def run(self) -> None:
        """Read until the deregistration's acknowledgement, or for STOP_WAIT_S once
        stopped (the acknowledgement was lost in an overflow, or never sent)."""
        deadline: float | None = None
        try:
            while deadline is None or time.monotonic() < deadline:
                if deadline is None and self.stopped.is_set():
                    deadline = time.monotonic() + STOP_WAIT_S
                datagram = self.receive()
                if datagram is not None and self.take(datagram, self.stop_seq) is not None:
                    return
                if self.idle and self.asked and self.stop_seq is not None:
                    # The kernel answers a request before send() returns: with nothing
                    # queued, the acknowledgement was dropped while the buffer was full
                    # (the kernel reports one overflow per congestion). Ask again
                    # (deregistering twice is harmless) and wait for that answer.
                    self.deregister(self.stop_seq + 1)
            self.errors.append("the taskstats listener's deregistration was not acknowledged")
        except (OSError, TaskstatsFormatError) as exc:
            self.errors.append(f"reading taskstats stopped early: {exc}")


def _family_id(sock: socket.socket) -> int:
    sock.send(
        _request(
            GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, [(CTRL_ATTR_FAMILY_NAME, FAMILY_NAME + b"\0")]
        )
    )
    for _ in range(16):
        for m in messages(sock.recv(1 << 16)):
            if m.error:
                raise TaskstatsUnavailable(
                    "the kernel has no taskstats netlink family (CONFIG_TASKSTATS): "
                    + os.strerror(m.error)
                )
            if m.error is None and m.kind == GENL_ID_CTRL:
                for kind, value in attributes(m.payload):
                    if kind == CTRL_ATTR_FAMILY_ID and len(value) >= 2:
                        family: int = struct.unpack_from("=H", value)[0]
                        return family
    raise TaskstatsUnavailable("the kernel did not name the taskstats netlink family")


def _register(sock: socket.socket, cpus: str) -> _Listener:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
    except OSError:
        # Without CAP_NET_ADMIN: the largest buffer rmem_max allows; an overflow is
        # still detected and noted.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
    sock.bind((0, 0))
    sock.settimeout(POLL_S)
    return _Listener(sock, _family_id(sock), cpus)


@contextlib.contextmanager
def listening(cpus: str | None = None) -> Iterator[Session]:
    """Listen to the task exits of the CPUs `cpus` (a kernel cpulist, by default every
    possible CPU) on a background thread while the block runs, and yield a Session;
    when the block ends, however it ends, deregister, read what was still queued, close
    the socket and fill in the Session's records, exits and notes.

    Raises TaskstatsUnavailable (before the block runs) when the kernel has no taskstats
    or refuses the registration (not root, not in the initial namespaces).
    """
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    except OSError as exc:
        raise TaskstatsUnavailable(f"no generic netlink socket: {exc.strerror or exc}") from None
    session = Session()
    try:
        try:
            listener = _register(sock, cpus or possible_cpus())
        except (OSError, TaskstatsFormatError) as exc:
            raise TaskstatsUnavailable(f"cannot register a taskstats listener: {exc}") from None
        try:
            failed = listener.ask(2, TASKSTATS_CMD_ATTR_REGISTER_CPUMASK)
        except (OSError, TaskstatsFormatError) as exc:
            raise TaskstatsUnavailable(f"cannot register a taskstats listener: {exc}") from None
        if failed:
            raise TaskstatsUnavailable(f"the kernel refused a taskstats listener: {_why(failed)}")
        reader = threading.Thread(target=listener.run, name="taskstats", daemon=True)
        reader.start()
        try:
            yield session
        finally:
            # The kernel acknowledges the deregistration after every exit it had sent:
            # the reader stops at that acknowledgement, having read them all.
            try:
                listener.deregister(3)
            except OSError as exc:
                listener.stop_seq = None
                session.notes.append(f"deregistering the taskstats listener said {exc}")
            listener.stopped.set()
            reader.join(2 * STOP_WAIT_S)
            if reader.is_alive():
                session.notes.append("the taskstats reader did not stop: records may be missing")
            try:
                session.exits = [e for p in listener.payloads for e in task_exits(p)]
            except TaskstatsFormatError as exc:
                session.notes.append(f"a taskstats message is malformed: {exc}")
            session.overflows = listener.overflows
            session.records = processes(session.exits)
            session.notes.extend(listener.errors)
            lost = lost_note(listener.overflows)
            if lost:
                session.notes.append(lost)
    finally:
        sock.close()
