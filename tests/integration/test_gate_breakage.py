"""The regression gate on real runs: a cell that builds in BASE and stops building in NEW
(a compile error in the project) fails `archbench compare`, named with its status and the
compiler's message; the project's source change is reported, not taken for a recipe
change."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.conftest import run_archbench as run

pytestmark = [pytest.mark.engine, pytest.mark.registry]


def scenario_copy(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(DATA / "scenarios" / "tiny", folder)
    toml = folder / "scenario.toml"
    toml.write_text(toml.read_text().replace('name = "tiny"', f'name = "{name}"'))
    return folder


def test_a_cell_that_stops_building_fails_the_gate(archbench_cmd, registry, tmp_path):
    name = f"gatebreak{os.getpid()}"
    folder = scenario_copy(tmp_path, name)
    args = (str(folder), "--strategy", "native", "--platform", "linux/amd64")
    base = run(archbench_cmd, tmp_path, *args)
    assert base.returncode == 0, base.stderr[-3000:]
    source = folder / "src" / "tiny.c"
    source.write_text(source.read_text().replace("return ok ? 0 : 1;", "return ok ? 0 : 1"))
    new = run(archbench_cmd, tmp_path, *args)
    assert new.returncode == 1, new.stderr[-3000:]
    runs = sorted(p for p in (tmp_path / "results").iterdir() if p.is_dir())
    assert len(runs) == 2
    done = subprocess.run(
        [
            *archbench_cmd,
            "compare",
            str(runs[0]),
            str(runs[1]),
            "--results",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    cell = f"{name}-s1-native-linux-amd64"
    assert f"BROKEN: {cell}: failed in 1 of 1 repetition(s)" in done.stdout
    assert "error" in done.stdout.split("BROKEN:", 1)[1].lower()
    assert f"measured change: {name}: project sources changed" in done.stdout
    assert "RECIPE CHANGED" not in done.stdout
