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
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 4
# v2 added cache, cpu and warmup to every record; v1 records read as cold, default-CPU,
# measured repetitions. v3 moved what `extra` held into typed fields (steps, resources,
# guest, compiler, emulator, flakes, recipe digests, phase, platforms, approximate,
# instructions); v1 and v2 records are upgraded on read by `_upgrade_extra`. v4 added
# `attribution` (CPU time per program group, from process accounting); older records
# read with none.
# In the working folder, as pytest-benchmark keeps its storage.
DEFAULT_RESULTS = Path("results")
MAX_RESULT_BYTES = 64 * 2**20
"""A stored record or manifest larger than this is damaged (they hold a few KiB)."""

RecordKind = Literal["cell", "provision", "merge", "combined"]
Status = Literal["ok", "failed", "timeout", "unavailable", "no-op"]
CacheMode = Literal["cold", "warm"]
_STATUSES = ("ok", "failed", "timeout", "unavailable", "no-op")
_CACHE_MODES = ("cold", "warm")


def cache_mode(value: str) -> CacheMode:
    """Return `value` as a cache mode.

    Raises ValueError when it is neither cold nor warm.
    """
    if value == "cold":
        return "cold"
    if value == "warm":
        return "warm"
    raise ValueError(f"cache mode {value!r} is not one of {', '.join(_CACHE_MODES)}")


@dataclass(frozen=True)
class TracedStep:
    """One BuildKit step as traced: its name, seconds, whether it came from the cache,
    its category (compile, export, ...), its stage and when it started."""

    name: str
    seconds: float
    cached: bool = False
    category: str = ""
    stage: str = ""
    started: str = ""


@dataclass(frozen=True)
class StepTimes:
    """Where a build's time went: seconds per category (a cached step counts zero; for
    qemu-system: boot, compile, shutdown), and the traced steps when BuildKit ran it."""

    by_category: dict[str, float] = field(default_factory=dict)
    traced: tuple[TracedStep, ...] = ()


@dataclass(frozen=True)
class Resources:
    """CPU seconds (user, system) and peak memory bytes of a whole build, with the host's
    load around it and where the readings came from."""

    cpu_user_s: float
    cpu_system_s: float
    peak_memory_bytes: int | None = None
    peak_above_baseline_bytes: int | None = None
    loadavg_before: float = 0.0
    loadavg_after: float = 0.0
    source: str = ""
    overhead_s: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuestFacts:
    """What a qemu-system guest said about a build: phase times, the accelerator, the
    emulated CPU model and variant, its size and kernel. A provisioning record holds the
    kernel only; times are None where the guest did not report them."""

    boot_s: float | None = None
    build_s: float | None = None
    shutdown_s: float | None = None
    guest_total_s: float | None = None
    prepare_s: float | None = None
    pack_s: float | None = None
    accel: str = ""
    cpu: str = ""
    cpu_variant: str = ""
    vcpus: int | None = None
    memory_mb: int | None = None
    kernel: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class CompilerFacts:
    """The compiler a build ran (`version`, its first `--version` line), and for the
    hybrid strategy the cross compiler and the target's own, whether they match and a
    note when they do not."""

    version: str = ""
    cross: str = ""
    target: str = ""
    matches_target: bool | None = None
    note: str = ""


@dataclass(frozen=True)
class EmulatorFacts:
    """The pinned QEMU a qemu-user cell ran under (not the host's own)."""

    spec: str = ""
    package: str = ""
    version: str = ""
    suite: str = ""
    sha256: str = ""
    reported: str = ""
    tag: str = ""


@dataclass(frozen=True)
class ProgramTime:
    """One program's share of a build: its task name, group, CPU seconds and how many
    processes ran it."""

    name: str
    group: str
    cpu_s: float
    processes: int


