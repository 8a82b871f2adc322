import time

import psutil
import pytest

from bench.errors import CommandFailed, CommandTimeout, ToolMissing
from bench.tools import proc


def test_output_and_exit_code_are_kept(tmp_path):
    log = tmp_path / "x.log"
    done = proc.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10, log_path=log)
    assert done.returncode == 3 and done.stdout == "out\n" and done.stderr == "err\n"
    assert "out" in log.read_text() and "err" in log.read_text()


def test_check_raises_command_failed():
    with pytest.raises(CommandFailed) as exc:
        proc.run(["sh", "-c", "echo boom >&2; exit 4"], timeout=10, check=True)
    assert exc.value.returncode == 4 and "boom" in exc.value.tail


def test_missing_program_is_tool_missing():
    with pytest.raises(ToolMissing):
        proc.run(["archbench-no-such-program"], timeout=5)


def test_timeout_ends_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pidfile}; sleep 300"
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        proc.run(["sh", "-c", script], timeout=1)
    assert time.monotonic() - started < 30
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"


def test_sigterm_ignoring_child_is_killed():
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        proc.run(["sh", "-c", "trap '' TERM; sleep 300"], timeout=0.5)
    assert time.monotonic() - started < proc.GRACE_SECONDS + 10


def test_on_line_sees_every_line():
    lines = []
    proc.run(["sh", "-c", "printf 'a\\nb\\n'"], timeout=10, on_line=lines.append)
    assert lines == ["a", "b"]
