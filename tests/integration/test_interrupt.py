"""Ctrl-C or SIGTERM during an emulated build: exit 130 / 143, the manifest marked
interrupted, finished results kept, nothing left behind."""

import json
import os
import secrets
import signal
import subprocess
import time

import psutil
import pytest

from bench.engine.results import load_run, resolve_run
from tests.conftest import DATA, ROOT
from tests.integration.test_faults import MARK_ENV, marked_processes

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]


# The slow scenario's build loop, as it appears in the argv of its emulated shell: tells
# this test's emulated build from anyone else's on the same host.
SLOW_LOOP = "$((60 * SIZE))"


def emulators() -> list[int]:
    """Pids of processes run by qemu-user (their executable is the emulator) for the
    slow scenario's build."""
    found = []
    for p in psutil.process_iter(["pid", "exe", "cmdline"]):
        exe = p.info["exe"] or ""
        argv = " ".join(p.info["cmdline"] or [])
        if "qemu-" in exe and "qemu-system" not in exe and SLOW_LOOP in argv:
            found.append(p.info["pid"])
    return found


def build_containers() -> set[str]:
    done = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, timeout=60)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_during_qemu_user_build(
    archbench_cmd, registry, binfmt_arm64, tmp_path, signum, code
):
    assert not emulators(), "another emulated job is running"
    containers_before = build_containers()
    results = tmp_path / "results"
    mark = f"interrupt-{secrets.token_hex(4)}"
    proc = subprocess.Popen(
        [
            *archbench_cmd,
            "run",
            str(DATA / "scenarios" / "slow"),
            "--strategy",
            "qemu-user",
            "--platform",
            "linux/amd64,linux/arm64",
            "--reps",
            "1",
            "--no-combined",
            "--results",
            str(results),
            "--reports",
            str(tmp_path / "reports"),
        ],
        cwd=ROOT,
        env=dict(os.environ, **{MARK_ENV: mark}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "qemu-user linux/arm64" in line and line.startswith("["):
                break
        # Wait until the arm64 compile is really running under qemu-user.
        deadline = time.monotonic() + 600
        while not emulators():
            assert time.monotonic() < deadline, "".join(lines)
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.5)
        time.sleep(3)
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=120)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, "".join(lines)
    assert f"interrupted ({signal.Signals(signum).name})" in "".join(lines)
    manifest, records = load_run(resolve_run(None, results))
    assert manifest["status"] == "interrupted"
    done = [r for r in records if r.kind == "cell"]
    assert [(r.platform, r.status) for r in done] == [("linux/amd64", "ok")]
    deadline = time.monotonic() + 30
    while emulators() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not emulators(), "qemu-user processes left behind"
    assert build_containers() <= containers_before, "containers left behind"
    # Every child of the run (docker buildx clients included) carries the mark.
    leftover = [" ".join(p.cmdline())[:200] for p in marked_processes(mark)]
    assert not leftover, f"processes left behind: {leftover}"
    json.loads((resolve_run(None, results) / "manifest.json").read_text())
