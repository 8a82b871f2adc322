"""pyproject.toml lists bench's packages by hand (the shipped scenarios live outside
bench/): the list must follow the tree."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_and_the_scenarios_are_shipped():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bench").rglob("__init__.py")
    }
    listed = set(config["packages"])
    assert listed - {"bench.shipped"} == on_disk
    assert config["package-dir"]["bench.shipped"] == "scenarios"
    assert (ROOT / "scenarios" / "cbench" / "scenario.toml").is_file()
