"""`archbench run --emulator trixie` on arm64: the qemu-user build runs under trixie's
QEMU swapped into binfmt_misc, its record names it, and the host's handler comes back,
also when the run is killed (SIGKILL) in the middle of the build.

These swap the host-wide qemu-aarch64 handler for a build's duration: every other arm64
build on the host runs under trixie's QEMU meanwhile (archbench runs wait for the lock;
other programs do not).
"""

import signal
import subprocess
import threading
import time

import psutil
import pytest

from bench.engine.results import load_run, resolve_run
from bench.tools import binfmt, emulators
from tests.conftest import DATA, ROOT, run_archbench

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]

NAME = "qemu-aarch64"
TINY = str(DATA / "scenarios" / "tiny")


@pytest.fixture(scope="module")
def trixie() -> emulators.Emulator:
    return emulators.resolve("trixie", say=print)


def watch_interpreters(stop: threading.Event, seen: set[str]) -> None:
    while not stop.is_set():
        text = binfmt.read_entry_text(NAME)
        if text is not None:
            seen.add(binfmt.parse_proc_entry(NAME, text).interpreter)
        time.sleep(0.05)


def test_a_qemu_user_cell_runs_under_the_named_emulator(
    archbench_cmd, registry, binfmt_arm64, trixie, tmp_path
):
    before = binfmt.read_entry_text(NAME)
    stop, seen = threading.Event(), set()
    watcher = threading.Thread(target=watch_interpreters, args=(stop, seen))
    watcher.start()
    try:
        done = run_archbench(
            archbench_cmd,
            tmp_path,
            TINY,
            "--strategy",
            "qemu-user",
            "--platform",
            "linux/arm64",
            "--emulator",
            "trixie",
            timeout=900,
        )
    finally:
        stop.set()
        watcher.join()
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(trixie.binary("aarch64")) in seen
    assert binfmt.read_entry_text(NAME) == before
    manifest, records = load_run(resolve_run(None, tmp_path / "results"))
    cells = [r for r in records if r.kind == "cell"]
    assert [(r.platform, r.status) for r in cells] == [("linux/arm64", "ok")]
    emulator = cells[0].emulator
    assert emulator is not None
    assert (emulator.version, emulator.sha256) == (trixie.version, trixie.sha256)
    assert emulator.reported.startswith("10.0.13 (Debian ")
    assert manifest["provenance"]["qemu_user_emulator"]["suite"] == "trixie"


def test_sigkill_in_a_swapped_build_is_repaired_by_the_next_command(
    archbench_cmd, registry, binfmt_arm64, trixie, tmp_path
):
    before = binfmt.read_entry_text(NAME)
    run = subprocess.Popen(
        [
            *archbench_cmd,
            "run",
            TINY,
            "--strategy",
            "qemu-user",
            "--platform",
            "linux/arm64",
            "--emulator",
            "trixie",
            "--reps",
            "1",
            "--no-combined",
            "--results",
            str(tmp_path / "results"),
            "--reports",
            str(tmp_path / "reports"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        # Kill as soon as this run's swap is in place (its journal names its pid). A
        # process running under trixie's QEMU proves nothing here: on a shared host it may
        # be another build that started during an earlier swap.
        journal = binfmt.RUN_DIR / f"binfmt-{NAME}.journal"
        deadline = time.monotonic() + 600
        while not (
            journal.exists()
            and f'"pid": {run.pid},' in journal.read_text()
            and str(trixie.binary("aarch64")) in (binfmt.read_entry_text(NAME) or "")
        ):
            assert run.poll() is None, "the run ended before swapping"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        children = psutil.Process(run.pid).children(recursive=True)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        assert str(trixie.binary("aarch64")) in (binfmt.read_entry_text(NAME) or "")
    finally:
        if run.poll() is None:
            run.kill()
        for child in children:  # the killed run's build client, in its own session
            try:
                for p in [child, *child.children(recursive=True)]:
                    p.kill()
            except psutil.NoSuchProcess:
                pass
    repaired = subprocess.run(
        [*archbench_cmd, "show", "--results", str(tmp_path / "results")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"restored the host's binfmt_misc handler {NAME}" in repaired.stderr
    assert binfmt.read_entry_text(NAME) == before
