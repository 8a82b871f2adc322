"""The one place where archbench starts child processes.

Every child runs in its own process group (its own session), so that a timeout or a
Ctrl-C can end the child *and everything it started* (a compiler's jobs, a qemu-user
interpreter, a docker client's helpers) with one signal, and so that a Ctrl-C typed in
the terminal reaches archbench first, which then ends the group in order: SIGTERM, a
grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.errors import CommandFailed, CommandTimeout, ToolMissing

GRACE_SECONDS = 5.0
"""How long a group gets between SIGTERM and SIGKILL."""

# Children running now, from any thread: a Ctrl-C reaches the main thread only, and
# `terminate_all` ends the groups that worker threads (one per build node) started.
_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()


def terminate_all() -> int:
    """End the process group of every child `run` is waiting on, in any thread (SIGTERM,
    grace period, SIGKILL); their `run` calls then return. Returns how many were live."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for child in live:
        _terminate_group(child)
    return len(live)


@dataclass(frozen=True)
class Completed:
    """What a finished child left: its argv, exit code, output and wall time."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 30) -> str:
        """Return the last `lines` lines of stderr and stdout together."""
        text = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(text[-lines:])


def _terminate_group(proc: subprocess.Popen[str], grace: float = GRACE_SECONDS) -> None:
    """End the child's whole process group: SIGTERM, wait `grace` s, then SIGKILL."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pump(
    stream: IO[str], sink: list[str], log: IO[str] | None, on_line: Callable[[str], None] | None
) -> None:
    for line in stream:
        sink.append(line)
        if log is not None:
            try:
                log.write(line)
                log.flush()
            except (OSError, ValueError):
                # A full disk (or a closed log) must not stop the pump: an undrained pipe
                # would block the child until its timeout. The output stays in memory.
                log = None
        if on_line is not None:
            on_line(line.rstrip("\n"))


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    input_text: str | None = None,
    check: bool = False,
    log_path: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Completed:
    """Run `argv` in its own process group and wait at most `timeout` seconds.

    Returns a `Completed`. Raises `ToolMissing` when the program is not installed,
    `CommandTimeout` when the timeout passes (the group is ended first), and
    `CommandFailed` on a non-zero exit when `check` is true. On KeyboardInterrupt the
    group is ended and the interrupt goes on up. Output is kept in memory, copied
    line by line to `log_path` when given (as long as it can be written), and passed
    to `on_line` when given.
    """
    args = tuple(str(a) for a in argv)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    log: IO[str] | None = None
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
            log.write(f"$ {' '.join(args)}\n")
            log.flush()
        except OSError:
            # The command still runs with its output in memory; whoever stores results
            # next meets the same disk and says so.
            if log is not None:
                with contextlib.suppress(OSError):
                    log.close()
            log = None
    started = time.monotonic()
    child: subprocess.Popen[str] | None = None
    try:
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=full_env,
                cwd=str(cwd) if cwd is not None else None,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise ToolMissing(args[0]) from exc
        child = proc
        with _LIVE_LOCK:
            _LIVE.add(proc)
        out: list[str] = []
        err: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        threads = [
            threading.Thread(target=_pump, args=(proc.stdout, out, log, on_line), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, err, log, on_line), daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            if input_text is not None and proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(input_text)
                    proc.stdin.close()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _terminate_group(proc)
            for t in threads:
                t.join(timeout=2)
            raise CommandTimeout(args, timeout, "".join(out) + "".join(err)) from None
        except BaseException:
            _terminate_group(proc)
            raise
        for t in threads:
            t.join(timeout=5)
        # A child that exited may leave grandchildren in its group (a daemonised
        # helper); they belong to this call and end with it.
        if _group_alive(proc.pid):
            _terminate_group(proc, grace=1.0)
    finally:
        if child is not None:
            with _LIVE_LOCK:
                _LIVE.discard(child)
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()
    done = Completed(args, proc.returncode, "".join(out), "".join(err), time.monotonic() - started)
    if check and not done.ok:
        raise CommandFailed(done.argv, done.returncode, done.tail())
    return done


def spawn_daemon(argv: Sequence[str], log_path: Path) -> int:
    """Start a long-lived service (dockerd, a registry) detached from archbench.

    Returns its pid. The service gets its own session and outlives this process on
    purpose: it is infrastructure, like a system service, not work of a run. Its
    output goes to `log_path`. Raises `ToolMissing` when the program is absent.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                # A daemon outlives the command: it must not hold the caller's folder.
                cwd="/",
            )
        except FileNotFoundError as exc:
            raise ToolMissing(str(argv[0])) from exc
    return proc.pid
