import pytest

from bench.engine.stats import describe, median_ci, reps_for_difference


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
