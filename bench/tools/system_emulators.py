"""qemu-system emulators of a pinned QEMU version: a Debian suite's system emulator package
with its whole shared-library closure from the same suite (libc6 and the loader included),
unpacked into archbench's cache and started through that suite's own loader.

No host-wide lock is taken while a pinned system emulator runs: unlike qemu-user it is
started directly by archbench, not by the kernel through binfmt_misc, so nothing another
run uses changes. The cache lock only keeps two runs from unpacking the same closure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from bench.errors import ArchbenchError
from bench.platforms import host_platform
from bench.tools import apt, mmdebstrap, proc
from bench.tools.emulators import (
    CACHE_DIR,
    Emulator,
    EmulatorUnavailable,
    QemuVersion,
    Say,
    _cache_lock,
    _dir_name,
    upstream_of,
)
from bench.tools.qemu_system import Launcher

# The Debian package that holds qemu-system-<target> for each QEMU target name.
SYSTEM_PACKAGES: dict[str, str] = {
    "aarch64": "qemu-system-arm",
    "arm": "qemu-system-arm",
    "x86_64": "qemu-system-x86",
    "i386": "qemu-system-x86",
    "riscv64": "qemu-system-misc",
    "s390x": "qemu-system-s390x",
    "ppc64le": "qemu-system-ppc",
}
MANIFEST = "system.json"
# QEMU's data folder and Debian's firmware path (configure --firmwarepath), in QEMU's own
# search order: given inside the closure with -L, they are searched before the host's
# (bios-256k.bin of an x86 guest comes from seabios, not from qemu-system-data).
FIRMWARE_DIRS = ("usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu")
_SYSTEM_VERSION = re.compile(
    r"^QEMU emulator version (?P<upstream>[0-9][^\s(]*)(?: \((?P<build>[^)]*)\))?"
)
_SYSTEM_BINARY = re.compile(r"^qemu-system-(?P<name>[a-z0-9_]+)$")

Bootstrap = Callable[..., None]
Record = Callable[[str, str], dict[str, str]]


@dataclass(frozen=True)
class SystemEmulator:
    """One pinned QEMU's system emulator for one target, ready to start: what the record
    names (package, Debian version, suite, sha256 of its .deb, what it reports) and how
    to start it (`launcher`)."""

    spec: str  # as asked for: trixie, 10.0
    tag: str  # the emulator axis value it serves: qemu10.0
    qemu_name: str  # aarch64
    package: str  # qemu-system-arm
    version: str  # 1:10.0.13+ds-0+deb13u1
    suite: str  # trixie
    sha256: str  # of the package's .deb, as the archive index lists it
    root: Path  # the unpacked closure
    launcher: Launcher
    closure_bytes: int  # size of the unpacked closure
    packages: tuple[tuple[str, str, str], ...]  # every .deb unpacked: (name, version, sha256)
    reported: str = ""  # what `--version` says: 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)

    @property
    def axis(self) -> str:
        return self.tag


def package_for(qemu_name: str) -> str:
    """Return the Debian package holding qemu-system-`qemu_name`. Raises
    EmulatorUnavailable for a target no package is known for."""
    try:
        return SYSTEM_PACKAGES[qemu_name]
    except KeyError:
        raise EmulatorUnavailable(
            f"no Debian package of qemu-system-{qemu_name} is known "
            f"(known: {', '.join(sorted(SYSTEM_PACKAGES))})"
        ) from None


def parse_system_version(text: str, program: str = "qemu-system") -> QemuVersion:
    """Parse the first line of `qemu-system-<target> --version` (`QEMU emulator version
    10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)`). Raises ValueError on anything else."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    match = _SYSTEM_VERSION.match(first)
    if match is None:
        raise ValueError(f"not a qemu-system --version line: {first!r}")
    return QemuVersion(program, match["upstream"], match["build"] or "")


