"""The record of one ended process, as the kernel's exit statistics give it: what both
sources of a build's per-program CPU time (bench/tools/taskstats.py and, where taskstats
is unavailable, bench/tools/acct.py) produce and bench/engine/attribution.py consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessRecord:
    """One ended process: its command name (15 characters at most: the kernel's task
    name, the basename of what was executed), pid and parent pid, start (whole seconds
    since the epoch), elapsed seconds, user and system CPU seconds, exit code and flags
    (linux/acct.h's AFORK, AXSIG...)."""

    comm: str
    pid: int
    ppid: int
    btime: int
    elapsed_s: float
    user_s: float
    system_s: float
    exitcode: int = 0
    flags: int = 0

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds."""
        return self.user_s + self.system_s

    @property
    def end_s(self) -> float:
        """When it ended, in seconds since the epoch (to about a second)."""
        return self.btime + self.elapsed_s
