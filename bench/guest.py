"""Full-system guests: a Debian root disk, Debian's kernel and a small initramfs per
target architecture, booted under qemu-system to build a scenario inside the guest.

Preparing a guest (`prepare_guest`) needs no loop mount, no host multiarch and no
maintainer script of the target's kernel package: the root file system comes from
mmdebstrap as a folder and becomes an ext4 image with `mkfs.ext4 -d`; the kernel package
is only unpacked (mmdebstrap's `extract` variant), and the initramfs is written here, in
Python: the target's busybox-static, the few modules that reach a virtio-blk ext4 disk,
and an /init that builds, copies the artifacts out and powers the guest off.

Running a build (`run_in_guest`) boots that guest with the cached root disk read-only
(`snapshot=on`) and a fresh work disk holding the sources, watches the console for the
markers /init prints, and reads the artifacts back from the work disk with debugfs.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from bench import sources
from bench.errors import ArchbenchError, CommandTimeout
from bench.platforms import Platform, host_platform, parse_platform
from bench.tools import e2fs, kmod, mmdebstrap, qemu_system
from bench.tools.apt import debian_mirror
from bench.tools.qemu_system import Accel, Disk, VmSpec

Say = Callable[[str], None]
GuestStatus = Literal["ok", "failed", "timeout"]
FailureClass = Literal["", "guest-panic", "compile-error", "timeout", "no-boot"]

SUITE = "bookworm"
CACHE_DIR = Path("/var/cache/archbench/guest")
KVM_VERDICT_FILE = Path("/var/cache/archbench/kvm-verdict.json")
# Bump when anything below changes what a prepared guest holds (init, modules, layout):
# it is part of the cache key, so old guests are simply not found any more.
RECIPE_VERSION = 1

GUEST_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64")
KERNEL_PACKAGES: dict[str, str] = {"arm64": "linux-image-arm64", "amd64": "linux-image-amd64"}

# Named guest CPU models -> QEMU `-cpu` value per QEMU architecture. `pauth-impdef`
# swaps the architected pointer-authentication algorithm (QARMA, costly to emulate) for
# an implementation-defined one that is cheap under TCG; Debian's arm64 kernel and
# toolchain sign return addresses, so this decides much of the guest's speed.
CPU_MODELS: dict[str, dict[str, str]] = {
    "max": {"aarch64": "max", "x86_64": "max"},
    "max-pauth-impdef": {"aarch64": "max,pauth-impdef=on"},
    "cortex-a72": {"aarch64": "cortex-a72"},
}
DEFAULT_CPU: dict[str, str] = {"aarch64": "max-pauth-impdef", "x86_64": "max"}

# Modules that reach the root and work disks: virtio-blk on virtio-pci, ext4. ext4 asks
# the crypto API for "crc32c" at mount time (a soft dependency modules.dep does not
# list), and the initramfs has no modprobe to answer, so crc32c_generic is loaded too.
GUEST_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")

MARK = "archbench-guest:"
_MARK_RE = re.compile(re.escape(MARK) + r" (booted|build-start|build-end rc=(\d+)|fatal (.*))")
_PANIC_TEXT = "Kernel panic - not syncing"
CONSOLE_TAIL_LINES = 60

INIT_TEMPLATE = """#!/bin/sh
# archbench guest /init: load the disk modules, mount the root and work disks, run the
# build in a chroot, report through markers on the console, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark() {{ echo "{mark} $*"; }}
# poweroff -f powers off at once; the sysrq write is the fallback. Were both to fail,
# /init ends, the kernel panics and panic=-1 with -no-reboot ends QEMU all the same.
halt_now() {{ sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 10; }}
fatal() {{ mark "fatal $*"; halt_now; }}
for m in {modules}; do
    insmod "/modules/$m.ko" || fatal "insmod $m failed"
done
if grep -q archbench.probe /proc/cmdline; then
    mark booted
    halt_now
