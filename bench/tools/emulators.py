"""qemu-user emulators by name: the host's, or a Debian suite's or version's, fetched from the
archive, checked against its index and unpacked into archbench's cache."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from bench.errors import ArchbenchError, CommandFailed, HostNotReady, UsageError
from bench.tools import apt, proc
from bench.tools import qemu as qemu_tool

CACHE_DIR = Path("/var/cache/archbench/emulators")
HOST = "host"
# bookworm's qemu-user-static holds static binaries (qemu-aarch64-static); from trixie on,
# qemu-user holds static-pie binaries (qemu-aarch64) and qemu-user-static only links to them.
USER_PACKAGES = ("qemu-user-static", "qemu-user")
MANIFEST = "emulator.json"
# Suites, Debian versions (1:10.0.13+ds-0+deb13u1) and upstream versions (10.0): no path
# separators, no spaces, nothing a tag or a binfmt_misc line (":"-separated) trips on
# after `_dir_name` escapes the epoch's colon.
_SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+:~_-]{0,63}$")
_VERSION_LINE = re.compile(
    r"^(?P<program>\S+) version (?P<upstream>[0-9][^\s(]*)(?: \((?P<build>[^)]*)\))?"
)
_BINARY = re.compile(r"^qemu-(?P<name>[a-z0-9_]+?)(?:-static)?$")

Say = Callable[[str], None]


class EmulatorUnavailable(HostNotReady):
    """An emulator cannot be fetched, verified or run here; the message says why."""


@dataclass(frozen=True)
class QemuVersion:
    """What `qemu-<arch> --version` says: `qemu-aarch64 version 10.0.13 (Debian 1:10...)`."""

    program: str  # qemu-aarch64
    upstream: str  # 10.0.13
    build: str  # Debian 1:10.0.13+ds-0+deb13u1 ('' when the binary names none)

    def __str__(self) -> str:
        return f"{self.upstream} ({self.build})" if self.build else self.upstream


def parse_version_output(text: str) -> QemuVersion:
    """Parse the first line of `qemu-<arch> --version`. Raises ValueError on anything else."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = _VERSION_LINE.match(first.strip())
    if match is None:
        raise ValueError(f"not a qemu --version line: {first!r}")
    return QemuVersion(match["program"], match["upstream"], match["build"] or "")


def measure_version(binary: Path) -> QemuVersion:
    """Run `binary --version` and return what it says. Raises EmulatorUnavailable when it
    does not run or answers something else."""
    try:
        done = proc.run([str(binary), "--version"], timeout=30)
    except ArchbenchError as exc:
        raise EmulatorUnavailable(f"{binary} --version: {exc}") from exc
    try:
        return parse_version_output(done.stdout)
    except ValueError as exc:
        raise EmulatorUnavailable(f"{binary} --version exited {done.returncode}: {exc}") from exc


def upstream_of(version: str) -> str:
    """Return the upstream part of a Debian version: 1:7.2+dfsg-7+deb12u18+b3 -> 7.2."""
    tail = version.split(":", 1)[1] if ":" in version else version
    return re.split(r"[+~-]", tail, maxsplit=1)[0]


@dataclass(frozen=True)
class Emulator:
    """One qemu-user build that cells can run under: the host's registered one, or a Debian
    package unpacked in the cache. `binaries` maps a QEMU target name (aarch64) to its
    executable."""

    spec: str  # as asked for: host, trixie, 10.0
    package: str  # qemu-user, qemu-user-static
    version: str  # Debian's full version ('' when the host's is not a Debian package)
    suite: str  # the suite it was fetched from; 'host' for the host's
    sha256: str  # of the .deb, as the archive index lists it ('' for the host's)
    root: Path | None  # the unpacked tree (None for the host's)
    binaries: tuple[tuple[str, str], ...]
    reported: str = ""  # what its binaries' --version says: 10.0.13 (Debian 1:10.0.13+ds-...)
    label: str = ""  # the tag-safe name when major.minor alone is ambiguous (see `distinct`)

    @property
    def is_host(self) -> bool:
        return self.spec == HOST

    @property
    def upstream(self) -> str:
        """The upstream QEMU version: 10.0.13."""
        return upstream_of(self.version) if self.version else ""

    @property
    def tag(self) -> str:
        """A tag-safe name of the QEMU release: qemu10.0 (major.minor); 'host' for the host's.
        Two versions of one release in a run are told apart by their full version
        (`label`, set by `distinct`)."""
        if self.is_host:
            return HOST
        if self.label:
            return self.label
        return "qemu" + ".".join(self.upstream.split(".")[:2])

    @property
    def axis(self) -> str:
        """The emulator's value on the matrix's emulator axis: '' for the host's (so the
        host's cells keep their keys and tags), else `tag`."""
        return "" if self.is_host else self.tag

    def binary(self, qemu_name: str) -> Path:
        """Return the executable that emulates `qemu_name`. Raises EmulatorUnavailable."""
        for name, path in self.binaries:
            if name == qemu_name:
                return Path(path)
        raise EmulatorUnavailable(
            f"emulator {self.spec} ({self.package} {self.version or 'unknown version'}) "
            f"has no qemu-{qemu_name}"
        )


