"""compare, the regression gate, on recorded results (synthetic runs stored with RunStore
in tmp folders) and seeded simulations through its own functions."""

import json
import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from bench.analysis.compare import (
    INVALID,
    POSSIBLE,
    SLOWER,
    compare_runs,
    compare_samples,
    holm,
    min_reps,
    p_greater,
    parse_threshold,
    ratio_interval,
    smallest_p,
)
from bench.analysis.gatepower import lognormal, unpaired
from bench.cli import main
from bench.engine.results import Record, RunStore

CELLS = [("qemu-user", "linux/arm64", 80.0), ("cross", "linux/arm64", 5.0)]


def store_run(
    root,
    run_id,
    walls_for,
    recipe="r1",
    size=1,
    cells=CELLS,
    digest="src1",
    status_for=None,
    qemu="qemu 7.2",
):
    store = RunStore(root, run_id)
    store.write_manifest(
        {
            "started_at": "2026-01-01T00:00:00+00:00",
            "request": {"scenario_digests": {"cbench": digest}},
            "provenance": {"qemu_user": qemu},
            "cells": [{"cell": f"cbench-s{size}-{s}-{p.replace('/', '-')}"} for s, p, _ in cells],
        }
    )
    for strategy, platform, base in cells:
        for rep, wall in enumerate(walls_for(base), start=1):
            status = status_for(strategy, rep) if status_for else "ok"
            store.add(
                Record(
                    "cell",
                    run_id,
                    "cbench",
                    size,
                    strategy,
                    platform,
                    rep,
                    status,
                    wall if status == "ok" else 1.0,
                    "2026-01-01T00:00:00+00:00",
                    log_tail="" if status == "ok" else "cc: error: x.c:3: expected ';'",
                    failure_class="" if status == "ok" else "compile",
                    harness_recipe_sha256=recipe,
                    provenance={"hostname": "vm", "qemu_user": qemu},
                )
            )
    return store.path


def noisy(seed, n, factor=1.0):
    rng = np.random.default_rng(seed)
    return lambda base: list(base * factor * (1 + 0.02 * rng.standard_normal(n)))


def test_threshold_and_alpha_are_validated():
    assert parse_threshold("10%") == pytest.approx(0.10)
    assert parse_threshold("0.2") == pytest.approx(0.2)
    assert parse_threshold("5") == pytest.approx(0.05)
    for bad in ("ten", "nan", "inf", "0", "-5%", "NaN%"):
        with pytest.raises(ValueError):
            parse_threshold(bad)
    with pytest.raises(ValueError):
        compare_samples({"c": ([1.0], [1.0])}, threshold=math.nan)
    with pytest.raises(ValueError):
        compare_samples({"c": ([1.0], [1.0])}, alpha=math.nan)


BAD_FLAGS = [
    ["--threshold", "nan"],
    ["--threshold", "0"],
    ["--alpha", "nan"],
    ["--alpha", "1"],
    ["--alpha", "0"],
]


