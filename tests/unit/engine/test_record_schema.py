"""The typed record (schema 3): v1 and v2 records upgraded field by field, a v3 round
trip, a newer schema still skipped with a warning, and the frame of the stored golden
runs unchanged by the typing."""

import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest

from bench.engine.matrix import Cell, cell_of
from bench.engine.results import (
    SCHEMA_VERSION,
    CompilerFacts,
    EmulatorFacts,
    GuestFacts,
    Resources,
    RunStore,
    StepTimes,
    TracedStep,
    read_run,
    read_runs,
    record_from_dict,
)
from bench.report.frame import COLUMNS, frame

DATA = Path(__file__).resolve().parents[2] / "data"
V1_RUN = DATA / "runs" / "20261127T235702Z-082c39"
V2_RUN = DATA / "runs" / "20261128T002548Z-aa4451"
FRAME_CSV = DATA / "runs-frame.csv"
"""The frame of the two golden runs as built before records were typed (schema 2)."""

SORT = ["run_id", "kind", "scenario", "strategy", "platform", "cache", "rep", "warmup"]


def _raw(path: Path) -> dict:
    return json.loads(path.read_text())


def test_schema_is_4():
    assert SCHEMA_VERSION == 4


def test_v1_cell_upgrades_field_by_field():
    raw = _raw(DATA / "result-v1-cell.json")
    r = record_from_dict(raw)
    assert r.schema_version == SCHEMA_VERSION
    for name in ("kind", "run_id", "scenario", "size", "strategy", "platform", "rep"):
        assert getattr(r, name) == raw[name]
    assert (r.status, r.wall_s, r.tag, r.digest) == (
        raw["status"],
        raw["wall_s"],
        raw["tag"],
        raw["digest"],
    )
    assert r.validation == raw["validation"] and r.provenance == raw["provenance"]
    assert (r.cache, r.cpu, r.warmup) == ("cold", "", False)
    assert r.compiler == CompilerFacts(version="gcc (Debian 12.2.0-14+deb12u1) 12.2.0")
    assert r.steps == StepTimes() and r.resources is None and r.guest is None
    assert r.emulator is None and r.flakes == () and r.extra == {}


def test_v1_combined_record_keeps_its_platforms():
    raw = _raw(V1_RUN / "records" / "0029-combined-cbench-s1-cross-all-r1.json")
    r = record_from_dict(raw)
    assert r.platforms == tuple(raw["extra"]["platforms"]) == ("linux/amd64", "linux/arm64")
    assert r.compiler.version == raw["extra"]["compiler"] and r.extra == {}


def test_v2_cell_upgrades_steps_resources_and_digest():
    path = V2_RUN / "records" / "0010-cell-tiny-s1-qemu-user-max-linux-arm64-warm-r1.json"
    raw = _raw(path)
    extra = raw["extra"]
    r = record_from_dict(raw)
    assert (r.cache, r.cpu, r.warmup) == (raw["cache"], raw["cpu"], raw["warmup"])
    assert r.steps.by_category == extra["step_seconds"]
    assert [asdict(s) for s in r.steps.traced] == extra["steps"]
    assert isinstance(r.steps.traced[0], TracedStep)
    res = extra["resources"]
    assert r.resources == Resources(
        cpu_user_s=res["cpu_user_s"],
        cpu_system_s=res["cpu_system_s"],
        peak_memory_bytes=res["peak_memory_bytes"],
        peak_above_baseline_bytes=res["peak_above_baseline_bytes"],
        loadavg_before=res["loadavg_before"],
        loadavg_after=res["loadavg_after"],
        source=res["source"],
        overhead_s=res["overhead_s"],
        notes=tuple(res["notes"]),
    )
    assert r.compiler.version == extra["compiler"]
    assert r.recipe_sha256 == extra["recipe_sha256"] and r.harness_recipe_sha256 == ""
    # extra.cache repeated the record's own cache mode: nothing is left over.
    assert extra["cache"] == r.cache and r.extra == {}


def test_v2_provision_record_keeps_its_phase():
    raw = _raw(V2_RUN / "records" / "0005-provision-tiny-s1-cross-linux-arm64-r1.json")
    r = record_from_dict(raw)
    assert r.phase == raw["extra"]["phase"] == "toolchain" and r.extra == {}


