"""Typed, versioned results, written atomically and never overwritten.

A run lives in `results/<run-id>/`: `manifest.json` (what was asked, what ran, what was
skipped and why, provenance) and `records/NNNN-<kind>-<cell>.json`, one file per
record, each written as it completes so that a failure or a Ctrl-C loses nothing.
Every command reads them through one loader (`read_run`, `read_runs`), which checks each
file and skips a damaged one with a `LoadWarning` naming it, so one bad file never stops
a report of the rest.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 2
# v2 added cache, cpu and warmup to every record; v1 records read as cold, default-CPU,
# measured repetitions.
# In the working folder, as pytest-benchmark keeps its storage.
DEFAULT_RESULTS = Path("results")
MAX_RESULT_BYTES = 64 * 2**20
"""A stored record or manifest larger than this is damaged (they hold a few KiB)."""

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


def replace_file(path: Path, write: Callable[[Path], object]) -> bool:
    """Write `path` by calling `write` on a temp file beside it, then os.replace it into
    place, so that a reader sees the old file or the new one, never a part.

    Returns whether a file was replaced. On any error the temp file is removed and the
    old file is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return existed


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


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "run_id": str,
    "scenario": str,
    "size": int,
    "strategy": str,
    "platform": str,
    "rep": int,
    "status": str,
    "wall_s": (int, float),
    "started_at": str,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "tag": str,
    "digest": str,
    "platform_digests": dict,
    "failure_class": str,
    "log_tail": str,
    "log_file": str,
    "reason": str,
    "validation": dict,
    "extra": dict,
    "provenance": dict,
    "cache": str,
    "cpu": str,
    "warmup": bool,
}
_KINDS = ("cell", "provision", "merge", "combined")
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    dict: "an object",
    bool: "true or false",
    list: "a list",
}


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return "a number"
    return _TYPE_NAMES.get(expected, expected.__name__)


def _has_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    # JSON true/false load as bool, a subclass of int: never a size, a count or a time.
    if isinstance(value, bool) and expected is not bool:
        return False
    return isinstance(value, expected)


def _schema_version(data: dict[str, Any], what: str) -> int:
    version = data.get("schema_version", 1)
    if not _has_type(version, int) or version < 1:
        raise ValueError(f"schema_version {version!r} is not a whole number of at least 1")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{what} schema {version} is newer than this archbench "
            f"({SCHEMA_VERSION}); upgrade archbench"
        )
    return int(version)


def _check_seconds(label: str, value: Any, *, positive: bool) -> None:
    if not _has_type(value, (int, float)):
        raise ValueError(f"{label} is {value!r}, not a number")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{label} is {value!r}, not a finite {kind} number of seconds")


def _check_nested(extra: dict[str, Any], validation: dict[str, Any]) -> None:
    # What show, the charts and the recommendation read inside `extra` and `validation`.
    flakes = extra.get("flakes", 0)
    if not _has_type(flakes, int) or flakes < 0:
        raise ValueError(f"extra.flakes is {flakes!r}, not a count")
    checks = validation.get("checks", [])
    if not isinstance(checks, list) or any(not isinstance(c, dict) for c in checks):
        raise ValueError("validation.checks is not a list of objects")
    if "passed" in validation and not isinstance(validation["passed"], bool):
        raise ValueError(f"validation.passed is {validation['passed']!r}, not true or false")
    steps = extra.get("step_seconds")
    if steps is not None:
        if not isinstance(steps, dict):
            raise ValueError("extra.step_seconds is not an object")
        for name, seconds in steps.items():
            _check_seconds(f"extra.step_seconds.{name}", seconds, positive=False)
    for phase in ("boot", "build", "shutdown"):
        if extra.get(f"{phase}_s") is not None:
            _check_seconds(f"extra.{phase}_s", extra[f"{phase}_s"], positive=False)
    resources = extra.get("resources")
    if resources:
        if not isinstance(resources, dict):
            raise ValueError("extra.resources is not an object")
        for key in ("cpu_user_s", "cpu_system_s"):
            _check_seconds(f"extra.resources.{key}", resources.get(key), positive=False)
        peak = resources.get("peak_above_baseline_bytes")
        if peak is not None:
            _check_seconds("extra.resources.peak_above_baseline_bytes", peak, positive=False)


