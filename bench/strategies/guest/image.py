"""Preparing a guest: a Debian root disk, Debian's kernel and a small initramfs per
target architecture, kept in a cache keyed by what they hold.

Preparing a guest (`prepare_guest`) needs no loop mount, no host multiarch and no
maintainer script of the target's kernel package: the root file system comes from
mmdebstrap as a folder and becomes an ext4 image with `mkfs.ext4 -d`; the kernel package
is only unpacked (mmdebstrap's `extract` variant), and the initramfs is written in
Python (`initramfs`): the target's busybox-static, the few modules that reach a
virtio-blk ext4 disk, and an /init that builds, copies the artifacts out and powers the
guest off. Running a build in it is `run`'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import paths
from bench.errors import GuestError
from bench.platforms import DEFAULT_SUITE, Platform
from bench.strategies.guest.initramfs import build_initramfs, load_order, module_name
from bench.tools import e2fs, kmod, mmdebstrap
from bench.tools.apt import debian_mirror

Say = Callable[[str], None]

# The guest recipe is written for the default Debian release.
SUITE = DEFAULT_SUITE
CACHE_DIR = paths.CACHE_DIR / "guest"
# Bump when anything below changes what a prepared guest holds (init, modules, layout):
# it is part of the cache key, so old guests are simply not found any more.
RECIPE_VERSION = 1

GUEST_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64")
KERNEL_PACKAGES: dict[str, str] = {"arm64": "linux-image-arm64", "amd64": "linux-image-amd64"}

# Modules that reach the root and work disks: virtio-blk on virtio-pci, ext4. ext4 asks
# the crypto API for "crc32c" at mount time (a soft dependency modules.dep does not
# list), and the initramfs has no modprobe to answer, so crc32c_generic is loaded too.
GUEST_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")


@dataclass(frozen=True)
class GuestImage:
    """A prepared guest: kernel, initramfs and root disk image in the cache."""

    platform: str
    kernel: Path
    initrd: Path
    root_disk: Path
    kernel_version: str
    cache_key: str
    prepare_s: float = 0.0


def cache_key(arch: str, suite: str, packages: Iterable[str], mirror: str) -> str:
    """Return the sha256 (hex) that names a prepared guest: same inputs, same guest."""
    doc = {
        "arch": arch,
        "suite": suite,
        "packages": sorted(set(packages)),
        "mirror": mirror.rstrip("/"),
        "recipe": RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# -- preparing a guest ---------------------------------------------------------------------


def tree_bytes(root: Path) -> int:
    """Return the disk space the files under `root` take, in bytes."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                continue
    return total


def _find_one(root: Path, patterns: Sequence[str], what: str) -> Path:
    for pattern in patterns:
        found = sorted(p for p in root.glob(pattern) if p.is_file() and not p.is_symlink())
        if found:
            return found[-1]
    raise GuestError(f"{what} not found in the unpacked packages under {root}")


def _load_image(folder: Path, prepare_s: float) -> GuestImage:
    doc = json.loads((folder / "guest.json").read_text())
    return GuestImage(
        platform=doc["platform"],
        kernel=folder / doc["kernel"],
        initrd=folder / doc["initrd"],
        root_disk=folder / doc["root_disk"],
        kernel_version=doc["kernel_version"],
        cache_key=doc["cache_key"],
        prepare_s=prepare_s,
    )


def prepare_guest(
    platform: Platform,
    packages: Sequence[str],
    cache_dir: Path = CACHE_DIR,
    say: Say = lambda _msg: None,
    *,
    mirror: str | None = None,
    log_path: Path | None = None,
) -> GuestImage:
    """Return the guest for `platform` with Debian `packages` installed, preparing it
    unless the cache already holds it (then `prepare_s` is near zero).

    The guest is built in a temporary folder under `cache_dir` and renamed into place
    at the end, so an interrupted preparation leaves nothing that looks finished.
    Raises GuestError (unsupported platform, missing kernel or module), CommandFailed
    or CommandTimeout (mmdebstrap, depmod, mkfs.ext4).
    """
    started = time.monotonic()
    if platform.name not in GUEST_PLATFORMS:
        raise GuestError(f"no guest recipe for {platform.name}")
    mirror = mirror or debian_mirror()
    arch = platform.debian_arch
    key = cache_key(arch, SUITE, packages, mirror)
    final = cache_dir / f"{arch}-{key[:16]}"
    if (final / "guest.json").is_file():
        return _load_image(final, time.monotonic() - started)

    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    try:
        say(f"preparing the {platform.name} guest in {final}")
        rootfs = work / "rootfs"
        say(f"  bootstrapping a Debian {SUITE} {arch} root with {', '.join(packages)}")
        mmdebstrap.bootstrap_dir(
            arch,
            SUITE,
            rootfs,
            mirror,
            variant="minbase",
            include=packages,
            # Documentation is dead weight in a build guest: a smaller image to write.
            options=[
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-exclude=/usr/share/info/*",
            ],
            log_path=log_path,
        )
        say(f"  unpacking {KERNEL_PACKAGES[arch]} and busybox-static for {arch}")
        unpacked = work / "kernel"
        mmdebstrap.bootstrap_dir(
            arch,
            SUITE,
            unpacked,
            mirror,
            variant="extract",
            include=[KERNEL_PACKAGES[arch], "busybox-static"],
            log_path=log_path,
        )
        vmlinuz = _find_one(unpacked, ["boot/vmlinuz-*"], "the kernel (boot/vmlinuz-*)")
        version = vmlinuz.name.removeprefix("vmlinuz-")
        busybox = _find_one(unpacked, ["bin/busybox", "usr/bin/busybox"], "busybox")
        modules_dir = kmod.depmod(unpacked, version)
        order = load_order(
            (modules_dir / "modules.dep").read_text(),
            GUEST_MODULES,
            (modules_dir / "modules.builtin").read_text()
            if (modules_dir / "modules.builtin").exists()
            else "",
        )
        say(f"  initramfs for kernel {version}: {', '.join(module_name(p) for p in order)}")
        (work / "initrd.img").write_bytes(build_initramfs(busybox, modules_dir, order))
        shutil.copyfile(vmlinuz, work / "vmlinuz")
        size_mb = int(tree_bytes(rootfs) * 1.25) // (1024 * 1024) + 768
        say(f"  writing the {size_mb} MiB root disk image")
        e2fs.mkfs_ext4(work / "root.img", rootfs, size_mb, label="archroot", log_path=log_path)
        shutil.rmtree(rootfs)
        shutil.rmtree(unpacked)
        doc = {
            "platform": platform.name,
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "root_disk": "root.img",
            "kernel_version": version,
            "cache_key": key,
            "suite": SUITE,
            "packages": list(packages),
            "mirror": mirror,
            "recipe": RECIPE_VERSION,
        }
        (work / "guest.json").write_text(json.dumps(doc, indent=2) + "\n")
        try:
            work.rename(final)
        except OSError:
            # Another preparation finished first: its guest is as good as this one.
            if not (final / "guest.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    say(f"  {platform.name} guest ready in {elapsed:.1f} s")
    return _load_image(final, elapsed)


def find_prepared(platform: Platform, cache_dir: Path = CACHE_DIR) -> GuestImage | None:
    """Return any prepared guest of `platform` in `cache_dir`, or None."""
    for doc in sorted(cache_dir.glob(f"{platform.debian_arch}-*/guest.json")):
        return _load_image(doc.parent, 0.0)
    return None
