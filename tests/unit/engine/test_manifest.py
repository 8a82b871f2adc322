"""The typed run manifest reads the stored runs and writes the same keys back."""

import json

import pytest

from bench.engine.manifest import ManifestCell, RequestInfo, RunManifest
from bench.engine.results import RunStore, load_run
from tests.conftest import DATA

RUNS = sorted((DATA / "runs").iterdir())
STORE_KEYS = {"run_id", "schema_version"}


def _stored(run) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_the_current_golden_run_round_trips_key_for_key():
    stored = _stored(RUNS[-1])
    assert "artifact_comparison" in stored and "statistics" in stored
    manifest = RunManifest.from_dict(stored)
    assert isinstance(manifest.request, RequestInfo)
    assert all(isinstance(c, ManifestCell) for c in manifest.cells)
    again = manifest.to_json()
    stored = {k: v for k, v in stored.items() if k not in STORE_KEYS}
    # That run predates `mode`; it reads as a `cli` run.
    assert again.pop("mode") == "cli" and "mode" not in stored
    # ... and predates --attribute and build.needs_target_code: their defaults.
    request = again["request"]
    assert request.pop("attribute") == "auto" and request.pop("needs_target_code") == []
    assert again == stored


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_every_golden_run_loads(run):
    manifest = RunManifest.from_dict(load_run(run)[0])
    assert manifest.status == _stored(run)["status"] and manifest.finished_at
    assert [c.cell for c in manifest.cells] == [c["cell"] for c in _stored(run)["cells"]]
    assert manifest.request.scenarios == _stored(run)["request"]["scenarios"]


def test_an_older_run_takes_the_defaults_for_keys_it_lacks():
    stored = _stored(RUNS[0])
    assert "cache" not in stored["cells"][0] and "warmup" not in stored["request"]
    manifest = RunManifest.from_dict(stored)
    assert manifest.cells[0].cache == "cold" and manifest.cells[0].cpu == ""
    assert manifest.request.warmup == 0 and manifest.request.caches == ["cold"]


def test_a_running_manifest_leaves_out_what_the_run_has_not_reached(tmp_path):
    manifest = RunManifest(
        status="running",
        started_at="2026-01-01T00:00:00+00:00",
        mode="cli",
        request=RequestInfo(["tiny"], {"tiny": "abc"}, ["cross"], ["linux/arm64"], [1], 1),
        cells=[ManifestCell("tiny-s1-cross-linux-arm64", "tiny", 1, "cross", "linux/arm64")],
        provenance={},
    )
    store = RunStore(tmp_path)
    store.write_manifest(manifest.to_json())
    stored = load_run(store.path)[0]
    assert not {"statistics", "artifact_comparison", "finished_at"} & set(stored)
    assert stored["cells"][0]["recipe_sha256"] == "" and stored["request"]["timeout"] == 3600.0
    manifest.status, manifest.statistics, manifest.finished_at = "ok", {}, "t"
    store.write_manifest(manifest.to_json())
    assert RunManifest.from_dict(load_run(store.path)[0]) == manifest
