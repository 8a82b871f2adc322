"""Resources of a whole build, not just the client process.

BuildKit runs each RUN step in a container under one parent cgroup (`docker/buildkit`
with dockerd's cgroupfs driver). A parent cgroup's CPU accounting includes every child,
also children that have already gone, so the delta of the parent's counters over a build
is the CPU time of all its steps and their qemu-user interpreters. Peak memory comes from
the parent's high-water mark, reset before the build. The readings cost two file reads
each, before and after: nothing is sampled during the build.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
BUILDKIT_GROUP = "docker/buildkit"


@dataclass
class Usage:
    """CPU seconds (user, system), peak memory bytes and host load of one measured span."""

    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    peak_memory_bytes: int | None = None
    peak_above_baseline_bytes: int | None = None
    loadavg_before: float = 0.0
    loadavg_after: float = 0.0
    source: str = ""
    overhead_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _v1_paths(root: Path) -> tuple[Path, Path] | None:
    cpu = root / "cpuacct" / BUILDKIT_GROUP
    mem = root / "memory" / BUILDKIT_GROUP
    return (cpu, mem) if (root / "cpuacct").is_dir() else None


def _cpu_v1(cpu: Path) -> tuple[float, float] | None:
    user = _read_int(cpu / "cpuacct.usage_user")
    system = _read_int(cpu / "cpuacct.usage_sys")
    if user is None or system is None:
        return None
    return user / 1e9, system / 1e9


def _cpu_v2(group: Path) -> tuple[float, float] | None:
    try:
        fields = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
        return int(fields["user_usec"]) / 1e6, int(fields["system_usec"]) / 1e6
    except (OSError, KeyError, ValueError):
        return None


class BuildkitMeter:
    """Measures the BuildKit cgroup around a build: `with meter.span() as usage: ...`."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root

    def _cpu(self) -> tuple[float, float] | None:
        v1 = _v1_paths(self.root)
        if v1 is not None:
            return _cpu_v1(v1[0])
        return _cpu_v2(self.root / BUILDKIT_GROUP)

    def _memory_file(self) -> Path:
        v1 = _v1_paths(self.root)
        if v1 is not None:
            return v1[1] / "memory.max_usage_in_bytes"
        return self.root / BUILDKIT_GROUP / "memory.peak"

    def _memory_now(self) -> int | None:
        v1 = _v1_paths(self.root)
        if v1 is not None:
            return _read_int(v1[1] / "memory.usage_in_bytes")
        return _read_int(self.root / BUILDKIT_GROUP / "memory.current")

    @contextlib.contextmanager
    def span(self) -> Iterator[Usage]:
        """Yield a Usage filled in when the block ends."""
        usage = Usage(source="cgroup " + BUILDKIT_GROUP, loadavg_before=os.getloadavg()[0])
        t0 = time.perf_counter()
        before = self._cpu()
        mem = self._memory_file()
        # The group's usage counts page cache that earlier builds left charged to it;
        # the peak above this baseline is what the build itself added.
        baseline = self._memory_now()
        try:
            # cgroup v1 resets the high-water mark on a write of 0; v2 (Linux 6.12+)
            # on any write.
            mem.write_text("0")
        except OSError:
            usage.notes.append("peak memory could not be reset: it may predate this build")
        usage.overhead_s = time.perf_counter() - t0
        try:
            yield usage
        finally:
            t1 = time.perf_counter()
            after = self._cpu()
            if before is None and after is not None:
                before = (0.0, 0.0)  # the group was created by this build
            if before is not None and after is not None:
                usage.cpu_user_s = max(after[0] - before[0], 0.0)
                usage.cpu_system_s = max(after[1] - before[1], 0.0)
            else:
                usage.notes.append("no BuildKit cgroup found: CPU time not measured")
            usage.peak_memory_bytes = _read_int(mem)
            if usage.peak_memory_bytes is not None and baseline is not None:
                usage.peak_above_baseline_bytes = max(usage.peak_memory_bytes - baseline, 0)
            usage.loadavg_after = os.getloadavg()[0]
            usage.overhead_s += time.perf_counter() - t1


@contextlib.contextmanager
def children_span() -> Iterator[Usage]:
    """Yield a Usage of this process's waited-for children (a qemu-system guest)."""
    usage = Usage(source="rusage of children", loadavg_before=os.getloadavg()[0])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        yield usage
    finally:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage.cpu_user_s = after.ru_utime - before.ru_utime
        usage.cpu_system_s = after.ru_stime - before.ru_stime
        # ru_maxrss is the largest child ever (KiB): a bound, not this span's own peak.
        usage.peak_memory_bytes = after.ru_maxrss * 1024
        usage.notes.append("peak memory is the largest child process so far")
        usage.loadavg_after = os.getloadavg()[0]