def sources_for(
    package: str, version: str, suite: str, offered: Sequence[apt.ArchiveVersion], mirror: str
) -> tuple[str, list[str]]:
    """Return (suite, one-line sources) to fetch `package` `version` and its closure from:
    the suite and URI the archive offers that version in (`suite` preferred), plus the
    release an update suite (bookworm-security, trixie-backports) builds on, whose
    libraries it needs. Raises EmulatorUnavailable when no reachable suite offers it."""
    found = [o for o in offered if o.package == package and o.version == version]
    if not found:
        listing = ", ".join(f"{o.version} ({o.suite})" for o in offered if o.package == package)
        raise EmulatorUnavailable(
            f"{package} {version} is offered by no suite this host's apt reaches "
            f"(offered: {listing or 'none'})"
        )
    chosen = next((o for o in found if o.suite == suite), found[0])
    lines = [f"deb {chosen.uri} {chosen.suite} main"]
    if "-" in chosen.suite:
        lines.append(f"deb {mirror} {chosen.suite.split('-', 1)[0]} main")
    return chosen.suite, lines


def parse_ld_list(text: str) -> list[tuple[str, str]]:
    """Parse `ld.so --list` output into (library name, resolved path or 'not found');
    the vDSO, which has no file, is left out."""
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("linux-vdso") or line.startswith("linux-gate"):
            continue
        if "=>" in line:
            name, _, where = line.partition("=>")
            where = where.strip()
            path = "not found" if where.startswith("not found") else where.split(" (")[0]
            found.append((name.strip(), path.strip()))
        else:
            path = line.split(" (")[0].strip()
            found.append((Path(path).name, path))
    return found


def foreign_libraries(listed: Sequence[tuple[str, str]], root: Path) -> list[str]:
    """Return what of `listed` (from `parse_ld_list`) does not resolve inside `root`:
    'name (not found)' or 'name -> /host/path', in order."""
    bad: list[str] = []
    for name, path in listed:
        if path == "not found":
            bad.append(f"{name} (not found)")
        elif not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
            bad.append(f"{name} -> {path}")
    return bad


def program_interpreter(binary: Path) -> str:
    """Return the PT_INTERP path of the ELF file `binary` ('' when it has none). Raises
    EmulatorUnavailable when it is not a readable ELF file."""
    try:
        with open(binary, "rb") as f:
            for seg in ELFFile(f).iter_segments():
                if isinstance(seg, InterpSegment):
                    return str(seg.get_interp_name())
    except (ELFError, OSError) as exc:
        raise EmulatorUnavailable(f"{binary}: not a readable ELF file ({exc})") from exc
    return ""


def launcher_in(root: Path, binary: Path) -> Launcher:
    """Return how to start `binary` (under `root`) through the root's own loader: the
    loader its PT_INTERP names, found inside `root` (merged /usr or not), the root's
    library folders, its QEMU data folder and module folder. Raises EmulatorUnavailable
    when the root holds no such loader."""
    interp = program_interpreter(binary)
    if not interp:
        raise EmulatorUnavailable(f"{binary} names no program interpreter")
    rel = interp.lstrip("/")
    # A root unpacked without base-files has no /lib64 -> usr/lib64 link (merged /usr).
    candidates = [root / rel, root / "usr" / rel]
    loader = next((c for c in candidates if c.exists()), None)
    if loader is None:
        raise EmulatorUnavailable(f"the closure holds no loader {interp} for {binary.name}")
    real = Path(os.path.realpath(loader))
    if not real.is_relative_to(os.path.realpath(root)):
        raise EmulatorUnavailable(f"the loader {loader} leads out of the closure, to {real}")
    triplet = real.parent.name
    # Before merged /usr (bookworm) the loader and the base libraries are in
    # lib/<triplet>, the others in usr/lib/<triplet>: both are searched.
    libdirs = [
        d
        for d in (
            real.parent,
            root / "usr" / "lib" / triplet,
            root / "lib" / triplet,
            root / "usr" / "lib",
            root / "lib",
        )
        if d.is_dir()
    ]
    modules = root / "usr" / "lib" / triplet / "qemu"
    return Launcher(
        loader=real,
        library_path=tuple(dict.fromkeys(libdirs)),
        binary=binary,
        data_dirs=tuple(root / d for d in FIRMWARE_DIRS if (root / d).is_dir()),
        module_dir=modules if modules.is_dir() else None,
    )


