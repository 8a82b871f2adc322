"""qemu-user (static) and its binfmt_misc registrations, and qemu-system versions."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.tools import proc

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class BinfmtEntry:
    """One binfmt_misc registration, as the kernel reports it."""

    name: str
    enabled: bool
    interpreter: str
    flags: str

    @property
    def fix_binary(self) -> bool:
        """Whether the F flag is set: the interpreter is opened at registration, so it
        works inside containers whose root file system lacks it."""
        return "F" in self.flags


def binfmt_mounted() -> bool:
    """Return whether binfmt_misc is mounted (its `register` file exists)."""
    return (BINFMT_DIR / "register").exists()


def read_binfmt(qemu_name: str, root: Path = BINFMT_DIR) -> BinfmtEntry | None:
    """Return the `qemu-<qemu_name>` registration, or None when there is none."""
    path = root / f"qemu-{qemu_name}"
    try:
        text = path.read_text()
    except OSError:
        return None
    return parse_binfmt(path.name, text)


def parse_binfmt(name: str, text: str) -> BinfmtEntry:
    """Parse the text of a /proc/sys/fs/binfmt_misc entry."""
    enabled = False
    interpreter = ""
    flags = ""
    for line in text.splitlines():
        if line.strip() == "enabled":
            enabled = True
        elif line.startswith("interpreter "):
            interpreter = line.split(" ", 1)[1].strip()
        elif line.startswith("flags:"):
            flags = line.split(":", 1)[1].strip()
    return BinfmtEntry(name, enabled, interpreter, flags)


def binfmt_names(root: Path = BINFMT_DIR) -> set[str]:
    """Return the names of every binfmt_misc registration (qemu-aarch64, ...)."""
    try:
        return {p.name for p in root.iterdir() if p.name not in ("register", "status")}
    except OSError:
        return set()


def unregister_binfmt(name: str, root: Path = BINFMT_DIR) -> None:
    """Remove the registration `name` from the kernel (-1 into its file)."""
    (root / name).write_text("-1")


def set_binfmt_enabled(qemu_name: str, enabled: bool, root: Path = BINFMT_DIR) -> None:
    """Enable or disable the `qemu-<qemu_name>` handler (1 or 0 into its file)."""
    (root / f"qemu-{qemu_name}").write_text("1" if enabled else "0")


def user_version(qemu_name: str = "aarch64") -> str:
    """Return qemu-user-static's version line, or '' when it is not installed."""
    exe = shutil.which(f"qemu-{qemu_name}-static")
    if exe is None:
        return ""
    done = proc.run([exe, "--version"], timeout=20)
    return done.stdout.splitlines()[0].strip() if done.ok and done.stdout else ""


def system_version(qemu_name: str) -> str:
    """Return qemu-system-<qemu_name>'s version line, or '' when it is not installed."""
    exe = shutil.which(f"qemu-system-{qemu_name}")
    if exe is None:
        return ""
    done = proc.run([exe, "--version"], timeout=20)
    return done.stdout.splitlines()[0].strip() if done.ok and done.stdout else ""
