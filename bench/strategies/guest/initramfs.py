"""The guest's initramfs: the disk modules in load order, busybox and /init, packed as a
newc cpio archive."""

from __future__ import annotations

import gzip
import lzma
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import GuestError
from bench.strategies.guest.scripts import init_script


def module_name(path: str) -> str:
    """Return the kernel's name of a module file: `kernel/fs/ext4/ext4.ko.xz` -> `ext4`.

    Dashes and underscores are the same to the kernel; the name uses underscores.
    """
    base = path.rsplit("/", 1)[-1]
    base = base.split(".ko", 1)[0]
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Parse modules.dep: module name -> (its path, the paths it depends on)."""
    table: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        table[module_name(path.strip())] = (path.strip(), tuple(deps.split()))
    return table


def load_order(dep_text: str, wanted: Sequence[str], builtin_text: str = "") -> list[str]:
    """Return the module paths to insmod, each after everything it depends on.

    Modules listed in modules.builtin (`builtin_text`) are in the kernel and skipped.
    Raises GuestError for a wanted module that is neither built in nor in modules.dep.
    """
    table = parse_modules_dep(dep_text)
    builtin = {module_name(p) for p in builtin_text.split()}
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name not in table:
            raise GuestError(f"kernel module {name} is neither built in nor in modules.dep")
        if name in chain:
            raise GuestError(f"circular module dependency: {' -> '.join((*chain, name))}")
        path, deps = table[name]
        for dep in deps:
            visit(module_name(dep), (*chain, name))
        seen.add(name)
        order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


@dataclass(frozen=True)
class _CpioEntry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def cpio_newc(entries: Sequence[_CpioEntry]) -> bytes:
    """Return `entries` as a cpio archive in the kernel's `newc` format, with its trailer.

    Writing it here lets the archive hold /dev/console (a device node) without mknod.
    """
    out = bytearray()

    def pad4() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, entry in enumerate((*entries, _CpioEntry("TRAILER!!!", 0)), start=1):
        name = entry.name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        fields = (
            ino,
            entry.mode,
            0,
            0,
            nlink,
            0,
            len(entry.data),
            0,
            0,
            entry.rdev[0],
            entry.rdev[1],
            len(name),
            0,
        )
        out.extend(b"070701" + "".join(f"{v:08X}" for v in fields).encode())
        out.extend(name)
        pad4()
        out.extend(entry.data)
        pad4()
    return bytes(out)


def _read_module(path: Path) -> bytes:
    # Debian's bookworm kernels ship plain .ko files; later ones may compress them, and
    # busybox's insmod reads plain files only, so they are unpacked on the host.
    if path.name.endswith(".xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith(".zst"):
        raise GuestError(f"{path.name}: zstd-compressed modules are not supported")
    return path.read_bytes()


def build_initramfs(busybox: Path, modules_dir: Path, module_paths: Sequence[str]) -> bytes:
    """Return the gzip-compressed initramfs: busybox, the modules, /dev/console, /init.

    `module_paths` are relative to `modules_dir`, in load order. Raises GuestError for a
    module in a format busybox cannot load.
    """
    names = [module_name(p) for p in module_paths]
    entries = [
        _CpioEntry(d, stat.S_IFDIR | 0o755)
        for d in ("bin", "dev", "proc", "sys", "newroot", "modules")
    ]
    entries.append(_CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(_CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    entries.append(_CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    for name, rel in zip(names, module_paths, strict=True):
        data = _read_module(modules_dir / rel)
        entries.append(_CpioEntry(f"modules/{name}.ko", stat.S_IFREG | 0o644, data))
    entries.append(_CpioEntry("init", stat.S_IFREG | 0o755, init_script(names).encode()))
    return gzip.compress(cpio_newc(entries), compresslevel=6, mtime=0)