def relink_absolute(root: Path) -> int:
    """Point every absolute symbolic link under `root` (but dev/) at its target inside
    `root`, relatively, so that the closure's links (/usr/share/qemu/bios-256k.bin ->
    /usr/share/seabios/...) never reach the host's files. Returns how many changed."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d != "dev"]
        for name in [*filenames, *dirnames]:
            link = here / name
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            if not target.startswith("/"):
                continue
            inside = root / target.lstrip("/")
            link.unlink()
            link.symlink_to(os.path.relpath(inside, here))
            changed += 1
    return changed


def tree_bytes(root: Path) -> int:
    """Return the bytes of the regular files under `root` (links not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def index_hashes(lists_dir: Path, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Return {(package, version): SHA256} of the `wanted` (package, version) pairs from the
    archive's package lists (`*_Packages`) in `lists_dir`."""
    found: dict[tuple[str, str], str] = {}
    for path in sorted(lists_dir.glob("*_Packages")):
        fields: dict[str, str] = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in [*f, "\n"]:
                if not line.strip():
                    key = (fields.get("Package", ""), fields.get("Version", ""))
                    if key in wanted and fields.get("SHA256"):
                        found[key] = fields["SHA256"]
                    fields = {}
                elif line[0] not in " \t":
                    name, _, value = line.partition(":")
                    if name in ("Package", "Version", "SHA256"):
                        fields[name] = value.strip()
    return found


def deb_identity(deb: Path) -> tuple[str, str]:
    """Return (package, version) of a .deb as apt names it in its cache:
    `libattr1_1%3a2.5.2-3_amd64.deb` -> ('libattr1', '1:2.5.2-3')."""
    parts = deb.name.removesuffix(".deb").split("_")
    if len(parts) != 3:
        raise EmulatorUnavailable(f"{deb.name}: not an apt cache file name")
    return parts[0], urllib.parse.unquote(parts[1])


def verify_debs(
    root: Path, package: str, want: str
) -> tuple[tuple[tuple[str, str, str], ...], int]:
    """Check every .deb the closure was unpacked from (kept in root's apt cache) against
    the SHA256 the archive's package lists give it, and `package`'s against `want` (the
    host's apt index). Returns ((name, version, sha256) of each, in name order; their
    total bytes). Raises EmulatorUnavailable on a mismatch or a .deb no list names."""
    debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    if not debs:
        raise EmulatorUnavailable(f"fetching {package}: no .deb was downloaded")
    ids = {deb: deb_identity(deb) for deb in debs}
    index = index_hashes(root / "var" / "lib" / "apt" / "lists", set(ids.values()))
    rows: list[tuple[str, str, str]] = []
    size = 0
    for deb, (name, version) in ids.items():
        listed = index.get((name, version))
        if listed is None:
            raise EmulatorUnavailable(f"{deb.name} is in no package list of the archive")
        got = apt.sha256_of(deb)
        if got != listed:
            raise EmulatorUnavailable(
                f"{deb.name} has sha256 {got}, but the archive index lists {listed}"
            )
        if name == package and got != want:
            raise EmulatorUnavailable(
                f"{deb.name} has sha256 {got}, but the host's apt index lists {want}"
            )
        rows.append((name, version, got))
        size += deb.stat().st_size
    if not any(name == package for name, _v, _s in rows):
        raise EmulatorUnavailable(f"the closure fetched holds no {package}")
    return tuple(sorted(rows)), size


def system_binaries(root: Path) -> dict[str, str]:
    """Return {QEMU target: path relative to `root`} of the qemu-system-* executables in
    root/usr/bin (regular files, not links)."""
    bindir = root / "usr" / "bin"
    found: dict[str, str] = {}
    if bindir.is_dir():
        for path in sorted(bindir.iterdir()):
            match = _SYSTEM_BINARY.match(path.name)
            if match and path.is_file() and not path.is_symlink():
                found[match["name"]] = str(path.relative_to(root))
    return found


def first_error(exc: BaseException) -> str:
    """Return the line of a failed mmdebstrap's output that says why: apt's first `E:`
    line (the last lines only say that mmdebstrap failed), else the last line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E: ")]
    return errors[0] if errors else (lines[-1] if lines else type(exc).__name__)


def _cached_manifest(entry: Path, sha256: str) -> dict[str, object] | None:
    try:
        data = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sha256") != sha256:
        return None
    return data


def _unpack_closure(
    package: str,
    version: str,
    suite: str,
    sources: Sequence[str],
    want: str,
    entry: Path,
    say: Say,
    bootstrap: Bootstrap,
) -> dict[str, object]:
    staging = entry.with_name(f".{entry.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    root = staging / "root"
    say(f"fetching {package} {version} and its libraries from {suite} into {entry}")
    try:
        bootstrap(
            host_platform().debian_arch,
            suite,
            root,
            [f"{package}={version}"],
            sources,
            log_path=staging / "mmdebstrap.log",
        )
        debs, download_bytes = verify_debs(root, package, want)
        # The .debs and lists served the check above; the closure is what runs.
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        relink_absolute(root)
        binaries = system_binaries(root)
        if not binaries:
            raise EmulatorUnavailable(f"{package} {version} holds no qemu-system binary")
        manifest: dict[str, object] = {
            "package": package,
            "version": version,
            "suite": suite,
            "sha256": want,
            "sources": list(sources),
            "binaries": binaries,
            "closure_bytes": tree_bytes(root),
            "download_bytes": download_bytes,
            "debs": [list(d) for d in debs],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(staging, entry)
        return manifest
    except EmulatorUnavailable:
        raise
    except (ArchbenchError, OSError) as exc:
        raise EmulatorUnavailable(
            f"fetching {package} {version} with its libraries from {suite}: {first_error(exc)}"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def from_manifest(
    emulator: Emulator, qemu_name: str, entry: Path, manifest: dict[str, object]
) -> SystemEmulator:
    """Return the system emulator for `qemu_name` that the cached closure `entry`
    (described by `manifest`) holds, not yet checked to run. Raises EmulatorUnavailable
    when it holds no qemu-system-`qemu_name`."""
    root = entry / "root"
    binaries = manifest.get("binaries")
    rel = binaries.get(qemu_name) if isinstance(binaries, dict) else None
    package, version = str(manifest.get("package", "")), str(manifest.get("version", ""))
    if not rel:
        raise EmulatorUnavailable(f"{package} {version} holds no qemu-system-{qemu_name}")
    debs = manifest.get("debs")
    return SystemEmulator(
        spec=emulator.spec,
        tag=emulator.tag,
        qemu_name=qemu_name,
        package=package,
        version=version,
        suite=str(manifest.get("suite", "")),
        sha256=str(manifest.get("sha256", "")),
        root=root,
        launcher=launcher_in(root, root / str(rel)),
        closure_bytes=int(str(manifest.get("closure_bytes", 0))),
        packages=tuple(
            (str(d[0]), str(d[1]), str(d[2])) for d in (debs if isinstance(debs, list) else [])
        ),
    )


def check_runs(system: SystemEmulator) -> SystemEmulator:
    """Return `system` with the version it reports, after checking that every library
    its binary loads resolves inside its own closure (`ld.so --list`, the host's
    ld.so.cache skipped) and that `--version` names its package's upstream version.
    Raises EmulatorUnavailable, saying exactly what fails, otherwise."""
    launcher = system.launcher
    listing = [
        str(launcher.loader),
        "--inhibit-cache",
        "--library-path",
        ":".join(str(d) for d in launcher.library_path),
        "--list",
        str(launcher.binary),
    ]
    name = f"{system.package} {system.version}"
    try:
        listed = proc.run(listing, timeout=30)
    except ArchbenchError as exc:
        raise EmulatorUnavailable(f"{name}: its loader does not run here: {exc}") from exc
    if not listed.ok:
        raise EmulatorUnavailable(
            f"{name}: its loader cannot load {launcher.binary.name} here "
            f"(exit {listed.returncode}): {(listed.stdout + listed.stderr).strip()[-300:]}"
        )
    foreign = foreign_libraries(parse_ld_list(listed.stdout), system.root)
    if foreign:
        raise EmulatorUnavailable(
            f"{name}: {launcher.binary.name} needs libraries its closure lacks: "
            + ", ".join(foreign)
        )
    try:
        done = proc.run([*launcher.command(), "--version"], timeout=30, env=launcher.env())
    except ArchbenchError as exc:
        raise EmulatorUnavailable(f"{name}: {launcher.binary.name} --version: {exc}") from exc
    try:
        reported = parse_system_version(done.stdout, launcher.binary.name)
    except ValueError as exc:
        raise EmulatorUnavailable(
            f"{name}: {launcher.binary.name} --version exited {done.returncode}: {exc} "
            f"{done.stderr.strip()[-300:]}"
        ) from exc
    upstream = upstream_of(system.version)
    # bookworm's 1:7.2+dfsg-7+deb12u18 reports 7.2.22: a point release of the same 7.2.
    if reported.upstream != upstream and not reported.upstream.startswith(upstream + "."):
        raise EmulatorUnavailable(
            f"{name}: {launcher.binary.name} reports {reported}, not {upstream}"
        )
    return replace(system, reported=str(reported))


def provide(
    emulator: Emulator,
    qemu_name: str,
    *,
    say: Say,
    cache_dir: Path = CACHE_DIR,
    record: Record = apt.package_record,
    offered: Callable[[Sequence[str]], list[apt.ArchiveVersion]] = apt.archive_versions,
    bootstrap: Bootstrap = mmdebstrap.extract_closure,
    mirror: Callable[[], str] = apt.debian_mirror,
    check: Callable[[SystemEmulator], SystemEmulator] = check_runs,
) -> SystemEmulator:
    """Return pinned `emulator`'s system emulator for `qemu_name`, checked to run here.

    Its package (qemu-system-arm for aarch64, ...) of the same Debian version comes with
    its whole dependency closure from the same suite, fetched with mmdebstrap (each .deb
    checked against the archive's index, the package's also against the host's apt
    index) and unpacked into `cache_dir` once per package and version, under the cache's
    lock; then `check`ed to start through its own loader (`check_runs`). Raises
    EmulatorUnavailable, naming the reason, when it cannot be fetched, verified or run
    here.
    """
    package = package_for(qemu_name)
    version = emulator.version
    if emulator.is_host or not version:
        raise EmulatorUnavailable(f"emulator {emulator.spec} is not a pinned Debian version")
    try:
        want = record(package, version).get("SHA256", "")
    except ArchbenchError as exc:
        raise EmulatorUnavailable(f"apt has no record of {package} {version}: {exc}") from exc
    if not want:
        raise EmulatorUnavailable(f"the archive index lists no SHA256 for {package} {version}")
    entry = cache_dir / _dir_name(package, version)
    with _cache_lock(cache_dir):
        manifest = _cached_manifest(entry, want)
        if manifest is None:
            suite, sources = sources_for(
                package, version, emulator.suite, offered([package]), mirror()
            )
            manifest = _unpack_closure(
                package, version, suite, sources, want, entry, say, bootstrap
            )
    return check(from_manifest(emulator, qemu_name, entry, manifest))


def cached_system(
    emulator: Emulator, qemu_name: str, cache_dir: Path = CACHE_DIR
) -> SystemEmulator | None:
    """Return `emulator`'s system emulator for `qemu_name` when an earlier run unpacked its
    closure (nothing is fetched; not checked to run), else None. Raises
    EmulatorUnavailable when no package holds that target."""
    package = package_for(qemu_name)
    entry = cache_dir / _dir_name(package, emulator.version)
    try:
        data = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return from_manifest(emulator, qemu_name, entry, data)
