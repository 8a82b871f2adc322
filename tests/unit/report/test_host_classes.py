"""Reports on runs from several hardware classes: every figure is computed within one
class, and a report on one class reads as it did before classes were recorded."""

from dataclasses import replace

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from bench.analysis.recommend import recommend
from bench.engine.results import Attribution, EmulatorFacts, Record, RunStore
from bench.report.frame import (
    amdahl_table,
    attribution_table,
    cell_statistics,
    emulator_versions,
    frame,
    load_report_data,
    slowdown_table,
    wall_summary,
)
from bench.report.writer import write_report_files

A = "Intel Xeon E5-2680, 2 cores, 4 GiB, Linux 6.1"
B = "Ampere Altra, 8 cores, 32 GiB, Linux 6.8"
VALID = {"passed": True, "checks": [{"name": "smoke", "passed": True, "skipped": False}]}


def rec(strategy, platform, wall, rep, host_class, run="r", **more):
    return Record(
        "cell",
        run,
        "s",
        1,
        strategy,
        platform,
        rep,
        "ok",
        wall,
        f"2026-01-01T00:00:{rep:02d}+00:00",
        validation=VALID,
        host_class=host_class,
        **more,
    )


def cells(host_class, native, qemu, cross, run="r"):
    return [
        *(rec("native", "linux/amd64", w, i + 1, host_class, run) for i, w in enumerate(native)),
        *(rec("qemu-user", "linux/arm64", w, i + 1, host_class, run) for i, w in enumerate(qemu)),
        *(rec("cross", "linux/arm64", w, i + 1, host_class, run) for i, w in enumerate(cross)),
    ]


ON_A = cells(A, [4.0, 5.0, 6.0], [100.0, 110.0, 120.0, 130.0], [5.0, 5.5, 6.0])
# Another machine: native 10x slower, qemu-user barely slower, cross the fastest there.
ON_B = cells(B, [40.0, 50.0, 60.0], [120.0, 125.0, 130.0], [1.0, 1.1, 1.2])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _of(table, host_class):
    own = table[table["host_class"] == host_class].drop(columns=["host_class"])
    return own.reset_index(drop=True)


def test_statistics_and_ratios_of_one_class_ignore_another_class():
    alone, mixed = frame(ON_A), frame(ON_A + ON_B)
    pd.testing.assert_frame_equal(
        _of(cell_statistics(mixed), A), _of(cell_statistics(alone), A), check_dtype=False
    )
    wall_a = _of(wall_summary(mixed), A).set_index(["strategy", "platform"])
    pd.testing.assert_frame_equal(
        wall_a, _of(wall_summary(alone), A).set_index(["strategy", "platform"])
    )
    # qemu-user on A: 115 / 5 (A's own native), not against B's native or a pooled one.
    assert wall_a.loc[("qemu-user", "linux/arm64"), "vs_native"] == pytest.approx(23.0)
    wall_b = _of(wall_summary(mixed), B).set_index(["strategy", "platform"])
    assert wall_b.loc[("qemu-user", "linux/arm64"), "vs_native"] == pytest.approx(125 / 50)
    assert wall_b.loc[("native", "linux/amd64"), "n"] == 3  # not 6: no pooled samples
    slow = slowdown_table(cell_statistics(mixed))
    assert set(slow["host_class"]) == {A, B}
    pd.testing.assert_frame_equal(
        _of(slow, A), _of(slowdown_table(cell_statistics(alone)), A), check_dtype=False
    )


def test_recommendations_are_made_per_class():
    mixed = frame(ON_A + ON_B)
    recs = {(r.platform, r.host_class): r for r in recommend(cell_statistics(mixed), mixed, [])}
    alone = {r.platform: r for r in recommend(cell_statistics(frame(ON_A)), frame(ON_A), [])}
    assert set(recs) == {(p, c) for p in ("linux/amd64", "linux/arm64") for c in (A, B)}
    for platform, rec_a in alone.items():
        assert recs[(platform, A)] == rec_a
    # On B, cross's 1.1 s beats everything there; on A it is 5.5 s against A's own native.
    arm_b = recs[("linux/arm64", B)]
    assert arm_b.pick is not None and arm_b.pick.variant == "cross"
    assert arm_b.pick.vs_native == pytest.approx(1.1 / 50)
    arm_a = recs[("linux/arm64", A)]
    assert arm_a.pick is not None and arm_a.pick.vs_native == pytest.approx(5.5 / 5)


