"""Change-point detection over stored runs."""

import json

import numpy as np
import pytest

from bench.analysis.history import analyse
from bench.cli import main
from bench.engine.results import Record, RunStore


def store_runs(root, medians, reps=3, seed=0):
    rng = np.random.default_rng(seed)
    for i, median in enumerate(medians):
        run_id = f"2026010{i}T000000Z-run{i}"
        store = RunStore(root, run_id)
        store.write_manifest({"started_at": f"2026-01-0{i + 1}T00:00:00+00:00",
                              "provenance": {"harness_commit": f"commit{i}"}})  # fmt: skip
        for rep in range(1, reps + 1):
            wall = median * (1 + 0.01 * rng.standard_normal())
            store.add(Record("cell", run_id, "cbench", 1, "qemu-user", "linux/arm64", rep, "ok",
                             wall, f"2026-01-0{i + 1}T00:00:00+00:00"))  # fmt: skip


def test_a_step_is_found_at_the_run_where_it_happens(tmp_path):
    store_runs(tmp_path, [10.0, 10.0, 10.0, 13.0, 13.0, 13.0])
    series, steps = analyse(sorted(tmp_path.iterdir()))
    (cell,) = series
    assert cell == "cbench-s1-qemu-user-linux-arm64"
    (step,) = steps[cell]
    assert step.run_id.endswith("run3")
    assert step.commit == "commit3"
    assert step.ratio == pytest.approx(1.3, rel=0.03)
    assert step.p_value < 0.05


def test_flat_history_has_no_step(tmp_path):
    store_runs(tmp_path, [10.0] * 6)
    _, steps = analyse(sorted(tmp_path.iterdir()))
    assert all(not s for s in steps.values())


def test_two_steps_are_both_found(tmp_path):
    store_runs(tmp_path, [10.0, 10.0, 10.0, 15.0, 15.0, 15.0, 8.0, 8.0, 8.0], reps=4)
    _, steps = analyse(sorted(tmp_path.iterdir()))
    (found,) = steps.values()
    assert [s.run_id[-4:] for s in found] == ["run3", "run6"]


def test_history_command_prints_json(tmp_path, capsys):
    store_runs(tmp_path, [10.0, 10.0, 10.0, 13.0, 13.0, 13.0])
    assert main(["history", "--results", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cell = data["cells"]["cbench-s1-qemu-user-linux-arm64"]
    assert len(cell["runs"]) == 6 and len(cell["steps"]) == 1
    assert main(["history", "--results", str(tmp_path), "--cell", "nosuch"]) == 2
