"""`archbench setup` is idempotent and `doctor` reports a ready host (real engine)."""

import json
import subprocess

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]


def test_second_setup_changes_nothing(archbench_cmd, registry):
    done = subprocess.run([*archbench_cmd, "setup"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "setup: nothing to change" in done.stderr
    assert "uname -m: amd64=x86_64, arm64=aarch64" in done.stdout


def test_doctor_json_says_ready(archbench_cmd, registry):
    done = subprocess.run(
        [*archbench_cmd, "doctor", "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ready"] is True
    caps = {c["name"]: c for c in report["capabilities"]}
    assert caps["containerd image store"]["ok"]
    assert "PF" in caps["binfmt arm64"]["detail"] or "F" in caps["binfmt arm64"]["detail"]
    assert caps["base image linux/arm64"]["ok"]
    grid = {(g["strategy"], g["platform"]): g for g in report["strategies"]}
    assert grid[("qemu-user", "linux/arm64")]["available"]
    assert not grid[("native", "linux/arm64")]["available"]
    assert "no native" in grid[("native", "linux/arm64")]["reason"]
    for platform in ("linux/amd64", "linux/arm64"):
        entry = grid[("qemu-system", platform)]
        assert entry["available"] or entry["reason"]