def test_emulator_versions_and_attribution_are_per_class():
    pinned = EmulatorFacts(spec="trixie", tag="qemu10.0", version="1:10.0.2")

    def emu(host_class, host_times, pinned_times):
        return [
            *(
                rec("qemu-user", "linux/arm64", w, i + 1, host_class)
                for i, w in enumerate(host_times)
            ),
            *(
                rec("qemu-user", "linux/arm64", w, i + 1, host_class, emulator=pinned)
                for i, w in enumerate(pinned_times)
            ),
        ]

    on_a = emu(A, [10.0, 11.0, 12.0], [20.0, 22.0, 24.0])
    on_b = emu(B, [10.0, 11.0, 12.0], [5.0, 5.5, 6.0])
    table = emulator_versions(frame(on_a + on_b)).set_index(["host_class", "emulator"])
    assert table.loc[(A, "qemu10.0"), "ratio"] == pytest.approx(2.0)
    assert table.loc[(B, "qemu10.0"), "ratio"] == pytest.approx(0.5)
    assert table.loc[(A, "qemu10.0"), "pairs"] == 3  # B's repetitions do not pair with A's

    def attributed(host_class, cpu):
        a = Attribution(
            total_cpu_s=cpu,
            accounted_cpu_s=cpu,
            processes=3,
            cpu_by_group={"compiler": cpu / 2},
        )
        return rec("qemu-user", "linux/arm64", 10.0, 1, host_class, attribution=a)

    att = attribution_table([attributed(A, 8.0), attributed(B, 80.0)]).set_index("host_class")
    assert att.loc[A, "total_cpu_s"] == 8.0 and att.loc[B, "total_cpu_s"] == 80.0
    assert list(att["n"]) == [1, 1]


def _store(root, records, run_id):
    store = RunStore(root, run_id)
    store.write_manifest({"run_id": run_id, "started_at": "2026-01-01T00:00:00+00:00"})
    for r in records:
        store.add(replace(r, run_id=run_id))
    return store.path


def test_a_report_on_two_classes_has_a_section_per_class(tmp_path):
    runs = [
        _store(tmp_path / "results", ON_A, "20260101T000000Z-a"),
        _store(tmp_path / "results", ON_B, "20260102T000000Z-b"),
    ]
    data = load_report_data(runs)
    assert data.host_classes == [B, A]  # sorted
    pd.testing.assert_frame_equal(
        data.of_class(A).stats.reset_index(drop=True),
        load_report_data(runs[:1]).stats,
        check_dtype=False,
    )
    written = {p.name for p in write_report_files(data, tmp_path / "out")}
    assert {"walltime-ci-class1.png", "walltime-ci-class2.png", "walltime.png"} <= written
    assert "walltime-ci.png" not in written
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Host classes" in summary
    assert f"- host class 1: {B}" in summary and f"- host class 2: {A}" in summary
    assert f"## Host class 2: {A}" in summary
    # Each class's recommendation sits in its own section, with its own ratio.
    a_part = summary.split(f"## Host class 2: {A}")[1].split("## History")[0]
    b_part = summary.split(f"## Host class 1: {B}")[1].split(f"## Host class 2: {A}")[0]
    assert "### Recommendation" in a_part and "### Recommendation" in b_part
    assert "23.00x" in a_part and "23.00x" not in b_part
    walltime = pd.read_csv(tmp_path / "out" / "walltime.csv")
    assert sorted(set(walltime["host_class"])) == [B, A]
    assert len(walltime) == 6


