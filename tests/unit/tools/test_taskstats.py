"""taskstats: struct taskstats and netlink messages parsed from synthetic bytes packed
at linux/taskstats.h's offsets, threads summed once per process, and a listener that
counts the kernel's overflows and stops at its deregistration's acknowledgement."""

import errno
import struct

import pytest

from bench.tools import taskstats
from bench.tools.taskstats import TaskExit

# Offsets of struct taskstats (linux/include/uapi/linux/taskstats.h, x86-64 and arm64;
# offsetof of the compiled header agrees).
VERSION, EXITCODE, FLAG = 0, 4, 8
RUN_VIRTUAL = 72
COMM = 80
PID, PPID, BTIME, ETIME, UTIME, STIME = 128, 132, 136, 144, 152, 160
BTIME64, TGID = 344, 368
SIZE_V13 = 416


def stats(
    pid: int,
    ppid: int,
    comm: str = "cc1",
    *,
    tgid: int | None = None,
    version: int = 13,
    size: int = SIZE_V13,
    btime: int = 1_800_000_000,
    etime_us: int = 5_000,
    utime_us: int = 0,
    stime_us: int = 0,
    run_ns: int = 0,
    flag: int = taskstats.AGROUP,
    exitcode: int = 0,
) -> bytes:
    """Return a struct taskstats as the kernel fills it for an exiting task."""
    buf = bytearray(size)
    struct.pack_into("=H", buf, VERSION, version)
    struct.pack_into("=I", buf, EXITCODE, exitcode)
    struct.pack_into("=B", buf, FLAG, flag)
    struct.pack_into("=Q", buf, RUN_VIRTUAL, run_ns)
    buf[COMM : COMM + len(comm)] = comm.encode()
    struct.pack_into("=III", buf, PID, pid, ppid, btime & 0xFFFFFFFF)
    struct.pack_into("=QQQ", buf, ETIME, etime_us, utime_us, stime_us)
    if size >= BTIME64 + 8:
        struct.pack_into("=Q", buf, BTIME64, btime if version >= 10 else 0)
    if size >= TGID + 4:
        struct.pack_into("=I", buf, TGID, (pid if tgid is None else tgid) if version >= 12 else 0)
    return bytes(buf)


def attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def aggregate(kind: int, who: int, who_kind: int, data: bytes) -> bytes:
    # As mk_reply builds it: the id, a TASKSTATS_TYPE_NULL pad to align the stats on 8
    # bytes, then the stats.
    return attr(kind, attr(who_kind, struct.pack("=I", who)) + attr(6, b"") + attr(3, data))


def message(family: int, payload: bytes, seq: int = 0, command: int = 2) -> bytes:
    body = struct.pack("=BBH", command, 1, 0) + payload
    return struct.pack("=IHHII", 16 + len(body), family, 0, seq, 0) + body


def ack(seq: int, error: int = 0) -> bytes:
    body = struct.pack("=i", -error) + struct.pack("=IHHII", 16, 0, 0, seq, 0)
    return struct.pack("=IHHII", 16 + len(body), taskstats.NLMSG_ERROR, 0, seq, 0) + body


def test_the_struct_parses_by_its_documented_offsets():
    got = taskstats.parse_stats(
        stats(4321, 17, "aarch64-linux-gnu-gcc", utime_us=123_456, stime_us=7_890, exitcode=256)
    )
    assert got == TaskExit(
        pid=4321,
        tgid=4321,
        ppid=17,
        comm="aarch64-linux-gnu-gcc",
        btime=1_800_000_000,
        elapsed_s=0.005,
        user_s=0.123456,
        system_s=0.00789,
        exitcode=256,
        flags=taskstats.AGROUP,
    )


def test_a_thread_names_its_group_and_btime64_beats_the_32_bit_field():
    late = 2**32 + 5  # after 2106: only ac_btime64 holds it
    got = taskstats.parse_stats(stats(4322, 17, tgid=4321, btime=late))
    assert got.tgid == 4321 and got.pid == 4322 and got.btime == late