@dataclass(frozen=True)
class Attribution:
    """Where a build's CPU time went, from the kernel's records of ended processes
    (`source`: taskstats, or BSD process accounting): CPU seconds per program
    group (bench.engine.attribution.GROUPS), the accounted total, the build's whole CPU
    time it is measured against (`total_cpu_s`, from `denominator`) and `coverage`, their
    ratio; the count of processes, the top programs, and notes (why nothing was
    accounted, when that happened)."""

    cpu_by_group: dict[str, float] = field(default_factory=dict)
    accounted_cpu_s: float = 0.0
    total_cpu_s: float | None = None
    coverage: float | None = None
    processes: int = 0
    programs: tuple[ProgramTime, ...] = ()
    source: str = "BSD process accounting (acct v3)"
    denominator: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Record:
    """One measurement: a cell's repetition, a provisioning step, an index merge or a
    combined multi-platform build. `platform` is '' for strategy-wide records.

    `flakes` holds the failure class of each attempt retried before this one.
    `phase` names a provisioning record's step (toolchain, warm-prime); `platforms` a
    combined build's platforms. `emulator_fault` names an emulator-crash (QEMU version,
    signal, step). `extra` keeps only what is open-ended and read by no
    command: a multi-platform qemu-system build's `per_platform` facts, `join_s` and
    `failed_platform`, a qemu-system build's `qemu_system` (the binary that ran the guest
    and the version it reported), `push_repaired`, and any key an older record held that has no
    field here. `node` is the build node a cell was placed on ('' for this host's own
    engine), `built_on` the builder/node that BuildKit's own metadata names as having
    built it, and `host_class` the hardware class measured on (CPU model, cores, memory,
    kernel series); all three are '' in older records.
    """

    kind: RecordKind
    run_id: str
    scenario: str
    size: int
    strategy: str
    platform: str
    rep: int
    status: Status
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
    provenance: dict[str, Any] = field(default_factory=dict)
    cache: CacheMode = "cold"
    cpu: str = ""
    warmup: bool = False
    steps: StepTimes = field(default_factory=StepTimes)
    resources: Resources | None = None
    guest: GuestFacts | None = None
    compiler: CompilerFacts = field(default_factory=CompilerFacts)
    emulator: EmulatorFacts | None = None
    flakes: tuple[str, ...] = ()
    recipe_sha256: str = ""
    harness_recipe_sha256: str = ""
    phase: str = ""
    platforms: tuple[str, ...] = ()
    approximate: str = ""
    instructions: tuple[dict[str, Any], ...] = ()
    attribution: Attribution | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    node: str = ""
    built_on: str = ""
    host_class: str = ""
    schema_version: int = SCHEMA_VERSION
    # An emulator-crash named: the QEMU version, the signal and the build step it hit.
    emulator_fault: str = ""


_GUEST_KEYS = tuple(f.name for f in fields(GuestFacts))
_COMPILER_KEYS = {
    "compiler": "version",
    "cross_compiler": "cross",
    "target_compiler": "target",
    "compiler_matches_target": "matches_target",
    "compiler_note": "note",
}
_PLAIN_KEYS = (
    "recipe_sha256",
    "harness_recipe_sha256",
    "phase",
    "platforms",
    "approximate",
    "emulator_fault",
)


