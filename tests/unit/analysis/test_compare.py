"""compare on recorded results: synthetic runs stored with RunStore in tmp folders."""

import json

import numpy as np
import pytest

from bench.analysis.compare import compare_cells, compare_runs, parse_threshold, smallest_p
from bench.cli import main
from bench.engine.results import Record, RunStore

CELLS = [("qemu-user", "linux/arm64", 80.0), ("cross", "linux/arm64", 5.0)]


def store_run(root, run_id, walls_for, recipe="r1", size=1):
    store = RunStore(root, run_id)
    store.write_manifest({"started_at": "2026-01-01T00:00:00+00:00"})
    for strategy, platform, base in CELLS:
        for rep, wall in enumerate(walls_for(base), start=1):
            store.add(Record("cell", run_id, "cbench", size, strategy, platform, rep, "ok", wall,
                             "2026-01-01T00:00:00+00:00", extra={"recipe_sha256": recipe},
                             provenance={"hostname": "vm"}))  # fmt: skip
    return store.path


def noisy(seed, n, factor=1.0):
    rng = np.random.default_rng(seed)
    return lambda base: list(base * factor * (1 + 0.02 * rng.standard_normal(n)))


def test_threshold_parsing():
    assert parse_threshold("10%") == pytest.approx(0.10)
    assert parse_threshold("0.2") == pytest.approx(0.2)
    assert parse_threshold("5") == pytest.approx(0.05)
    with pytest.raises(ValueError):
        parse_threshold("ten")


def test_smallest_exact_p():
    assert smallest_p(3, 3) == pytest.approx(0.05)
    assert smallest_p(4, 4) == pytest.approx(1 / 70)


def test_aa_comparison_reports_no_change_and_exits_0(tmp_path, capsys):
    base = store_run(tmp_path, "base", noisy(1, 8))
    new = store_run(tmp_path, "new", noisy(2, 8))
    result = compare_runs(base, new)
    assert [c.verdict for c in result.cells] == ["no significant change"] * 2
    assert not any(c.threshold_only for c in result.cells)
    assert all(c.ci_low < 1 < c.ci_high for c in result.cells)
    assert main(["compare", str(base), str(new), "--results", str(tmp_path)]) == 0
    assert "no significant change" in capsys.readouterr().out


def test_twenty_percent_slower_is_flagged_with_exit_1(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 8))
    store_run(tmp_path, "new", noisy(2, 8, factor=1.2))
    assert main(["compare", "base", "new", "--results", str(tmp_path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressed"] is True
    for cell in data["cells"]:
        assert cell["verdict"] == "slower"
        assert cell["ratio"] == pytest.approx(1.2, abs=0.05)
        assert cell["p_slower"] < 0.001
        assert cell["ci_low"] > 1.1
    assert "bootstrap" in data["ci_method"]


def test_faster_new_run_exits_0(tmp_path):
    base = store_run(tmp_path, "base", noisy(1, 6))
    new = store_run(tmp_path, "new", noisy(2, 6, factor=0.7))
    result = compare_runs(base, new)
    assert {c.verdict for c in result.cells} == {"faster"}
    assert not result.regressed


def test_three_reps_per_side_are_judged_by_the_threshold_alone(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 3))
    store_run(tmp_path, "new", noisy(2, 3, factor=1.2))
    code = main(["compare", "base", "new", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "slower (threshold only)" in out
    assert "the threshold alone decided" in out
    cell = compare_cells("c", [1.0, 1.01, 0.99], [1.02, 1.0, 1.01], 0.10, 0.05)
    assert cell.threshold_only and cell.p_slower is None
    assert cell.verdict == "no significant change"


def test_differing_recipe_and_size_warn_but_still_compare(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 4))
    store_run(tmp_path, "new", noisy(2, 4), recipe="r2", size=2)
    assert main(["compare", "base", "new", "--results", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "recipe hash differs" in captured.err
    assert "size differs" in captured.err
    assert "no significant change" in captured.out


def test_unknown_run_is_a_usage_error(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 3))
    assert main(["compare", "base", "nosuch", "--results", str(tmp_path)]) == 2
    assert "nosuch" in capsys.readouterr().err
