import pytest

from bench.analysis.gatepower import unpaired
from bench.engine.stats import describe, gate_power, median_ci, reps_for_difference, reps_for_gate


def test_three_samples_give_min_max_at_75_percent():
    low, high, coverage = median_ci([3.0, 1.0, 2.0])
    assert (low, high) == (1.0, 3.0)
    assert coverage == pytest.approx(0.75)


def test_interval_narrows_with_more_samples_and_reaches_95_percent():
    xs = [float(x) for x in range(1, 21)]
    low, high, coverage = median_ci(xs)
    assert coverage >= 0.95
    assert 1.0 < low < 10.5 < high < 20.0


def test_describe_flags_an_unstable_cell_and_a_first_outlier():
    st = describe([30.0, 10.0, 10.2, 9.9, 10.1])
    assert st.median == 10.1 and st.minimum == 9.9 and st.maximum == 30.0
    assert any("unstable" in w for w in st.warnings)
    assert any("first repetition" in w for w in st.warnings)
    steady = describe([10.0, 10.1, 9.9, 10.05, 10.0])
    assert steady.warnings == ()
    assert steady.cv < 0.01


def test_reps_needed_grow_with_spread():
    assert reps_for_difference(0.0) is None
    assert reps_for_difference(0.01) == 2
    assert reps_for_difference(0.05) < reps_for_difference(0.10)


def test_single_sample_has_no_spread():
    st = describe([5.0])
    assert st.stdev == 0 and st.ci_coverage == 0
    assert any("only 1" in w for w in st.warnings)


def test_reps_for_gate_are_for_the_gates_own_test_at_its_threshold():
    # The exact rank test cannot pass Holm's first step over 7 cells below 5 reps.
    assert gate_power(4, 0.07, cells=7) == 0.0
    n = reps_for_gate(0.07, change=0.20, threshold=0.10, cells=7, power=0.90)
    assert n in (7, 8)
    # The gate itself, simulated (600 seeded compares), reaches about 90 % there and
    # clearly less two repetitions below.
    assert unpaired(n, cells=7, cv=0.07, slowdown=1.2, trials=600, seed=7).first_slower >= 0.88
    assert unpaired(n - 2, cells=7, cv=0.07, slowdown=1.2, trials=600, seed=8).first_slower < 0.85
    assert reps_for_gate(0.15) > reps_for_gate(0.07)
    assert reps_for_gate(0.07, change=0.10, threshold=0.10) is None
    assert describe([10.0, 10.5, 9.6, 10.2, 9.9]).reps_for_gate == reps_for_gate(
        describe([10.0, 10.5, 9.6, 10.2, 9.9]).cv
    )
