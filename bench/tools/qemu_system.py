"""qemu-system: boot a whole guest (direct kernel boot, virtio-blk disks, serial console).

Only argv building and running live here; what the guest does is
`bench.strategies.guest`'s business.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.tools import proc

Accel = Literal["kvm", "tcg"]

# The machine each guest architecture boots on, and the serial console its kernel
# talks to: the PL011 UART of `virt` on aarch64, the 16550 of the PC on x86_64.
MACHINES: dict[str, str] = {"aarch64": "virt", "x86_64": "q35"}
CONSOLES: dict[str, str] = {"aarch64": "ttyAMA0", "x86_64": "ttyS0"}


@dataclass(frozen=True)
class Disk:
    """A raw disk image the guest sees as the next /dev/vdX.

    With `snapshot`, the guest's writes go to a temporary overlay QEMU drops at exit,
    so a cached image is never modified and every boot starts from the same state.
    """

    path: Path
    snapshot: bool = False


@dataclass(frozen=True)
class Launcher:
    """How to start a system emulator that is not the host's (a Debian suite's, unpacked
    with its whole shared-library closure under one root): through that root's own
    dynamic loader, with its libraries, firmware and modules, so that nothing of the
    host's QEMU or of its libraries is mixed in."""

    loader: Path  # <root>/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
    library_path: tuple[Path, ...]  # the root's library folders, searched first
    binary: Path  # <root>/usr/bin/qemu-system-aarch64
    data_dirs: tuple[Path, ...] = ()  # firmware and data (-L), <root>/usr/share/qemu
    module_dir: Path | None = None  # QEMU's loadable modules, <root>/usr/lib/<triplet>/qemu

    def command(self) -> list[str]:
        """Return the argv prefix that runs the binary: the loader, told to skip the host's
        /etc/ld.so.cache and to search the root's folders first, then the binary."""
        return [
            str(self.loader),
            "--inhibit-cache",
            "--library-path",
            ":".join(str(d) for d in self.library_path),
            str(self.binary),
        ]

    def env(self) -> dict[str, str]:
        """Return the environment the binary needs: its own module folder (QEMU would
        otherwise look in the host's)."""
        return {"QEMU_MODULE_DIR": str(self.module_dir)} if self.module_dir else {}


@dataclass(frozen=True)
class VmSpec:
    """Everything that decides a qemu-system command line."""

    qemu_name: str  # aarch64, x86_64
    kernel: Path
    initrd: Path
    append: str  # kernel command line, besides the console
    cpu: str
    vcpus: int
    memory_mb: int
    accel: Accel = "tcg"
    disks: tuple[Disk, ...] = ()
    launcher: Launcher | None = None  # a pinned system emulator; None: the host's on PATH


def binary(qemu_name: str) -> str:
    """Return the program name of the system emulator for `qemu_name`."""
    return f"qemu-system-{qemu_name}"


def console(qemu_name: str) -> str:
    """Return the kernel's serial console device for `qemu_name` (ttyAMA0, ttyS0).

    Raises KeyError for an architecture archbench does not boot.
    """
    return CONSOLES[qemu_name]


def installed(qemu_name: str) -> bool:
    """Return whether qemu-system-<qemu_name> is on PATH."""
    return shutil.which(binary(qemu_name)) is not None


def argv(spec: VmSpec) -> list[str]:
    """Return the qemu-system argv that boots `spec` headless with the console on stdout.

    Raises KeyError for an architecture archbench does not boot.
    """
    machine = MACHINES[spec.qemu_name]
    head = spec.launcher.command() if spec.launcher else [binary(spec.qemu_name)]
    # Firmware and data from the pinned emulator's own root, searched before QEMU's
    # built-in folders.
    data = [a for d in (spec.launcher.data_dirs if spec.launcher else ()) for a in ("-L", str(d))]
    args = [
        *head,
        *data,
        # No default devices (VGA, NIC, floppy, CD-ROM) and no user config file: the
        # guest has exactly the devices listed here, on every host.
        "-nodefaults",
        "-no-user-config",
        "-M",
        machine,
        "-accel",
        spec.accel,
        "-cpu",
        spec.cpu,
        "-smp",
        str(spec.vcpus),
        "-m",
        str(spec.memory_mb),
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        # A reboot (and a panic with panic=-1) ends QEMU instead of booting again.
        "-no-reboot",
        "-kernel",
        str(spec.kernel),
        "-initrd",
        str(spec.initrd),
        "-append",
        f"console={console(spec.qemu_name)} panic=-1 {spec.append}".strip(),
    ]
    for i, disk in enumerate(spec.disks):
        drive = f"file={disk.path},if=none,id=disk{i},format=raw,cache=unsafe"
        if disk.snapshot:
            drive += ",snapshot=on"
        args += ["-drive", drive, "-device", f"virtio-blk-pci,drive=disk{i}"]
    return args


def run(
    spec: VmSpec,
    *,
    timeout: float,
    on_line: Callable[[str], None] | None = None,
    log_path: Path | None = None,
) -> proc.Completed:
    """Boot `spec` and wait until QEMU exits (the guest powered off or panicked).

    Returns the finished process (the console is its stdout). Raises ToolMissing when
    the emulator is not installed and CommandTimeout when `timeout` passes first; QEMU
    and everything it started are ended before either is raised.
    """
    return proc.run(
        argv(spec),
        timeout=timeout,
        on_line=on_line,
        log_path=log_path,
        env=spec.launcher.env() if spec.launcher else None,
    )


def version(qemu_name: str, launcher: Launcher | None = None) -> str:
    """Return `qemu-system-<qemu_name> --version`'s first line (the host's, or the one
    `launcher` starts), or '' when it is not installed or does not answer."""
    if launcher is not None:
        done = proc.run([*launcher.command(), "--version"], timeout=20, env=launcher.env())
        return done.stdout.splitlines()[0].strip() if done.ok and done.stdout else ""
    exe = shutil.which(binary(qemu_name))
    if exe is None:
        return ""
    done = proc.run([exe, "--version"], timeout=20)
    return done.stdout.splitlines()[0].strip() if done.ok and done.stdout else ""
