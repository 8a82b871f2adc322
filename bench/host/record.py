"""What `archbench setup` changed on this host, kept so that `teardown` undoes only that."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.paths import STATE_DIR

RECORD = STATE_DIR / "host.json"
DAEMON_JSON_BEFORE = STATE_DIR / "daemon.json.before"
SCHEMA_VERSION = 1


@dataclass
class HostRecord:
    """The packages setup installed (dpkg's difference), binfmt handlers it registered,
    and files it wrote."""

    packages: list[str] = field(default_factory=list)
    binfmt: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    # The host's IPv4 forwarding and FORWARD policy before the engine first started here:
    # dockerd turns forwarding on and sets the policy to DROP.
    network_before: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def load(path: Path | None = None) -> HostRecord:
    """Return the host record, empty when none was written or it cannot be read."""
    path = path or RECORD
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return HostRecord()
    if not isinstance(doc, dict):
        return HostRecord()
    return HostRecord(
        packages=[str(p) for p in doc.get("packages", [])],
        binfmt=[str(b) for b in doc.get("binfmt", [])],
        files=[str(f) for f in doc.get("files", [])],
        dirs=[str(d) for d in doc.get("dirs", [])],
        network_before={str(k): str(v) for k, v in dict(doc.get("network_before", {})).items()},
    )


def save(record: HostRecord, path: Path | None = None) -> None:
    """Write `record` atomically."""
    path = path or RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".host.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(record), fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _merge(current: list[str], new: Iterable[str]) -> list[str]:
    return sorted(set(current) | set(new))


def add_packages(packages: Iterable[str], path: Path | None = None) -> None:
    """Record `packages` (name:arch) as installed by setup."""
    record = load(path)
    record.packages = _merge(record.packages, packages)
    save(record, path)


def add_binfmt(names: Iterable[str], path: Path | None = None) -> None:
    """Record binfmt_misc handlers (qemu-aarch64, ...) as registered by setup."""
    record = load(path)
    record.binfmt = _merge(record.binfmt, names)
    save(record, path)


def add_files(paths: Iterable[Path], path: Path | None = None) -> None:
    """Record configuration files setup created."""
    record = load(path)
    record.files = _merge(record.files, (str(p) for p in paths))
    save(record, path)


def add_dirs(paths: Iterable[Path], path: Path | None = None) -> None:
    """Record state folders that appeared with the packages setup installed."""
    record = load(path)
    record.dirs = _merge(record.dirs, (str(p) for p in paths))
    save(record, path)


def keep_network_before(values: dict[str, str], path: Path | None = None) -> None:
    """Record the host's network settings before the engine first changes them (once)."""
    record = load(path)
    if not record.network_before:
        record.network_before = dict(values)
        save(record, path)
