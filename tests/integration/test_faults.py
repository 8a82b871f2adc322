"""The fault suite: each fault caused for real (engine, registry, QEMU), its documented
outcome checked, finished results kept, and nothing left behind: no process of the run,
no container, no VM, no build, no binfmt_misc change.

Every scenario here is written into the test's own folder under a unique name, and its
build command carries that name as a marker, so that what the test looks for (and
leaves behind) is told apart from the work of anyone else on the same host.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bench.engine import runner
from bench.engine.results import list_runs, load_run
from bench.host import services
from bench.platforms import KNOWN
from bench.scenarios.loader import load_scenario_file
from bench.strategies import qemu_system
from bench.strategies.guest import image as guest
from bench.strategies.guest import initramfs, kvm
from bench.tools import buildtrace
from bench.tools import registry as reg
from tests.conftest import DATA, ROOT, need

pytestmark = [pytest.mark.engine, pytest.mark.registry]

TINY_SRC = DATA / "scenarios" / "tiny" / "src"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
MARK_ENV = "ARCHBENCH_FAULT_MARK"


# -- what a test may leave behind ----------------------------------------------------------


def binfmt_state() -> dict[str, str]:
    """Every binfmt_misc entry and its text (flags, interpreter, enabled)."""
    if not BINFMT.is_dir():
        return {}
    return {
        p.name: p.read_text(errors="replace")
        for p in sorted(BINFMT.iterdir())
        if p.name not in ("register",)
    }


def marked_processes(*marks: str) -> list[psutil.Process]:
    """Processes (other than this one) whose command line or environment holds a mark:
    the archbench run's children inherit MARK_ENV; build steps and qemu-user
    interpreters spawned by the engine carry the scenario's marker in their argv."""
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] == me:
            continue
        argv = " ".join(p.info["cmdline"] or [])
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            env = {}
        if any(m in argv for m in marks) or env.get(MARK_ENV) in marks:
            found.append(p)
    return found


def running_containers(mark: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.Command}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [line for line in done.stdout.splitlines() if mark in line]


def assert_nothing_left(mark: str, binfmt_before: dict[str, str], *more_marks: str) -> None:
    """No process, container or binfmt change of this test remains (a few seconds of
    grace for processes that are being reaped)."""

    def left_behind() -> list[psutil.Process]:
        # A daemon a run started (the registry, the engine) stays on purpose: it is the
        # host's infrastructure, not work of the run, and so is what it runs for others
        # (their build steps inherit its environment, the mark included).
        daemons = (reg.BINARY, "dockerd", "containerd")

        def is_daemon(p: psutil.Process) -> bool:
            try:
                return any(d in " ".join(p.cmdline()[:1]) for d in daemons)
            except psutil.Error:
                return False

        found = []
        for p in marked_processes(mark, *more_marks):
            try:
                lineage = [p, *p.parents()]
            except psutil.Error:
                continue
            if not any(is_daemon(a) for a in lineage):
                found.append(p)
        return found

    deadline = time.monotonic() + 20
    while left_behind() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [(p.pid, " ".join(p.cmdline())[:200]) for p in left_behind()]
    assert not left, f"processes left behind: {left}"
    assert not running_containers(mark), "containers left behind"
    assert binfmt_state() == binfmt_before, "binfmt_misc entries changed"


# -- tiny scenarios, each under its own name -----------------------------------------------


