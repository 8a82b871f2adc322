import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
ON_CI = bool(os.environ.get("CI"))


def need(condition: bool, why: str) -> None:
    """Skip locally, fail on CI: there a missing tool is a failure."""
    if condition:
        return
    if ON_CI:
        pytest.fail(f"CI host is missing: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def archbench_cmd() -> list[str]:
    return [sys.executable, "-m", "bench"]


def run_archbench(
    archbench_cmd: list[str], tmp_path: Path, *args: str, timeout: float = 2400
) -> subprocess.CompletedProcess[str]:
    """`archbench run ARGS` with one repetition per cell, no combined builds, and the
    results and reports kept under `tmp_path`."""
    return subprocess.run(
        [
            *archbench_cmd,
            "run",
            *args,
            "--reps",
            "1",
            "--no-combined",
            "--results",
            str(tmp_path / "results"),
            "--reports",
            str(tmp_path / "reports"),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
