"""Debian's apt and dpkg: install packages, ask what is installed or available."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
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
