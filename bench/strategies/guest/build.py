"""Running a build in a prepared guest: a fresh work disk with the sources, a boot under
qemu-system, the phases timed from the console markers, the artifacts read back.

The cached root disk is attached read-only (`snapshot=on`); the artifacts come back from
the work disk through debugfs.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from bench.errors import CommandTimeout
from bench.platforms import parse_platform
from bench.scenarios import sources
from bench.strategies.guest.cpu import cpu_string
from bench.strategies.guest.image import GuestImage, tree_bytes
from bench.strategies.guest.kvm import kvm_works
from bench.strategies.guest.scripts import MARK, build_script, parse_marker
from bench.tools import e2fs, qemu_system
from bench.tools.qemu_system import Accel, Disk, Launcher, VmSpec

GuestStatus = Literal["ok", "failed", "timeout"]
FailureClass = Literal["", "guest-panic", "compile-error", "timeout", "no-boot"]

_PANIC_TEXT = "Kernel panic - not syncing"
CONSOLE_TAIL_LINES = 60


@dataclass(frozen=True)
class GuestRun:
    """One build in a guest: how it ended, its phases' times and the machine it ran on."""

    status: GuestStatus
    failure_class: FailureClass
    boot_s: float
    build_s: float
    shutdown_s: float
    total_s: float
    exit_code: int  # the build script's, -1 when it never reported one
    console_tail: str
    accel: Accel
    cpu: str
    vcpus: int
    memory_mb: int
    artifacts: dict[str, Path] = field(default_factory=dict)


def guest_memory_mb(available_bytes: int) -> int:
    """Return the guest's memory: half of what is available, at most 4 GiB, at least
    512 MiB, rounded down to 64 MiB."""
    mb = min(4096, available_bytes // (2 * 1024 * 1024))
    return max(512, mb // 64 * 64)


def _work_disk(
    stage: Path,
    source_dir: Path,
    build_command: str,
    size: int,
    artifacts: Sequence[tuple[str, str]],
    env: Sequence[str],
) -> Path:
    tree = stage / "tree"
    sources.copy_tree(source_dir, tree / "src", ignore=shutil.ignore_patterns("build", ".git"))
    (tree / "out").mkdir()
    (tree / "build.sh").write_text(build_script(build_command, size, artifacts, env))
    image = stage / "work.img"
    size_mb = max(1024, 4 * tree_bytes(tree) // (1024 * 1024) + 512)
    e2fs.mkfs_ext4(image, tree, size_mb, label="archwork")
    shutil.rmtree(tree)
    return image


def run_in_guest(
    image: GuestImage,
    source_dir: Path,
    build_command: str,
    size: int,
    artifacts: Sequence[tuple[str, str]],
    out_dir: Path,
    cpu_variant: str | None = None,
    timeout: float = 3600.0,
    log_path: Path | None = None,
    *,
    accel: Accel | None = None,
    vcpus: int | None = None,
    memory_mb: int | None = None,
    env: Sequence[str],
    launcher: Launcher | None = None,
) -> GuestRun:
    """Boot `image`, build `source_dir` in it with `build_command` and return the run.

    `artifacts` are (path built, relative to the source folder; name in `out_dir`);
    the ones copied out are in the result. The guest gets every host CPU and half the
    available memory (at most 4 GiB) unless told otherwise, KVM when it works here,
    else TCG; its CPU model is `cpu_variant`'s under TCG and `host` under KVM. A guest
    still running at `timeout` is ended with its QEMU (status "timeout"); a panic or a
    failed build is status "failed". The console goes to `log_path`. Raises GuestError
    for an unknown CPU variant and ToolMissing when the emulator or e2fsprogs is not
    installed; every other failure is in the result. `launcher` starts a pinned QEMU
    version's system emulator (KVM probe included) instead of the host's.
    """
    platform = parse_platform(image.platform)
    qemu_name = platform.qemu_name
    chosen: Accel = accel or ("kvm" if kvm_works(platform, image, launcher=launcher) else "tcg")
    # Under KVM the guest runs on the host's own CPU; TCG-only properties such as
    # pauth-impdef would make QEMU refuse to start.
    tcg_cpu = cpu_string(qemu_name, cpu_variant)
    cpu = "host" if chosen == "kvm" else tcg_cpu
    n_cpu = vcpus or os.cpu_count() or 1
    mem = memory_mb or guest_memory_mb(psutil.virtual_memory().available)
    tail: collections.deque[str] = collections.deque(maxlen=CONSOLE_TAIL_LINES)
    seen: dict[str, float] = {}
    codes: list[int] = []
    fatal: list[str] = []
    panicked = threading.Event()

    stage = Path(tempfile.mkdtemp(prefix="archbench-guest-"))
    try:
        work = _work_disk(stage, source_dir, build_command, size, artifacts, env)
        spec = VmSpec(
            qemu_name=qemu_name,
            kernel=image.kernel,
            initrd=image.initrd,
            append="",
            cpu=cpu,
            vcpus=n_cpu,
            memory_mb=mem,
            accel=chosen,
            disks=(Disk(image.root_disk, snapshot=True), Disk(work)),
            launcher=launcher,
        )
        started = time.monotonic()

        def watch(line: str) -> None:
            # Timestamped as the line arrives: the phases are measured on the host's
            # clock, not the guest's (whose clock under TCG is not to be trusted).
            now = time.monotonic()
            tail.append(line)
            if _PANIC_TEXT in line:
                panicked.set()
            marker = parse_marker(line)
            if marker is None:
                return
            event, code, message = marker
            seen.setdefault(event, now)
            if code is not None:
                codes.append(code)
            if message:
                fatal.append(message)

        timed_out = False
        try:
            qemu_system.run(spec, timeout=timeout, on_line=watch, log_path=log_path)
        except CommandTimeout:
            timed_out = True
        ended = time.monotonic()

        status: GuestStatus = "ok"
        failure: FailureClass = ""
        exit_code = codes[0] if codes else -1
        copied: dict[str, Path] = {}
        if timed_out:
            status, failure = "timeout", "timeout"
        elif "build-end" not in seen:
            # QEMU ended on its own before the build reported: a panic (panic=-1 with
            # -no-reboot ends QEMU at once), or /init gave up before the build began.
            status = "failed"
            failure = "no-boot" if "booted" not in seen and not panicked.is_set() else "guest-panic"
        elif exit_code != 0:
            status, failure = "failed", "compile-error"
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            for _built, name in artifacts:
                if e2fs.dump(work, f"/out/{name}", out_dir / name):
                    copied[name] = out_dir / name
            if len(copied) != len(artifacts):
                status, failure = "failed", "compile-error"
                tail.append(f"{MARK} artifacts missing from the work disk")
        return GuestRun(
            status=status,
            failure_class=failure,
            boot_s=seen["booted"] - started if "booted" in seen else 0.0,
            build_s=(
                seen["build-end"] - seen["build-start"]
                if "build-end" in seen and "build-start" in seen
                else 0.0
            ),
            shutdown_s=ended - seen["build-end"] if "build-end" in seen else 0.0,
            total_s=ended - started,
            exit_code=exit_code,
            console_tail="\n".join(tail),
            accel=chosen,
            cpu=cpu,
            vcpus=n_cpu,
            memory_mb=mem,
            artifacts=copied,
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