def test_one_class_reports_as_before_classes_were_recorded(tmp_path):
    # The same measurements, once without a class (stored before the field) and once
    # with one: the page, the charts and the tables read the same.
    unnamed = [replace(r, host_class="") for r in ON_A]
    old = _store(tmp_path / "old", unnamed, "20260101T000000Z-a")
    new = _store(tmp_path / "new", ON_A, "20260101T000000Z-a")
    before = write_report_files(load_report_data([old]), tmp_path / "out-old")
    after = write_report_files(load_report_data([new]), tmp_path / "out-new")
    assert [p.name for p in before] == [p.name for p in after]
    for name in ("summary.md", "report.html"):
        assert (tmp_path / "out-old" / name).read_text() == (
            tmp_path / "out-new" / name
        ).read_text()
    assert "Host classes" not in (tmp_path / "out-new" / "summary.md").read_text()
    old_wall = pd.read_csv(tmp_path / "out-old" / "walltime.csv")
    new_wall = pd.read_csv(tmp_path / "out-new" / "walltime.csv")
    assert list(new_wall.columns)[-1] == "host_class" and set(new_wall["host_class"]) == {A}
    pd.testing.assert_frame_equal(
        old_wall.drop(columns=["host_class"]), new_wall.drop(columns=["host_class"])
    )


def test_records_without_a_class_join_their_cells_one_class():
    # A run stored before the field, then one that names the class: one series of cells.
    older = [replace(r, host_class="", run_id="old") for r in ON_A]
    stats = cell_statistics(frame(older + ON_A))
    assert set(stats["host_class"]) == {A}
    assert stats.set_index("strategy").loc["native", "n"] == 6


def test_amdahl_limit_is_computed_within_each_class():
    def attributed(base, host_class, f):
        a = Attribution(
            total_cpu_s=9.0 * f,
            accounted_cpu_s=8.0 * f,
            processes=3,
            cpu_by_group={"compiler": 2.0 * f},
        )  # toolchain share 25 %
        qemu = [replace(r, attribution=a) for r in base if r.strategy == "qemu-user"]
        hybrid = [replace(r, strategy="hybrid", wall_s=r.wall_s * 0.9) for r in qemu]
        return [*base, *qemu, *hybrid]

    records = attributed(ON_A, A, 1) + attributed(ON_B, B, 3)
    stats = cell_statistics(frame(records))
    table = amdahl_table(attribution_table(records), stats).set_index("host_class")
    assert table.loc[A, "qemu_user_s"] == 115.0 and table.loc[A, "native_s"] == 5.0
    assert table.loc[B, "qemu_user_s"] == 125.0 and table.loc[B, "native_s"] == 50.0
    assert table.loc[B, "limit_vs_native"] == pytest.approx(125 * 0.75 / 50)


def test_the_history_chart_draws_one_line_per_cell_and_class():
    from bench.analysis.history import RunPoint, series_frame, steps_frame
    from bench.report.charts import history_chart

    def points(host_class, median, first):
        return [
            RunPoint("c", "native", f"run{i}", f"2026-01-{i + 1:02d}", "", (median,), host_class)
            for i in range(first, first + 3)
        ]

    series = series_frame({"c on A": points(A, 10.0, 0), "c on B": points(B, 20.0, 3)})
    fig = history_chart(series, steps_frame([]))
    lines = fig.axes[0].get_lines()
    assert sorted(list(line.get_ydata()) for line in lines) == [[10.0] * 3, [20.0] * 3]
    assert sorted(line.get_label() for line in lines) == [f"c ({B})", f"c ({A})"]


def test_records_that_measure_nothing_take_their_runs_one_class():
    # An unavailable cell and a joined index name no class of their own: they were
    # decided on the run's host, so a one-class run stays a one-class report.
    unavailable = replace(rec("native", "linux/arm64", 0.0, 1, ""), status="unavailable")
    merge = replace(rec("native", "all", 1.0, 1, ""), kind="merge")
    table = frame([*ON_A, unavailable, merge])
    assert set(table["host_class"]) == {A}
    # With two runs on two classes, each run's own class.
    other = replace(unavailable, run_id="r2")
    table = frame([*ON_A, *cells(B, [40.0], [120.0], [1.0], run="r2"), unavailable, other])
    assert dict(zip(table["run_id"], table["host_class"], strict=False)) == {"r": A, "r2": B}
