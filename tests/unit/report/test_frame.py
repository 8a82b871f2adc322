import matplotlib.pyplot as plt

from bench.engine.results import Record, RunStore
from bench.report.charts import wall_chart
from bench.report.frame import (
    cell_statistics,
    frame,
    load_report_data,
    slowdown_table,
    wall_summary,
)
from bench.report.writer import write_report_files


def rec(strategy, platform, wall, kind="cell", status="ok", rep=1):
    return Record(kind, "r", "s", 1, strategy, platform, rep, status, wall, "t")


RECORDS = [
    rec("native", "linux/amd64", 4.0),
    rec("native", "linux/amd64", 6.0, rep=2),
    rec("qemu-user", "linux/arm64", 50.0),
    rec("cross", "linux/arm64", 4.2),
    rec("cross", "linux/arm64", 99.0, status="failed", rep=2),
    rec("native", "linux/arm64", 0.0, status="unavailable"),
    rec("qemu-user", "", 60.0, kind="combined"),
    rec("qemu-user", "linux/arm64", 30.0, kind="provision"),
]


def test_summary_is_median_of_ok_samples_with_ratio_to_native():
    table = wall_summary(frame(RECORDS)).set_index(["kind", "strategy", "platform"])
    assert table.loc[("cell", "native", "linux/amd64"), "median_s"] == 5.0
    assert table.loc[("cell", "native", "linux/amd64"), "n"] == 2
    assert table.loc[("cell", "qemu-user", "linux/arm64"), "vs_native"] == 10.0
    assert table.loc[("cell", "cross", "linux/arm64"), "median_s"] == 4.2
    assert table.loc[("combined", "qemu-user", "all"), "vs_native"] == 12.0
    assert ("cell", "native", "linux/arm64") not in table.index
    assert ("provision", "qemu-user", "linux/arm64") not in table.index


def test_chart_bars_carry_the_medians():
    summary = wall_summary(frame(RECORDS))
    fig = wall_chart(summary)
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == sorted(summary["median_s"].tolist())
    assert "wall time" in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_report_reads_only_stored_results(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write_manifest({})
    for r in RECORDS:
        store.add(r)
    written = write_report_files(load_report_data([store.path]), tmp_path / "out", full=False)
    assert {p.name for p in written} == {"cells.csv", "walltime.csv", "walltime.png"}
    assert (tmp_path / "out" / "walltime.png").stat().st_size > 1000


def test_one_versus_native_feeds_the_summary_and_the_slowdown_table():
    records = RECORDS + [
        Record("cell", "r", "s", 1, "native", "linux/amd64", 1, "ok", 2.0, "t", cache="warm"),
        Record("cell", "r", "s", 1, "qemu-user", "linux/arm64", 1, "ok", 8.0, "t", cache="warm"),
    ]
    df = frame(records)
    wall = wall_summary(df).set_index(["kind", "strategy", "platform", "cache"])
    slow = slowdown_table(cell_statistics(df)).set_index(["strategy", "platform", "cache"])
    for key in [("qemu-user", "linux/arm64", "cold"), ("qemu-user", "linux/arm64", "warm")]:
        assert wall.loc[("cell", *key), "vs_native"] == slow.loc[key, "ratio"]
        assert wall.loc[("cell", *key), "reference"] == slow.loc[key, "reference"]
    # a warm cell is compared with the warm native cell, not the cold one
    assert slow.loc[("qemu-user", "linux/arm64", "warm"), "ratio"] == 4.0
    assert wall.loc[("cell", "qemu-user", "linux/arm64", "cold"), "vs_native"] == 10.0


def test_the_report_writes_each_file_once(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write_manifest({})
    for r in RECORDS:
        store.add(r)
    written = write_report_files(load_report_data([store.path]), tmp_path / "out")
    names = [p.name for p in written]
    assert len(names) == len(set(names))
    assert {
        "cells.csv",
        "walltime.csv",
        "walltime.png",
        "walltime-ci.png",
        "summary.md",
        "report.html",
    } <= set(names)
    # walltime.png and walltime-ci.png are one chart under the two names reports have used
    assert (tmp_path / "out" / "walltime.png").read_bytes() == (
        tmp_path / "out" / "walltime-ci.png"
    ).read_bytes()
