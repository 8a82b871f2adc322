import pandas as pd

from bench.analysis.recommend import recommend
from bench.report.frame import STAT_COLUMNS

APPROX = "packages unpacked with dpkg -x: no maintainer script ran"


def stats_row(strategy: str, platform: str, median: float, approximate: str = "") -> dict:
    return {
        "scenario": "s",
        "size": 1,
        "strategy": strategy,
        "variant": strategy,
        "cpu": "default",
        "cache": "cold",
        "platform": platform,
        "n": 5,
        "median_s": median,
        "ci_low_s": median * 0.95,
        "ci_high_s": median * 1.05,
        "ci_coverage": 0.94,
        "cv": 0.03,
        "warnings": (),
        "validated": True,
        "approximate": approximate,
    }


def recs(rows: list[dict]):
    stats = pd.DataFrame(rows, columns=STAT_COLUMNS)
    df = pd.DataFrame(
        columns=["kind", "platform", "scenario", "size", "status", "variant", "failure_class"]
    )
    return {r.platform: r for r in recommend(stats, df, [])}


def test_compile_workload_picks_the_fastest_and_states_the_emulation_cost():
    got = recs(
        [
            stats_row("native", "linux/amd64", 4.0),
            stats_row("qemu-user", "linux/arm64", 64.0),
            stats_row("cross", "linux/arm64", 4.4),
        ]
    )["linux/arm64"]
    assert got.pick is not None and got.pick.variant == "cross"
    assert "costs 16.0x native, 14.5x the pick" in got.sentence()


def test_an_approximate_image_is_not_picked_over_a_faithful_one():
    got = recs(
        [
            stats_row("native", "linux/amd64", 20.0),
            stats_row("qemu-user", "linux/arm64", 95.0),
            stats_row("cross", "linux/arm64", 14.0, APPROX),
        ]
    )["linux/arm64"]
    assert got.pick is not None and got.pick.variant == "qemu-user"
    text = got.sentence()
    assert "costs 4.8x native." in text
    assert "cross is 6.8x faster but its image is not the same" in text and APPROX in text


def test_an_approximate_image_is_picked_only_when_nothing_else_built():
    got = recs(
        [
            stats_row("native", "linux/amd64", 20.0),
            stats_row("cross", "linux/arm64", 14.0, APPROX),
        ]
    )["linux/arm64"]
    assert got.pick is not None and got.pick.variant == "cross"
    assert "Caution: " + APPROX in got.sentence()


def test_the_hosts_own_platform_states_no_emulation_cost():
    got = recs(
        [
            stats_row("native", "linux/amd64", 20.0),
            stats_row("qemu-user", "linux/amd64", 19.8),
            stats_row("cross", "linux/amd64", 10.0, APPROX),
        ]
    )["linux/amd64"]
    assert got.emulation is None and "Emulating" not in got.sentence()


def test_a_faster_approximate_option_is_no_overlap_caveat():
    got = recs(
        [
            stats_row("native", "linux/amd64", 20.0),
            stats_row("qemu-user", "linux/arm64", 95.0),
            stats_row("cross", "linux/arm64", 94.0, APPROX),
        ]
    )["linux/arm64"]
    assert not any("overlap" in c for c in got.caveats)


def test_the_report_tables_each_workloads_emulation_cost():
    from bench.report.writer import Table, _recommendation_blocks

    rows = [
        stats_row("native", "linux/amd64", 4.0),
        stats_row("qemu-user", "linux/arm64", 64.0),
        stats_row("cross", "linux/arm64", 4.4),
    ]
    blocks = _recommendation_blocks(list(recs(rows).values()))
    table = [b for b in blocks if isinstance(b, Table)][-1]
    assert table.headers[2] == "qemu-user vs native"
    assert table.rows == (("s", "linux/arm64", "16.0x", "cross", "1.10x"),)


def test_on_the_hosts_platform_native_is_picked_over_an_equal_qemu_user_build():
    got = recs(
        [
            stats_row("native", "linux/amd64", 20.0),
            stats_row("qemu-user", "linux/amd64", 19.6),
            stats_row("cross", "linux/amd64", 19.9),
        ]
    )["linux/amd64"]
    assert got.pick is not None and got.pick.variant == "native"
    assert any("same kind of build" in c and "native is picked" in c for c in got.caveats)
    assert "0.98x" not in got.sentence()


def test_overlapping_intervals_are_a_tie_settled_by_precedence():
    got = recs(
        [
            stats_row("native", "linux/amd64", 4.0),
            stats_row("qemu-system", "linux/arm64", 60.0),
            stats_row("qemu-user", "linux/arm64", 63.0),
        ]
    )["linux/arm64"]
    assert got.pick is not None and got.pick.variant == "qemu-user"
    assert any("ties with qemu-system" in c for c in got.caveats)
    apart = recs(
        [
            stats_row("native", "linux/amd64", 4.0),
            stats_row("qemu-system", "linux/arm64", 50.0),
            stats_row("qemu-user", "linux/arm64", 63.0),
        ]
    )["linux/arm64"]
    assert apart.pick is not None and apart.pick.variant == "qemu-system"
    assert not any("ties" in c for c in apart.caveats)


def _manifest(needs: list[str]) -> dict:
    return {
        "request": {
            "scenarios": ["s"],
            "strategies": ["native", "hybrid", "cross", "qemu-user"],
            "needs_target_code": needs,
        }
    }


def _recs_with(rows: list[dict], manifests: list[dict]):
    stats = pd.DataFrame(rows, columns=STAT_COLUMNS)
    df = pd.DataFrame(
        columns=["kind", "platform", "scenario", "size", "status", "variant", "failure_class"]
    )
    return {r.platform: r for r in recommend(stats, df, manifests)}


HYBRID_ROWS = [
    stats_row("native", "linux/amd64", 4.0),
    stats_row("qemu-user", "linux/arm64", 56.0),
    stats_row("hybrid", "linux/arm64", 4.5),
    stats_row("cross", "linux/arm64", 4.2),
]


def test_hybrid_comes_right_after_native_when_tied_with_cross():
    got = _recs_with(HYBRID_ROWS, [_manifest([])])["linux/arm64"]
    assert got.pick is not None and got.pick.variant == "hybrid"
    assert any("ties with cross" in c for c in got.caveats)
    assert got.needs_target_code is False
    assert "Cross is a candidate: the scenario does not declare" in got.sentence()


def test_a_scenario_needing_target_code_leaves_cross_out_off_the_host():
    faster = [*HYBRID_ROWS[:2], stats_row("hybrid", "linux/arm64", 9.0), HYBRID_ROWS[3]]
    got = _recs_with(faster, [_manifest(["s"])])
    arm = got["linux/arm64"]
    assert arm.pick is not None and arm.pick.variant == "hybrid"
    assert all(o.strategy != "cross" for o in arm.alternatives)
    assert "cross is left out: the scenario needs target code at build time" in arm.caveats
    assert "Cross is not a candidate: the scenario needs target code" in arm.sentence()
    # Without the declaration the faster cross build is the pick.
    plain = _recs_with(faster, [_manifest([])])["linux/arm64"]
    assert plain.pick is not None and plain.pick.variant == "cross"


def test_no_cross_cell_asked_says_nothing_of_target_code():
    manifest = _manifest([])
    manifest["request"]["strategies"] = ["native", "qemu-user"]
    got = _recs_with(HYBRID_ROWS[:2], [manifest])["linux/arm64"]
    assert got.needs_target_code is None and "candidate" not in got.sentence()
