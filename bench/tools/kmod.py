"""kmod's depmod: module dependency files for a kernel unpacked outside /lib/modules."""

from __future__ import annotations

from pathlib import Path

from bench.tools import proc


def depmod(base_dir: Path, kernel_version: str, timeout: float = 300) -> Path:
    """Write modules.dep (and its siblings) for `kernel_version` under `base_dir`.

    Returns the modules folder (`<base_dir>/lib/modules/<version>`). A kernel package
    unpacked without its maintainer scripts has none, and the guest's initramfs is
    resolved from it. Raises ToolMissing (package kmod) or CommandFailed.
    """
    proc.run(["depmod", "-b", str(base_dir), kernel_version], timeout=timeout, check=True)
    return base_dir / "lib" / "modules" / kernel_version