def record_from_dict(data: Any) -> Record:
    """Return a Record from stored JSON of any known schema version, checked: every
    field Record needs is present with its type, and the times are finite (a measured
    repetition's wall time is positive; any other record's is at least 0).

    Raises ValueError saying what is wrong: not an object, a schema version newer than
    this harness knows, a missing or mistyped field, a non-finite or negative time.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
    _schema_version(data, "result")
    for name, expected in (*_REQUIRED.items(), *_OPTIONAL.items()):
        if name not in data:
            if name in _REQUIRED:
                raise ValueError(f"field {name!r} is missing")
            continue
        if not _has_type(data[name], expected):
            raise ValueError(f"field {name!r} is {data[name]!r}, not {_type_name(expected)}")
    if data["kind"] not in _KINDS:
        raise ValueError(f"field 'kind' is {data['kind']!r}, not one of {', '.join(_KINDS)}")
    _check_seconds("wall_s", data["wall_s"], positive=data["status"] == "ok")
    _check_nested(data.get("extra") or {}, data.get("validation") or {})
    known = {f.name for f in fields(Record)}
    values = {k: v for k, v in data.items() if k in known}
    values["wall_s"] = float(values["wall_s"])
    values["schema_version"] = SCHEMA_VERSION  # upgraded on read; defaults fill the rest
    return Record(**values)


_MANIFEST_TYPES: dict[str, type] = {
    "run_id": str,
    "status": str,
    "started_at": str,
    "finished_at": str,
    "provenance": dict,
    "cells": list,
    "request": dict,
    "statistics": dict,
}


def manifest_from_dict(data: Any) -> dict[str, Any]:
    """Return a stored run manifest, checked: an object of a known schema version whose
    fields that commands read have their types, each entry of `cells` an object.

    Raises ValueError saying what is wrong.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a manifest is a JSON object, not {type(data).__name__}")
    _schema_version(data, "manifest")
    for name, expected in _MANIFEST_TYPES.items():
        if name in data and not _has_type(data[name], expected):
            raise ValueError(f"field {name!r} is {data[name]!r:.60}, not {_type_name(expected)}")
    if any(not isinstance(c, dict) for c in data.get("cells") or []):
        raise ValueError("field 'cells' holds an entry that is not an object")
    return data


@dataclass(frozen=True)
class LoadWarning:
    """A stored file that could not be used: `path`, why, and what was skipped for it
    (`record`: that one record; `run`: the whole run, its manifest being unusable)."""

    path: Path
    reason: str
    skipped: Literal["record", "run"]

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}; {self.skipped} skipped"


class DamagedRun(ValueError):
    """A run whose manifest cannot be used; `warning` names the file and why."""

    def __init__(self, warning: LoadWarning) -> None:
        super().__init__(str(warning))
        self.warning = warning


@dataclass(frozen=True)
class StoredRun:
    """A run as loaded: its folder, manifest, the records that could be used, and a
    warning for each record file that could not."""

    path: Path
    manifest: dict[str, Any]
    records: tuple[Record, ...]
    warnings: tuple[LoadWarning, ...] = ()

    @property
    def run_id(self) -> str:
        """The manifest's run id, else the folder's name."""
        return str(self.manifest.get("run_id") or self.path.name)