def parse_specs(values: Sequence[str]) -> tuple[str, ...]:
    """Return the `--emulator` values (repeatable, comma lists) in order without duplicates;
    ('host',) when none is given. Raises UsageError on a malformed value."""
    specs: list[str] = []
    for value in (part.strip() for v in values for part in v.split(",")):
        if not value:
            continue
        if not _SPEC.match(value):
            raise UsageError(
                f"bad --emulator {value!r}; expected host, a Debian suite or a QEMU version"
            )
        if value not in specs:
            specs.append(value)
    return tuple(specs) or (HOST,)


def full_label(version: str) -> str:
    """Return a tag-safe name of a full Debian version: 1:10.0.13+ds-0+deb13u1 ->
    qemu10.0.13_ds-0_deb13u1 (no epoch; characters a tag does not allow become _)."""
    tail = version.split(":", 1)[1] if ":" in version else version
    return "qemu" + re.sub(r"[^A-Za-z0-9_.-]", "_", tail)[:100]


def distinct(found: Sequence[Emulator], say: Say) -> tuple[Emulator, ...]:
    """Return `found` (resolved `--emulator` values, in order) without repeats of one
    package version (`trixie` and `10.0` may name the same one: said, and kept once), and
    each pinned one named by its full version where two versions of one QEMU release would
    otherwise share a tag."""
    kept: list[Emulator] = []
    for e in found:
        same = next(
            (
                k
                for k in kept
                if (k.is_host and e.is_host)
                or (
                    not k.is_host
                    and not e.is_host
                    and (k.package, k.version) == (e.package, e.version)
                )
            ),
            None,
        )
        if same is not None:
            say(f"--emulator {e.spec} is {same.spec} ({e.package} {e.version}): measured once")
            continue
        kept.append(e)
    tags = [e.tag for e in kept if not e.is_host]
    return tuple(
        replace(e, label=full_label(e.version)) if not e.is_host and tags.count(e.tag) > 1 else e
        for e in kept
    )


def version_matches(spec: str, version: str) -> bool:
    """Whether the version `spec` names the Debian version `version`: the full version, the
    version without its epoch, or an upstream prefix on a dot boundary (10.0 -> 10.0.13)."""
    without_epoch = version.split(":", 1)[1] if ":" in version else version
    if spec in (version, without_epoch):
        return True
    upstream = upstream_of(version)
    return upstream == spec or upstream.startswith(spec + ".")


def choose(spec: str, offered: Sequence[apt.ArchiveVersion]) -> apt.ArchiveVersion:
    """Return the archive version that `spec` (a suite or a version) names among `offered`.

    A suite names its own version; a version must match exactly one distinct version.
    Raises UsageError listing what is reachable otherwise.
    """
    suites = list(dict.fromkeys(o.suite for o in offered))
    in_suite = [o for o in offered if o.suite == spec]
    if in_suite:
        return in_suite[0]
    versions = list(dict.fromkeys(o.version for o in offered))
    listing = ", ".join(f"{o.version} ({o.suite})" for o in _first_per_version(offered))
    if not spec[0].isdigit():
        raise UsageError(
            f"--emulator {spec}: not a suite this host's apt reaches "
            f"(reachable: {', '.join(suites) or 'none'}); add an apt source for it, or name "
            f"a version: {listing or 'none offered'}"
        )
    matching = [v for v in versions if version_matches(spec, v)]
    if len(matching) == 1:
        return next(o for o in offered if o.version == matching[0])
    if not matching:
        raise UsageError(
            f"--emulator {spec}: no reachable QEMU version matches; offered: {listing}"
        )
    candidates = ", ".join(
        f"{o.version} ({o.suite})" for o in _first_per_version(offered) if o.version in matching
    )
    raise UsageError(
        f"--emulator {spec} matches {len(matching)} versions: {candidates}; "
        "name one in full or by its suite"
    )