fi
n=0
while [ ! -b /dev/vdb ]; do
    n=$((n + 1))
    [ "$n" -gt 300 ] && fatal "no /dev/vdb after 30 s"
    sleep 0.1
done
mount -t ext4 /dev/vda /newroot || fatal "cannot mount the root disk /dev/vda"
mkdir -p /newroot/work
mount -t ext4 /dev/vdb /newroot/work || fatal "cannot mount the work disk /dev/vdb"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -o bind /dev /newroot/dev
mark booted
mark build-start
chroot /newroot /bin/sh /work/build.sh
rc=$?
mark "build-end rc=$rc"
umount /newroot/work
halt_now
"""


class GuestError(ArchbenchError):
    """A guest cannot be prepared (a package, a module or the kernel is missing)."""


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


# -- pure parts ---------------------------------------------------------------------------


def cpu_string(qemu_name: str, variant: str | None = None) -> str:
    """Return the `-cpu` value of `variant` (None: the architecture's default).

    Raises GuestError for a variant unknown or not offered for `qemu_name`.
    """
    name = variant or DEFAULT_CPU.get(qemu_name, "max")
    models = CPU_MODELS.get(name)
    if models is None or qemu_name not in models:
        offered = [n for n, m in CPU_MODELS.items() if qemu_name in m]
        raise GuestError(
            f"no guest CPU model {name!r} for {qemu_name}; valid: {', '.join(offered)}"
        )
    return models[qemu_name]


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


def parse_marker(line: str) -> tuple[str, int | None, str] | None:
    """Return (event, exit code, message) for a console line holding an /init marker.

    Events are `booted`, `build-start`, `build-end` (with the build's exit code) and
    `fatal` (with /init's message). Returns None for any other line.
    """
    found = _MARK_RE.search(line)
    if found is None:
        return None
    word = found.group(1)
    if word.startswith("build-end"):
        return "build-end", int(found.group(2)), ""
    if word.startswith("fatal"):
        return "fatal", None, found.group(3).strip()
    return word, None, ""


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


def init_script(modules: Sequence[str]) -> str:
    """Return the initramfs /init for modules (names, in load order)."""
    return INIT_TEMPLATE.format(mark=MARK, modules=" ".join(modules))


def build_script(
    build_command: str,
    size: int,
    artifacts: Sequence[tuple[str, str]],
    env: Sequence[str],
) -> str:
    """Return the guest's /work/build.sh: the scenario's build in /work/src with the
    environment every strategy gives it (`env`: the shell lines of
    strategies.base.build_env), then each artifact copied
    to /work/out/<name>."""
    lines = [
        "#!/bin/sh",
        "set -e",
        "cd /work/src",
        f"export SIZE={shlex.quote(str(size))} HOME=/root LANG=C.UTF-8 XDG_CACHE_HOME=/root/.cache",
        *env,
        # In a subshell so that `a && b` failing in `a` still ends the script non-zero.
        f"( {build_command}\n) || exit $?",
        "mkdir -p /work/out",
    ]
    for built, name in artifacts:
        lines.append(f"cp {shlex.quote(built)} /work/out/{shlex.quote(name)}")
    return "\n".join(lines) + "\n"


def guest_memory_mb(available_bytes: int) -> int:
    """Return the guest's memory: half of what is available, at most 4 GiB, at least
    512 MiB, rounded down to 64 MiB."""
    mb = min(4096, available_bytes // (2 * 1024 * 1024))
    return max(512, mb // 64 * 64)


# -- initramfs -----------------------------------------------------------------------------


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
            ino, entry.mode, 0, 0, nlink, 0, len(entry.data),
            0, 0, entry.rdev[0], entry.rdev[1], len(name), 0,
        )  # fmt: skip
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


# -- preparing a guest ---------------------------------------------------------------------


def _tree_bytes(root: Path) -> int:
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
        size_mb = int(_tree_bytes(rootfs) * 1.25) // (1024 * 1024) + 768
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


# -- KVM -----------------------------------------------------------------------------------


def kvm_works(
    platform: Platform,
    image: GuestImage | None = None,
    *,
    cache_dir: Path = CACHE_DIR,
    verdict_file: Path = KVM_VERDICT_FILE,
    timeout: float = 25.0,
) -> bool:
    """Return whether a guest of `platform` boots under KVM here, judged by effect.

    Only a guest of the host's own architecture on a host with /dev/kvm is tried: its
    kernel and initramfs (from `image`, else any prepared guest of `platform`) are booted
    under KVM with `timeout`, and the verdict is that /init reported in. A device that
    opens is not enough: on some hosts an x86_64 guest hangs right after the kernel's
    decompressor. The verdict is kept in `verdict_file`, per host kernel and QEMU
    version. Never raises for a failed boot: that is the verdict False.
    """
    if platform.name != host_platform().name or not Path("/dev/kvm").exists():
        return False
    qemu_name = platform.qemu_name
    key = f"{qemu_name}|{os.uname().release}|{qemu_system.version(qemu_name)}"
    verdicts: dict[str, bool] = {}
    if verdict_file.is_file():
        try:
            verdicts = json.loads(verdict_file.read_text())
        except (OSError, ValueError):
            verdicts = {}
    if key in verdicts:
        return bool(verdicts[key])
    image = image or find_prepared(platform, cache_dir)
    if image is None:
        # Nothing to boot yet: answer TCG now and try again once a guest exists.
        return False
    spec = VmSpec(
        qemu_name=qemu_name,
        kernel=image.kernel,
        initrd=image.initrd,
        append="archbench.probe=1",
        cpu="host",
        vcpus=1,
        memory_mb=512,
        accel="kvm",
    )
    booted = threading.Event()

    def watch(line: str) -> None:
        marker = parse_marker(line)
        if marker is not None and marker[0] == "booted":
            booted.set()

    try:
        qemu_system.run(spec, timeout=timeout, on_line=watch)
    except CommandTimeout:
        pass
    except ArchbenchError:
        return False
    verdicts[key] = booted.is_set()
    verdict_file.parent.mkdir(parents=True, exist_ok=True)
    partial = verdict_file.with_suffix(".partial")
    partial.write_text(json.dumps(verdicts, indent=2) + "\n")
    os.replace(partial, verdict_file)
    return booted.is_set()


# -- running a build -----------------------------------------------------------------------


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
    size_mb = max(1024, 4 * _tree_bytes(tree) // (1024 * 1024) + 512)
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
) -> GuestRun:
    """Boot `image`, build `source_dir` in it with `build_command` and return the run.

    `artifacts` are (path built, relative to the source folder; name in `out_dir`);
    the ones copied out are in the result. The guest gets every host CPU and half the
    available memory (at most 4 GiB) unless told otherwise, KVM when it works here,
    else TCG; its CPU model is `cpu_variant`'s under TCG and `host` under KVM. A guest
    still running at `timeout` is ended with its QEMU (status "timeout"); a panic or a
    failed build is status "failed". The console goes to `log_path`. Raises GuestError
    for an unknown CPU variant and ToolMissing when the emulator or e2fsprogs is not
    installed; every other failure is in the result.
    """
    platform = parse_platform(image.platform)
    qemu_name = platform.qemu_name
    chosen: Accel = accel or ("kvm" if kvm_works(platform, image) else "tcg")
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


def describe(run: GuestRun) -> dict[str, object]:
    """Return `run` as plain JSON-ready values (paths as strings)."""
    doc = asdict(run)
    doc["artifacts"] = {k: str(v) for k, v in run.artifacts.items()}
    return doc


__all__ = [
    "CPU_MODELS",
    "DEFAULT_CPU",
    "GuestError",
    "GuestImage",
    "GuestRun",
    "cache_key",
    "cpu_string",
    "kvm_works",
    "load_order",
    "parse_marker",
    "prepare_guest",
    "run_in_guest",
]
