"""Change-point detection over stored runs."""

import json

import numpy as np
import pytest

from bench.analysis.gatepower import history_false_rate
from bench.analysis.history import analyse, minimum_step, run_noise
from bench.cli import main
from bench.engine.results import Record, RunStore


def store_runs(root, medians, reps=3, seed=0, size=1, host_class="", first=0):
    rng = np.random.default_rng(seed)
    for i, median in enumerate(medians, start=first):
        run_id = f"202601{i + 1:02d}T000000Z-run{i}"
        store = RunStore(root, run_id)
        store.write_manifest(
            {
                "started_at": f"2026-01-{i + 1:02d}T00:00:00+00:00",
                "provenance": {"harness_commit": f"commit{i}"},
            }
        )
        for rep in range(1, reps + 1):
            wall = median * (1 + 0.01 * rng.standard_normal())
            store.add(
                Record(
                    "cell",
                    run_id,
                    "cbench",
                    size,
                    "qemu-user",
                    "linux/arm64",
                    rep,
                    "ok",
                    wall,
                    f"2026-01-{i + 1:02d}T00:00:00+00:00",
                    host_class=host_class,
                )
            )


def test_a_step_is_found_at_the_run_where_it_happens(tmp_path):
    store_runs(tmp_path, [10.0] * 6 + [13.0] * 6)
    series, steps = analyse(sorted(tmp_path.iterdir()))
    (cell,) = series
    assert cell == "cbench-s1-qemu-user-linux-arm64"
    (step,) = steps[cell]
    assert step.run_id.endswith("run6")
    assert step.commit == "commit6"
    assert step.ratio == pytest.approx(1.3, rel=0.03)
    assert step.p_value < 0.05
    assert (step.n_before, step.n_after) == (6, 6)  # runs, not pooled repetitions
    assert step.ci_low < step.ratio < step.ci_high and step.ci_coverage >= 0.95
    assert step.ci_low > 1.2


def test_runs_are_the_unit_so_three_against_three_runs_cannot_show_a_step(tmp_path):
    # Pooled repetitions (9 against 9) would call this significant; three runs a side
    # cannot be (exact two-sided p >= 0.1 before the correction over splits).
    store_runs(tmp_path, [10.0, 10.0, 10.0, 13.0, 13.0, 13.0])
    _, steps = analyse(sorted(tmp_path.iterdir()))
    assert all(not s for s in steps.values())


def test_sizes_are_separate_series(tmp_path):
    store_runs(tmp_path / "a", [10.0] * 8, size=1)
    store_runs(tmp_path / "b", [30.0] * 8, size=2, seed=1)
    runs = sorted((tmp_path / "a").iterdir()) + sorted((tmp_path / "b").iterdir())
    series, steps = analyse(runs)
    assert set(series) == {"cbench-s1-qemu-user-linux-arm64", "cbench-s2-qemu-user-linux-arm64"}
    assert all(not s for s in steps.values())


def test_flat_runs_with_run_offsets_rarely_show_a_step():
    # 300 simulated series of 20 runs (5 reps, CV 7 %), each run offset by SD 3 %:
    # pooling the repetitions gave false steps in 12-32 % of such series.
    assert history_false_rate(runs=20, offset_sd=0.03, trials=300, seed=11) <= 0.05


def test_a_twenty_percent_step_among_noisy_runs_is_found():
    assert history_false_rate(runs=20, offset_sd=0.03, trials=100, seed=12, step=1.2) >= 0.9


def test_minimum_step_rises_with_run_to_run_noise():
    flat = [10.0, 10.01, 9.99, 10.0, 10.02, 9.98]
    noisy = [10.0, 10.8, 9.4, 10.5, 9.2, 10.9, 9.6]
    assert minimum_step(flat) == pytest.approx(0.05)
    assert minimum_step(noisy) > 0.10
    assert run_noise(noisy) > 0.05


def test_flat_history_has_no_step(tmp_path):
    store_runs(tmp_path, [10.0] * 6)
    _, steps = analyse(sorted(tmp_path.iterdir()))
    assert all(not s for s in steps.values())


