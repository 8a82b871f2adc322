"""Teams' own Dockerfiles benchmarked as they are written: with every strategy, arm64 and
amd64, the images validated, and the per-instruction table checked for what it says."""

from __future__ import annotations

import csv
import io
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from bench.engine.results import load_run, resolve_run
from tests.conftest import DATA
from tests.conftest import run_archbench as run

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]
STRATEGIES = "native,cross,qemu-user,qemu-system"


def _scenario(
    tmp_path: Path, name: str, artifacts: list[str], smoke: list[str], expect: str
) -> Path:
    """Copy the Dockerfile's folder into tmp_path with a scenario file beside it."""
    app = tmp_path / "app"
    shutil.copytree(DATA / "dockerfiles" / name, app)
    file = tmp_path / "scenario.toml"
    quoted = ", ".join(f'"{a}"' for a in artifacts)
    command = ", ".join(f'"{c}"' for c in smoke)
    file.write_text(
        f'name = "df-{name}-{uuid.uuid4().hex[:6]}"\nkind = "dockerfile"\n'
        'dockerfile = "app/Dockerfile"\ncontext = "app"\n'
        f"artifacts = [{quoted}]\n"
        f'[smoke]\ncommand = [{command}]\nexpect = "{expect}"\n'
    )
    return file


def _run(archbench_cmd: list[str], tmp_path: Path, file: Path) -> dict[tuple[str, str], object]:
    done = run(
        archbench_cmd, tmp_path, str(file), "--strategy", STRATEGIES, "--platform", "amd64,arm64"
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    _, records = load_run(resolve_run(None, tmp_path / "results"))
    return {(r.strategy, r.platform): r for r in records if r.kind == "cell"}


def _instructions(tmp_path: Path) -> list[dict[str, str]]:
    text = (tmp_path / "reports" / "instructions.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def _row(rows: list[dict[str, str]], line: int, strategy: str, platform: str) -> dict[str, str]:
    found = [
        r
        for r in rows
        if r["line"] == str(line) and r["strategy"] == strategy and r["platform"] == platform
    ]
    assert len(found) == 1, rows
    return found[0]


def _unavailable(cells: dict, strategy: str, platform: str, reason: str) -> None:
    record = cells[(strategy, platform)]
    assert record.status == "unavailable" and reason in record.reason, record.reason


def _validated(record: object) -> dict[str, dict]:
    assert record.status == "ok", record.log_tail  # type: ignore[attr-defined]
    checks = {c["name"]: c for c in record.validation["checks"]}  # type: ignore[attr-defined]
    assert all(c["passed"] for c in checks.values()), checks
    return checks


def test_c_make_every_run_on_the_target(archbench_cmd, registry, binfmt_arm64, tmp_path):
    file = _scenario(
        tmp_path, "c-make", ["/usr/local/bin/cksum32"], ["--version"], "cksum32 1.0 {arch}"
    )
    cells = _run(archbench_cmd, tmp_path, file)
    for platform in ("linux/amd64", "linux/arm64"):
        strategy = "native" if platform == "linux/amd64" else "qemu-user"
        checks = _validated(cells[(strategy, platform)])
        assert (
            "cksum32 1.0 " + ("x86_64" if strategy == "native" else "aarch64")
            in (checks["smoke"]["detail"])
        )
    _unavailable(cells, "cross", "linux/arm64", "runs every RUN on the target platform")
    _unavailable(cells, "qemu-system", "linux/arm64", "rewriting the Dockerfile")
    rows = _instructions(tmp_path)
    apt = _row(rows, 4, "qemu-user", "linux/arm64")
    assert apt["emulated"] == "True" and float(apt["ratio"]) > 1.0
    make = _row(rows, 11, "qemu-user", "linux/arm64")
    assert make["instruction"].startswith("RUN make") and float(make["ratio"]) > 1.0
    copy = _row(rows, 9, "qemu-user", "linux/arm64")
    assert copy["emulated"] == "False"  # COPY runs in BuildKit, never emulated
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert "linux/arm64: built as qemu-user" in summary
    assert "What moving the emulated steps to $BUILDPLATFORM would save" in summary


def test_go_service_cross_builds_on_buildplatform(archbench_cmd, registry, binfmt_arm64, tmp_path):
    file = _scenario(
        tmp_path,
        "go-service",
        ["/usr/local/bin/hello-svc"],
        ["/usr/local/bin/hello-svc", "-version"],
        "hello-svc 0.3 linux/{architecture}",
    )
    cells = _run(archbench_cmd, tmp_path, file)
    _validated(cells[("native", "linux/amd64")])
    checks = _validated(cells[("cross", "linux/arm64")])
    assert "hello-svc 0.3 linux/arm64" in checks["smoke"]["detail"]
    _unavailable(cells, "qemu-user", "linux/arm64", "its linux/arm64 build is cross")
    rows = _instructions(tmp_path)
    go_build = _row(rows, 14, "cross", "linux/arm64")
    assert go_build["runs_on"] == "build" and go_build["emulated"] == "False"
    # The compiler runs natively either way: no emulation ratio far from 1.
    assert 0.3 < float(go_build["ratio"]) < 3.0
    assert not any(r["emulated"] == "True" for r in rows)


def test_tarball_image_per_arch_add(archbench_cmd, registry, binfmt_arm64, tmp_path):
    file = _scenario(tmp_path, "tarball-image", ["/usr/bin/jq"], [], "")
    file.write_text(
        file.read_text().replace(
            '[smoke]\ncommand = []\nexpect = ""\n',
            '[smoke]\ncommand = ["/usr/local/bin/tool", "--version"]\n'
            'expect = "tool 2.1 {architecture}"\n',
        )
    )
    dist = tmp_path / "app" / "dist"
    dist.mkdir()
    for arch in ("amd64", "arm64"):
        script = f'#!/bin/sh\necho "tool 2.1 {arch}"\n'.encode()
        with tarfile.open(dist / f"tool-{arch}.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo("bin/tool")
            info.size, info.mode = len(script), 0o755
            tar.addfile(info, io.BytesIO(script))
    cells = _run(archbench_cmd, tmp_path, file)
    _validated(cells[("native", "linux/amd64")])
    checks = _validated(cells[("qemu-user", "linux/arm64")])
    assert "tool 2.1 arm64" in checks["smoke"]["detail"]
    _unavailable(cells, "cross", "linux/arm64", "runs every RUN on the target platform")
    rows = _instructions(tmp_path)
    apt = _row(rows, 3, "qemu-user", "linux/arm64")
    assert apt["stage"] == "base" and float(apt["ratio"]) > 1.0
    link = _row(rows, 11, "qemu-user", "linux/arm64")  # a stage built on a stage
    assert link["stage"] == "tools" and link["emulated"] == "True"
