import itertools

import pytest

from bench.engine.matrix import Cell, expand, schedule, split_values


def test_split_values_flattens_comma_lists_and_repeats_in_order():
    assert split_values(["a,b", "c", " b ", "", "a,,d"]) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "n_strategies,n_platforms,n_sizes",
    list(itertools.product(range(0, 4), range(0, 3), range(1, 3))),
)
def test_expand_is_the_full_product_in_order(n_strategies, n_platforms, n_sizes):
    strategies = ["native", "qemu-system", "qemu-user", "cross"][:n_strategies]
    platforms = ["linux/amd64", "linux/arm64", "linux/riscv64"][:n_platforms]
    sizes = [1, 2][:n_sizes]
    cells = expand([("s", ["linux/amd64"])], strategies, sizes, platforms)
    chosen = platforms or ["linux/amd64"]
    assert cells == [Cell("s", z, st, p) for z in sizes for st in strategies for p in chosen]


def test_expand_uses_each_scenarios_own_platforms_without_a_platform_flag():
    cells = expand([("a", ["linux/amd64"]), ("b", ["linux/arm64", "linux/amd64"])], ["cross"], [1])
    assert [(c.scenario, c.platform) for c in cells] == [
        ("a", "linux/amd64"),
        ("b", "linux/arm64"),
        ("b", "linux/amd64"),
    ]


def test_expand_drops_duplicate_cells():
    cells = expand([("a", []), ("a", [])], ["cross"], [1, 1], ["linux/amd64"])
    assert cells == [Cell("a", 1, "cross", "linux/amd64")]


def test_schedule_is_round_robin_by_repetition_alternating_direction():
    a, b = Cell("s", 1, "x", "p"), Cell("s", 1, "y", "p")
    assert schedule([a, b], 3) == [
        (1, False, a),
        (1, False, b),
        (2, False, b),
        (2, False, a),
        (3, False, a),
        (3, False, b),
    ]
    assert schedule([a], 0) == []


def test_paired_variants_are_adjacent_and_alternate_which_goes_first():
    # Two scenario files (old, new) over two strategies: expand lists old's cells first.
    cells = expand([("old", ["p"]), ("new", ["p"])], ["x", "y"], [1])
    plan = [(rep, cell) for rep, _, cell in schedule(cells, 4)]
    for rep in range(1, 5):
        names = [(c.strategy, c.scenario) for r, c in plan if r == rep]
        first = "old" if rep % 2 == 1 else "new"
        second = "new" if first == "old" else "old"
        # Each strategy's two scenarios run back to back, in alternating order.
        pairs = [names[0:2], names[2:4]]
        assert all(p[0][0] == p[1][0] for p in pairs)
        assert [p[0][1] for p in pairs] == [first, first]
        assert [p[1][1] for p in pairs] == [second, second]


def test_cell_key_is_file_safe():
    assert Cell("cbench", 2, "qemu-user", "linux/arm/v7").key == "cbench-s2-qemu-user-linux-arm-v7"


def test_schedule_interleaves_warmups_first_or_runs_sequentially():
    a, b = Cell("s", 1, "x", "p"), Cell("s", 1, "y", "p")
    assert schedule([a, b], 2, warmup=1) == [
        (1, True, a),
        (1, True, b),
        (1, False, a),
        (1, False, b),
        (2, False, b),
        (2, False, a),
    ]
    assert schedule([a, b], 2, order="sequential") == [
        (1, False, a),
        (2, False, a),
        (1, False, b),
        (2, False, b),
    ]


def test_cpu_variants_apply_only_to_emulating_strategies_and_caches_nest_inside():
    cells = expand(
        [("s", ["linux/arm64"])],
        ["cross", "qemu-user"],
        [1],
        caches=("cold", "warm"),
        cpus=("", "max"),
    )
    assert [(c.strategy, c.cpu, c.cache) for c in cells] == [
        ("cross", "", "cold"),
        ("cross", "", "warm"),
        ("qemu-user", "", "cold"),
        ("qemu-user", "", "warm"),
        ("qemu-user", "max", "cold"),
        ("qemu-user", "max", "warm"),
    ]
    assert cells[-1].key == "s-s1-qemu-user-max-linux-arm64-warm"
    assert cells[-1].variant == "qemu-user-max"
