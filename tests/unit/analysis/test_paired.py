"""compare --pair: two variants of one run, paired by repetition."""

import json

import numpy as np
import pytest
from scipy.stats import wilcoxon

from bench.analysis.compare import SLOWER
from bench.analysis.gatepower import paired
from bench.analysis.paired import compare_paired_samples, compare_pairs, paired_t, parse_pair
from bench.cli import main
from bench.engine.results import Record, RunStore


def store_pair_run(
    root, run_id, factor=1.0, reps=7, seed=0, b_status="ok", order="interleaved", a_fails=()
):
    rng = np.random.default_rng(seed)
    store = RunStore(root, run_id)
    store.write_manifest({"request": {"order": order}})
    drift = 1.0
    for rep in range(1, reps + 1):
        for scenario in ("old", "new") if rep % 2 else ("new", "old"):
            drift *= 1 + 0.01 * rng.standard_normal()
            wall = 50 * drift * (1 + 0.03 * rng.standard_normal())
            status = b_status if scenario == "new" else "ok"
            if scenario == "old" and rep in a_fails:
                status = "failed"
            tail = "" if status == "ok" else "error: undefined reference"
            store.add(
                Record(
                    "cell",
                    run_id,
                    scenario,
                    1,
                    "cross",
                    "linux/arm64",
                    rep,
                    status,
                    wall * (factor if scenario == "new" else 1.0),
                    "",
                    log_tail=tail,
                )
            )
    return store.path


def test_pair_flag_is_parsed_and_checked():
    assert parse_pair("scenario=old,new") == ("scenario", "old", "new")
    assert parse_pair("cpu=default,max") == ("cpu", "default", "max")
    for bad in ("scenario=old", "colour=a,b", "scenario=a,a", "size=1,big", "old,new"):
        with pytest.raises(ValueError):
            parse_pair(bad)


def test_paired_t_on_log_ratios():
    ratio, low, high, p_slow, p_fast = paired_t([10, 20, 30, 40, 50], [12, 24, 36, 48, 60])
    assert ratio == pytest.approx(1.2) and low == high == pytest.approx(1.2)
    assert p_slow == 0.0 and p_fast == 1.0
    ratio, low, high, p_slow, _ = paired_t([10, 20, 30, 40, 50], [12.2, 23.5, 36.4, 47.7, 60.6])
    assert low < ratio < high and ratio == pytest.approx(1.2, abs=0.01)
    # Five pairs all slower: a signed-rank test cannot go below 1/32; the t-test can.
    d = np.log(np.array([12.2, 23.5, 36.4, 47.7, 60.6]) / np.array([10, 20, 30, 40, 50]))
    assert wilcoxon(d, alternative="greater").pvalue == pytest.approx(1 / 32)
    assert p_slow < 0.001


def test_paired_aa_under_drift_rarely_alarms():
    # 1500 seeded A/A paired compares of one cell, 7 pairs, CV 7 % per build and a
    # random walk of 1 % per build.
    assert paired(7, cells=1, cv=0.07, drift=0.01, trials=1500, seed=201).any_slower <= 0.05


def test_paired_twenty_percent_is_found_at_the_recommended_pairs():
    # The README recommends 7 pairs; 1500 seeded compares under the same drift.
    rates = paired(7, cells=1, cv=0.07, drift=0.01, slowdown=1.2, trials=1500, seed=202)
    assert rates.first_slower >= 0.90


def test_a_nan_in_a_pair_cannot_pass():
    (row,) = compare_paired_samples({("a", "b"): ([1.0, 1.0, 1.0], [2.4, float("nan"), 2.4])})
    assert row.verdict == "invalid samples"


def test_compare_pair_flags_a_slower_variant_and_passes_an_identical_one(tmp_path, capsys):
    store_pair_run(tmp_path, "slow", factor=1.2)
    store_pair_run(tmp_path, "same", factor=1.0, seed=1)
    args = ["--results", str(tmp_path), "--pair", "scenario=old,new"]
    assert main(["compare", "slow", *args, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    (pair,) = data["pairs"]
    assert pair["cell_a"] == "old-s1-cross-linux-arm64"
    assert pair["cell_b"] == "new-s1-cross-linux-arm64"
    assert pair["verdict"] == SLOWER and pair["pairs"] == 7
    assert pair["ci_low"] < pair["ratio"] < pair["ci_high"]
    assert main(["compare", "same", *args]) == 0
    assert "no significant change" in capsys.readouterr().out


def test_compare_pair_fails_when_variant_b_stops_building(tmp_path, capsys):
    store_pair_run(tmp_path, "broken", b_status="failed")
    assert (
        main(["compare", "broken", "--results", str(tmp_path), "--pair", "scenario=old,new"]) == 1
    )
    assert "BROKEN: new-s1-cross-linux-arm64: failed in 7 of 7" in capsys.readouterr().out


def test_compare_pair_usage_errors(tmp_path, capsys):
    store_pair_run(tmp_path, "run", order="sequential")
    args = ["--results", str(tmp_path)]
    assert main(["compare", "run", "run", *args, "--pair", "scenario=old,new"]) == 2
    assert main(["compare", "run", *args, "--pair", "scenario=old,nosuch"]) == 2
    assert main(["compare", "run", *args, "--pair", "colour=a,b"]) == 2
    assert main(["compare", "run", *args]) == 2
    capsys.readouterr()
    assert main(["compare", "run", *args, "--pair", "scenario=old,new"]) == 0
    assert "not adjacent in time" in capsys.readouterr().err


def test_the_paired_interval_holds_its_95_percent_under_drift():
    # 1000 seeded 5-pair runs, true ratio 1.2, CV 7 % per build, random walk 1 % per build,
    # in the runner's alternating order.
    from bench.analysis.gatepower import lognormal

    rng = np.random.default_rng(9)
    hits = 0
    for _ in range(1000):
        x = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 10))) * lognormal(rng, (10,), 0.07)
        a = [x[2 * p] if p % 2 == 0 else x[2 * p + 1] for p in range(5)]
        b = [1.2 * (x[2 * p + 1] if p % 2 == 0 else x[2 * p]) for p in range(5)]
        _, low, high, _, _ = paired_t(a, b)
        hits += low <= 1.2 <= high
    assert hits / 1000 >= 0.93


def test_a_failure_both_variants_share_is_not_breakage_of_b(tmp_path):
    # B failed everywhere: breakage, even though A failed once too.
    assert compare_pairs(
        store_pair_run(tmp_path, "all", b_status="failed", a_fails=(3,)), "scenario", "old", "new"
    ).broken
    # Both failed at repetition 3 only (the registry went away): not B's breakage.
    path = store_pair_run(tmp_path, "shared", a_fails=(3,))
    for f in (path / "records").glob("*-cell-new-*-r3.json"):
        data = json.loads(f.read_text())
        f.write_text(json.dumps({**data, "status": "failed"}))
    result = compare_pairs(path, "scenario", "old", "new")
    assert not result.broken
    assert result.pairs[0].pairs == 6