def _first_per_version(offered: Sequence[apt.ArchiveVersion]) -> list[apt.ArchiveVersion]:
    seen: dict[str, apt.ArchiveVersion] = {}
    for o in offered:
        seen.setdefault(o.version, o)
    return list(seen.values())


def holding_package(static_record: dict[str, str]) -> str:
    """Return which package holds the binaries, from qemu-user-static's index record: from
    trixie on it depends on qemu-user, whose binaries it only links to."""
    depends = [
        d.strip().split()[0] for d in static_record.get("Depends", "").split(",") if d.strip()
    ]
    return "qemu-user" if "qemu-user" in depends else "qemu-user-static"


def static_binaries(tree: Path) -> dict[str, str]:
    """Return {qemu target name: path} for the qemu-user executables under `tree`/usr/bin
    that are regular, statically linked ELF files (no program interpreter), so that they
    run on this host whatever its libraries."""
    found: dict[str, str] = {}
    bindir = tree / "usr" / "bin"
    if not bindir.is_dir():
        return found
    for path in sorted(bindir.iterdir()):
        match = _BINARY.match(path.name)
        if match is None or path.is_symlink() or not path.is_file():
            continue
        try:
            with open(path, "rb") as f:
                elf = ELFFile(f)
                dynamic = any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments())
        except (ELFError, OSError):
            continue
        if not dynamic:
            found[match["name"]] = str(path)
    return found


def _dir_name(package: str, version: str) -> str:
    # The epoch's ':' would end the interpreter field of a binfmt_misc registration line.
    return f"{package}_{version.replace(':', '%3a')}"


@contextlib.contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    # Two runs fetching the same emulator at once would unpack over each other.
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fetch(spec: str, choice: apt.ArchiveVersion, cache_dir: Path, say: Say) -> Emulator:
    """Return the emulator of `choice`'s version, from the cache or else downloaded with apt,
    its .deb checked against the SHA256 of the archive index, and unpacked with `dpkg -x`.

    Raises EmulatorUnavailable when the download fails, the checksum differs, or the
    package holds no statically linked qemu-user binary.
    """
    try:
        try:
            record = apt.package_record("qemu-user-static", choice.version)
            package = holding_package(record)
        except CommandFailed:
            # A suite whose qemu-user-static is gone: its qemu-user is the static one.
            package = "qemu-user"
        if package != "qemu-user-static":
            record = apt.package_record(package, choice.version)
    except ArchbenchError as exc:
        raise EmulatorUnavailable(
            f"apt has no record of qemu-user {choice.version}: {exc}"
        ) from exc
    want = record.get("SHA256", "")
    if not want:
        raise EmulatorUnavailable(
            f"the archive index lists no SHA256 for {package} {choice.version}"
        )
    entry = cache_dir / _dir_name(package, choice.version)
    with _cache_lock(cache_dir):
        binaries = _cached_binaries(entry, want)
        if binaries is None:
            binaries = _unpack(package, choice.version, want, entry, say)
    tree = entry / "tree"
    return Emulator(
        spec=spec,
        package=package,
        version=choice.version,
        suite=choice.suite,
        sha256=want,
        root=tree,
        binaries=tuple(sorted((k, str(tree / v)) for k, v in binaries.items())),
    )


def _cached_binaries(entry: Path, sha256: str) -> dict[str, str] | None:
    """Return the cached unpacking's {target: path inside the tree}, or None when the cache
    holds no complete unpacking of the .deb with this `sha256`."""
    try:
        data = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sha256") != sha256:
        return None
    binaries = data.get("binaries")
    if not isinstance(binaries, dict):
        return None
    return {str(k): str(v) for k, v in binaries.items()}


