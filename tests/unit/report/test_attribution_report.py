"""The report's section on where emulated time goes: the attribution table, Amdahl's
limit for hybrid and the stacked chart, from stored records."""

from dataclasses import asdict

import matplotlib.pyplot as plt
import pytest
from matplotlib.container import BarContainer

from bench.engine.results import Attribution, RunStore
from bench.report import charts
from bench.report.frame import amdahl_table, attribution_table, cell_statistics, frame
from bench.report.writer import write_report
from tests.unit.report.test_charts import rec


def attributed(strategy, platform, wall, rep, groups, total):
    accounted = sum(groups.values())
    a = Attribution(groups, accounted, total, accounted / total, processes=40)
    return rec(strategy, platform, wall, rep, attribution=asdict(a))


QEMU_GROUPS = {"compiler": 60.0, "assembler": 5.0, "linker": 5.0, "make": 2.0, "shell": 18.0}
HYBRID_GROUPS = {"compiler": 3.0, "assembler": 0.3, "linker": 0.2, "make": 2.0, "shell": 18.0}
RECORDS = [
    *[rec("native", "linux/amd64", w, i) for i, w in enumerate([9.0, 10.0, 11.0])],
    *[
        attributed("qemu-user", "linux/arm64", w, i, QEMU_GROUPS, 95.0)
        for i, w in enumerate([95.0, 100.0, 105.0])
    ],
    *[
        attributed("hybrid", "linux/arm64", w, i, HYBRID_GROUPS, 25.0)
        for i, w in enumerate([38.0, 40.0, 42.0])
    ],
    # A record of an older run: no attribution, left out of the section.
    rec("cross", "linux/arm64", 11.0, 0),
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_the_table_holds_medians_per_attributed_cell():
    table = attribution_table(RECORDS)
    assert list(table["strategy"]) == ["hybrid", "qemu-user"]
    qemu = table[table["strategy"] == "qemu-user"].iloc[0]
    assert qemu["n"] == 3 and qemu["wall_s"] == 100.0 and qemu["cpu_compiler_s"] == 60.0
    assert qemu["coverage"] == pytest.approx(90 / 95)
    assert qemu["toolchain_share"] == pytest.approx(70 / 90)


def test_amdahls_limit_stands_beside_what_hybrid_reached():
    table = attribution_table(RECORDS)
    (row,) = amdahl_table(table, cell_statistics(frame(RECORDS))).to_dict("records")
    assert row["qemu_user_s"] == 100.0 and row["hybrid_s"] == 40.0 and row["native_s"] == 10.0
    assert row["limit_s"] == pytest.approx(100 * (1 - 70 / 90))
    assert row["limit_vs_native"] == pytest.approx(row["limit_s"] / 10)
    assert row["hybrid_vs_native"] == pytest.approx(4.0)
    assert row["saving_reached"] == pytest.approx(60 / (100 - row["limit_s"]))


def test_no_limit_on_the_hosts_own_platform():
    own = [
        *RECORDS[:3],
        attributed("qemu-user", "linux/amd64", 10.5, 0, QEMU_GROUPS, 95.0),
    ]
    table = attribution_table(own)
    assert amdahl_table(table, cell_statistics(frame(own))).empty


def test_the_chart_stacks_groups_and_the_unattributed_rest():
    table = charts._ordered(attribution_table(RECORDS))
    fig = charts.attribution_chart(table)
    abs_ax = fig.axes[0]
    bars = [c for c in abs_ax.containers if isinstance(c, BarContainer)]
    # Seven groups and the rest, per cell; the stack reaches the build's CPU time.
    assert len(bars) == 8
    tops = [max(b.get_y() + b.get_height() for b in (c[i] for c in bars)) for i in range(2)]
    assert tops == pytest.approx(list(table["total_cpu_s"]))
    assert [t.get_text() for t in abs_ax.texts] == [f"{c:.0%}" for c in table["coverage"]]
    with pytest.raises(ValueError, match="no cell carries"):
        charts.attribution_chart(attribution_table(RECORDS[-1:]))


def test_the_report_has_the_section_chart_and_amdahl_figures(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write_manifest({"status": "ok", "provenance": {}, "cells": []})
    for r in RECORDS:
        store.add(r)
    written = {p.name for p in write_report([store.path], tmp_path / "report")}
    assert {"attribution.png", "attribution.svg", "attribution.csv", "amdahl.csv"} <= written
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "## Where emulated time goes" in summary and "Amdahl's limit for hybrid" in summary
    assert "77.8%" in summary  # the toolchain share of the qemu-user build
    assert "| 4.00x |" in summary  # hybrid against native


def test_no_attribution_means_no_section(tmp_path):
    store = RunStore(tmp_path / "results")
    store.write_manifest({"status": "ok", "provenance": {}, "cells": []})
    store.add(RECORDS[0])
    write_report([store.path], tmp_path / "report")
    assert "emulated time" not in (tmp_path / "report" / "summary.md").read_text()


def test_show_gives_each_attributed_cells_medians():
    from bench.analysis.show import cell_rows

    rows = {r["cell"]: r for r in cell_rows(RECORDS)}
    qemu = next(r for k, r in rows.items() if "qemu-user" in k)
    assert qemu["attribution"]["cpu_by_group"]["compiler"] == 60.0
    assert qemu["attribution"]["coverage"] == pytest.approx(90 / 95)
    assert next(r for k, r in rows.items() if "native" in k)["attribution"] is None


def test_a_cell_that_shared_the_engine_is_marked(tmp_path):
    from dataclasses import replace

    from bench.engine.attribution import SHARED_ENGINE

    shared = [
        replace(r, attribution=replace(r.attribution, notes=(SHARED_ENGINE,)))
        if r.strategy == "hybrid" and r.rep == 0
        else r
        for r in RECORDS
    ]
    table = attribution_table(shared)
    assert list(table["shared"]) == [True, False]
    (row,) = amdahl_table(table, cell_statistics(frame(shared))).to_dict("records")
    assert row["shared"] is True
    store = RunStore(tmp_path / "results")
    store.write_manifest({"status": "ok", "provenance": {}, "cells": []})
    for r in shared:
        store.add(r)
    write_report([store.path], tmp_path / "report")
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| hybrid (engine shared) |" in summary and "s s1 (engine shared)" in summary