def test_an_older_struct_has_no_tgid_nor_btime64():
    got = taskstats.parse_stats(stats(50, 1, version=8, size=328, btime=1_800_000_123))
    assert got.tgid == 50 and got.btime == 1_800_000_123


def test_the_schedulers_run_time_scales_the_tick_sampled_times():
    # Tick-sampled: one 4 ms tick of user time; the scheduler says it ran 1.5 ms.
    got = taskstats.parse_stats(stats(9, 1, utime_us=3_000, stime_us=1_000, run_ns=1_500_000))
    assert got.user_s + got.system_s == pytest.approx(0.0015)
    assert got.user_s == pytest.approx(0.0015 * 3 / 4)
    # Ran, but no tick landed on it: the run time is system time.
    quick = taskstats.parse_stats(stats(9, 1, run_ns=400_000))
    assert quick.user_s == 0 and quick.system_s == pytest.approx(0.0004)


def test_a_short_struct_or_a_version_1_struct_is_refused():
    with pytest.raises(taskstats.TaskstatsFormatError, match="shorter than 168"):
        taskstats.parse_stats(stats(1, 0)[:160])
    with pytest.raises(taskstats.TaskstatsFormatError, match="version 1 has no pid"):
        taskstats.parse_stats(stats(1, 0, version=1))


def test_the_walk_takes_each_threads_stats_and_leaves_the_group_aggregate_out():
    thread = stats(101, 7, tgid=100, utime_us=2_000_000, flag=taskstats.AGROUP)
    group = stats(100, 7, tgid=100, utime_us=9_999_000_000)  # never counted
    payload = aggregate(4, 101, 1, thread) + aggregate(5, 100, 2, group)
    (m,) = taskstats.messages(message(0x1A, payload))
    assert (m.kind, m.command, m.error) == (0x1A, taskstats.TASKSTATS_CMD_NEW, None)
    (got,) = taskstats.task_exits(m.payload)
    assert got.pid == 101 and got.user_s == 2.0


def test_a_datagram_holds_several_messages_and_an_acknowledgement():
    datagram = message(0x1A, aggregate(4, 5, 1, stats(5, 1))) + ack(3) + ack(4, errno.EPERM)
    got = list(taskstats.messages(datagram))
    assert [m.error for m in got] == [None, 0, errno.EPERM]
    assert [m.seq for m in got[1:]] == [3, 4]


@pytest.mark.parametrize("cut", [10, 30, 300])
def test_a_truncated_message_is_refused(cut):
    datagram = message(0x1A, aggregate(4, 5, 1, stats(5, 1)))
    with pytest.raises(taskstats.TaskstatsFormatError, match="runs past"):
        list(taskstats.messages(datagram[:cut]))


def test_an_attribute_running_past_its_message_is_refused():
    payload = aggregate(4, 5, 1, stats(5, 1))
    with pytest.raises(taskstats.TaskstatsFormatError, match="runs past"):
        taskstats.task_exits(payload[:-8])


def texit(pid: int, tgid: int, comm: str, cpu: float, flags: int = 0, **kw: float) -> TaskExit:
    return TaskExit(
        pid=pid,
        tgid=tgid,
        ppid=int(kw.get("ppid", 7)),
        comm=comm,
        btime=int(kw.get("btime", 100)),
        elapsed_s=float(kw.get("elapsed", 1.0)),
        user_s=cpu,
        system_s=0.0,
        flags=flags,
    )


def test_threads_are_summed_once_into_their_process_named_by_its_leader():
    exits = [
        texit(101, 100, "worker", 2.0),  # a thread exits first, named apart
        texit(100, 100, "ld.gold", 0.5, btime=99, elapsed=3.0),
        texit(102, 100, "ld.gold", 1.0, taskstats.AGROUP, btime=101, elapsed=4.0),
        texit(200, 200, "cc1", 0.25, taskstats.AGROUP),
    ]
    gold, cc1 = taskstats.processes(exits)
    assert (gold.comm, gold.pid, gold.ppid, gold.cpu_s) == ("ld.gold", 100, 7, 3.5)
    assert gold.btime == 99 and gold.end_s == 105.0  # the last thread ended at 101 + 4
    assert (cc1.comm, cc1.cpu_s) == ("cc1", 0.25)


