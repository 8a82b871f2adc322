"""Tag naming: one tag per cell, one index tag per strategy (and its combined build)."""

import pytest

from bench.engine.matrix import Cell
from bench.engine.runner import cell_tag, strategy_tag
from bench.platforms import KNOWN

REPO = "127.0.0.1:5000/archbench/tiny"


@pytest.mark.parametrize(
    ("cell", "tag"),
    [
        (Cell("tiny", 1, "cross", "linux/arm64"), "cross-arm64"),
        (Cell("tiny", 1, "native", "linux/amd64"), "native-amd64"),
        (Cell("tiny", 1, "qemu-user", "linux/arm/v7"), "qemu-user-arm-v7"),
        (Cell("tiny", 3, "qemu-user", "linux/riscv64"), "qemu-user-riscv64-s3"),
        (Cell("tiny", 1, "qemu-user", "linux/arm64", "warm"), "qemu-user-arm64-warm"),
        (Cell("tiny", 1, "qemu-user", "linux/arm64", "cold", "max"), "qemu-user-max-arm64"),
        (
            Cell("tiny", 2, "qemu-system", "linux/arm64", "warm", "cortex-a72"),
            "qemu-system-cortex-a72-arm64-warm-s2",
        ),
    ],
)
def test_cell_tag_names_strategy_cpu_platform_cache_and_size(cell, tag):
    assert cell_tag(REPO, cell, KNOWN[cell.platform]) == f"{REPO}:{tag}"


def test_cell_tags_of_distinct_cells_never_collide():
    cells = [
        Cell("tiny", size, strategy, platform, cache, cpu)
        for size in (1, 2)
        for strategy in ("native", "cross", "qemu-user")
        for platform in KNOWN
        for cache in ("cold", "warm")
        for cpu in ("", "max")
    ]
    tags = {cell_tag(REPO, c, KNOWN[c.platform]) for c in cells}
    assert len(tags) == len(cells)


@pytest.mark.parametrize(
    ("variant", "size", "suffix", "tag"),
    [
        ("cross", 1, "", "cross"),
        ("cross", 4, "", "cross-s4"),
        ("qemu-user-max", 1, "warm", "qemu-user-max-warm"),
        ("qemu-user", 2, "combined", "qemu-user-combined-s2"),
    ],
)
def test_strategy_tag_names_variant_suffix_and_size(variant, size, suffix, tag):
    assert strategy_tag(REPO, variant, size, suffix) == f"{REPO}:{tag}"


def test_an_index_tag_is_never_a_cell_tag():
    cell = Cell("tiny", 1, "cross", "linux/arm64")
    index = strategy_tag(REPO, cell.variant, cell.size)
    combined = strategy_tag(REPO, cell.variant, cell.size, "combined")
    assert len({cell_tag(REPO, cell, KNOWN["linux/arm64"]), index, combined}) == 3