def _unpack(package: str, version: str, sha256: str, entry: Path, say: Say) -> dict[str, str]:
    staging = entry.with_name(f".{entry.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    say(f"fetching {package} {version} from Debian's archive into {entry}")
    try:
        deb = apt.download(package, version, staging / "deb")
        got = apt.sha256_of(deb)
        if got != sha256:
            raise EmulatorUnavailable(
                f"{deb.name} has sha256 {got}, but the archive index lists {sha256}"
            )
        size = deb.stat().st_size
        tree = staging / "tree"
        apt.extract(deb, tree)
        found = static_binaries(tree)
        if not found:
            raise EmulatorUnavailable(
                f"{package} {version} holds no statically linked qemu-user binary"
            )
        binaries = {k: str(Path(v).relative_to(tree)) for k, v in found.items()}
        manifest = {
            "package": package,
            "version": version,
            "sha256": sha256,
            "deb_size": size,
            "binaries": binaries,
        }
        shutil.rmtree(staging / "deb")
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(staging, entry)
        return binaries
    except EmulatorUnavailable:
        raise
    except (ArchbenchError, OSError) as exc:
        raise EmulatorUnavailable(f"fetching {package} {version}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cached(cache_dir: Path = CACHE_DIR) -> list[Emulator]:
    """Return the emulators unpacked in the cache by earlier runs (complete unpackings
    only), by version; nothing is fetched or run. Their suite is not recorded there, so
    each is named by its version."""
    found: list[Emulator] = []
    try:
        entries = sorted(p for p in cache_dir.iterdir() if (p / MANIFEST).is_file())
    except OSError:
        return []
    for entry in entries:
        try:
            data = json.loads((entry / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("binaries"), dict):
            continue
        version, package = str(data.get("version", "")), str(data.get("package", ""))
        if not version or not package:
            continue
        tree = entry / "tree"
        binaries = tuple(sorted((str(k), str(tree / str(v))) for k, v in data["binaries"].items()))
        found.append(
            Emulator(version, package, version, "", str(data.get("sha256", "")), tree, binaries)
        )
    return found


def host_emulator() -> Emulator:
    """Return the host's emulator: the interpreters registered in binfmt_misc now."""
    binaries = []
    for name in sorted(qemu_tool.binfmt_names()):
        if not name.startswith("qemu-"):
            continue
        entry = qemu_tool.read_binfmt(name[len("qemu-") :])
        if entry is not None and entry.interpreter:
            binaries.append((name[len("qemu-") :], entry.interpreter))
    return Emulator(
        spec=HOST,
        package="qemu-user-static",
        version=apt.installed_version("qemu-user-static"),
        suite=HOST,
        sha256="",
        root=None,
        binaries=tuple(binaries),
    )


def resolve(spec: str, *, say: Say, cache_dir: Path = CACHE_DIR) -> Emulator:
    """Return the emulator `spec` names: `host`, a suite apt reaches, or a version that
    exactly one reachable package matches. Raises UsageError for a name that matches
    nothing or several versions, EmulatorUnavailable when fetching fails."""
    if spec == HOST:
        emulator = host_emulator()
    else:
        offered = apt.archive_versions(USER_PACKAGES)
        emulator = fetch(spec, choose(spec, offered), cache_dir, say)
    return with_reported_version(emulator)


def with_reported_version(emulator: Emulator) -> Emulator:
    """Return `emulator` with the version its binaries report (`--version` of its aarch64
    one, else its first). Raises EmulatorUnavailable when a pinned emulator's binary does
    not run here; the host's is then named by what qemu-aarch64-static reports, or not
    at all (its registration is what runs, whatever it says)."""
    if not emulator.binaries:
        return emulator
    names = dict(emulator.binaries)
    # The host's handlers are Debian's `<arch>-binfmt-P` links: called by that name, QEMU
    # takes its first argument for the program to run, so `--version` goes to the file
    # the link points at.
    binary = Path(os.path.realpath(names.get("aarch64", emulator.binaries[0][1])))
    try:
        return replace(emulator, reported=str(measure_version(binary)))
    except EmulatorUnavailable:
        if not emulator.is_host:
            raise
    try:
        return replace(emulator, reported=str(parse_version_output(qemu_tool.user_version())))
    except (ValueError, ArchbenchError):
        return emulator