def _v2_qemu_system() -> dict:
    return {
        "schema_version": 2,
        "kind": "cell",
        "run_id": "r",
        "scenario": "cbench",
        "size": 1,
        "strategy": "qemu-system",
        "platform": "linux/arm64",
        "rep": 1,
        "status": "ok",
        "wall_s": 40.0,
        "started_at": "t",
        "cache": "cold",
        "cpu": "max",
        "warmup": False,
        "extra": {
            "resources": {"cpu_user_s": 30.0, "cpu_system_s": 2.0},
            "step_seconds": {"boot": 5.0, "compile": 30.0, "shutdown": 1.0},
            "boot_s": 5.0,
            "build_s": 30.0,
            "shutdown_s": 1.0,
            "guest_total_s": 36.0,
            "prepare_s": 0.0,
            "pack_s": 4.0,
            "accel": "tcg",
            "cpu": "cortex-a72",
            "cpu_variant": "max",
            "vcpus": 2,
            "memory_mb": 2048,
            "kernel": "6.1.0-28-arm64",
            "exit_code": 0,
            "compiler": "gcc (Debian 12.2.0-14) 12.2.0",
            "cross_compiler": "gcc-12-aarch64-linux-gnu 12.2.0-14cross1",
            "target_compiler": "gcc-12 12.2.0-14",
            "compiler_matches_target": True,
            "emulator": {"spec": "debian:7.2", "version": "7.2", "sha256": "ab"},
            "flakes": 2,
            "flake_classes": ["registry", "network"],
            "harness_recipe_sha256": "h",
            "approximate": "glibc differs",
            "per_platform": {"linux/arm64": {"accel": "tcg"}},
            "join_s": 1.5,
        },
    }


def test_v2_guest_compiler_emulator_and_flakes_upgrade():
    r = record_from_dict(_v2_qemu_system())
    assert r.guest == GuestFacts(
        boot_s=5.0,
        build_s=30.0,
        shutdown_s=1.0,
        guest_total_s=36.0,
        prepare_s=0.0,
        pack_s=4.0,
        accel="tcg",
        cpu="cortex-a72",
        cpu_variant="max",
        vcpus=2,
        memory_mb=2048,
        kernel="6.1.0-28-arm64",
        exit_code=0,
    )
    # The record's own cpu (the variant asked for) is not the guest's CPU model.
    assert r.cpu == "max"
    assert r.compiler == CompilerFacts(
        version="gcc (Debian 12.2.0-14) 12.2.0",
        cross="gcc-12-aarch64-linux-gnu 12.2.0-14cross1",
        target="gcc-12 12.2.0-14",
        matches_target=True,
    )
    assert r.emulator == EmulatorFacts(spec="debian:7.2", version="7.2", sha256="ab")
    assert r.flakes == ("registry", "network")
    assert (r.harness_recipe_sha256, r.approximate) == ("h", "glibc differs")
    assert r.resources is not None and r.resources.peak_above_baseline_bytes is None
    # Only what no field stands for stays open-ended.
    assert r.extra == {"per_platform": {"linux/arm64": {"accel": "tcg"}}, "join_s": 1.5}


def test_a_flake_count_without_classes_still_counts():
    data = _v2_qemu_system()
    del data["extra"]["flake_classes"]
    assert record_from_dict(data).flakes == ("unknown", "unknown")


def test_the_frame_reads_the_typed_guest_facts():
    row = frame([record_from_dict(_v2_qemu_system())]).iloc[0]
    assert (row["accel"], row["qemu_cpu"], row["cpu"]) == ("tcg", "cortex-a72", "max")
    assert (row["vm_boot_s"], row["vm_build_s"], row["vm_shutdown_s"]) == (5.0, 30.0, 1.0)
    assert (row["step_compile_s"], row["cpu_user_s"], row["flakes"]) == (30.0, 30.0, 2)


def test_every_golden_record_round_trips_as_v3(tmp_path):
    runs, warnings = read_runs([V1_RUN, V2_RUN])
    assert warnings == [] and sum(len(r.records) for r in runs) == 53
    store = RunStore(tmp_path)
    store.write_manifest({"status": "ok"})
    originals = [r for run in runs for r in run.records]
    for r in originals:
        store.add(r)
    again = read_run(store.path)
    assert again.warnings == () and list(again.records) == originals
    stored = [json.loads(p.read_text()) for p in sorted((store.path / "records").iterdir())]
    assert {d["schema_version"] for d in stored} == {SCHEMA_VERSION}


def test_a_full_v3_record_round_trips(tmp_path):
    record = record_from_dict(_v2_qemu_system())
    record = replace(
        record,
        steps=StepTimes(
            {"compile": 3.0},
            (TracedStep("[build 3/4] RUN make", 3.0, False, "compile", "build", "t0"),),
        ),
        resources=Resources(1.0, 0.5, 100, 10, 0.1, 0.2, "cgroup", 0.001, ("note",)),
        phase="toolchain",
        platforms=("linux/amd64",),
        instructions=({"keyword": "RUN", "line": 3, "cached": False},),
        recipe_sha256="abc",
    )
    store = RunStore(tmp_path)
    store.write_manifest({"status": "ok"})
    path = store.add(record)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and "step_seconds" not in data["extra"]
    assert data["guest"]["accel"] == "tcg" and data["compiler"]["version"]
    assert record_from_dict(data) == record


