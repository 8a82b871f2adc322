"""Typed, versioned results, written atomically and never overwritten.

A run lives in `results/<run-id>/`: `manifest.json` (what was asked, what ran, what was
skipped and why, provenance) and `records/NNNN-<kind>-<cell>.json`, one file per
record, each written as it completes so that a failure or a Ctrl-C loses nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 2
# v2 added cache, cpu and warmup to every record; v1 records read as cold, default-CPU,
# measured repetitions.
DEFAULT_RESULTS = Path(__file__).resolve().parent.parent / "results"

RecordKind = Literal["cell", "provision", "merge", "combined"]


@dataclass(frozen=True)
class Record:
    """One measurement: a cell's repetition, a provisioning step, an index merge or a
    combined multi-platform build. `platform` is '' for strategy-wide records."""

    kind: RecordKind
    run_id: str
    scenario: str
    size: int
    strategy: str
    platform: str
    rep: int
    status: str
    wall_s: float
    started_at: str
    tag: str = ""
    digest: str = ""
    platform_digests: dict[str, str] = field(default_factory=dict)
    failure_class: str = ""
    log_tail: str = ""
    log_file: str = ""
    reason: str = ""
    validation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    cache: str = "cold"
    cpu: str = ""
    warmup: bool = False
    schema_version: int = SCHEMA_VERSION


def now_iso() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Return a fresh run id: UTC timestamp plus random hex, sortable by time."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def file_safe(name: str) -> str:
    """Return `name` as one file name: anything but letters, digits, `.`, `_` and `-`
    (a `/` or `..` included) becomes `_`, so that it never leads out of its folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:200]
    return "_" + safe if safe.startswith(".") or not safe else safe


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` through a temp file and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """The folder of one run. Creating it fails if the folder exists: runs never
    overwrite each other."""

    def __init__(self, root: Path, run_id: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.path = root / self.run_id
        self.path.mkdir(parents=True, exist_ok=False)
        (self.path / "records").mkdir()
        (self.path / "logs").mkdir()
        self._seq = 0

    def log_path(self, name: str) -> Path:
        """Return where the log called `name` of this run goes (always in its logs/)."""
        return self.path / "logs" / f"{file_safe(name)}.log"

    def add(self, record: Record) -> Path:
        """Store `record` as a new file; never replaces an existing one."""
        self._seq += 1
        plat = record.platform.replace("/", "-") or "all"
        cpu = f"-{record.cpu}" if record.cpu else ""
        cache = "" if record.cache == "cold" else f"-{record.cache}"
        warm = "w" if record.warmup else "r"
        name = file_safe(
            f"{self._seq:04d}-{record.kind}-{record.scenario}-s{record.size}-"
            f"{record.strategy}{cpu}-{plat}{cache}-{warm}{record.rep}"
        )
        target = self.path / "records" / f"{name}.json"
        if target.exists():
            raise FileExistsError(target)
        write_json_atomic(target, asdict(record))
        return target

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write (or update, within this run) the run manifest."""
        data = dict(manifest)
        data["schema_version"] = SCHEMA_VERSION
        data["run_id"] = self.run_id
        write_json_atomic(self.path / "manifest.json", data)


def record_from_dict(data: dict[str, Any]) -> Record:
    """Return a Record from stored JSON of any known schema version.

    Raises ValueError for a schema version newer than this harness knows.
    """
    version = int(data.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"result schema {version} is newer than this archbench "
            f"({SCHEMA_VERSION}); upgrade archbench"
        )
    known = {f.name for f in fields(Record)}
    values = {k: v for k, v in data.items() if k in known}
    values["schema_version"] = SCHEMA_VERSION  # upgraded on read; defaults fill the rest
    return Record(**values)


def load_run(path: Path) -> tuple[dict[str, Any], list[Record]]:
    """Return the manifest and records of the run folder `path`.

    Raises FileNotFoundError when `path` is not a run folder.
    """
    manifest_file = path / "manifest.json"
    if not manifest_file.exists():
        raise FileNotFoundError(f"{path} is not an archbench run (no manifest.json)")
    manifest: dict[str, Any] = json.loads(manifest_file.read_text())
    records = [
        record_from_dict(json.loads(p.read_text()))
        for p in sorted((path / "records").glob("*.json"))
    ]
    return manifest, records


def list_runs(root: Path) -> list[Path]:
    """Return the run folders under `root`, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "manifest.json").exists())


def resolve_run(ref: str | None, root: Path) -> Path:
    """Return the run folder named by `ref` (a run id or a folder), or the latest run.

    Raises FileNotFoundError naming what was looked for.
    """
    if ref is None:
        runs = list_runs(root)
        if not runs:
            raise FileNotFoundError(f"no runs under {root}")
        return runs[-1]
    for candidate in (Path(ref), root / ref):
        if (candidate / "manifest.json").exists():
            return candidate
    raise FileNotFoundError(f"no run {ref!r} (neither a folder nor a run id under {root})")
