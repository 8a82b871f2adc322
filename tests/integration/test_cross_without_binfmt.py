"""The cross strategy really cross-compiles: with the arm64 binfmt handler off, nothing
arm64 can run, yet the cross arm64 cell builds and its binary is an AArch64 ELF. For C
that takes Debian's cross compiler; for Go, the build platform's Go with GOARCH set and
no cross C toolchain at all."""

import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from bench.engine.results import load_run, resolve_run
from bench.tools import binfmt, qemu
from tests.conftest import DATA, ROOT, run_archbench

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]


def copy_out(ref: str, platform: str, path: str, dest: Path) -> None:
    """Copy a file out of an image without running it (docker create + cp)."""
    cid = subprocess.run(
        ["docker", "create", "--platform", platform, "--pull", "always", ref],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.strip()
    try:
        subprocess.run(["docker", "cp", f"{cid}:{path}", str(dest)], check=True, timeout=120)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


@pytest.mark.parametrize(
    "scenario,artifact",
    [
        (DATA / "scenarios" / "tiny", "/usr/local/bin/tiny"),
        (ROOT / "scenarios" / "gobench", "/usr/local/bin/gobench"),
    ],
    ids=["c", "go"],
)
def test_cross_arm64_builds_with_binfmt_disabled(
    archbench_cmd, registry, binfmt_arm64, tmp_path, scenario, artifact
):
    # binfmt_misc is host-wide: hold its arm64 lock as an emulator swap does, so that a
    # concurrent archbench run waits instead of failing with exec format error.
    with binfmt.arch_lock("aarch64", exclusive=True, say=print):
        qemu.set_binfmt_enabled("aarch64", False)
        try:
            assert not qemu.read_binfmt("aarch64").enabled
            # Proof that emulation is really off: an arm64 container cannot start.
            probe = subprocess.run(
                [
                    "docker",
                    "run",
                    "--rm",
                    "--platform",
                    "linux/arm64",
                    f"{registry}/archbench/debian:bookworm",
                    "true",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert probe.returncode != 0 and "exec format error" in probe.stderr + probe.stdout
            done = run_archbench(
                archbench_cmd,
                tmp_path,
                str(scenario),
                "--strategy",
                "cross",
                "--platform",
                "linux/arm64",
            )
        finally:
            qemu.set_binfmt_enabled("aarch64", True)
    assert qemu.read_binfmt("aarch64").enabled
    assert done.returncode == 0, done.stderr[-3000:]
    _, records = load_run(resolve_run(None, tmp_path / "results"))
    cell = next(r for r in records if r.kind == "cell")
    assert cell.status == "ok"
    checks = {c["name"]: c for c in cell.validation["checks"]}
    assert checks["smoke"]["skipped"]
    assert "no enabled binfmt_misc handler" in checks["smoke"]["detail"]
    assert checks["elf"]["passed"] and "AArch64" in checks["elf"]["detail"]
    binary = tmp_path / "artifact"
    copy_out(f"{cell.tag.rsplit(':', 1)[0]}@{cell.digest}", "linux/arm64", artifact, binary)
    with binary.open("rb") as f:
        elf = ELFFile(f)
        assert elf.header["e_machine"] == "EM_AARCH64"
        assert elf.elfclass == 64 and elf.little_endian
    if scenario.name == "gobench":
        # Go's own cross compiler: no gcc of any architecture was in the toolchain stage.
        log = Path(cell.log_file).read_text()
        assert "aarch64-linux-gnu-gcc" not in log and "gcc-aarch64" not in log
        assert cell.compiler.version.startswith("go version go"), cell.compiler
        assert "golang-go" in log