def _read_json(path: Path) -> Any:
    """Return the JSON document in the file `path`.

    Raises ValueError with a one-line reason for an unreadable, empty or invalid file.
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ValueError("is a directory, not a file")
        # A FIFO or a device would block the read, or never end it.
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file")
        if info.st_size > MAX_RESULT_BYTES:
            raise ValueError(f"is {info.st_size} bytes, more than a stored result can be")
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ValueError("is a directory, not a file") from None
    except PermissionError:
        raise ValueError("cannot be read: permission denied") from None
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise ValueError("is empty")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON (truncated?): {exc}") from None
    except RecursionError:
        raise ValueError("is not valid JSON: nested too deeply") from None


def read_run(path: Path) -> StoredRun:
    """Return the run in the folder `path`: its manifest and every record that loads,
    with a LoadWarning for each record file that does not (unreadable, not JSON, an
    unknown schema version, missing or mistyped fields, non-finite times). This is the
    one place stored results are read.

    Raises FileNotFoundError when `path` is not a run folder, DamagedRun when its
    manifest cannot be used.
    """
    manifest_file = path / "manifest.json"
    if not _has_manifest(path):
        raise FileNotFoundError(f"{path} is not an archbench run (no manifest.json)")
    try:
        manifest = manifest_from_dict(_read_json(manifest_file))
    except ValueError as exc:
        raise DamagedRun(LoadWarning(manifest_file, str(exc), "run")) from None
    records: list[Record] = []
    warnings: list[LoadWarning] = []
    records_dir = path / "records"
    try:
        files = sorted(p for p in records_dir.iterdir() if p.name.endswith(".json"))
    except FileNotFoundError:
        files = []
    except OSError as exc:
        reason = f"cannot be listed: {exc.strerror or exc}"
        raise DamagedRun(LoadWarning(records_dir, reason, "run")) from None
    for file in files:
        try:
            records.append(record_from_dict(_read_json(file)))
        except ValueError as exc:
            warnings.append(LoadWarning(file, str(exc), "record"))
    return StoredRun(path, manifest, tuple(records), tuple(warnings))


def read_runs(paths: Sequence[Path | StoredRun]) -> tuple[list[StoredRun], list[LoadWarning]]:
    """Return the runs of `paths` that could be read (folders are read with `read_run`;
    runs already read are kept as they are) and every warning of reading them, in order:
    a run whose manifest cannot be used is left out with a `run` warning.

    Raises FileNotFoundError when a folder is not a run.
    """
    runs: list[StoredRun] = []
    warnings: list[LoadWarning] = []
    for item in paths:
        if isinstance(item, StoredRun):
            runs.append(item)
            warnings.extend(item.warnings)
            continue
        try:
            run = read_run(item)
        except DamagedRun as exc:
            warnings.append(exc.warning)
            continue
        runs.append(run)
        warnings.extend(run.warnings)
    return runs, warnings


def as_run(item: Path | StoredRun) -> StoredRun:
    """Return `item` when it is a StoredRun, else the run read from the folder `item`.

    Raises FileNotFoundError or DamagedRun like `read_run`.
    """
    return item if isinstance(item, StoredRun) else read_run(item)


def load_run(path: Path) -> tuple[dict[str, Any], list[Record]]:
    """Return the manifest and the usable records of the run folder `path` (see
    `read_run`, which also says which records were skipped and why).

    Raises FileNotFoundError when `path` is not a run folder, DamagedRun when its
    manifest cannot be used.
    """
    run = read_run(path)
    return run.manifest, list(run.records)


def _has_manifest(folder: Path) -> bool:
    try:
        return (folder / "manifest.json").exists()
    except OSError:
        # A folder that cannot be looked into counts as a run, so that reading it names
        # the file and why, instead of the run vanishing without a word.
        return True


def list_runs(root: Path) -> list[Path]:
    """Return the run folders under `root`, oldest first.

    Raises FileNotFoundError when `root` is a folder that cannot be listed.
    """
    if not root.is_dir():
        return []
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise FileNotFoundError(f"{root} cannot be listed: {exc.strerror or exc}") from None
    return [p for p in entries if p.is_dir() and _has_manifest(p)]


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
        if _has_manifest(candidate):
            return candidate
    raise FileNotFoundError(f"no run {ref!r} (neither a folder nor a run id under {root})")