def write_scenario(
    folder: Path, name: str, build: str, platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64")
) -> Path:
    """Write a scenario `name` with tiny's source and the build command `build` (which
    may use {mark}, replaced by `name`) into `folder`; return its file."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TINY_SRC, folder / "src")
    (folder / "src" / "broken.c").write_text(
        '#error "archbench fault suite: this cell does not compile"\n'
    )
    plats = ", ".join(f'"{p}"' for p in platforms)
    build_line = build.replace("{mark}", name).replace("'", "'\"'\"'")
    (folder / "scenario.toml").write_text(
        f'name = "{name}"\n'
        'description = "fault suite"\n'
        f"platforms = [{plats}]\n\n"
        '[source]\npath = "src"\n\n'
        '[toolchain]\npackages = ["gcc", "libc6-dev"]\n\n'
        f"[build]\ncommand = '{build_line}'\n"
        'touch = "tiny.c"\n\n'
        '[artifacts]\n"build/tiny" = "/usr/local/bin/tiny"\n\n'
        '[smoke]\ncommand = ["/usr/local/bin/tiny"]\n'
        'expect = "arch={arch} target={arch} selftest=ok"\n'
    )
    return folder / "scenario.toml"


TINY_BUILD = 'mkdir -p build && $CC -O2 -o build/tiny tiny.c -DSIZE="$SIZE" -DMARK={mark}'


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def archbench(
    archbench_cmd: list[str], mark: str, tmp_path: Path, *args: str, results: Path | None = None
) -> subprocess.Popen[str]:
    """Start `archbench run ARGS` (one repetition, no combined build) with the mark in
    its environment; stdout and stderr merged."""
    env = dict(os.environ, **{MARK_ENV: mark})
    return subprocess.Popen(
        [
            *archbench_cmd,
            "run",
            *args,
            "--reps",
            "1",
            "--no-combined",
            "--results",
            str(results or tmp_path / "results"),
            "--reports",
            str(tmp_path / f"reports-{secrets.token_hex(2)}"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(p: subprocess.Popen[str], needle: str, lines: list[str], timeout: float) -> None:
    """Read `p`'s output into `lines` until a line holds `needle` (fails at EOF)."""
    assert p.stdout is not None
    deadline = time.monotonic() + timeout
    for line in p.stdout:
        lines.append(line)
        if needle in line:
            return
        assert time.monotonic() < deadline, "".join(lines)
    raise AssertionError(f"never printed {needle!r}:\n" + "".join(lines))


def finish(p: subprocess.Popen[str], lines: list[str], timeout: float) -> int:
    rest, _ = p.communicate(timeout=timeout)
    lines.append(rest or "")
    return p.returncode


