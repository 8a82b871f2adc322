"""Analysis decides from data alone: importing it (or the report's data layer) never loads
matplotlib, so that deciding a strategy configures no plotting backend."""

import pkgutil
import subprocess
import sys

import pytest

import bench.analysis

MODULES = [f"bench.analysis.{m.name}" for m in pkgutil.iter_modules(bench.analysis.__path__)]


def test_every_analysis_module_is_listed():
    assert {"bench.analysis.recommend", "bench.analysis.compare"} <= set(MODULES)


@pytest.mark.parametrize("module", [*MODULES, "bench.report.frame"])
def test_importing_does_not_import_matplotlib(module):
    # A fresh interpreter: this one has matplotlib loaded by the chart tests already.
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')\n"
        "print(loaded[:3])\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{module} imports matplotlib: {done.stdout}{done.stderr}"
