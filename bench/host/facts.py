"""What this host offers the strategies, read once: its platform, binfmt_misc handlers,
system emulators and KVM device. Strategies judge availability from this value alone."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.platforms import KNOWN, Platform, host_platform
from bench.tools import qemu, qemu_system


@dataclass(frozen=True)
class Host:
    """The host as the strategies' `probe` sees it.

    `binfmt` maps a QEMU architecture name (aarch64, arm, riscv64...) to its
    binfmt_misc registration, or None when there is none; `qemu_system` holds the QEMU
    architecture names whose qemu-system-* emulator is installed; `kvm` says whether
    /dev/kvm opens (whether a guest boots under it is decided by booting one).
    """

    platform: Platform
    binfmt: Mapping[str, qemu.BinfmtEntry | None] = field(default_factory=dict, hash=False)
    qemu_system: frozenset[str] = frozenset()
    kvm: bool = False

    def binfmt_entry(self, qemu_name: str) -> qemu.BinfmtEntry | None:
        """Return the registration of `qemu-<qemu_name>`, or None when there is none."""
        return self.binfmt.get(qemu_name)


def gather() -> Host:
    """Return this host's facts: one read of binfmt_misc and PATH per known platform.

    Raises UsageError when the host's architecture is not one archbench knows.
    """
    names = sorted({p.qemu_name for p in KNOWN.values()})
    return Host(
        platform=host_platform(),
        binfmt={name: qemu.read_binfmt(name) for name in names},
        qemu_system=frozenset(n for n in names if qemu_system.installed(n)),
        kvm=os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK),
    )
