"""pytest-benchmark runs archbench's engine: its JSON carries the engine's own numbers,
and --benchmark-compare-fail catches a cell made slower on purpose."""

import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

from bench.engine.results import load_run, resolve_run
from tests.conftest import DATA, ROOT

pytestmark = [pytest.mark.engine, pytest.mark.registry]


@pytest.fixture
def storage(tmp_path):
    # pytest-benchmark wants its storage below the working folder.
    path = ROOT / ".benchmarks" / f"test-{tmp_path.name}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def bench(tmp_path, storage, *args, env_extra=None):
    env = dict(os.environ)
    env.update(
        ARCHBENCH_BENCH_SCENARIO=str(DATA / "scenarios" / "tiny"),
        ARCHBENCH_BENCH_STRATEGIES="cross",
        ARCHBENCH_BENCH_PLATFORMS="linux/amd64",
        ARCHBENCH_BENCH_REPS="3",
        ARCHBENCH_BENCH_RESULTS=str(tmp_path / "results"),
    )
    env.update(env_extra or {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/benchmarks",
            "--benchmark-only",
            f"--benchmark-storage=file://{storage}",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_json_holds_the_engines_numbers(registry, tmp_path, storage):
    out = tmp_path / "bench.json"
    done = bench(tmp_path, storage, f"--benchmark-json={out}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    data = json.loads(out.read_text())
    (b,) = data["benchmarks"]
    assert b["name"] == "test_build[tiny-s1-cross-linux-amd64]"
    assert b["extra_info"]["strategy"] == "cross" and b["extra_info"]["cache"] == "cold"
    assert b["stats"]["rounds"] == 3 and b["stats"]["iterations"] == 1
    assert data["machine_info"]["archbench"]["docker_server"]
    manifest, records = load_run(resolve_run(b["extra_info"]["run_id"], tmp_path / "results"))
    assert manifest["mode"] == "pytest-benchmark"
    walls = [r.wall_s for r in records if r.kind == "cell" and r.status == "ok"]
    assert len(walls) == 3
    assert b["stats"]["median"] == pytest.approx(statistics.median(walls), rel=1e-9)
    assert b["stats"]["min"] == pytest.approx(min(walls), rel=1e-9)


def test_compare_fail_catches_a_slowed_cell(registry, tmp_path, storage):
    base = bench(tmp_path, storage, "--benchmark-save=base")
    assert base.returncode == 0, base.stdout[-3000:]
    # Slow the build down for real: two busy loops take the machine's two cores.
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        slow = bench(
            tmp_path, storage, "--benchmark-compare=0001", "--benchmark-compare-fail=median:10%"
        )
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert slow.returncode != 0, slow.stdout[-3000:]
    assert "Performance has regressed" in slow.stdout + slow.stderr
