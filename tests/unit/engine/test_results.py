import json

import pytest

from bench.engine.results import (
    SCHEMA_VERSION,
    Record,
    RunStore,
    list_runs,
    load_run,
    record_from_dict,
    resolve_run,
    write_json_atomic,
)


def rec(run_id: str, **kw) -> Record:
    base = dict(
        kind="cell",
        run_id=run_id,
        scenario="s",
        size=1,
        strategy="cross",
        platform="linux/arm64",
        rep=1,
        status="ok",
        wall_s=1.5,
        started_at="t",
    )
    base.update(kw)
    return Record(**base)


def test_round_trip_and_never_overwrite(tmp_path):
    store = RunStore(tmp_path)
    store.write_manifest({"status": "running"})
    store.add(rec(store.run_id))
    store.add(rec(store.run_id, rep=2, wall_s=2.5))
    manifest, records = load_run(store.path)
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["run_id"] == store.run_id
    assert [r.wall_s for r in records] == [1.5, 2.5]
    with pytest.raises(FileExistsError):
        RunStore(tmp_path, store.run_id)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_loader_reads_a_stored_v1_record():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "data" / "result-v1-cell.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and "cache" not in data
    record = record_from_dict(data)
    assert record.cache == "cold" and record.cpu == "" and not record.warmup
    assert record.strategy == "qemu-user" and record.wall_s > 0


def test_loader_reads_v1_golden_and_rejects_newer():
    data = rec("r").__dict__ | {"schema_version": 1, "future_field_ignored": True}
    assert record_from_dict(data).wall_s == 1.5
    with pytest.raises(ValueError, match="newer"):
        record_from_dict(data | {"schema_version": SCHEMA_VERSION + 1})


def test_resolve_latest_and_by_id(tmp_path):
    a = RunStore(tmp_path, "20260101T000000Z-aaaaaa")
    a.write_manifest({})
    b = RunStore(tmp_path, "20260102T000000Z-bbbbbb")
    b.write_manifest({})
    assert list_runs(tmp_path) == [a.path, b.path]
    assert resolve_run(None, tmp_path) == b.path
    assert resolve_run(a.run_id, tmp_path) == a.path
    with pytest.raises(FileNotFoundError):
        resolve_run("nope", tmp_path)