def test_a_reused_pid_after_its_group_ended_is_another_process():
    exits = [
        texit(300, 300, "sh", 1.0, taskstats.AGROUP, btime=10),
        texit(300, 300, "cc1", 2.0, taskstats.AGROUP, btime=20),
        texit(301, 300, "make", 4.0),  # still running when listening stopped
    ]
    got = taskstats.processes(exits)
    assert [(r.comm, r.cpu_s) for r in got] == [("sh", 1.0), ("cc1", 2.0), ("make", 4.0)]


def test_the_registration_asks_for_every_cpu_with_an_acknowledgement():
    request = taskstats._request(0x1A, 1, 2, [(3, b"0-1\0")])
    (length, kind, flags, seq, _port) = struct.unpack_from("=IHHII", request)
    assert (length, kind, seq) == (len(request), 0x1A, 2)
    assert flags == taskstats.NLM_F_REQUEST | taskstats.NLM_F_ACK
    assert list(taskstats.attributes(request, 20)) == [(3, b"0-1\0")]


class Datagrams:
    """A socket whose recv hands out `items` in turn (bytes, an errno to raise, None
    for a timeout: nothing queued) and whose send keeps what was sent."""

    def __init__(self, items: list[bytes | int | None]) -> None:
        self.items = items
        self.sent: list[bytes] = []

    def recv(self, _size: int) -> bytes:
        item = self.items.pop(0) if self.items else None
        if item is None:
            raise TimeoutError
        if isinstance(item, int):
            raise OSError(item, "No buffer space available")
        return item

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)


def exit_of(pid: int) -> bytes:
    return message(0x1A, aggregate(4, pid, 1, stats(pid, 1)))


def test_reading_stops_at_the_deregistrations_acknowledgement():
    sock = Datagrams([exit_of(5), exit_of(6), ack(3), exit_of(9)])
    listener = taskstats._Listener(sock, 0x1A, "0-1")  # type: ignore[arg-type]
    listener.deregister(3)
    listener.stopped.set()
    listener.run()
    exits = [e for p in listener.payloads for e in taskstats.task_exits(p)]
    assert [e.pid for e in exits] == [5, 6]
    assert listener.overflows == 0 and listener.errors == []
    assert sock.items == [exit_of(9)]  # sent after the acknowledgement: not read
    assert taskstats.lost_note(listener.overflows) is None


def test_an_overflow_is_counted_and_a_lost_acknowledgement_asked_again():
    # Acknowledgement 3 was dropped with the overflow: once nothing is queued, the
    # reader deregisters again as 4 and stops at that answer.
    sock = Datagrams([exit_of(5), errno.ENOBUFS, exit_of(6), None, ack(4), exit_of(9)])
    listener = taskstats._Listener(sock, 0x1A, "0-1")  # type: ignore[arg-type]
    listener.deregister(3)
    listener.stopped.set()
    listener.run()
    exits = [e for p in listener.payloads for e in taskstats.task_exits(p)]
    assert [e.pid for e in exits] == [5, 6] and sock.items == [exit_of(9)]
    again = list(taskstats.messages(sock.sent[-1]))
    assert [m.seq for m in again] == [4]
    ((kind, cpus),) = taskstats.attributes(again[0].payload)
    assert (kind, cpus) == (taskstats.TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK, b"0-1\0")
    assert listener.overflows == 1 and listener.errors == []
    note = taskstats.lost_note(listener.overflows)
    assert note is not None and "lost" in note and "1 time" in note


def test_another_read_error_ends_reading_with_a_note():
    listener = taskstats._Listener(Datagrams([errno.EBADF]), 0x1A, "0")  # type: ignore[arg-type]
    listener.run()
    assert listener.errors and "stopped early" in listener.errors[0]