def test_a_newer_schema_is_skipped_with_a_warning(tmp_path):
    store = RunStore(tmp_path)
    store.write_manifest({"status": "ok"})
    path = store.add(record_from_dict(_v2_qemu_system()))
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"schema_version": SCHEMA_VERSION + 1}))
    run = read_run(store.path)
    assert run.records == ()
    (warning,) = run.warnings
    assert warning.path == path and warning.skipped == "record"
    assert f"schema {SCHEMA_VERSION + 1} is newer" in warning.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "done"}, "field 'status' is 'done'"),
        ({"cache": "hot"}, "field 'cache' is 'hot'"),
        ({"guest": {"vcpus": "two"}}, "guest.vcpus is 'two'"),
        ({"resources": {"cpu_user_s": 1.0}}, "resources.cpu_system_s"),
        ({"steps": {"by_category": {"compile": -1}}}, "steps.by_category.compile"),
        ({"compiler": {"matches_target": "yes"}}, "compiler.matches_target"),
        ({"flakes": [1]}, "flakes holds an entry"),
    ],
)
def test_a_mistyped_v3_field_is_refused(change, reason):
    data = json.loads(json.dumps(asdict(record_from_dict(_v2_qemu_system()))))
    with pytest.raises(ValueError, match=reason.replace(".", r"\.")):
        record_from_dict(data | change)


def test_the_frame_of_the_golden_runs_is_unchanged():
    runs, _ = read_runs([V1_RUN, V2_RUN])
    df = frame([r for run in runs for r in run.records])
    assert list(df.columns) == COLUMNS
    # Columns added since the golden frame come last; they hold what old records mean.
    added = ["emulator", "emulator_version", "emulator_fault", "node", "built_on", "host_class"]
    assert COLUMNS[-len(added) :] == added
    assert set(df["emulator"]) == {"host"} and not any(df["emulator_fault"])
    assert not any(df["node"]) and not any(df["built_on"]) and not any(df["host_class"])
    df = df.drop(columns=added).sort_values(SORT).reset_index(drop=True)
    out = io.StringIO()
    df.to_csv(out, index=False)
    assert out.getvalue() == FRAME_CSV.read_text()
    before = pd.read_csv(FRAME_CSV)
    assert before["compiler"].notna().sum() > 0 and before["cpu_user_s"].notna().sum() > 0


def test_new_cell_axes_leave_stored_keys_alone():
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64", "warm", "max")
    assert cell.key == "cbench-s1-qemu-user-max-linux-arm64-warm"
    assert replace(cell, emulator="7.2", node="n1").key == cell.key + "-e7.2-nn1"
    r = record_from_dict(_v2_qemu_system())
    assert cell_of(r).key == "cbench-s1-qemu-system-max-linux-arm64"


def test_store_names_records_by_the_cell_key(tmp_path):
    store = RunStore(tmp_path)
    path = store.add(replace(record_from_dict(_v2_qemu_system()), cache="warm", warmup=True))
    assert path.name == "0001-cell-cbench-s1-qemu-system-max-linux-arm64-warm-w1.json"
    combined = replace(record_from_dict(_v2_qemu_system()), kind="combined", platform="")
    assert store.add(combined).name == "0002-combined-cbench-s1-qemu-system-max-all-r1.json"


def test_the_runner_maps_a_strategy_outcome_into_typed_fields():
    from bench.engine.runner import _record

    cell = Cell("cbench", 1, "qemu-user", "linux/arm64", "warm", "max")
    extra = {
        "step_seconds": {"compile": 2.0},
        "steps": [{"name": "RUN make", "seconds": 2.0, "cached": False, "category": "compile"}],
        "resources": {"cpu_user_s": 1.0, "cpu_system_s": 0.25, "peak_above_baseline_bytes": 9},
        "cache": "warm",
        "compiler": "gcc 12",
        "emulator": {"version": "10.0.3", "sha256": "cd"},
        "push_repaired": "the docker push step hit the registry's tag race",
    }
    r = _record(cell, "run", 2, "ok", 3.0, extra=extra, phase="warm-prime", flakes=("network",))
    assert (r.scenario, r.size, r.strategy, r.platform, r.cache, r.cpu, r.rep) == (
        "cbench",
        1,
        "qemu-user",
        "linux/arm64",
        "warm",
        "max",
        2,
    )
    assert r.steps.by_category == {"compile": 2.0} and r.steps.traced[0].name == "RUN make"
    assert r.resources == Resources(1.0, 0.25, peak_above_baseline_bytes=9)
    assert r.compiler.version == "gcc 12" and r.emulator == EmulatorFacts(
        version="10.0.3", sha256="cd"
    )
    assert (r.phase, r.flakes, r.guest) == ("warm-prime", ("network",), None)
    assert r.extra == {"push_repaired": extra["push_repaired"]} and cell_of(r) == cell
    with pytest.raises(ValueError, match="resources.cpu_system_s"):
        _record(cell, "run", 1, "ok", 1.0, extra={"resources": {"cpu_user_s": 1.0}})