def test_two_steps_are_both_found(tmp_path):
    store_runs(tmp_path, [10.0] * 7 + [15.0] * 7 + [8.0] * 7, reps=4)
    _, steps = analyse(sorted(tmp_path.iterdir()))
    (found,) = steps.values()
    assert [s.run_id.split("-")[-1] for s in found] == ["run7", "run14"]


def test_history_command_prints_json(tmp_path, capsys):
    store_runs(tmp_path, [10.0] * 6 + [13.0] * 6)
    assert main(["history", "--results", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cell = data["cells"]["cbench-s1-qemu-user-linux-arm64"]
    assert len(cell["runs"]) == 12 and len(cell["steps"]) == 1
    assert cell["steps"][0]["ci_low"] > 1.2 and cell["min_step"] >= 0.05
    assert main(["history", "--results", str(tmp_path), "--alpha", "nan"]) == 2
    assert main(["history", "--results", str(tmp_path), "--cell", "nosuch"]) == 2


A = "Intel Xeon E5-2680, 2 cores, 4 GiB, Linux 6.1"
B = "Ampere Altra, 8 cores, 32 GiB, Linux 6.8"
CELL = "cbench-s1-qemu-user-linux-arm64"


def test_a_change_of_hardware_class_is_not_a_change_point(tmp_path):
    # Seven runs on class A, then seven of the same cell on class B, twice as slow.
    store_runs(tmp_path, [10.0] * 7, host_class=A)
    store_runs(tmp_path, [20.0] * 7, host_class=B, first=7, seed=1)
    series, steps = analyse(sorted(p for p in tmp_path.iterdir() if p.name != "one"))
    assert set(series) == {f"{CELL} on {A}", f"{CELL} on {B}"}
    assert {v[0].host_class for v in series.values()} == {A, B}
    assert all(len(v) == 7 and {p.cell for p in v} == {CELL} for v in series.values())
    assert all(not s for s in steps.values())
    # The same medians on one class are one series, and there the step is found.
    store_runs(tmp_path / "one", [10.0] * 7, host_class=A)
    store_runs(tmp_path / "one", [20.0] * 7, host_class=A, first=7, seed=1)
    _, one = analyse(sorted((tmp_path / "one").iterdir()))
    assert [s.run_id.split("-")[-1] for s in one[CELL]] == ["run7"]


def test_a_step_within_one_class_is_found_beside_another_class(tmp_path):
    store_runs(tmp_path, [10.0] * 6 + [13.0] * 6, host_class=A)
    store_runs(tmp_path, [20.0] * 6, host_class=B, first=12, seed=2)
    series, steps = analyse(sorted(tmp_path.iterdir()), cells=[CELL])
    (step,) = steps[f"{CELL} on {A}"]
    assert step.host_class == A and step.cell == CELL
    assert step.run_id.endswith("run6") and step.ratio == pytest.approx(1.3, rel=0.03)
    assert steps[f"{CELL} on {B}"] == []


def test_runs_stored_before_the_class_join_the_one_class_named(tmp_path):
    store_runs(tmp_path, [10.0] * 6)
    store_runs(tmp_path, [10.0] * 6 + [13.0] * 6, host_class=A, first=6, seed=3)
    series, steps = analyse(sorted(tmp_path.iterdir()))
    assert set(series) == {CELL} and len(series[CELL]) == 18
    assert [s.run_id.split("-")[-1] for s in steps[CELL]] == ["run12"]


def test_history_command_names_the_class_of_each_series(tmp_path, capsys):
    store_runs(tmp_path, [10.0] * 4, host_class=A)
    store_runs(tmp_path, [20.0] * 4, host_class=B, first=4, seed=1)
    assert main(["history", "--results", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["cells"]
    assert {(v["cell"], v["host_class"]) for v in data.values()} == {(CELL, A), (CELL, B)}
    assert all(not v["steps"] for v in data.values())
    assert main(["history", "--results", str(tmp_path), "--cell", CELL]) == 0
    text = capsys.readouterr().out
    assert "host class" in text and "Ampere" in text and "Intel" in text