@pytest.mark.parametrize("flag", BAD_FLAGS)
def test_bad_threshold_or_alpha_exit_2_in_one_line(tmp_path, capsys, flag):
    store_run(tmp_path, "base", noisy(1, 5))
    store_run(tmp_path, "new", noisy(2, 5, factor=2.4))
    assert main(["compare", "base", "new", "--results", str(tmp_path), *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archbench: error:") and "\n" not in err
    assert flag[0] in err and repr(flag[1]) in err


def test_smallest_exact_p_and_minimum_reps_for_the_cells_compared():
    assert smallest_p(3, 3) == pytest.approx(0.05)
    assert smallest_p(4, 4) == pytest.approx(1 / 70)
    # C(2n, n) >= cells / alpha: 5 reps allow 12 cells, 4 reps 3 cells, 3 reps one.
    assert [min_reps(c, 0.05) for c in (1, 2, 3, 4, 12, 13)] == [3, 4, 4, 5, 5, 6]


def test_holm_steps_down():
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]
    assert holm([None, 0.001], 0.05) == [False, True]


def test_exact_p_is_scipys():
    rng = np.random.default_rng(0)
    for n, m in ((3, 3), (5, 5), (4, 7), (8, 8)):
        for _ in range(10):
            a, b = rng.normal(size=n) + 0.5, rng.normal(size=m)
            expected = mannwhitneyu(a, b, alternative="greater", method="exact").pvalue
            assert p_greater(a, b) == pytest.approx(expected, abs=1e-12)


def test_ratio_interval_states_and_holds_its_coverage():
    low, high, coverage = ratio_interval([1.0, 1.1, 0.9], [1.2, 1.3, 1.1])
    assert coverage == pytest.approx(0.9)  # 3 against 3 cannot reach 95 %: says so
    assert (low, high) == (pytest.approx(1.0), pytest.approx(1.3 / 0.9))
    # 2000 seeded 5-against-5 compares with a true ratio of 1.2 at CV 7 %.
    rng = np.random.default_rng(4)
    hits = []
    for _ in range(2000):
        b, n = 100 * lognormal(rng, (5,), 0.07), 120 * lognormal(rng, (5,), 0.07)
        low, high, coverage = ratio_interval(b, n)
        hits.append(low <= 1.2 <= high)
    assert coverage >= 0.95
    assert np.mean(hits) >= 0.94


def test_aa_on_seven_cells_at_five_reps_rarely_alarms():
    # 1500 seeded A/A compares of 7 cells, 5 reps per side, lognormal CV 7 %: without a
    # correction across cells 42-86 % of 10 compares alarmed at least once.
    rates = unpaired(5, cells=7, cv=0.07, trials=1500, seed=101)
    assert rates.any_slower <= 0.10


def test_twenty_percent_on_one_of_seven_cells_is_found_at_the_recommended_reps():
    # The README recommends 8 repetitions per side for a gate; 1500 seeded compares.
    rates = unpaired(8, cells=7, cv=0.07, slowdown=1.2, trials=1500, seed=102)
    assert rates.first_slower >= 0.90


def test_too_few_reps_give_an_advisory_verdict_strict_fails_it(tmp_path, capsys):
    cells = [
        ("qemu-user", p, 80.0)
        for p in ("linux/arm64", "linux/arm/v7", "linux/riscv64", "linux/ppc64le")
    ]
    store_run(tmp_path, "base", noisy(1, 4), cells=cells)
    store_run(tmp_path, "new", noisy(2, 4, factor=1.3), cells=cells)
    assert main(["compare", "base", "new", "--results", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert POSSIBLE in captured.out
    assert "at least 5 repetitions per side" in captured.out
    assert main(["compare", "base", "new", "--results", str(tmp_path), "--strict"]) == 1


def test_aa_comparison_reports_no_change_and_exits_0(tmp_path, capsys):
    base = store_run(tmp_path, "base", noisy(1, 8))
    new = store_run(tmp_path, "new", noisy(2, 8))
    result = compare_runs(base, new)
    assert [c.verdict for c in result.cells] == ["no significant change"] * 2
    assert all(c.ci_low < 1 < c.ci_high for c in result.cells)
    assert main(["compare", str(base), str(new), "--results", str(tmp_path)]) == 0
    assert "no significant change" in capsys.readouterr().out


def test_twenty_percent_slower_is_flagged_with_exit_1(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 8))
    store_run(tmp_path, "new", noisy(2, 8, factor=1.2))
    assert main(["compare", "base", "new", "--results", str(tmp_path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressed"] is True and data["failed"] is True
    for cell in data["cells"]:
        assert cell["verdict"] == SLOWER
        assert cell["ratio"] == pytest.approx(1.2, abs=0.05)
        assert cell["p_slower"] < 0.001
        assert cell["ci_low"] > 1.1 and cell["ci_coverage"] >= 0.95


def test_faster_new_run_exits_0(tmp_path):
    base = store_run(tmp_path, "base", noisy(1, 6))
    new = store_run(tmp_path, "new", noisy(2, 6, factor=0.7))
    result = compare_runs(base, new)
    assert {c.verdict for c in result.cells} == {"faster"}
    assert not result.failed()


def test_a_nan_time_fails_the_gate_instead_of_hiding_a_slowdown(tmp_path):
    cells = compare_samples(
        {"c": ([10.0, 10.1, 9.9, 10.0, 10.2], [24.0, float("nan"), 24.2, 23.9, 24.1])}
    )
    assert cells[0].verdict == INVALID
    walls = iter([[10.0, 10.1, 9.9, 10.0, 10.2], [24.0, float("nan"), 24.2, 23.9, 24.1]])
    store_run(tmp_path, "base", lambda _b: next(walls), cells=CELLS[:1])
    store_run(tmp_path, "new", lambda _b: next(walls), cells=CELLS[:1])
    assert main(["compare", "base", "new", "--results", str(tmp_path), "--json"]) == 1


def test_a_cell_that_stops_building_fails_the_gate_with_status_and_log(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 5))
    store_run(
        tmp_path,
        "new",
        noisy(2, 5),
        status_for=lambda strategy, _rep: "failed" if strategy == "cross" else "ok",
    )
    assert main(["compare", "base", "new", "--results", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN: cbench-s1-cross-linux-arm64: failed in 5 of 5 repetition(s) (compile)" in out
    assert "expected ';'" in out


def test_a_cell_unavailable_in_new_is_breakage(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 5))
    store_run(
        tmp_path,
        "new",
        noisy(2, 5),
        status_for=lambda strategy, _rep: "unavailable" if strategy == "cross" else "ok",
    )
    assert main(["compare", "base", "new", "--results", str(tmp_path)]) == 1
    assert "BROKEN: cbench-s1-cross-linux-arm64: unavailable in 5 of 5" in capsys.readouterr().out


def test_older_records_fail_on_a_combined_recipe_hash_only_when_sources_did_not_change(tmp_path):
    for run_id, recipe, digest in (("base", "h1", "s1"), ("new", "h2", "s1"), ("src", "h3", "s2")):
        path = store_run(tmp_path, run_id, noisy(1, 5), digest=digest)
        for f in (path / "records").glob("*.json"):
            data = json.loads(f.read_text())
            data["extra"] = {"recipe_sha256": recipe}
            data["schema_version"] = 2  # an older record: the digest in extra
            f.write_text(json.dumps(data))
    recipe = compare_runs(tmp_path / "base", tmp_path / "new")
    assert recipe.recipe_changes and recipe.failed()
    source = compare_runs(tmp_path / "base", tmp_path / "src")
    assert not source.recipe_changes and not source.failed()
    assert any("cannot tell a recipe change apart" in w for w in source.warnings)


def test_a_base_cell_new_did_not_request_is_listed_not_failed(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 5))
    store_run(tmp_path, "new", noisy(2, 5), cells=CELLS[:1])
    assert main(["compare", "base", "new", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "only in base (not requested by new): cbench-s1-cross-linux-arm64" in out


def test_a_recipe_change_fails_unless_allowed_and_a_source_change_is_measured(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 5))
    store_run(tmp_path, "new", noisy(2, 5), recipe="r2")
    store_run(tmp_path, "src", noisy(3, 5), digest="src2")
    store_run(tmp_path, "emu", noisy(4, 5), qemu="qemu 10.0")
    args = ["--results", str(tmp_path)]
    assert main(["compare", "base", "new", *args]) == 1
    assert "RECIPE CHANGED: cbench-s1-cross-linux-arm64: Dockerfile changed" in (
        capsys.readouterr().out
    )
    assert main(["compare", "base", "new", *args, "--allow-recipe-change"]) == 0
    assert main(["compare", "base", "emu", *args]) == 1
    out = capsys.readouterr().out
    assert "qemu-user-linux-arm64: emulator qemu_user changed (qemu 7.2 -> qemu 10.0)" in out
    assert "cross-linux-arm64: emulator" not in out
    assert main(["compare", "base", "src", *args]) == 0
    assert "measured change: cbench: project sources changed" in capsys.readouterr().out


def test_sizes_are_never_pooled(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 5), size=1)
    store_run(tmp_path, "new", noisy(2, 5), size=2)
    result = compare_runs(tmp_path / "base", tmp_path / "new")
    assert not result.cells
    assert set(result.only_base) == {
        "cbench-s1-qemu-user-linux-arm64",
        "cbench-s1-cross-linux-arm64",
    }
    assert "cbench-s2-cross-linux-arm64" in result.only_new


def test_unknown_run_is_a_usage_error(tmp_path, capsys):
    store_run(tmp_path, "base", noisy(1, 3))
    assert main(["compare", "base", "nosuch", "--results", str(tmp_path)]) == 2
    assert "nosuch" in capsys.readouterr().err
