"""Charts checked as data: the artists of each figure carry the values they show."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer

from bench.engine.results import Record, typed_fields
from bench.engine.stats import median_ci
from bench.report import charts
from bench.report.charts import STRATEGY_COLOURS
from bench.report.frame import cell_statistics, frame, slowdown_table, wall_summary


def rec(strategy, platform, wall, rep=1, size=1, cache="cold", cpu="", **extra):
    validation = extra.pop(
        "validation",
        {
            "passed": True,
            "checks": [{"name": "smoke", "passed": True, "platform": platform, "skipped": False}],
        },
    )
    return Record(
        "cell",
        "r",
        "s",
        size,
        strategy,
        platform,
        rep,
        "ok",
        wall,
        f"2026-01-01T00:00:{rep:02d}+00:00",
        validation=validation,
        cache=cache,
        cpu=cpu,
        **typed_fields(extra),  # the keys a strategy's outcome holds, as the runner maps them
    )


NATIVE = [4.0, 5.0, 6.0]
QEMU = [100.0, 110.0, 120.0, 130.0]
CROSS = [5.0, 5.5, 6.0]
RECORDS = (
    [rec("native", "linux/amd64", w, i + 1) for i, w in enumerate(NATIVE)]
    + [rec("qemu-user", "linux/arm64", w, i + 1) for i, w in enumerate(QEMU)]
    + [rec("cross", "linux/arm64", w, i + 1) for i, w in enumerate(CROSS)]
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def stats_of(records):
    return cell_statistics(frame(records))


def test_wall_chart_bars_and_error_bars_carry_median_and_ci():
    fig = charts.wall_chart(wall_summary(frame(RECORDS)))
    ax = fig.axes[0]
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    heights = [p.get_height() for p in bars.patches]
    # ordered by platform then registry order: native amd64, qemu-user arm64, cross arm64
    assert heights == pytest.approx([5.0, 115.0, 5.5])
    assert [p.get_facecolor()[:3] for p in bars.patches] == [
        pytest.approx(plt.matplotlib.colors.to_rgb(STRATEGY_COLOURS[s]))
        for s in ("native", "qemu-user", "cross")
    ]
    segments = bars.errorbar.lines[2][0].get_segments()
    extents = [(seg[0][1], seg[1][1]) for seg in segments]
    for (low, high), samples in zip(extents, (NATIVE, QEMU, CROSS), strict=True):
        ci_low, ci_high, _ = median_ci(samples)
        assert (low, high) == pytest.approx((ci_low, ci_high))
    assert ax.get_yscale() == "log"  # 115 / 5 > 20
    assert "(s)" in ax.get_ylabel() and ax.get_title()


def test_wall_chart_is_linear_when_span_is_small():
    fig = charts.wall_chart(wall_summary(frame(RECORDS[:3] + RECORDS[7:])))
    assert fig.axes[0].get_yscale() == "linear"


def test_slowdown_heatmap_holds_ratios_against_the_native_reference():
    stats = stats_of(RECORDS)
    table = slowdown_table(stats)
    assert set(table["reference"]) == {"native linux/amd64"}
    fig = charts.slowdown_heatmap(table)
    image = fig.axes[0].images[0]
    values = np.ma.filled(image.get_array(), np.nan)
    matrix = charts.slowdown_matrix(table)
    assert list(matrix.index) == ["native", "qemu-user", "cross"]
    assert list(matrix.columns) == ["linux/amd64", "linux/arm64"]
    assert values[0, 0] == pytest.approx(1.0)
    assert values[1, 1] == pytest.approx(115.0 / 5.0)
    assert values[2, 1] == pytest.approx(5.5 / 5.0)
    assert math.isnan(values[1, 0])
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert "23.00x" in texts and "n/a" in texts
    assert "native linux/amd64" in fig.axes[0].get_xlabel()


def test_native_on_the_target_platform_is_preferred_as_reference():
    records = RECORDS + [rec("native", "linux/arm64", w, i + 1) for i, w in enumerate([9, 10])]
    table = slowdown_table(stats_of(records)).set_index(["variant", "platform"])
    assert table.loc[("qemu-user", "linux/arm64"), "reference"] == "native linux/arm64"
    assert table.loc[("qemu-user", "linux/arm64"), "ratio"] == pytest.approx(115.0 / 9.5)


def test_no_native_means_no_slowdown_chart():
    table = slowdown_table(stats_of(RECORDS[3:]))
    assert table.empty
    with pytest.raises(ValueError, match="native"):
        charts.slowdown_heatmap(table)


def test_step_breakdown_stacks_median_steps_and_vm_phases():
    records = [
        rec(
            "qemu-user",
            "linux/arm64",
            10.0,
            i + 1,
            step_seconds={"toolchain": 1.0, "compile": c, "export": 0.5},
        )
        for i, c in enumerate([6.0, 7.0, 8.0])
    ] + [rec("qemu-system", "linux/arm64", 30.0, 1, boot_s=5.0, build_s=20.0, shutdown_s=1.0)]
    steps = charts.step_table(frame(records))
    fig = charts.step_breakdown_chart(steps)
    widths = {}
    for p in fig.axes[0].patches:
        widths.setdefault(round(p.get_y() + p.get_height() / 2), []).append(
            (p.get_gid(), p.get_width())
        )
    assert ("compile", pytest.approx(7.0)) in widths[1]
    assert [n for n, _ in widths[1]] == ["toolchain", "compile", "export", "unaccounted"]
    assert dict(widths[0]) == {"boot": 5.0, "build": 20.0, "shutdown": 1.0, "unaccounted": 4.0}


def test_cache_chart_pairs_cold_and_warm():
    records = [rec("cross", "linux/arm64", w, i + 1) for i, w in enumerate([4.0, 5.0, 6.0])] + [
        rec("cross", "linux/arm64", w, i + 1, cache="warm") for i, w in enumerate([1.0, 2.0, 3.0])
    ]
    pairs = charts.cache_pairs(stats_of(records))
    fig = charts.cache_chart(pairs)
    heights = [
        p.get_height()
        for c in fig.axes[0].containers
        if isinstance(c, BarContainer)
        for p in c.patches
    ]
    assert heights == pytest.approx([5.0, 2.0])
    assert any("warm/cold 0.40" in t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(ValueError):
        charts.cache_chart(charts.cache_pairs(stats_of(records[:3])))


def test_scaling_chart_shows_the_fitted_exponent():
    records = []
    for size in (1, 2, 4, 8):
        for rep, noise in enumerate((0.99, 1.0, 1.01)):
            records.append(rec("qemu-user", "linux/arm64", 3.0 * size**1.5 * noise, rep + 1, size))
            records.append(rec("cross", "linux/arm64", 2.0 * size * noise, rep + 1, size))
    stats = stats_of(records)
    fits = charts.growth_exponents(stats).set_index("variant")
    assert fits.loc["qemu-user", "exponent"] == pytest.approx(1.5, abs=1e-6)
    assert fits.loc["cross", "exponent"] == pytest.approx(1.0, abs=1e-6)
    fig = charts.scaling_chart(stats)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "qemu-user linux/arm64: b = 1.50" in labels
    assert "cross linux/arm64: b = 1.00" in labels
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="two or more sizes"):
        charts.scaling_chart(stats_of(RECORDS))


def test_validation_matrix_holds_the_share_passed():
    bad = {
        "passed": False,
        "checks": [
            {"name": "smoke", "passed": False, "platform": "linux/arm64", "skipped": False},
            {"name": "elf", "passed": True, "platform": "linux/arm64", "skipped": False},
        ],
    }
    records = [
        rec("cross", "linux/arm64", 5.0, 1),
        rec("cross", "linux/arm64", 5.0, 2, validation=bad),
    ]
    table = charts.validation_table(records)
    assert table.loc["s-s1-cross-linux-arm64", "smoke"] == 0.5
    assert table.loc["s-s1-cross-linux-arm64", "elf"] == 1.0
    fig = charts.validation_chart(table)
    values = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    assert sorted(values.ravel().tolist()) == [0.5, 1.0]


def test_resources_chart_shows_cpu_and_peak_memory():
    res = {"cpu_user_s": 3.0, "cpu_system_s": 1.0, "peak_above_baseline_bytes": 64 * 2**20}
    fig = charts.resources_chart(
        charts.resource_table(frame([rec("cross", "linux/arm64", 5.0, resources=res)]))
    )
    cpu_ax, mem_ax = fig.axes[:2]
    assert [p.get_height() for p in cpu_ax.patches] == pytest.approx([3.0, 1.0])
    assert [p.get_height() for p in mem_ax.patches] == pytest.approx([64.0])
    assert "MiB" in mem_ax.get_ylabel()


def test_history_chart_marks_change_points():
    import pandas as pd

    series = pd.DataFrame(
        {
            "cell": ["c"] * 4,
            "strategy": ["cross"] * 4,
            "run_id": list("abcd"),
            "started_at": [f"2026-01-0{i}T00:00:00+00:00" for i in range(1, 5)],
            "commit": ["x"] * 4,
            "n": [3] * 4,
            "median_s": [5.0, 5.0, 7.0, 7.0],
        }
    )
    steps = pd.DataFrame(
        {
            "cell": ["c"],
            "started_at": ["2026-01-03T00:00:00+00:00"],
            "ratio": [1.4],
            "after_s": [7.0],
        }
    )
    fig = charts.history_chart(series, steps)
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [5.0, 5.0, 7.0, 7.0]
    assert any(t.get_text() == "1.40x" for t in ax.texts)
    assert len(ax.lines) == 2  # the series and one change-point line


def test_log_axes_label_ticks_as_plain_numbers():
    # text.parse_math is off (names from scenario files), so mathtext labels would print raw
    fig = charts.wall_chart(wall_summary(frame(RECORDS)))
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert "10" in labels and "100" in labels
    assert not any("$" in label or "mathdefault" in label for label in labels)


def test_wall_chart_shows_combined_builds_and_the_ratio_to_native():
    combined = Record("combined", "r", "s", 1, "qemu-user", "", 1, "ok", 60.0, "t")
    fig = charts.wall_chart(wall_summary(frame([*RECORDS, combined])))
    ax = fig.axes[0]
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    assert [p.get_height() for p in bars.patches] == pytest.approx([5.0, 115.0, 5.5, 60.0])
    assert bars.patches[-1].get_hatch() == charts.COMBINED_HATCH
    texts = [t.get_text() for t in ax.texts]
    assert "115 s\n23.0x" in texts and "60 s\n12.0x" in texts
