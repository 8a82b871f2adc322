"""Debian's apt and dpkg: install packages, ask what is installed or available."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.tools import proc

_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def installed_version(package: str) -> str:
    """Return the installed version of `package`, or '' when it is not installed."""
    if shutil.which("dpkg-query") is None:
        return ""
    done = proc.run(["dpkg-query", "-W", "-f", "${Status}|${Version}", package], timeout=30)
    if not done.ok:
        return ""
    status, _, version = done.stdout.partition("|")
    return version if status.endswith(" installed") else ""


def installed_packages() -> set[str]:
    """Return every installed package as `name:arch` (dpkg's view), empty without dpkg."""
    if shutil.which("dpkg-query") is None:
        return set()
    done = proc.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}:${Architecture}\\n"],
        timeout=60,
    )
    found = set()
    for line in done.stdout.splitlines():
        status, _, name = line.partition("|")
        if status.startswith("ii") and name:
            found.add(name.strip())
    return found


def candidate_version(package: str) -> str:
    """Return the version apt would install for `package`, or '' when none is offered."""
    done = proc.run(["apt-cache", "policy", package], timeout=60)
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            return "" if value == "(none)" else value
    return ""


def update(log_path: Path | None = None) -> None:
    """Run `apt-get update`. Raises CommandFailed."""
    proc.run(["apt-get", "update"], timeout=600, env=_ENV, check=True, log_path=log_path)


def install(packages: Sequence[str], log_path: Path | None = None) -> None:
    """Install `packages` (names may carry `/suite`). Raises CommandFailed."""
    proc.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        timeout=1800,
        env=_ENV,
        check=True,
        log_path=log_path,
    )


def simulate_purge(packages: Sequence[str]) -> list[str]:
    """Return every package `apt-get purge` of `packages` would remove (its simulation).

    Raises CommandFailed when apt refuses.
    """
    done = proc.run(
        ["apt-get", "purge", "--simulate", *packages], timeout=120, env=_ENV, check=True
    )
    removed = []
    for line in done.stdout.splitlines():
        if line.startswith(("Purg ", "Remv ")):
            removed.append(line.split()[1])
    return removed


def installed_dependencies(package: str) -> set[str]:
    """Return the names of the installed packages `package` needs, recursively (apt-cache's
    Depends and PreDepends, with the installed providers of virtual ones).

    A superset is harmless to callers that confirm with a simulation. Raises CommandFailed.
    """
    done = proc.run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--installed",
            *(f"--no-{kind}" for kind in DEPENDS_IGNORED),
            package,
        ],
        timeout=120,
        env=_ENV,
        check=True,
    )
    return parse_depends(done.stdout)


# apt-cache depends' relations that never make apt remove a dependent.
DEPENDS_IGNORED = ("recommends", "suggests", "conflicts", "breaks", "replaces", "enhances")


def parse_depends(text: str) -> set[str]:
    """Return every package named in `apt-cache depends --recurse` output (pure): the
    packages, their dependencies and the providers listed below virtual ones."""
    names = set()
    for line in text.splitlines():
        word = line.strip().lstrip("|")
        if ":" in word and word.split(":", 1)[0] in ("Depends", "PreDepends"):
            word = word.split(":", 1)[1].strip()
        if word and not word.startswith("<") and " " not in word:
            names.add(word.split(":")[0])
    return names


def purge(packages: Sequence[str], log_path: Path | None = None) -> None:
    """Purge exactly `packages` (no autoremove of anything else). Raises CommandFailed."""
    proc.run(
        ["apt-get", "purge", "-y", *packages],
        timeout=1800,
        env=_ENV,
        check=True,
        log_path=log_path,
    )


def debian_mirror(
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
    sources_list: Path = Path("/etc/apt/sources.list"),
) -> str:
    """Return the URI of the Debian archive this host's apt uses (the first `debian` one)."""
    candidates: list[str] = []
    for path in sorted(sources_dir.glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                candidates.extend(line.split(":", 1)[1].split())
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                candidates.append(next(p for p in parts[1:] if "://" in p))
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    return os.environ.get("ARCHBENCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@dataclass(frozen=True)
class ArchiveVersion:
    """One version of a package that the host's apt can fetch, and the suite offering it."""

    package: str
    version: str  # Debian's full version: 1:10.0.13+ds-0+deb13u1
    suite: str  # trixie, bookworm, bookworm-security
    uri: str


def parse_madison(text: str) -> list[ArchiveVersion]:
    """Parse `apt-cache madison` output (`pkg | version | uri suite/component arch Packages`).

    Source-package lines (`... Sources`) are skipped.
    """
    found: list[ArchiveVersion] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3:
            continue
        package, version, where = parts
        words = where.split()
        if len(words) < 2 or words[-1] != "Packages":
            continue
        suite = words[1].split("/", 1)[0]
        found.append(ArchiveVersion(package, version, suite, words[0]))
    return found


def archive_versions(packages: Sequence[str]) -> list[ArchiveVersion]:
    """Return every version of `packages` that the host's apt sources offer (madison's view,
    from the lists of the last `apt-get update`), in apt's order."""
    done = proc.run(["apt-cache", "madison", *packages], timeout=60)
    return parse_madison(done.stdout)


def parse_stanza(text: str) -> dict[str, str]:
    """Parse the first deb822 stanza of `text` into its fields (continuation lines joined)."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t" and last:
            fields[last] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        last = key.strip()
        fields[last] = value.strip()
    return fields


def package_record(package: str, version: str) -> dict[str, str]:
    """Return the archive index's record of `package`=`version` (`apt-cache show`): its
    SHA256, Size, Depends, Filename... Raises CommandFailed when apt knows no such version."""
    done = proc.run(["apt-cache", "show", f"{package}={version}"], timeout=60, check=True)
    return parse_stanza(done.stdout)


def download(package: str, version: str, dest: Path, log_path: Path | None = None) -> Path:
    """Download the .deb of `package`=`version` into `dest` (`apt-get download`) and return
    its path. Installs nothing. Raises CommandFailed."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.deb"))
    proc.run(
        ["apt-get", "download", f"{package}={version}"],
        timeout=1800,
        env=_ENV,
        cwd=dest,
        check=True,
        log_path=log_path,
    )
    new = sorted(set(dest.glob(f"{package}_*.deb")) - before)
    if len(new) != 1:
        raise FileNotFoundError(f"apt-get download left {len(new)} new {package} .deb files")
    return new[0]


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(deb: Path, dest: Path) -> None:
    """Unpack the files of the .deb `deb` under `dest` (`dpkg -x`: no scripts run, nothing
    is installed). Raises CommandFailed."""
    dest.mkdir(parents=True, exist_ok=True)
    proc.run(["dpkg", "-x", str(deb), str(dest)], timeout=600, check=True)