@contextlib.contextmanager
def ended(p: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def only_run(results: Path) -> tuple[dict, list]:
    runs = list_runs(results)
    assert len(runs) == 1, runs
    return load_run(runs[0])


def cells(records: list) -> dict[str, object]:
    return {r.platform: r for r in records if r.kind == "cell"}


# -- a compile that fails in one cell ------------------------------------------------------


def test_a_compile_error_in_one_cell_fails_that_cell_and_the_run_goes_on(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    mark = unique("fault-compile")
    before = binfmt_state()
    # amd64 runs first and fails; arm64 still builds after it.
    build = (
        'mkdir -p build && if [ "$TARGETARCH" = amd64 ]; then $CC -c broken.c -o build/b.o; fi'
        f" && {TINY_BUILD}"
    )
    scenario = write_scenario(tmp_path / mark, mark, build)
    p = archbench(archbench_cmd, mark, tmp_path, str(scenario), "--strategy", "cross")
    lines: list[str] = []
    with ended(p):
        code = finish(p, lines, 900)
    out = "".join(lines)
    assert code == 1, out
    manifest, records = only_run(tmp_path / "results")
    assert manifest["status"] == "failed"
    by_platform = cells(records)
    bad, good = by_platform["linux/amd64"], by_platform["linux/arm64"]
    assert bad.status == "failed" and bad.failure_class == "compile-error", bad
    assert "this cell does not compile" in bad.log_tail
    assert good.status == "ok" and good.validation["passed"], good
    assert "cell cross linux/amd64 rep 1: failed (compile-error)" in out
    assert_nothing_left(mark, before)


# -- qemu-user crashing in the middle of a build -------------------------------------------


def emulated(mark: str) -> list[psutil.Process]:
    """qemu-user processes (binfmt interpreters) of this test's build."""
    found = []
    for p in marked_processes(mark):
        try:
            exe = p.exe()
        except psutil.Error:
            continue
        if ("qemu-" in exe or "binfmt" in exe) and "qemu-system" not in exe:
            found.append(p)
    return found


def test_an_emulator_crash_is_classified_retried_and_counted_as_a_flake(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    mark = unique("fault-segv")
    before = binfmt_state()
    # Long enough under qemu-user to be caught in the act: 6 compiles.
    build = (
        'mkdir -p build && i=0 && while [ "$i" -lt 6 ]; do '
        '$CC -O2 -c tiny.c -DSIZE="$SIZE" -DMARK={mark} -o build/t.o || exit 1; i=$((i + 1)); done'
        f" && {TINY_BUILD}"
    )
    scenario = write_scenario(tmp_path / mark, mark, build, ("linux/arm64",))
    p = archbench(
        archbench_cmd,
        mark,
        tmp_path,
        str(scenario),
        "--strategy",
        "qemu-user",
        "--platform",
        "linux/arm64",
        "--retries",
        "1",
    )
    lines: list[str] = []
    with ended(p):
        read_until(p, "[1/1]", lines, 900)
        deadline = time.monotonic() + 300
        victims: list[psutil.Process] = []
        while not victims:
            assert time.monotonic() < deadline and p.poll() is None, "".join(lines)
            victims = [v for v in emulated(mark) if v.cmdline()[1:2] == ["/usr/bin/gcc"]]
            time.sleep(0.1)
        # One crash of the emulator: a SIGSEGV sent from outside reaches the guest
        # program, and the gcc driver (unlike cc1) has no handler of its own for it, so
        # QEMU reports "uncaught target signal 11" and dies of it. The retry must build.
        victims[0].send_signal(signal.SIGSEGV)
        code = finish(p, lines, 900)
    out = "".join(lines)
    assert code == 0, out
    assert "emulator-crash: retrying (1/1)" in out
    _, records = only_run(tmp_path / "results")
    cell = cells(records)["linux/arm64"]
    assert cell.status == "ok" and cell.validation["passed"], cell
    assert cell.flakes == ("emulator-crash",)
    # The first attempt's output, in the same log as the retry's (BuildKit's rawjson).
    log = buildtrace.parse(Path(cell.log_file).read_text(errors="replace")).text
    assert "qemu: uncaught target signal 11" in log
    assert_nothing_left(mark, before)


# -- guests that never boot, or panic ------------------------------------------------------


AMD64 = KNOWN["linux/amd64"]


def _newc(name: str, mode: int, data: bytes) -> bytes:
    return initramfs.cpio_newc([initramfs._CpioEntry(name, mode, data)])


@pytest.fixture(scope="module")
def genuine_guest() -> guest.GuestImage:
    """The cached amd64 guest for tiny (prepared once, as test_qemu_system does), with
    the KVM verdict taken on it: a broken copy must never be the one that decides it."""
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    for tool in ("mmdebstrap", "mkfs.ext4", "debugfs", "depmod"):
        need(shutil.which(tool) is not None, tool)
    tiny = load_scenario_file(DATA / "scenarios" / "tiny" / "scenario.toml")
    image = guest.prepare_guest(AMD64, tiny.packages)
    kvm.kvm_works(AMD64, image)
    return image


def broken_copy(image: guest.GuestImage, folder: Path, init: str) -> guest.GuestImage:
    """A copy of `image` whose initramfs runs `init` as /init: a second cpio archive
    appended to the first replaces it (the kernel unpacks both, later entries win)."""
    import gzip
    import stat

    folder.mkdir(parents=True, exist_ok=True)
    initrd = folder / "initrd-broken.img"
    extra = gzip.compress(_newc("init", stat.S_IFREG | 0o755, init.encode()))
    initrd.write_bytes(image.initrd.read_bytes() + extra)
    return guest.GuestImage(
        platform=image.platform,
        kernel=image.kernel,
        initrd=initrd,
        root_disk=image.root_disk,
        kernel_version=image.kernel_version,
        cache_key=image.cache_key,
    )


def _guest_run(
    image: guest.GuestImage, tmp_path: Path, monkeypatch, timeout: float
) -> runner.RunSummary:
    """Run tiny with qemu-system on amd64 in this process, the guest being `image`."""
    monkeypatch.setattr(qemu_system, "prepare_guest", lambda *_a, **_k: image)
    tiny = load_scenario_file(DATA / "scenarios" / "tiny" / "scenario.toml")
    req = runner.RunRequest(
        scenarios=(tiny,),
        strategies=("qemu-system",),
        platforms=(AMD64,),
        sizes=(1,),
        reps=1,
        results_root=tmp_path / "results",
        registry=reg.registry_address(None),
        timeout=timeout,
        combined=False,
    )
    return runner.execute(req, lambda _m: None)


def qemu_system_processes(path: Path) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if (p.info["name"] or "").startswith("qemu-system")
        and any(str(path) in a for a in p.info["cmdline"] or [])
    ]


def test_a_guest_that_never_boots_times_out_and_its_vm_is_gone(
    genuine_guest, registry, tmp_path, monkeypatch
):
    before = binfmt_state()
    # /init hangs before it reports `booted`: the guest never comes up.
    hang = "#!/bin/sh\nexec /bin/busybox sleep 100000\n"
    image = broken_copy(genuine_guest, tmp_path / "guest", hang)
    summary = _guest_run(image, tmp_path, monkeypatch, timeout=20)
    cell = cells(summary.records)["linux/amd64"]
    assert cell.status == "timeout" and cell.failure_class == "timeout", cell
    assert cell.log_tail.strip(), "the console tail is kept"
    manifest, stored = only_run(tmp_path / "results")
    assert manifest["status"] == "failed"
    assert [r.status for r in stored if r.kind == "cell"] == ["timeout"]
    assert not qemu_system_processes(tmp_path), "the VM outlived its timeout"
    assert binfmt_state() == before


def test_a_guest_whose_kernel_panics_is_guest_panic_and_its_vm_is_gone(
    genuine_guest, registry, tmp_path, monkeypatch
):
    before = binfmt_state()
    # /init exits: the kernel panics ("Attempted to kill init!"); panic=-1 with
    # -no-reboot ends QEMU at once, long before the timeout.
    image = broken_copy(genuine_guest, tmp_path / "guest", "#!/bin/sh\nexit 3\n")
    started = time.monotonic()
    summary = _guest_run(image, tmp_path, monkeypatch, timeout=600)
    cell = cells(summary.records)["linux/amd64"]
    assert cell.status == "failed" and cell.failure_class == "guest-panic", cell
    assert "Kernel panic" in cell.log_tail
    assert time.monotonic() - started < 300, "QEMU did not end with the panic"
    _, stored = only_run(tmp_path / "results")
    assert [r.failure_class for r in stored if r.kind == "cell"] == ["guest-panic"]
    assert not qemu_system_processes(tmp_path), "the VM outlived its panic"
    assert binfmt_state() == before


# -- the registry stopped in the middle of a run -------------------------------------------


def registry_processes(address: str) -> list[psutil.Process]:
    config = str(services.config_path(address))
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(reg.BINARY in a for a in (p.info["cmdline"] or [])[:2])
        and config in (p.info["cmdline"] or [])
    ]


def test_a_registry_stopped_mid_run_fails_cells_as_registry_and_the_next_run_restarts_it(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    mark = unique("fault-registry")
    before = binfmt_state()
    need(bool(registry_processes(registry)), f"a docker-registry serving {registry}")
    scenario = write_scenario(tmp_path / mark, mark, TINY_BUILD)
    p = archbench(archbench_cmd, mark, tmp_path, str(scenario), "--strategy", "cross")
    lines: list[str] = []
    again: list[str] = []
    try:
        with ended(p):
            read_until(p, "[1/2]", lines, 900)
            for daemon in registry_processes(registry):
                daemon.terminate()
            psutil.wait_procs(registry_processes(registry), timeout=15)
            assert not reg.ping(registry)
            stopped = time.monotonic()
            # The second cell sees no registry and fails at once.
            read_until(p, f"no registry answers at {registry}", lines, 120)
            cells_failed_s = time.monotonic() - stopped
            # The next run, started now (the first is still writing its report), finds no
            # registry, starts it, and says so: the outage lasts seconds.
            second = archbench(
                archbench_cmd,
                mark,
                tmp_path,
                str(scenario),
                "--strategy",
                "cross",
                "--platform",
                "linux/amd64",
                results=tmp_path / "results2",
            )
            with ended(second):
                read_until(second, f"starting the registry on {registry}", again, 120)
                deadline = time.monotonic() + 30
                while not reg.ping(registry) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert reg.ping(registry), "".join(again)
                outage_s = time.monotonic() - stopped
                code = finish(p, lines, 300)
                second_code = finish(second, again, 900)
        out = "".join(lines)
        print(f"cells failed {cells_failed_s:.1f} s after the stop; outage {outage_s:.1f} s")
        assert code == 1, out
        # Without hanging: a refused connection fails at once, not after a build timeout.
        assert cells_failed_s < 120, out
        manifest, records = only_run(tmp_path / "results")
        assert manifest["status"] == "failed"
        by_platform = cells(records)
        assert by_platform["linux/arm64"].failure_class == "registry", by_platform["linux/arm64"]
        assert by_platform["linux/amd64"].status == "failed"
        assert by_platform["linux/amd64"].failure_class == "registry", by_platform["linux/amd64"]
        assert second_code == 0, "".join(again)
        _, records = only_run(tmp_path / "results2")
        assert cells(records)["linux/amd64"].status == "ok"
    finally:
        # Whatever happened, others on this host get their registry back.
        services.ensure_registry(registry)
    assert_nothing_left(mark, before)


# -- the engine not running at the start ---------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get("CI") and not os.environ.get("ARCHBENCH_STOP_ENGINE"),
    reason="stops dockerd for everyone on the host: runs on CI, or with ARCHBENCH_STOP_ENGINE=1",
)
def test_an_engine_not_running_at_the_start_is_started_and_said(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    mark = unique("fault-engine")
    before = binfmt_state()
    scenario = write_scenario(tmp_path / mark, mark, TINY_BUILD)
    try:
        services.stop_engine()
        assert not services.engine_answers()
        p = archbench(
            archbench_cmd,
            mark,
            tmp_path,
            str(scenario),
            "--strategy",
            "cross",
            "--platform",
            "linux/amd64",
        )
        lines: list[str] = []
        with ended(p):
            code = finish(p, lines, 900)
        out = "".join(lines)
        assert code == 0, out
        assert "starting dockerd" in out
        assert services.engine_answers()
        _, records = only_run(tmp_path / "results")
        assert cells(records)["linux/amd64"].status == "ok"
    finally:
        services.ensure_engine()
        services.ensure_registry(registry)
    assert_nothing_left(mark, before)


# -- a results disk that fills up ----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    need(os.geteuid() == 0, "root, to mount a tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Write zeros into `folder` until its file system is full."""
    chunk = b"\0" * 65536
    with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(chunk)
    small = b"\0" * 512
    with open(folder / "filler2", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(small)


def test_a_full_results_disk_is_a_clear_error_and_no_truncated_record(
    archbench_cmd, registry, binfmt_arm64, tmp_path, small_disk
):
    mark = unique("fault-disk")
    before = binfmt_state()
    scenario = write_scenario(tmp_path / mark, mark, TINY_BUILD)
    p = archbench(
        archbench_cmd, mark, tmp_path, str(scenario), "--strategy", "cross", results=small_disk
    )
    lines: list[str] = []
    with ended(p):
        read_until(p, "[1/2]", lines, 900)
        fill(small_disk)
        code = finish(p, lines, 600)
    out = "".join(lines)
    assert code == 1, out
    assert "Traceback" not in out
    error = [line for line in out.splitlines() if line.startswith("archbench: error:")]
    assert error and "No space left on device" in error[-1], out
    assert str(small_disk) in error[-1]
    (run,) = list_runs(small_disk)
    leftovers = [p.name for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"partial files left: {leftovers}"
    for record in (run / "records").glob("*.json"):
        json.loads(record.read_text())
    manifest, records = load_run(run)
    assert manifest["status"] == "running"  # the last manifest that could be written
    assert [r.kind for r in records if r.kind == "provision"], "finished records are kept"
    assert not [r for r in records if r.kind == "cell"]
    assert_nothing_left(mark, before)


# -- two runs at once on one results folder and one registry -------------------------------


def test_two_runs_at_once_complete_and_each_validates_its_own_images_by_digest(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    mark = unique("fault-twins")
    before = binfmt_state()
    # One scenario name for both runs, so the same tags, moved by whichever pushes last;
    # two versions of its program (like two branches), so two different images.
    versions = [
        write_scenario(
            tmp_path / f"v{version}" / mark,
            mark,
            # The versions differ in their ELF build-id note.
            f'mkdir -p build && $CC -O2 -o build/tiny tiny.c -DSIZE="$SIZE" -DMARK={{mark}}'
            f" -Wl,--build-id=0x0{version}",
        )
        for version in (1, 2)
    ]
    results = tmp_path / "results"
    runs = [
        archbench(
            archbench_cmd, mark, tmp_path, str(scenario), "--strategy", "cross", results=results
        )
        for scenario in versions
    ]
    outputs: list[list[str]] = [[], []]
    with ended(runs[0]), ended(runs[1]):
        codes = [finish(p, out, 900) for p, out in zip(runs, outputs, strict=True)]
    assert codes == [0, 0], "\n----\n".join("".join(o) for o in outputs)
    stored = [load_run(r) for r in list_runs(results)]
    assert len(stored) == 2
    own: list[dict[str, str]] = []
    for manifest, records in stored:
        assert manifest["status"] == "ok"
        by_platform = cells(records)
        digests = {
            plat: cell.validation["platform_digests"][plat] for plat, cell in by_platform.items()
        }
        (merge,) = [r for r in records if r.kind == "merge"]
        assert merge.status == "ok", merge
        # The index this run joined holds this run's images, and was validated by the
        # digest it was pushed as, whatever the shared tag points at now.
        assert merge.platform_digests == digests
        assert merge.validation["ref"].endswith("@" + merge.digest)
        for cell in by_platform.values():
            assert cell.validation["ref"].endswith("@" + cell.digest)
        own.append(digests)
    # Two versions give two images on every platform: so the checks above tell one
    # run's images from the other's.
    assert all(own[0][p] != own[1][p] for p in own[0])
    assert_nothing_left(mark, before)
