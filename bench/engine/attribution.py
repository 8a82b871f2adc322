"""Where a build's CPU time goes, by program: the kernel's records of the processes a
build ran, grouped by what the program is (compiler, assembler, linker, make, shell and
configure, package manager, the rest).

The records are of every process that ends, however short-lived (one `cc1` per unit,
configure's probes), where sampling would miss them: taskstats' per-task exit
statistics (bench/tools/taskstats.py, CPU time per process in microseconds), or where
taskstats is unavailable, BSD process accounting (bench/tools/acct.py, which truncates
each process's CPU time to 10 ms). A record names the program by its task name
(`comm`): the basename of the file executed, at most 15 characters. Under qemu-user
through binfmt_misc that is the target program's own name (`cc1`, not the emulator),
and a process's CPU time includes its emulation.

A build's processes are told apart from the rest of the host by ancestry: they descend
from a container runtime process (`runc`) that the engine (dockerd's BuildKit) started
for a RUN step. Concurrent builds on the same engine are counted too: so is their CPU
time in the BuildKit cgroup the coverage is measured against.
Everything here is pure: it works on parsed records (bench/tools/process_record.py).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bench.engine.results import Attribution, ProgramTime
from bench.tools.process_record import ProcessRecord

ATTRIBUTE_MODES = ("auto", "all", "none")
"""`run --attribute`: auto attributes the strategies in ATTRIBUTED_BY_DEFAULT, all every
BuildKit build, none nothing."""
ATTRIBUTED_BY_DEFAULT = frozenset({"qemu-user", "hybrid"})
"""Where emulated time goes is the question for these; a native or cross build's time
is all native, and accounting costs a little (64 bytes written per ended process)."""


def attributes(mode: str, strategy: str) -> bool:
    """Return whether a cell of `strategy` is attributed under `run --attribute mode`."""
    return mode == "all" or (mode == "auto" and strategy in ATTRIBUTED_BY_DEFAULT)


GROUPS = ("compiler", "assembler", "linker", "make", "shell", "package-manager", "other")
"""The program groups, in the order charts stack them. `compiler`, `assembler` and
`linker` are what the hybrid strategy runs natively."""
GROUP_LABELS = {
    "compiler": "compiler (cc1, gcc, go compile)",
    "assembler": "assembler (as)",
    "linker": "linker (ld, collect2, ar)",
    "make": "make",
    "shell": "shell and configure",
    "package-manager": "package manager (apt, dpkg)",
    "other": "the rest",
}
TOOLCHAIN_GROUPS = ("compiler", "assembler", "linker")

_NAMES: dict[str, str] = {
    **dict.fromkeys(
        ("cc1", "cc1plus", "cc1obj", "lto1", "compile", "gcc", "g++", "cc", "c++", "cpp"),
        "compiler",
    ),
    **dict.fromkeys(("clang", "clang++", "rustc", "cgo", "asm"), "compiler"),
    **dict.fromkeys(("as", "gas"), "assembler"),
    **dict.fromkeys(
        ("ld", "ld.bfd", "ld.gold", "ld.lld", "lld", "collect2", "link", "lto-wrapper"),
        "linker",
    ),
    # The archivers make the static libraries a link reads; hybrid runs them natively too.
    **dict.fromkeys(("ar", "ranlib"), "linker"),
    **dict.fromkeys(("make", "gmake", "ninja"), "make"),
    **dict.fromkeys(("sh", "bash", "dash", "configure", "cmake", "libtool"), "shell"),
    **dict.fromkeys(
        (
            "apt",
            "apt-get",
            "apt-cache",
            "apt-config",
            "apt-key",
            "apt-extracttempl",
            "dpkg",
            "dpkg-deb",
            "dpkg-query",
            "dpkg-split",
            "dpkg-divert",
            "dpkg-trigger",
            "dpkg-statoverri",
            "dpkg-maintscrip",
            "debconf",
            "frontend",
            "update-alternat",
            "http",
            "https",
            "gpgv",
            "store",
            "copy",
            "file",
            "gzip",
            "xz",
        ),
        "package-manager",
    ),
}
# A Debian triplet's prefix (aarch64-linux-gnu-gcc-12, arm-linux-gnueabihf-as).
_TRIPLET = re.compile(r"^[a-z0-9_]+-linux-gnu[a-z]*-")
_VERSIONED = re.compile(r"^(gcc|g\+\+|cpp|cc1|ld|as)-\d+(\.\d+)*$")
COMM_MAX = 15  # the kernel keeps 15 characters of a task's name


def group_of(comm: str) -> str:
    """Return the group (one of GROUPS) of the program whose task name is `comm`.

    A triplet-prefixed tool is its unprefixed self (aarch64-linux-gnu-as is the
    assembler); one cut off at 15 characters before its tool name shows
    (`aarch64-linux-g`) is counted as the compiler: gcc runs its own assembler and
    linker by their short names, so the prefixed name that runs is gcc's driver.
    Configure's probes (conftest, conftest.exe) are shell and configure.
    """
    if comm in _NAMES:
        return _NAMES[comm]
    if comm.startswith("conftest"):
        return "shell"
    match = _TRIPLET.match(comm)
    if match:
        rest = comm[match.end() :]
        if rest:
            return group_of(rest)
        return "compiler"
    if len(comm) == COMM_MAX and re.match(r"^[a-z0-9_]+-linux-", comm):
        return "compiler"
    versioned = _VERSIONED.match(comm)
    if versioned:
        return group_of(versioned.group(1))
    return "other"


def is_runtime(record: ProcessRecord) -> bool:
    """Return whether `record` is the container runtime itself (runc, its init stages,
    containerd's shim): not a program of the build, but what the build's RUN steps
    descend from."""
    return record.comm.startswith("runc") or record.comm.startswith("containerd-shim")


@dataclass(frozen=True)
class _Index:
    by_pid: dict[int, list[ProcessRecord]]
    starts: dict[int, list[int]]


def _index(records: Sequence[ProcessRecord]) -> _Index:
    by_pid: dict[int, list[ProcessRecord]] = {}
    for r in records:
        by_pid.setdefault(r.pid, []).append(r)
    for same in by_pid.values():
        same.sort(key=lambda r: r.btime)
    return _Index(by_pid, {pid: [r.btime for r in rs] for pid, rs in by_pid.items()})


# btime is whole seconds, computed at exit from the elapsed time: allow its rounding.
_SLACK_S = 2.0


def parent_of(record: ProcessRecord, index: _Index) -> ProcessRecord | None:
    """Return the record of `record`'s parent among the indexed records, or None when
    the parent did not end while accounting was on. Pids are reused: the parent is the
    latest process of that pid that started before the child and ended after it
    started."""
    same = index.by_pid.get(record.ppid)
    if not same:
        return None
    at = bisect.bisect_right(index.starts[record.ppid], record.btime + _SLACK_S)
    for candidate in reversed(same[:at]):
        if candidate is not record and candidate.end_s + _SLACK_S >= record.btime:
            return candidate
    return None


def build_processes(
    records: Sequence[ProcessRecord], is_root: Callable[[ProcessRecord], bool] = is_runtime
) -> list[ProcessRecord]:
    """Return the records of `records` that descend from a root (`is_root`: by default
    the container runtime, see `is_runtime`), roots and runtime processes left out:
    the processes a build's RUN steps ran."""
    index = _index(records)
    verdict: dict[int, bool] = {}

    def descends(record: ProcessRecord) -> bool:
        chain: list[ProcessRecord] = []
        node: ProcessRecord | None = record
        found = False
        while node is not None:
            known = verdict.get(id(node))
            if known is not None:
                found = known
                break
            if is_root(node) and node is not record:
                found = True
                break
            chain.append(node)
            if len(chain) > len(records):
                break  # a cycle of reused pids: not a tree
            node = parent_of(node, index)
        for n in chain:
            verdict[id(n)] = found
        return found

    return [r for r in records if not is_root(r) and not is_runtime(r) and descends(r)]


def attribute(
    processes: Iterable[ProcessRecord],
    total_cpu_s: float | None,
    denominator: str,
    *,
    top: int = 12,
    notes: Sequence[str] = (),
    source: str | None = None,
) -> Attribution:
    """Return the attribution of `processes` (a build's, see `build_processes`): CPU
    seconds per group (every group present, 0 when none ran), the `top` programs by CPU
    time, and coverage = the accounted CPU / `total_cpu_s` (None when there is no total),
    with what that total is (`denominator`) and where the records came from (`source`,
    Attribution's default when None)."""
    by_group = dict.fromkeys(GROUPS, 0.0)
    programs: dict[str, list[float]] = {}
    count = 0
    for p in processes:
        count += 1
        by_group[group_of(p.comm)] += p.cpu_s
        entry = programs.setdefault(p.comm, [0.0, 0.0])
        entry[0] += p.cpu_s
        entry[1] += 1
    accounted = sum(by_group.values())
    ranked = sorted(programs.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top]
    return Attribution(
        cpu_by_group={g: round(s, 2) for g, s in by_group.items()},
        accounted_cpu_s=round(accounted, 2),
        total_cpu_s=total_cpu_s,
        coverage=(accounted / total_cpu_s) if total_cpu_s else None,
        processes=count,
        programs=tuple(
            ProgramTime(name, group_of(name), round(cpu, 2), int(n)) for name, (cpu, n) in ranked
        ),
        denominator=denominator,
        notes=tuple(dict.fromkeys(notes)),
        source=Attribution.source if source is None else source,
    )


def toolchain_share(attribution: Attribution) -> float | None:
    """Return the share of the accounted CPU time spent in the compiler, assembler and
    linker (what hybrid runs natively), or None when nothing was accounted."""
    if attribution.accounted_cpu_s <= 0:
        return None
    part = sum(attribution.cpu_by_group.get(g, 0.0) for g in TOOLCHAIN_GROUPS)
    return part / attribution.accounted_cpu_s


SHARED_ENGINE = (
    "another build ran on the engine meanwhile: its processes and its CPU time in the "
    "BuildKit cgroup are counted with this one's"
)


def started_by(engine_pids: Iterable[int]) -> Callable[[ProcessRecord], bool]:
    """Return a root test for `build_processes`: a container runtime process (`runc`)
    whose parent is one of `engine_pids` (dockerd, whose BuildKit runs each RUN step
    through runc). Containers that `docker run` starts have containerd's shim as the
    runtime's parent instead, so they are not taken for the build."""
    pids = frozenset(engine_pids)
    return lambda r: r.comm == "runc" and r.ppid in pids


def of_build(
    records: Sequence[ProcessRecord],
    notes: Sequence[str],
    total_cpu_s: float | None,
    total_source: str,
    engine_pids: Sequence[int] = (),
    source: str | None = None,
) -> Attribution:
    """Return the attribution of one build from everything accounting saw while it ran
    (`records`, or none with `notes` saying why), measured against the build's whole CPU
    time `total_cpu_s` read from `total_source` (the BuildKit cgroup: every RUN step and
    its emulator, not the engine's own work). The build's processes descend from runc
    started by one of `engine_pids` (`started_by`); with no engine pid known, from any
    container runtime, and a note says so. `source` names where the records came from
    (taskstats or process accounting)."""
    why = list(notes)
    if engine_pids:
        steps = sorted((r for r in records if started_by(engine_pids)(r)), key=lambda r: r.btime)
        # One build runs its steps one after another: steps that overlap in time are
        # another build's too.
        if any(b.btime + 1 < a.end_s - 1 for a, b in zip(steps, steps[1:], strict=False)):
            why.append(SHARED_ENGINE)
        processes = build_processes(records, started_by(engine_pids))
    else:
        processes = build_processes(records)
        if records:
            why.append("no dockerd found: every container's processes count as the build's")
    if records and not processes:
        why.append("no process descending from the engine's runc was recorded")
    return attribute(
        processes,
        total_cpu_s if total_cpu_s and total_cpu_s > 0 else None,
        f"CPU time of {total_source}" if total_source else "",
        notes=why,
        source=source,
    )
