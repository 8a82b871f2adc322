import os
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
