"""A real run of the tiny scenario: three strategies, two platforms, real engine, real
registry, real qemu-user and real cross compilers."""

import json
import subprocess
from pathlib import Path

import pytest

from bench.engine.results import SCHEMA_VERSION, load_run, resolve_run
from bench.tools import docker
from bench.tools import registry as reg
from bench.validate.image import image_platforms
from tests.conftest import DATA

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]


@pytest.fixture(scope="module")
def tiny_run(archbench_cmd, registry, binfmt_arm64, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    reports = tmp_path_factory.mktemp("reports")
    done = subprocess.run(
        [
            *archbench_cmd,
            "run",
            str(DATA / "scenarios" / "tiny"),
            "--strategy",
            "native,qemu-user",
            "--strategy",
            "cross",
            "--platform",
            "linux/amd64,arm64",
            "--reps",
            "1",
            "--results",
            str(results),
            "--reports",
            str(reports),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return done, results, reports


def test_run_exits_0_and_stores_every_cell(tiny_run):
    done, results, _ = tiny_run
    assert done.returncode == 0, done.stderr[-3000:]
    manifest, records = load_run(resolve_run(None, results))
    assert manifest["status"] == "ok"
    cells = {(r.strategy, r.platform): r for r in records if r.kind == "cell"}
    for key in [
        ("native", "linux/amd64"),
        ("qemu-user", "linux/amd64"),
        ("qemu-user", "linux/arm64"),
        ("cross", "linux/amd64"),
        ("cross", "linux/arm64"),
    ]:
        assert cells[key].status == "ok", key
        assert cells[key].wall_s > 0 and cells[key].digest.startswith("sha256:")
        assert cells[key].validation["passed"]
    assert cells[("native", "linux/arm64")].status == "unavailable"
    assert "no native linux/arm64 node" in cells[("native", "linux/arm64")].reason
    assert not any(r.strategy == "qemu-system" for r in records)
    assert cells[("cross", "linux/arm64")].compiler.version.startswith("aarch64-linux-gnu-gcc")
    prov = cells[("cross", "linux/arm64")].provenance
    assert prov["docker_server"] and prov["buildx"] and prov["binfmt"]["linux/arm64"]["flags"]
    kinds = {(r.kind, r.strategy) for r in records}
    for strategy in ("native", "qemu-user", "cross"):
        assert ("merge", strategy) in kinds and ("combined", strategy) in kinds
        assert ("provision", strategy) in kinds


@pytest.mark.parametrize(
    "strategy,platforms",
    [
        ("native", {"linux/amd64"}),
        ("qemu-user", {"linux/amd64", "linux/arm64"}),
        ("cross", {"linux/amd64", "linux/arm64"}),
    ],
)
def test_each_strategy_pushed_an_index_that_runs_per_platform(
    tiny_run, registry, strategy, platforms
):
    assert tiny_run[0].returncode == 0
    ref = f"{registry}/archbench/tiny:{strategy}"
    raw = docker.imagetools_inspect_raw(ref)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    found = image_platforms(raw)
    assert set(found) == platforms
    repo = ref.rsplit(":", 1)[0]
    for platform, digest in found.items():
        done = docker.run_image(f"{repo}@{digest}", platform, pull="always")
        arch = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[platform]
        assert done.ok and f"arch={arch} target={arch} selftest=ok" in done.stdout


def test_combined_build_pushed_both_platforms(tiny_run, registry):
    manifest = reg.get_manifest(f"{registry}/archbench/tiny:qemu-user-combined")
    assert set(image_platforms(manifest.body)) == {"linux/amd64", "linux/arm64"}


def test_report_files_were_written(tiny_run):
    _, _, reports = tiny_run
    names = {p.name for p in Path(reports).iterdir()}
    assert {"walltime.csv", "walltime.png", "cells.csv"} <= names
    text = (Path(reports) / "walltime.csv").read_text()
    assert "qemu-user,qemu-user,cold,linux/arm64" in text


def test_run_json_is_valid_on_disk(tiny_run):
    _, results, _ = tiny_run
    run = resolve_run(None, results)
    for f in (run / "records").glob("*.json"):
        assert json.loads(f.read_text())["schema_version"] == SCHEMA_VERSION