def _upgrade_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Return the v3 fields (as stored JSON) that a v1/v2 record's, or a strategy's,
    `extra` dict stands for; keys with no field stay in the returned `extra`.

    step_seconds and steps -> steps; resources -> resources; the qemu-system guest's
    keys (boot_s ... exit_code, `cpu` being the QEMU CPU model) -> guest; compiler,
    cross_compiler, target_compiler, compiler_matches_target, compiler_note -> compiler;
    emulator -> emulator; attribution -> attribution; flakes and flake_classes -> flakes;
    recipe_sha256, harness_recipe_sha256, phase, platforms, approximate, instructions ->
    fields of the same name. `cache` repeated the record's own cache mode and is dropped.
    """
    rest = dict(extra)
    out: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    if "step_seconds" in rest:
        steps["by_category"] = rest.pop("step_seconds")
    if "steps" in rest:
        steps["traced"] = rest.pop("steps")
    if steps:
        out["steps"] = steps
    if "resources" in rest:
        out["resources"] = rest.pop("resources") or None
    guest = {k: rest.pop(k) for k in _GUEST_KEYS if k in rest}
    if guest:
        out["guest"] = guest
    compiler = {new: rest.pop(old) for old, new in _COMPILER_KEYS.items() if old in rest}
    if compiler:
        out["compiler"] = compiler
    if "emulator" in rest:
        out["emulator"] = rest.pop("emulator")
    if "attribution" in rest:
        out["attribution"] = rest.pop("attribution")
    count = rest.pop("flakes", 0)
    classes = rest.pop("flake_classes", None)
    if classes is not None:
        out["flakes"] = classes
    elif count:
        if not _has_type(count, int) or count < 0:
            raise ValueError(f"extra.flakes is {count!r}, not a count")
        out["flakes"] = ["unknown"] * count
    for key in (*_PLAIN_KEYS, "instructions"):
        if key in rest:
            out[key] = rest.pop(key)
    rest.pop("cache", None)
    out["extra"] = rest
    return out


def typed_fields(extra: dict[str, Any]) -> dict[str, Any]:
    """Return the Record keyword arguments that a strategy's outcome `extra` stands for
    (see `_upgrade_extra`), typed and checked.

    Raises ValueError when a value has the wrong type.
    """
    return _typed(_upgrade_extra(extra))


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
        from bench.engine.matrix import cell_of  # matrix imports this module's types

        cell = replace(cell_of(record), platform=record.platform or "all")
        warm = "w" if record.warmup else "r"
        name = file_safe(f"{self._seq:04d}-{record.kind}-{cell.key}-{warm}{record.rep}")
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
    "node": str,
    "built_on": str,
    "host_class": str,
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


def _object(value: Any, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{label} is {value!r:.60}, not an object")
    return value


def _list(value: Any, label: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{label} is {value!r:.60}, not a list")
    return list(value)


def _text(data: dict[str, Any], key: str, label: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{label}.{key} is {value!r:.60}, not a string")
    return value


def _seconds(data: dict[str, Any], key: str, label: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    _check_seconds(f"{label}.{key}", value, positive=False)
    return float(value)


def _whole(data: dict[str, Any], key: str, label: str, *, count: bool = False) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    # A byte count may have been stored as a float; a non-finite or fractional one is not.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not _has_type(value, int) or (count and value < 0):
        raise ValueError(f"{label}.{key} is {value!r:.60}, not a whole number")
    return int(value)


def _strings(value: Any, label: str) -> tuple[str, ...]:
    items = _list(value, label)
    if any(not isinstance(i, str) for i in items):
        raise ValueError(f"{label} holds an entry that is not a string")
    return tuple(items)


def _steps(value: Any) -> StepTimes:
    data = _object(value, "steps")
    by_category = _object(data.get("by_category") or {}, "steps.by_category")
    for name, seconds in by_category.items():
        _check_seconds(f"steps.by_category.{name}", seconds, positive=False)
    traced = []
    for i, raw in enumerate(_list(data.get("traced") or [], "steps.traced")):
        step = _object(raw, f"steps.traced[{i}]")
        seconds = _seconds(step, "seconds", f"steps.traced[{i}]")
        cached = step.get("cached", False)
        if not isinstance(cached, bool):
            raise ValueError(f"steps.traced[{i}].cached is {cached!r}, not true or false")
        traced.append(
            TracedStep(
                name=_text(step, "name", f"steps.traced[{i}]"),
                seconds=seconds or 0.0,
                cached=cached,
                category=_text(step, "category", f"steps.traced[{i}]"),
                stage=_text(step, "stage", f"steps.traced[{i}]"),
                started=_text(step, "started", f"steps.traced[{i}]"),
            )
        )
    return StepTimes({k: float(v) for k, v in by_category.items()}, tuple(traced))


def _resources(value: Any) -> Resources | None:
    if not value:
        return None
    data = _object(value, "resources")
    for key in ("cpu_user_s", "cpu_system_s"):
        _check_seconds(f"resources.{key}", data.get(key), positive=False)
    return Resources(
        cpu_user_s=float(data["cpu_user_s"]),
        cpu_system_s=float(data["cpu_system_s"]),
        peak_memory_bytes=_whole(data, "peak_memory_bytes", "resources", count=True),
        peak_above_baseline_bytes=_whole(
            data, "peak_above_baseline_bytes", "resources", count=True
        ),
        loadavg_before=_seconds(data, "loadavg_before", "resources") or 0.0,
        loadavg_after=_seconds(data, "loadavg_after", "resources") or 0.0,
        source=_text(data, "source", "resources"),
        overhead_s=_seconds(data, "overhead_s", "resources") or 0.0,
        notes=_strings(data.get("notes") or [], "resources.notes"),
    )


def _guest(value: Any) -> GuestFacts | None:
    if value is None:
        return None
    data = _object(value, "guest")
    label = "guest"
    return GuestFacts(
        boot_s=_seconds(data, "boot_s", label),
        build_s=_seconds(data, "build_s", label),
        shutdown_s=_seconds(data, "shutdown_s", label),
        guest_total_s=_seconds(data, "guest_total_s", label),
        prepare_s=_seconds(data, "prepare_s", label),
        pack_s=_seconds(data, "pack_s", label),
        accel=_text(data, "accel", label),
        cpu=_text(data, "cpu", label),
        cpu_variant=_text(data, "cpu_variant", label),
        vcpus=_whole(data, "vcpus", label, count=True),
        memory_mb=_whole(data, "memory_mb", label, count=True),
        kernel=_text(data, "kernel", label),
        exit_code=_whole(data, "exit_code", label),
    )


def _compiler(value: Any) -> CompilerFacts:
    data = _object(value or {}, "compiler")
    matches = data.get("matches_target")
    if matches is not None and not isinstance(matches, bool):
        raise ValueError(f"compiler.matches_target is {matches!r}, not true or false")
    return CompilerFacts(
        **{k: _text(data, k, "compiler") for k in ("version", "cross", "target", "note")},
        matches_target=matches,
    )


def _emulator(value: Any) -> EmulatorFacts | None:
    if value is None:
        return None
    data = _object(value, "emulator")
    return EmulatorFacts(**{f.name: _text(data, f.name, "emulator") for f in fields(EmulatorFacts)})


def _attribution(value: Any) -> Attribution | None:
    if value is None:
        return None
    data = _object(value, "attribution")
    label = "attribution"
    groups = _object(data.get("cpu_by_group") or {}, "attribution.cpu_by_group")
    for name, seconds in groups.items():
        _check_seconds(f"attribution.cpu_by_group.{name}", seconds, positive=False)
    programs = []
    for i, raw in enumerate(_list(data.get("programs") or [], "attribution.programs")):
        item = _object(raw, f"attribution.programs[{i}]")
        where = f"attribution.programs[{i}]"
        programs.append(
            ProgramTime(
                name=_text(item, "name", where),
                group=_text(item, "group", where),
                cpu_s=_seconds(item, "cpu_s", where) or 0.0,
                processes=_whole(item, "processes", where, count=True) or 0,
            )
        )
    coverage = data.get("coverage")
    if coverage is not None:
        _check_seconds("attribution.coverage", coverage, positive=False)
    return Attribution(
        cpu_by_group={k: float(v) for k, v in groups.items()},
        accounted_cpu_s=_seconds(data, "accounted_cpu_s", label) or 0.0,
        total_cpu_s=_seconds(data, "total_cpu_s", label),
        coverage=None if coverage is None else float(coverage),
        processes=_whole(data, "processes", label, count=True) or 0,
        programs=tuple(programs),
        source=_text(data, "source", label),
        denominator=_text(data, "denominator", label),
        notes=_strings(data.get("notes") or [], "attribution.notes"),
    )


_TYPED_KEYS = (
    "steps",
    "resources",
    "guest",
    "compiler",
    "emulator",
    "attribution",
    "flakes",
    *_PLAIN_KEYS,
    "instructions",
    "extra",
)


def _typed(data: dict[str, Any]) -> dict[str, Any]:
    """Return the typed Record fields of `data`, the v3 JSON of those fields, checked.

    Raises ValueError naming the first field whose value has the wrong type.
    """
    out: dict[str, Any] = {
        "steps": _steps(data.get("steps") or {}),
        "resources": _resources(data.get("resources")),
        "guest": _guest(data.get("guest")),
        "compiler": _compiler(data.get("compiler")),
        "emulator": _emulator(data.get("emulator")),
        "attribution": _attribution(data.get("attribution")),
        "flakes": _strings(data.get("flakes") or [], "flakes"),
        "platforms": _strings(data.get("platforms") or [], "platforms"),
        "instructions": tuple(
            _object(step, f"instructions[{i}]")
            for i, step in enumerate(_list(data.get("instructions") or [], "instructions"))
        ),
        "extra": _object(data.get("extra") or {}, "extra"),
    }
    for key in ("recipe_sha256", "harness_recipe_sha256", "phase", "approximate", "emulator_fault"):
        out[key] = _text(data, key, "record")
    return out


def _check_validation(validation: dict[str, Any]) -> None:
    # What show, the charts and the recommendation read inside `validation`.
    checks = validation.get("checks", [])
    if not isinstance(checks, list) or any(not isinstance(c, dict) for c in checks):
        raise ValueError("validation.checks is not a list of objects")
    if "passed" in validation and not isinstance(validation["passed"], bool):
        raise ValueError(f"validation.passed is {validation['passed']!r}, not true or false")


def record_from_dict(data: Any) -> Record:
    """Return a Record from stored JSON of any known schema version, checked: every
    field Record needs is present with its type, and the times are finite (a measured
    repetition's wall time is positive; any other record's is at least 0). A v1 or v2
    record's `extra` is upgraded into the typed fields (see `_upgrade_extra`).

    Raises ValueError saying what is wrong: not an object, a schema version newer than
    this harness knows, a missing or mistyped field, an unknown status or cache mode, a
    non-finite or negative time.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
    version = _schema_version(data, "result")
    for name, expected in (*_REQUIRED.items(), *_OPTIONAL.items()):
        if name not in data:
            if name in _REQUIRED:
                raise ValueError(f"field {name!r} is missing")
            continue
        if not _has_type(data[name], expected):
            raise ValueError(f"field {name!r} is {data[name]!r}, not {_type_name(expected)}")
    if data["kind"] not in _KINDS:
        raise ValueError(f"field 'kind' is {data['kind']!r}, not one of {', '.join(_KINDS)}")
    if data["status"] not in _STATUSES:
        raise ValueError(f"field 'status' is {data['status']!r}, not one of {', '.join(_STATUSES)}")
    if data.get("cache", "cold") not in _CACHE_MODES:
        raise ValueError(
            f"field 'cache' is {data['cache']!r}, not one of {', '.join(_CACHE_MODES)}"
        )
    _check_seconds("wall_s", data["wall_s"], positive=data["status"] == "ok")
    _check_validation(data.get("validation") or {})
    if version < 3:
        typed = _upgrade_extra(data.get("extra") or {})
    else:
        typed = {k: data[k] for k in _TYPED_KEYS if k in data}
    known = {f.name for f in fields(Record)} - set(_TYPED_KEYS)
    values = {k: v for k, v in data.items() if k in known}
    values.update(_typed(typed))
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
